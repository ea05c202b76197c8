//! `quarantine`: elements that could not be understood, kept byte for byte; a redelivered one bumps its count.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Millis, format_ms, sha256_hex};

pub(super) fn upsert(
    conn: &Connection,
    provider: &str,
    raw: &str,
    reason: &str,
    batch_id: i64,
    at: Millis,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO quarantine (provider, raw_sha256, raw, reason, first_batch, first_seen_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (provider, raw_sha256)
         DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = seen_count + 1",
    )?
    .execute(params![provider, sha256_hex(raw.as_bytes()), raw, reason, batch_id, at])?;
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
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, String)>> {
    conn.query_row("SELECT reason, raw FROM quarantine WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// Removes one element, or all; how many.
pub fn purge(conn: &Connection, id: Option<i64>) -> rusqlite::Result<usize> {
    match id {
        Some(id) => conn.execute("DELETE FROM quarantine WHERE id = ?1", params![id]),
        None => conn.execute("DELETE FROM quarantine", []),
    }
}

/// Removes the elements whose bytes contain `id` as a JSON string; how many.
pub(super) fn erase_containing(conn: &Connection, id: &str) -> rusqlite::Result<u64> {
    let quoted = serde_json::to_string(id).unwrap_or_default();
    Ok(conn.execute("DELETE FROM quarantine WHERE instr(raw, ?1) > 0", [quoted])? as u64)
}

pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
}
