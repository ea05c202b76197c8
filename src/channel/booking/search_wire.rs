//! Wire types of Booking.com's message search (`GET /messaging/messages/search`, then
//! `GET /messaging/messages/search/result/{job_id}`), for `ota-relay backfill`.
//!
//! The documentation at hand names the endpoints, the job id, the "ready" status and `page_id`, but shows no
//! answer body. What is assumed here (TO CONFIRM against the sandbox):
//! - creating a search answers `{"data": {"job_id": "…"}, "errors": [], "meta": {"ruid": "…"}}`;
//! - a result answers `{"data": {"status": "pending" | "ready", "messages": [...], "next_page_id": "…" | null}}`,
//!   its messages shaped like `/messages/latest`'s.
//!
//! Near variants are accepted (`data.id`, `data.job_status`, `data.state`, `data.next_page`, `meta.next_page_id`,
//! integer ids); anything else fails with an error that names the keys found, never as "nothing found".

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::wire::{Meta, WireError, check_failure, parse_element};
use crate::store::Element;

/// A created search: the job to ask for results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchJob {
    pub job_id: String,
    pub ruid: Option<String>,
}

/// One answer of the result endpoint.
#[derive(Debug)]
pub enum SearchResult {
    /// The job is still running: ask again later.
    Pending { status: String },
    /// One page of results, and the id of the next page if there is one.
    Page {
        elements: Vec<Element>,
        next_page_id: Option<String>,
        ruid: Option<String>,
    },
}

const PENDING: &[&str] = &[
    "pending",
    "in_progress",
    "running",
    "queued",
    "processing",
    "created",
    "started",
];
const READY: &[&str] = &[
    "ready",
    "done",
    "completed",
    "complete",
    "finished",
    "success",
    "succeeded",
];

/// Parses the answer of `GET /messaging/messages/search`.
pub fn parse_search_job(body: &[u8]) -> Result<SearchJob, WireError> {
    let value = envelope(body)?;
    let candidates = [
        value.pointer("/data/job_id"),
        value.pointer("/data/id"),
        value.pointer("/job_id"),
    ];
    let job_id = candidates
        .into_iter()
        .flatten()
        .find_map(id_text)
        .ok_or_else(|| unrecognised("search", &value, "no job id (looked for data.job_id, data.id, job_id)"))?;
    Ok(SearchJob {
        job_id,
        ruid: ruid(&value),
    })
}

/// Parses one answer of `GET /messaging/messages/search/result/{job_id}[?page_id=…]`.
pub fn parse_search_result(body: &[u8]) -> Result<SearchResult, WireError> {
    let value = envelope(body)?;
    let status = ["/data/status", "/data/job_status", "/data/state", "/status"]
        .iter()
        .find_map(|p| value.pointer(p).and_then(Value::as_str))
        .map(str::to_ascii_lowercase);
    let has_messages = value.pointer("/data/messages").is_some_and(Value::is_array);
    match status.as_deref() {
        Some(s) if PENDING.contains(&s) => {
            return Ok(SearchResult::Pending { status: s.to_owned() });
        }
        Some(s) if READY.contains(&s) => {}
        Some(s) if s == "failed" || s == "error" => {
            return Err(WireError::Api {
                summary: format!("the search job's status is {s:?}"),
                ruid: ruid(&value),
            });
        }
        Some(s) => {
            return Err(unrecognised(
                "search result",
                &value,
                &format!("unknown job status {s:?}"),
            ));
        }
        None if has_messages => {}
        None => {
            return Err(unrecognised(
                "search result",
                &value,
                "neither a job status nor data.messages",
            ));
        }
    }
    if !has_messages {
        return Err(unrecognised(
            "search result",
            &value,
            "the job is ready but there is no data.messages array",
        ));
    }
    // Messages are parsed from their raw bytes, as the queue's are, so `raw` keeps them exactly as sent.
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        data: RawData<'a>,
    }
    #[derive(Deserialize)]
    struct RawData<'a> {
        #[serde(borrow)]
        messages: Vec<&'a RawValue>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| WireError::Shape(e.to_string()))?;
    let next_page_id = ["/data/next_page_id", "/data/next_page", "/meta/next_page_id"]
        .iter()
        .filter_map(|p| value.pointer(p))
        .find_map(id_text);
    Ok(SearchResult::Page {
        elements: raw
            .data
            .messages
            .into_iter()
            .map(|m| parse_element(m.get(), m.get(), None))
            .collect(),
        next_page_id,
        ruid: ruid(&value),
    })
}

/// Parses JSON and turns a reported failure (`errors[]`, `data.ok: false`) into [`WireError::Api`].
fn envelope(body: &[u8]) -> Result<Value, WireError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| WireError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(WireError::Shape("the answer is not a JSON object".into()));
    }
    let ok = value.pointer("/data/ok").and_then(Value::as_bool);
    check_failure(value.get("errors"), ok, &ruid(&value))?;
    Ok(value)
}

fn ruid(value: &Value) -> Option<String> {
    serde_json::from_value::<Meta>(value.get("meta")?.clone()).ok()?.ruid
}

/// A non-empty string or an integer; null and empty strings are "absent".
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// An error naming the keys that were there (never their values: they may hold guest content).
fn unrecognised(what: &str, value: &Value, problem: &str) -> WireError {
    let keys = |v: Option<&Value>| {
        v.and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "-".into())
    };
    WireError::Shape(format!(
        "unrecognised {what} answer: {problem}; top-level keys [{}], data keys [{}] \
         (the search answer's shape is assumed, see the README: please report it)",
        keys(Some(value)),
        keys(value.get("data"))
    ))
}
