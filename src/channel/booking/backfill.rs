//! `ota-relay backfill`: recovery after an outage. Messages that never reached the queue client (lost, or
//! confirmed by someone else) are found with Booking.com's message search and go through the same store
//! (dedup by message id) and outbox as drained ones, so backfilling twice forwards nothing twice.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::channel::booking::client::SearchQuery;
use crate::channel::booking::search_wire::SearchResult;
use crate::channel::booking::{BookingClient, FetchError, PROVIDER};
use crate::store::{BatchOrigin, IncomingBatch, Store, StoreError, now_ms};

/// The longest range one search may cover; longer ones are split.
pub const MAX_WINDOW_MS: i64 = 90 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Request {
    pub after_ms: i64,
    pub before_ms: i64,
    pub property_id: Option<String>,
    pub order_by: Option<String>,
    /// How long to wait for one search job to become ready.
    pub max_wait: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub windows: usize,
    pub pages: usize,
    pub found: usize,
    pub new: usize,
    pub already_stored: usize,
    pub quarantined: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("cannot store the found messages: {0}")]
    Store(#[from] StoreError),
    #[error(
        "search job {job_id} expired (HTTP 410; a job id lives 48 hours); run the same backfill again: \
         messages already stored are not stored or forwarded twice"
    )]
    Expired { job_id: String },
    #[error("search job {job_id} was not ready after {}; run the backfill again later", humantime::format_duration(*.waited))]
    NotReady { job_id: String, waited: Duration },
}

/// Parses `--after`/`--before`: RFC 3339 (any offset, converted to UTC) or a date, meaning 00:00:00.000 UTC.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(format!(
        "{text:?} is not a time: use RFC 3339 (2026-11-01T00:00:00Z, 2026-11-01T01:00:00+01:00) or a date (2026-11-01)"
    ))
}

/// The search API's time format: ISO 8601 in UTC with milliseconds.
pub fn wire_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Inclusive `[after, before]` cut into consecutive inclusive windows of at most 90 days.
pub fn windows(after_ms: i64, before_ms: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = after_ms;
    while start <= before_ms {
        let end = (start + MAX_WINDOW_MS - 1).min(before_ms);
        out.push((start, end));
        start = end + 1;
    }
    out
}

/// Runs the searches and stores what they find; `progress` gets one line per step.
pub async fn run(
    client: &BookingClient,
    store: &Store,
    request: &Request,
    mut progress: impl FnMut(String),
) -> Result<Report, BackfillError> {
    let windows = windows(request.after_ms, request.before_ms);
    let mut report = Report::default();
    for (index, (after, before)) in windows.iter().enumerate() {
        let query = SearchQuery {
            after: wire_time(*after),
            before: wire_time(*before),
            property_id: request.property_id.clone(),
            order_by: request.order_by.clone(),
        };
        let job = client.search(&query).await?;
        progress(format!(
            "window {}/{}: {} .. {}: search job {}",
            index + 1,
            windows.len(),
            query.after,
            query.before,
            job.job_id
        ));
        report.windows += 1;
        let mut page_id: Option<String> = None;
        loop {
            let (elements, next) =
                ready_page(client, &job.job_id, page_id.as_deref(), request.max_wait, &mut progress).await?;
            let found = elements.len();
            let committed = store
                .commit_batch(IncomingBatch {
                    provider: PROVIDER,
                    fetched_at: now_ms(),
                    ruid: None,
                    elements,
                    origin: BatchOrigin::Search,
                })
                .await?;
            let s = committed.summary;
            report.pages += 1;
            report.found += found;
            report.new += s.new;
            report.already_stored += s.redelivered;
            report.quarantined += s.quarantined;
            progress(format!(
                "  page {}: {found} found, {} new, {} already stored, {} quarantined",
                report.pages, s.new, s.redelivered, s.quarantined
            ));
            match next {
                Some(next) => page_id = Some(next),
                None => break,
            }
        }
    }
    Ok(report)
}

/// Asks for one page until the job is ready (1 s, 2 s, 4 s … 15 s apart, at most `max_wait` in all).
async fn ready_page(
    client: &BookingClient,
    job_id: &str,
    page_id: Option<&str>,
    max_wait: Duration,
    progress: &mut impl FnMut(String),
) -> Result<(Vec<crate::store::Element>, Option<String>), BackfillError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_secs(1);
    loop {
        match client.search_result(job_id, page_id).await {
            Ok(SearchResult::Page {
                elements, next_page_id, ..
            }) => return Ok((elements, next_page_id)),
            Ok(SearchResult::Pending { status }) => {
                if started.elapsed() + pause > max_wait {
                    return Err(BackfillError::NotReady {
                        job_id: job_id.to_owned(),
                        waited: started.elapsed(),
                    });
                }
                progress(format!(
                    "  job {job_id} is {status}; asking again in {}s",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            Err(FetchError::Status { status: 410, .. }) => {
                return Err(BackfillError::Expired {
                    job_id: job_id.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backfill finished: {} search window(s), {} page(s); {} messages found: {} new (queued for the PMS), \
             {} already stored, {} quarantined",
            self.windows, self.pages, self.found, self.new, self.already_stored, self.quarantined
        )
    }
}
