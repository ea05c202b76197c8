//! Scheduled housekeeping: the duplicate filter, retention and maintenance.
//!
//! Each job is one task: compute the next occurrence of its cron pattern (croner) in the configured time zone,
//! sleep until then, run, repeat. Runs of a job therefore never overlap, a run in progress is waited for at
//! shutdown (the task is tracked), and a runtime stall only delays the next run: the next occurrence is always
//! computed from the wall clock after a run, never from the previous deadline. The sleep is sliced, so a clock
//! change (either way) or a suspended machine is noticed within a minute. This replaces tokio-cron-scheduler; see the README.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{RetentionSettings, Schedule};
use crate::daemon::Context;
use crate::store::{Store, StoreError, now_ms};
use crate::store::{housekeeping, job_runs};

/// The longest single sleep while waiting for a job's next occurrence.
const SLICE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    DuplicateFilter,
    Retention,
    Maintenance,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::DuplicateFilter, JobKind::Retention, JobKind::Maintenance];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::DuplicateFilter => "duplicate_filter",
            JobKind::Retention => "retention",
            JobKind::Maintenance => "maintenance",
        }
    }
}

/// A cron pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Pattern(#[from] croner::errors::CronError),
    #[error("it never fires (no date matches it)")]
    NeverFires,
}

/// Parses a cron pattern with a seconds field ("sec min hour day-of-month month day-of-week").
pub fn parse_schedule(pattern: &str) -> Result<croner::Cron, ScheduleError> {
    Ok(croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(pattern)?)
}

/// Runs `kind` once now, records it in `job_runs` and logs one summary line. Returns the summary's figures.
pub async fn run_once(
    store: &Store,
    kind: JobKind,
    retention: RetentionSettings,
) -> Result<serde_json::Value, StoreError> {
    let started = now_ms();
    tracing::debug!(job = kind.name(), "job started");
    store
        .call(move |conn| Ok(job_runs::started(conn, kind.name(), started)?))
        .await?;
    let now = now_ms();
    let cutoff = |d: Option<Duration>| d.map(|d| now.before(d));
    let result = match kind {
        JobKind::DuplicateFilter => store.duplicate_filter(now).await.map(to_json),
        JobKind::Retention => store
            .retention(cutoff(retention.content), cutoff(retention.tombstones), now)
            .await
            .map(to_json),
        JobKind::Maintenance => store
            .call(|conn| Ok(housekeeping::maintenance(conn)?))
            .await
            .map(to_json),
    };
    let finished = now_ms();
    let (ok, summary) = match &result {
        Ok(figures) => (true, figures.to_string()),
        Err(e) => (false, e.to_string()),
    };
    let ms = finished.since(started).as_millis() as u64;
    match &result {
        Ok(figures) => tracing::info!(job = kind.name(), ms, figures = %figures_line(figures), "job finished"),
        Err(e) => tracing::error!(job = kind.name(), ms, error = %e, "job failed"),
    }
    store
        .call(move |conn| Ok(job_runs::finished(conn, kind.name(), finished, ok, &summary)?))
        .await?;
    result
}

fn to_json(report: impl Serialize) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

/// `{"a":1,"b":2}` as `a=1 b=2`, for the log line.
fn figures_line(figures: &serde_json::Value) -> String {
    match figures.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        None => figures.to_string(),
    }
}

/// Runs `kind` on `schedule` until cancelled. A run is never interrupted: cancellation is seen between runs.
pub async fn run_schedule(
    cx: Context,
    kind: JobKind,
    schedule: Schedule,
    timezone: chrono_tz::Tz,
    retention: RetentionSettings,
) {
    let Context {
        store, metrics, cancel, ..
    } = cx;
    tracing::info!(job = kind.name(), schedule = %schedule.pattern, timezone = timezone.name(), "job scheduled");
    mark_scheduled(&store, kind).await;
    loop {
        let now = Utc::now().with_timezone(&timezone);
        let mut next = match schedule.cron.find_next_occurrence(&now, false) {
            Ok(next) => next.with_timezone(&Utc),
            Err(e) => {
                tracing::error!(job = kind.name(), error = %e, "the schedule has no next occurrence; job stopped");
                // Recorded, so that status and /healthz say so until the schedule is fixed.
                let reason = format!("the schedule {:?} has no next occurrence: {e}", schedule.pattern);
                let _ = store
                    .call(move |conn| Ok(job_runs::stopped(conn, kind.name(), now_ms(), &reason)?))
                    .await;
                return;
            }
        };
        loop {
            let now = Utc::now();
            next = next_due(&schedule.cron, timezone, next, now);
            let left = (next - now).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(left.min(SLICE)) => {}
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        // Errors are logged and recorded by run_once; the next occurrence is tried regardless.
        let ok = run_once(&store, kind, retention).await.is_ok();
        metrics.job_run(kind.name(), ok, now_ms());
    }
}

/// A job (re)scheduled, or turned off, is not stopped.
pub async fn mark_scheduled(store: &Store, kind: JobKind) {
    if let Err(e) = store
        .call(move |conn| Ok(job_runs::scheduled(conn, kind.name())?))
        .await
    {
        tracing::warn!(job = kind.name(), error = %e, "cannot record the job's schedule in the store");
    }
}

/// When a job planned for `planned` runs, seen at `now`: the planned time, or the schedule's next occurrence after
/// `now` if that comes first, which happens only when the clock went back since `planned` was computed. Without
/// it, a clock that was years fast when the daemon started would hold every job (retention too) back for years.
pub fn next_due(
    cron: &croner::Cron,
    timezone: chrono_tz::Tz,
    planned: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match cron.find_next_occurrence(&now.with_timezone(&timezone), false) {
        Ok(next) => planned.min(next.with_timezone(&Utc)),
        Err(_) => planned,
    }
}
