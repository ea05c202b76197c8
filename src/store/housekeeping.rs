//! The store side of the scheduled jobs and the erasure tool. The jobs that walk many rows do it one chunk per
//! store job: the drain's commits and the forwarder's outcomes queue on the same store thread, so they wait for
//! one chunk (milliseconds), never for the whole run.

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

pub use super::messages::Erase;
use super::{Millis, Store, StoreError, batches, deliveries, messages, quarantine, receipts, replies, threads};

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
    /// Quarantined elements (pulled or pushed) last seen before `retention.content`, deleted.
    pub quarantined_deleted: u64,
    /// Titles (guest names) of threads without activity since `retention.content`, removed.
    pub thread_titles_removed: u64,
    /// Sent or failed replies settled before `retention.content`, their text removed.
    pub replies_tombstoned: u64,
    /// The WAL was emptied after tombstoning (false: a reader held it; the maintenance job empties it).
    pub wal_emptied: bool,
}

impl Store {
    /// Folds `receipts` into `messages.redeliveries` and repairs the message ↔ delivery pairing.
    ///
    /// A missing delivery row becomes pending, unless the message is a tombstone (its content is gone: there is
    /// nothing to deliver), which gets a `dead` row so it stays visible. Existing rows are never touched: a
    /// delivered or dead message is never rescheduled. `deliveries.seq` is the primary key, so "two rows" cannot
    /// exist.
    pub async fn duplicate_filter(&self, now: Millis) -> Result<DuplicateFilterReport, StoreError> {
        let mut report = DuplicateFilterReport::default();
        // Only the receipts present now: batches committed between chunks wait for the next run, so a run ends
        // even while a large backlog is being drained.
        let upto: i64 = self.call(|conn| Ok(receipts::max_id(conn)?)).await?;
        while let Some((rows, redelivered)) = self.call(move |conn| Ok(compact_receipts_chunk(conn, upto)?)).await? {
            report.receipts_compacted += rows;
            report.redeliveries_filtered += redelivered;
        }
        let (missing, orphans) = self
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let repaired = deliveries::repair(&tx, now)?;
                super::changes::prune(&tx, now)?;
                tx.commit()?;
                Ok(repaired)
            })
            .await?;
        report.missing_deliveries = missing;
        report.orphan_deliveries = orphans;
        Ok(report)
    }

    /// `content_before`/`tombstones_before`: cut-off times in ms, or None for "forever".
    pub async fn retention(
        &self,
        content_before: Option<Millis>,
        tombstones_before: Option<Millis>,
        now: Millis,
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
            report.quarantined_deleted = self.delete_in_chunks(delete_quarantine_chunk, cutoff).await?;
            let (titles, replies) = self
                .call(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let titles = threads::forget_titles_idle_since(&tx, cutoff, now)?;
                    let replies = replies::tombstone_settled_before(&tx, cutoff, now)?;
                    tx.commit()?;
                    Ok((titles, replies))
                })
                .await?;
            report.thread_titles_removed = titles;
            report.replies_tombstoned = replies;
        }
        if let Some(cutoff) = tombstones_before {
            report.tombstones_deleted = self.delete_in_chunks(delete_tombstones_chunk, cutoff).await?;
            report.batches_deleted = self.delete_in_chunks(delete_batches_chunk, cutoff).await?;
        }
        if report.tombstoned > 0 {
            // The index's segments still hold the removed words until they are merged.
            self.call(|conn| Ok(optimize_search(conn)?)).await?;
        }
        if report.tombstoned > 0 || report.quarantined_deleted > 0 || report.replies_tombstoned > 0 {
            // The tombstones' content is overwritten in the file (secure_delete); the WAL's older copies of those
            // pages go too.
            report.wal_emptied = self.call(|conn| Ok(truncate_wal(conn)?)).await?;
        }
        Ok(report)
    }

    /// Runs `chunk` as one store job after another until one deletes less than a full chunk; the total.
    async fn delete_in_chunks(
        &self,
        chunk: fn(&mut Connection, Millis) -> rusqlite::Result<usize>,
        cutoff: Millis,
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
    let Some(max_id) = receipts::chunk_end(&tx, upto, CHUNK)? else {
        return Ok(None);
    };
    let tally = receipts::tally(&tx, max_id)?;
    messages::add_redeliveries(&tx, max_id)?;
    receipts::delete_upto(&tx, max_id)?;
    tx.commit()?;
    Ok(Some(tally))
}

/// Tombstones up to `CHUNK` delivered messages done before `cutoff`, in seq order after `after`; returns their seqs.
fn tombstone_chunk(conn: &mut Connection, cutoff: Millis, after: i64, now: Millis) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs = deliveries::delivered_before(&tx, cutoff, after, CHUNK)?;
    for seq in &seqs {
        messages::tombstone(&tx, *seq, now)?;
    }
    tx.commit()?;
    Ok(seqs)
}

fn delete_tombstones_chunk(conn: &mut Connection, cutoff: Millis) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs = messages::tombstones_before(&tx, cutoff, CHUNK)?;
    for seq in &seqs {
        deliveries::delete(&tx, *seq)?;
        messages::delete(&tx, *seq)?;
    }
    tx.commit()?;
    Ok(seqs.len())
}

fn delete_quarantine_chunk(conn: &mut Connection, cutoff: Millis) -> rusqlite::Result<usize> {
    quarantine::delete_seen_before(conn, cutoff, CHUNK)
}

/// Otherwise one row per answer with messages, forever.
fn delete_batches_chunk(conn: &mut Connection, cutoff: Millis) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deleted = batches::delete_unreferenced_before(&tx, cutoff, CHUNK)?;
    tx.commit()?;
    Ok(deleted)
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct EraseReport {
    pub erased: u64,
    /// Of them, not yet delivered: their deliveries are closed as `erased`, never sent.
    pub undelivered: u64,
    pub quarantined_removed: u64,
    /// Replies whose text was erased (every reply of an erased conversation, or the one named).
    pub replies_erased: u64,
}

/// A guest's erasure request, in one transaction. Quarantined elements are raw bytes that cannot be attributed
/// to a conversation reliably, so only those containing the id verbatim are removed.
pub fn erase(conn: &mut Connection, which: Erase<'_>, now: Millis) -> rusqlite::Result<EraseReport> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs = messages::seqs_named(&tx, which)?;
    let mut report = EraseReport::default();
    for seq in &seqs {
        messages::tombstone(&tx, *seq, now)?;
        report.undelivered += u64::from(deliveries::close_erased(&tx, *seq, now)?);
        // A thread's title is a guest's name.
        threads::forget_title_of_message(&tx, *seq, now)?;
    }
    report.erased = seqs.len() as u64;
    let id = match which {
        Erase::MessageId(id) | Erase::ConversationId(id) => id,
    };
    report.replies_erased = match which {
        Erase::ConversationId(id) => {
            let mut n = 0;
            for thread in threads::named(&tx, id)? {
                threads::forget_title(&tx, &thread, now)?;
                n += replies::erase_thread(&tx, &thread, now)?;
            }
            n
        }
        Erase::MessageId(id) => replies::erase_named(&tx, id, now)?,
    };
    report.quarantined_removed = quarantine::erase_naming(&tx, id)?;
    if report.erased > 0 {
        optimize_search(&tx)?;
    }
    tx.commit()?;
    Ok(report)
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub wal_frames_checkpointed: i64,
    pub pages_freed: i64,
    pub file_bytes: i64,
}

/// Merges the full-text index's segments, so that words of removed texts leave its pages (which secure_delete
/// then overwrites) rather than waiting for a later merge.
fn optimize_search(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')", [])?;
    Ok(())
}

/// Copies the WAL into the file and empties it, so that no earlier version of an erased page is left in it.
/// Readers beside it (the daemon's checkpoint thread, a scrape) hold it up for a moment, so it is tried a few
/// times; the maintenance job empties it too.
pub fn truncate_wal(conn: &Connection) -> rusqlite::Result<bool> {
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(false)
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
