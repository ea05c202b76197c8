//! `receipts`: every fetched copy of every message, so that redeliveries stay visible until the duplicate
//! filter folds them into per-message counts.

use rusqlite::{Connection, OptionalExtension, params};

use super::Millis;

/// The insert of one receipt per fetched copy, prepared once for a batch.
pub(super) struct Insert<'c>(rusqlite::CachedStatement<'c>);

impl<'c> Insert<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<Insert<'c>> {
        conn.prepare_cached(
            "INSERT INTO receipts (batch_id, provider, message_id, received_at, stored) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map(Insert)
    }

    /// `stored`: this copy is the one that stored the message (the others are redeliveries).
    pub(super) fn run(
        &mut self,
        batch_id: i64,
        provider: &str,
        message_id: &str,
        at: Millis,
        stored: bool,
    ) -> rusqlite::Result<()> {
        self.0
            .execute(params![batch_id, provider, message_id, at, stored])
            .map(|_| ())
    }
}

pub(super) fn max_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM receipts", [], |r| r.get(0))
}

/// The last id of the next chunk of at most `limit` receipts with ids up to `upto`, or None when none are left.
pub(super) fn chunk_end(conn: &Connection, upto: i64, limit: usize) -> rusqlite::Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT max(id) FROM (SELECT id FROM receipts WHERE id <= ?2 ORDER BY id LIMIT ?1)",
            params![limit as i64, upto],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// (receipts, redelivered copies among them) with ids up to `max_id`.
pub(super) fn tally(conn: &Connection, max_id: i64) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT count(*), coalesce(sum(1 - stored), 0) FROM receipts WHERE id <= ?1",
        [max_id],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

pub(super) fn delete_upto(conn: &Connection, max_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM receipts WHERE id <= ?1", [max_id])?;
    Ok(())
}

pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM receipts", [], |r| r.get(0))
}
