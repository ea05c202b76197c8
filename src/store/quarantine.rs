//! `quarantine`: elements that could not be understood, kept byte for byte; a redelivered one bumps its count.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Millis, format_ms, sha256_hex};

/// Keeps an element that could not be understood; `raw_exact` holds its exact bytes when `raw` (JSON text) had
/// to repair them. The same bytes again count as a sighting, not a second row.
pub(super) fn upsert(
    conn: &Connection,
    provider: &str,
    raw: &str,
    raw_exact: Option<&[u8]>,
    reason: &str,
    batch_id: Option<i64>,
    at: Millis,
) -> rusqlite::Result<()> {
    let exact = raw_exact.unwrap_or(raw.as_bytes());
    conn.prepare_cached(
        "INSERT INTO quarantine (provider, raw_sha256, raw, raw_exact, reason, first_batch, first_seen_at,
                                 last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (provider, raw_sha256)
         DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = seen_count + 1",
    )?
    .execute(params![
        provider,
        sha256_hex(exact),
        raw,
        raw_exact,
        reason,
        batch_id,
        at
    ])?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct QuarantinedElement {
    pub id: i64,
    pub provider: String,
    pub reason: String,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub seen_count: i64,
    pub bytes: i64,
}

/// Every quarantined element, without its bytes.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<QuarantinedElement>> {
    conn.prepare(
        "SELECT id, provider, reason, first_seen_at, last_seen_at, seen_count, length(raw)
         FROM quarantine ORDER BY id",
    )?
    .query_map([], |r| {
        Ok(QuarantinedElement {
            id: r.get(0)?,
            provider: r.get(1)?,
            reason: r.get(2)?,
            first_seen_at: format_ms(r.get(3)?),
            last_seen_at: format_ms(r.get(4)?),
            seen_count: r.get(5)?,
            bytes: r.get(6)?,
        })
    })?
    .collect()
}

/// (reason, exact bytes) of one element.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.query_row(
        "SELECT reason, coalesce(raw_exact, CAST(raw AS BLOB)) FROM quarantine WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Removes one element, or all; how many.
pub fn purge(conn: &Connection, id: Option<i64>) -> rusqlite::Result<usize> {
    match id {
        Some(id) => conn.execute("DELETE FROM quarantine WHERE id = ?1", params![id]),
        None => conn.execute("DELETE FROM quarantine", []),
    }
}

/// Removes the elements that name `id` as their message id or conversation id, as parsed (a number, an escaped
/// string); an element that does not parse at all is matched on the id's text. How many.
pub(super) fn erase_naming(conn: &Connection, id: &str) -> rusqlite::Result<u64> {
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, raw FROM quarantine")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut removed = 0;
    for (row, raw) in rows {
        if names(&raw, id) {
            removed += conn.execute("DELETE FROM quarantine WHERE id = ?1", [row])? as u64;
        }
    }
    Ok(removed)
}

fn names(raw: &str, id: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.contains(id);
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    // The pull's elements, and the pushes' whole bodies: a Booking.com notification, STAAH, Channex.
    [
        &value["message_id"],
        &value["conversation"]["conversation_id"],
        &value["payload"]["message_id"],
        &value["payload"]["conversation"]["conversation_id"],
        &value["messageid"],
        &value["threadid"],
        &value["payload"]["id"],
        &value["payload"]["message_thread_id"],
    ]
    .into_iter()
    .any(|v| text(v).as_deref() == Some(id))
}

/// Retention: elements last seen before `cutoff` (they hold guest text like any message). How many.
pub(super) fn delete_seen_before(conn: &Connection, cutoff: Millis, limit: usize) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE last_seen_at < ?1 LIMIT ?2)",
        params![cutoff, limit as i64],
    )
}

pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
}
