//! The store side of the scheduled jobs and the erasure tool. The jobs that walk many rows do it one chunk per
//! store job: the drain's commits and the forwarder's outcomes queue on the same store thread, so they wait for
//! one chunk (milliseconds), never for the whole run.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::messages::sha256_hex;
use super::{Store, StoreError};

/// Rows handled per transaction by the jobs that walk many rows.
const CHUNK: usize = 2000;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DuplicateFilterReport {
    /// Receipt rows folded into per-message counts.
    pub receipts_compacted: u64,
    /// Redelivered copies among them.
    pub redeliveries_filtered: u64,
    /// Stored messages that lacked their delivery row and got one.
    pub missing_deliveries: u64,
    /// Delivery rows without a stored message, removed.
    pub orphan_deliveries: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RetentionReport {
    /// Delivered messages whose content was removed (now tombstones).
    pub tombstoned: u64,
    /// Tombstones past `retention.tombstones`, deleted.
    pub tombstones_deleted: u64,
    /// Records of fetched answers (`batches`) past `retention.tombstones` that nothing refers to any more.
    pub batches_deleted: u64,
}

impl Store {
    /// Folds `receipts` into `messages.redeliveries` and repairs the message ↔ delivery pairing.
    ///
    /// A missing delivery row becomes pending, unless the message is a tombstone (its content is gone: there is
    /// nothing to deliver), which gets a `dead` row so it stays visible. Existing rows are never touched: a
    /// delivered or dead message is never rescheduled. `deliveries.seq` is the primary key, so "two rows" cannot
    /// exist.
    pub async fn duplicate_filter(&self, now: i64) -> Result<DuplicateFilterReport, StoreError> {
        let mut report = DuplicateFilterReport::default();
        // Only the receipts present now: batches committed between chunks wait for the next run, so a run ends
        // even while a large backlog is being drained.
        let upto: i64 = self
            .call(|conn| Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM receipts", [], |r| r.get(0))?))
            .await?;
        while let Some((rows, redelivered)) = self.call(move |conn| Ok(compact_receipts_chunk(conn, upto)?)).await? {
            report.receipts_compacted += rows;
            report.redeliveries_filtered += redelivered;
        }
        let (missing, orphans) = self.call(move |conn| Ok(repair_deliveries(conn, now)?)).await?;
        report.missing_deliveries = missing;
        report.orphan_deliveries = orphans;
        Ok(report)
    }

    /// `content_before`/`tombstones_before`: cut-off times in ms, or None for "forever".
    pub async fn retention(
        &self,
        content_before: Option<i64>,
        tombstones_before: Option<i64>,
        now: i64,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        if let Some(cutoff) = content_before {
            // Tombstones stay (oldest first), so each chunk resumes after the last seq seen: a fresh scan per
            // chunk would walk every earlier tombstone again, for every chunk of the run.
            let mut after = 0_i64;
            loop {
                let seqs = self
                    .call(move |conn| Ok(tombstone_chunk(conn, cutoff, after, now)?))
                    .await?;
                report.tombstoned += seqs.len() as u64;
                match seqs.last() {
                    Some(last) if seqs.len() == CHUNK => after = *last,
                    _ => break,
                }
            }
        }
        if let Some(cutoff) = tombstones_before {
            report.tombstones_deleted = self.delete_in_chunks(delete_tombstones_chunk, cutoff).await?;
            report.batches_deleted = self.delete_in_chunks(delete_batches_chunk, cutoff).await?;
        }
        Ok(report)
    }

    /// Runs `chunk` as one store job after another until one deletes less than a full chunk; the total.
    async fn delete_in_chunks(
        &self,
        chunk: fn(&mut Connection, i64) -> rusqlite::Result<usize>,
        cutoff: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self.call(move |conn| Ok(chunk(conn, cutoff)?)).await?;
            total += deleted as u64;
            if deleted < CHUNK {
                return Ok(total);
            }
        }
    }
}

/// Up to `CHUNK` receipts (ids up to `upto`) folded in one transaction: (rows, redelivered copies among them), or
/// None when none are left.
fn compact_receipts_chunk(conn: &mut Connection, upto: i64) -> rusqlite::Result<Option<(u64, u64)>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(max_id): Option<i64> = tx
        .query_row(
            "SELECT max(id) FROM (SELECT id FROM receipts WHERE id <= ?2 ORDER BY id LIMIT ?1)",
            params![CHUNK as i64, upto],
            |r| r.get(0),
        )
        .optional()?
        .flatten()
    else {
        return Ok(None);
    };
    let (rows, redelivered): (i64, i64) = tx.query_row(
        "SELECT count(*), coalesce(sum(1 - stored), 0) FROM receipts WHERE id <= ?1",
        [max_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(
        "UPDATE messages SET redeliveries = redeliveries + c.n
         FROM (SELECT provider, message_id, count(*) AS n FROM receipts
               WHERE id <= ?1 AND stored = 0 GROUP BY provider, message_id) AS c
         WHERE messages.provider = c.provider AND messages.message_id = c.message_id",
        [max_id],
    )?;
    tx.execute("DELETE FROM receipts WHERE id <= ?1", [max_id])?;
    tx.commit()?;
    Ok(Some((rows as u64, redelivered as u64)))
}

/// (missing delivery rows created, orphan delivery rows removed).
fn repair_deliveries(conn: &mut Connection, now: i64) -> rusqlite::Result<(u64, u64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let missing = tx.execute(
        "INSERT INTO deliveries (seq, state, next_attempt_at, done_at, last_error)
         SELECT seq, CASE WHEN tombstoned_at IS NULL THEN 'pending' ELSE 'dead' END, ?1,
                CASE WHEN tombstoned_at IS NULL THEN NULL ELSE ?1 END,
                'delivery row recreated by the duplicate filter'
         FROM messages m WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = m.seq)",
        [now],
    )?;
    let orphans = tx.execute(
        "DELETE FROM deliveries WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.seq = deliveries.seq)",
        [],
    )?;
    tx.commit()?;
    Ok((missing as u64, orphans as u64))
}

/// Tombstones up to `CHUNK` delivered messages done before `cutoff`, in seq order after `after`; returns their seqs.
fn tombstone_chunk(conn: &mut Connection, cutoff: i64, after: i64, now: i64) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs: Vec<i64> = tx
        .prepare_cached(
            "SELECT d.seq FROM deliveries d JOIN messages m USING (seq)
             WHERE d.seq > ?3 AND d.state = 'delivered' AND d.done_at < ?1 AND m.tombstoned_at IS NULL
             ORDER BY d.seq LIMIT ?2",
        )?
        .query_map(params![cutoff, CHUNK as i64, after], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for seq in &seqs {
        tombstone(&tx, *seq, now)?;
    }
    tx.commit()?;
    Ok(seqs)
}

fn delete_tombstones_chunk(conn: &mut Connection, cutoff: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs: Vec<i64> = tx
        .prepare("SELECT seq FROM messages WHERE tombstoned_at < ?1 LIMIT ?2")?
        .query_map(params![cutoff, CHUNK as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for seq in &seqs {
        tx.execute("DELETE FROM deliveries WHERE seq = ?1", [seq])?;
        tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
    }
    tx.commit()?;
    Ok(seqs.len())
}

/// Otherwise one row per answer with messages, forever. Receipts (until the duplicate filter compacts them) and
/// quarantined elements refer to theirs; batch ids and receipt ids both grow with time.
fn delete_batches_chunk(conn: &mut Connection, cutoff: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deleted = tx.execute(
        "DELETE FROM batches WHERE id IN (
             SELECT id FROM batches WHERE fetched_at < ?1
                 AND id < (SELECT coalesce(min(batch_id), 9223372036854775807) FROM receipts)
                 AND id NOT IN (SELECT first_batch FROM quarantine WHERE first_batch IS NOT NULL)
             LIMIT ?2)",
        params![cutoff, CHUNK as i64],
    )?;
    tx.commit()?;
    Ok(deleted)
}

/// Removes the personal data of one message and keeps what recognises a redelivery: provider, ids, times and a
/// hash of the content.
fn tombstone(conn: &Connection, seq: i64, now: i64) -> rusqlite::Result<()> {
    let content: Option<String> = conn.query_row("SELECT content FROM messages WHERE seq = ?1", [seq], |r| r.get(0))?;
    conn.execute(
        "UPDATE messages SET content = NULL, raw = NULL, sender_name = NULL, attachment_ids = '[]',
             content_sha256 = coalesce(content_sha256, ?2), tombstoned_at = ?3
         WHERE seq = ?1",
        params![seq, content.map(|c| sha256_hex(c.as_bytes())), now],
    )?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erase<'a> {
    MessageId(&'a str),
    ConversationId(&'a str),
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct EraseReport {
    pub erased: u64,
    /// Of them, not yet delivered: their deliveries are closed (`dead`, "erased"), never sent.
    pub undelivered: u64,
    pub quarantined_removed: u64,
}

/// A guest's erasure request, in one transaction. Quarantined elements are raw bytes that cannot be attributed
/// to a conversation reliably, so only those containing the id verbatim are removed.
pub fn erase(conn: &mut Connection, which: Erase<'_>, now: i64) -> rusqlite::Result<EraseReport> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (column, id) = match which {
        Erase::MessageId(id) => ("message_id", id),
        Erase::ConversationId(id) => ("conversation_id", id),
    };
    let seqs: Vec<i64> = tx
        .prepare(&format!("SELECT seq FROM messages WHERE {column} = ?1"))?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut report = EraseReport::default();
    for seq in &seqs {
        tombstone(&tx, *seq, now)?;
        report.undelivered += tx.execute(
            "UPDATE deliveries SET state = 'dead', done_at = ?2, last_error = 'erased on request before delivery'
             WHERE seq = ?1 AND state = 'pending'",
            params![seq, now],
        )? as u64;
    }
    report.erased = seqs.len() as u64;
    let quoted = serde_json::to_string(id).unwrap_or_default();
    report.quarantined_removed = tx.execute("DELETE FROM quarantine WHERE instr(raw, ?1) > 0", [quoted])? as u64;
    tx.commit()?;
    Ok(report)
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub wal_frames_checkpointed: i64,
    pub pages_freed: i64,
    pub file_bytes: i64,
}

/// `PRAGMA optimize`, a truncating WAL checkpoint and an incremental vacuum.
pub fn maintenance(conn: &mut Connection) -> rusqlite::Result<MaintenanceReport> {
    conn.execute_batch("PRAGMA optimize")?;
    let free_before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    // Incremental vacuum needs auto_vacuum=INCREMENTAL, set when the store was created; on older stores it is a
    // no-op and the free pages are reused by later writes instead.
    conn.execute_batch("PRAGMA incremental_vacuum")?;
    let free_after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let (_, _, checkpointed): (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let file_bytes: i64 = conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get(0),
    )?;
    Ok(MaintenanceReport {
        wal_frames_checkpointed: checkpointed,
        pages_freed: free_before - free_after,
        file_bytes,
    })
}
