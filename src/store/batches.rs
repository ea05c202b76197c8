//! `batches`: one row per answer with messages (a poll or a search page), with what it held.

use rusqlite::{Connection, params};

use super::Millis;

/// Where a batch came from: the queue (a poll, to be confirmed) or a search (`backfill`: nothing to confirm, and
/// not a sign that the queue is reachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrigin {
    Queue,
    Search,
}

impl BatchOrigin {
    fn name(self) -> &'static str {
        match self {
            BatchOrigin::Queue => "queue",
            BatchOrigin::Search => "search",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub fetched: usize,
    pub new: usize,
    pub redelivered: usize,
    pub quarantined: usize,
}

pub(super) fn insert(
    conn: &Connection,
    provider: &str,
    fetched_at: Millis,
    fetched: usize,
    ruid: Option<&str>,
    origin: BatchOrigin,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO batches (provider, fetched_at, fetched, new, redelivered, quarantined, ruid, origin)
         VALUES (?1, ?2, ?3, 0, 0, 0, ?4, ?5)",
    )?
    .execute(params![provider, fetched_at, fetched as i64, ruid, origin.name()])?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn set_summary(conn: &Connection, id: i64, summary: &BatchSummary) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE batches SET new = ?2, redelivered = ?3, quarantined = ?4 WHERE id = ?1")?
        .execute(params![
            id,
            summary.new as i64,
            summary.redelivered as i64,
            summary.quarantined as i64
        ])?;
    Ok(())
}

/// Redelivered copies recognised in polled answers (searches find stored messages by design).
pub fn redeliveries_filtered(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(sum(redelivered), 0) FROM batches WHERE origin = 'queue'",
        [],
        |r| r.get(0),
    )
}

pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM batches", [], |r| r.get(0))
}

/// Up to `limit` batches fetched before `cutoff` that nothing refers to any more (receipts not yet compacted
/// and quarantined elements refer to theirs; batch ids and receipt ids both grow with time).
pub(super) fn delete_unreferenced_before(conn: &Connection, cutoff: Millis, limit: usize) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM batches WHERE id IN (
             SELECT id FROM batches WHERE fetched_at < ?1
                 AND id < (SELECT coalesce(min(batch_id), 9223372036854775807) FROM receipts)
                 AND id NOT IN (SELECT first_batch FROM quarantine WHERE first_batch IS NOT NULL)
             LIMIT ?2)",
        params![cutoff, limit as i64],
    )
}
