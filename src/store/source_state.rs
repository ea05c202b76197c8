//! `source_state`: each source's latest outcome (last poll, last success, the current run of failures), for
//! status and health.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Millis, Store, StoreError, format_ms, now_ms};

impl Store {
    /// Records a poll that was answered (with nothing to store, or after a batch).
    pub async fn record_poll_ok(&self, provider: &'static str) -> Result<(), StoreError> {
        self.call(move |conn| Ok(record_success(conn, provider, now_ms(), false)?))
            .await
    }

    /// Records a failed poll or confirm.
    pub async fn record_poll_error(&self, provider: &'static str, error: String) -> Result<(), StoreError> {
        self.call(move |conn| Ok(record_error(conn, provider, now_ms(), &error)?))
            .await
    }
}

/// A poll was answered (with nothing to store, or with a batch): the run of failures, if any, ends.
pub(super) fn record_success(conn: &Connection, provider: &str, at: Millis, batch: bool) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO source_state (provider, last_poll_at, last_success_at, last_batch_at)
         VALUES (?1, ?2, ?2, CASE WHEN ?3 THEN ?2 END)
         ON CONFLICT (provider) DO UPDATE SET last_poll_at = ?2, last_success_at = ?2, failing_since = NULL,
             failures = 0, last_batch_at = CASE WHEN ?3 THEN ?2 ELSE last_batch_at END",
    )?
    .execute(params![provider, at, batch])?;
    Ok(())
}

/// A failed poll or confirm; `failing_since` keeps the start of the current run of failures (moved back to
/// `at` if it lies ahead: set before the system clock went back, it would hide an outage), and `failures`
/// counts the same failure in a row.
pub(super) fn record_error(conn: &Connection, provider: &str, at: Millis, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO source_state (provider, last_poll_at, failing_since, last_error, last_error_at, failures)
         VALUES (?1, ?2, ?2, ?3, ?2, 1)
         ON CONFLICT (provider) DO UPDATE SET last_poll_at = ?2,
             failing_since = min(COALESCE(failing_since, ?2), ?2), last_error = ?3, last_error_at = ?2,
             failures = CASE WHEN last_error = ?3 AND failing_since IS NOT NULL THEN failures + 1 ELSE 1 END",
        params![provider, at, error],
    )?;
    Ok(())
}

/// One source as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub provider: String,
    pub last_poll_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_batch_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// The source's times in ms, as health judges them.
#[derive(Debug, Clone, Copy)]
pub struct SourceTimes {
    pub last_poll_at: Option<Millis>,
    pub failing_since: Option<Millis>,
    /// The same failure, this many times in a row.
    pub failures: i64,
}

/// The Booking.com source, with its last poll and the start of its current run of failures.
pub fn read(conn: &Connection) -> rusqlite::Result<Option<(Source, SourceTimes)>> {
    conn.query_row(
        "SELECT provider, last_poll_at, last_success_at, last_batch_at, failing_since, last_error, last_error_at,
                failures
         FROM source_state ORDER BY provider LIMIT 1",
        [],
        |r| {
            let at = |i: usize| r.get::<_, Option<Millis>>(i).map(|v| v.map(format_ms));
            let last_poll_at: Option<Millis> = r.get(1)?;
            let failing_since: Option<Millis> = r.get(4)?;
            Ok((
                Source {
                    provider: r.get(0)?,
                    last_poll_at: at(1)?,
                    last_success_at: at(2)?,
                    last_batch_at: at(3)?,
                    failing_since: failing_since.map(format_ms),
                    last_error: r.get(5)?,
                    last_error_at: at(6)?,
                },
                SourceTimes {
                    last_poll_at,
                    failing_since,
                    failures: r.get(7)?,
                },
            ))
        },
    )
    .optional()
}
