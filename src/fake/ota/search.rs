//! The fake's message search, in the shape `booking::search_wire` assumes: a search creates a job over every
//! message ever enqueued or archived (confirmed or not), the job answers "pending" for
//! `search_pending_polls` requests, then pages of `search_page_size` with `next_page_id`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::NaiveDateTime;

use super::handlers::{authorize, json_response};
use super::{Endpoint, Shared};

/// A message the search can find.
#[derive(Debug, Clone)]
pub(super) struct Archived {
    pub id: String,
    pub at_ms: i64,
    pub property_id: Option<String>,
    pub json: Arc<str>,
}

impl Archived {
    pub(super) fn from_json(id: String, json: Arc<str>) -> Archived {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let at_ms = value["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(i64::MIN, |t| t.timestamp_millis());
        let property_id = match &value["conversation"]["property_id"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        Archived {
            id,
            at_ms,
            property_id,
            json,
        }
    }
}

#[derive(Debug)]
pub(super) struct SearchJob {
    results: Vec<Arc<str>>,
    polls: u32,
    pub(super) expired: bool,
}

#[derive(serde::Deserialize)]
pub(super) struct SearchParams {
    after: Option<String>,
    before: Option<String>,
    property_id: Option<String>,
    order_by: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct ResultParams {
    page_id: Option<String>,
}

fn error(shared: &Shared, status: StatusCode, message: &str) -> Response {
    shared.mutate(|s| s.log(Endpoint::Search, status.as_u16()));
    let body = serde_json::json!({
        "meta": {"ruid": shared.next_ruid()},
        "data": {},
        "errors": [{"code": status.as_u16(), "message": message}],
        "warnings": []
    });
    json_response(status, body.to_string())
}

/// ISO 8601 UTC with exactly three fraction digits, as the search requires.
fn parse_wire_time(text: &str) -> Option<i64> {
    if text.len() != 24 {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3fZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

pub(super) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<SearchParams>,
) -> Response {
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Search) {
        return refused;
    }
    if headers.get("accept-version").and_then(|v| v.to_str().ok()) != Some("1.2") {
        return error(
            &shared,
            StatusCode::BAD_REQUEST,
            "this fake serves the search in version 1.2 only",
        );
    }
    let (Some(after), Some(before)) = (
        q.after.as_deref().and_then(parse_wire_time),
        q.before.as_deref().and_then(parse_wire_time),
    ) else {
        return error(
            &shared,
            StatusCode::BAD_REQUEST,
            "after and before are required, as YYYY-MM-DDTHH:MM:SS.sssZ",
        );
    };
    if before < after {
        return error(&shared, StatusCode::BAD_REQUEST, "before is earlier than after");
    }
    if before - after >= crate::channel::booking::backfill::MAX_WINDOW_MS {
        return error(&shared, StatusCode::BAD_REQUEST, "the range exceeds 90 days");
    }
    let descending = match q.order_by.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return error(&shared, StatusCode::BAD_REQUEST, "order_by must be asc or desc"),
    };
    let ruid = shared.next_ruid();
    let job_id = shared.mutate(|s| {
        let mut seen = std::collections::HashSet::new();
        let mut found: Vec<&Archived> = s
            .archive
            .iter()
            .filter(|a| a.at_ms >= after && a.at_ms <= before)
            .filter(|a| q.property_id.is_none() || a.property_id == q.property_id)
            .filter(|a| seen.insert(a.id.clone()))
            .collect();
        found.sort_by_key(|a| a.at_ms);
        if descending {
            found.reverse();
        }
        let results = found.into_iter().map(|a| a.json.clone()).collect();
        let job_id = format!("search-job-{}", s.searches.len() + 1);
        s.searches.push(format!(
            "after={} before={} property_id={} order_by={}",
            q.after.as_deref().unwrap_or(""),
            q.before.as_deref().unwrap_or(""),
            q.property_id.as_deref().unwrap_or("-"),
            q.order_by.as_deref().unwrap_or("-")
        ));
        s.search_jobs.insert(
            job_id.clone(),
            SearchJob {
                results,
                polls: 0,
                expired: false,
            },
        );
        s.log(Endpoint::Search, 200);
        job_id
    });
    let body = serde_json::json!({"meta": {"ruid": ruid}, "data": {"job_id": job_id}, "errors": [], "warnings": []});
    json_response(StatusCode::OK, body.to_string())
}

pub(super) async fn result(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
    Query(q): Query<ResultParams>,
) -> Response {
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Search) {
        return refused;
    }
    let page = match q
        .page_id
        .as_deref()
        .map(|p| p.strip_prefix("page-").and_then(|n| n.parse::<usize>().ok()))
    {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return error(&shared, StatusCode::BAD_REQUEST, "unknown page_id"),
    };
    let page_size = shared.options.search_page_size.max(1);
    let pending_polls = shared.options.search_pending_polls;
    let answer = shared.mutate(|s| {
        s.search_result_requests += 1;
        let job = s.search_jobs.get_mut(&job_id)?;
        if job.expired {
            return Some(Err(StatusCode::GONE));
        }
        job.polls += 1;
        if job.polls <= pending_polls {
            return Some(Ok(serde_json::json!({"status": "pending"})));
        }
        let start = (page * page_size).min(job.results.len());
        let end = (start + page_size).min(job.results.len());
        let messages: Vec<serde_json::Value> = job.results[start..end]
            .iter()
            .map(|m| serde_json::from_str(m).expect("archived JSON"))
            .collect();
        let next = (end < job.results.len()).then(|| format!("page-{}", page + 1));
        Some(Ok(
            serde_json::json!({"status": "ready", "messages": messages, "next_page_id": next}),
        ))
    });
    match answer {
        None => error(&shared, StatusCode::NOT_FOUND, "no such search job"),
        Some(Err(status)) => error(&shared, status, "the search job has expired"),
        Some(Ok(data)) => {
            shared.mutate(|s| s.log(Endpoint::Search, 200));
            let body = serde_json::json!({"meta": {"ruid": shared.next_ruid()}, "data": data, "errors": []});
            json_response(StatusCode::OK, body.to_string())
        }
    }
}
