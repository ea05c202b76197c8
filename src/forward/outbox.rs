//! The transactional outbox (`deliveries`): which stored messages still have to reach the PMS, and when.
//!
//! Nothing is marked "in flight" in the store: after a crash every delivery that was being attempted is simply
//! due again, so a crash can duplicate at most the requests in flight and never lose one.

use rusqlite::{Connection, OptionalExtension, params};

use super::payload::OutboxMessage;
use crate::store::{Store, StoreError};

/// A due delivery, with everything needed to attempt it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub message: OutboxMessage,
    pub attempts: u32,
    pub first_attempt_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Claim {
    pub due: Vec<DueDelivery>,
    /// When the next pending delivery that was not claimed becomes due.
    pub next_due_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    Retry { next_attempt_at: i64 },
    Dead,
}

/// One attempt's result, to be committed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seq: i64,
    pub attempted_at: i64,
    pub attempts: u32,
    pub first_attempt_at: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub decision: Decision,
}

/// What the metrics, the health check and the periodic log need: read from the partial indexes, so its cost
/// follows the pending and dead rows, never the delivered history (which `status` counts on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub pending: i64,
    pub dead: i64,
    /// First-seen time of the oldest pending message.
    pub oldest_pending_at: Option<i64>,
}

impl OutboxSummary {
    /// Whole seconds the oldest pending message has waited at `now_ms`.
    pub fn oldest_pending_age_s(&self, now_ms: i64) -> Option<i64> {
        self.oldest_pending_at.map(|at| (now_ms - at).max(0) / 1000)
    }
}

#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

const MESSAGE_COLUMNS: &str = "m.seq, m.provider, m.message_id, m.conversation_id, m.conversation_type,
    m.conversation_reference, m.property_id, m.sender_id, m.sender_role, m.sender_name, m.content,
    m.attachment_ids, m.sent_at, m.first_seen_at, m.raw";

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        Outbox { store }
    }

    /// Up to `limit` deliveries due at `now`, earliest due first (then by seq), skipping `in_flight`.
    /// Memory is bounded by `limit` whatever the backlog.
    pub async fn claim_due(&self, now: i64, limit: usize, in_flight: Vec<i64>) -> Result<Claim, StoreError> {
        self.store
            .read(move |conn| {
                // No LIMIT: the index is walked in order and the loop stops early. A bound LIMIT re-prepared the
                // statement whenever its value changed (SQLite plans with bound values), i.e. at most claims.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT d.next_attempt_at, d.attempts, d.first_attempt_at, {MESSAGE_COLUMNS}
                     FROM deliveries d INDEXED BY deliveries_due JOIN messages m ON m.seq = d.seq
                     WHERE d.state = 'pending'
                     ORDER BY d.next_attempt_at, d.seq"
                ))?;
                let mut rows = stmt.query([])?;
                let mut claim = Claim::default();
                while let Some(row) = rows.next()? {
                    let seq: i64 = row.get(3)?;
                    if in_flight.contains(&seq) {
                        continue;
                    }
                    let due_at: i64 = row.get(0)?;
                    if due_at > now || claim.due.len() == limit {
                        claim.next_due_at = Some(due_at.max(now));
                        break;
                    }
                    claim.due.push(DueDelivery {
                        attempts: row.get::<_, i64>(1)? as u32,
                        first_attempt_at: row.get(2)?,
                        message: outbox_message_at(row, 3)?,
                    });
                }
                Ok(claim)
            })
            .await
    }

    /// Commits the outcomes that have arrived, in one transaction.
    ///
    /// Without an fsync of its own (`synchronous = NORMAL`): a process crash loses nothing (the WAL is in the OS's
    /// cache), and the next message batch's FULL commit syncs these frames too. Only a power cut in between can
    /// lose an outcome, and then the delivery is sent again (at least once, deduplicated by `webhook-id`), never
    /// lost. The message commits that allow a confirm upstream stay FULL (`Store::call`).
    pub async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), StoreError> {
        self.store
            .call_without_fsync(move |conn| Self::record_in(conn, &outcomes))
            .await
    }

    fn record_in(conn: &mut Connection, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = ?3, first_attempt_at = ?4,
                     next_attempt_at = ?5, last_attempt_at = ?6, last_status = ?7, last_error = ?8,
                     done_at = ?9
                 WHERE seq = ?1 AND state = 'pending'",
            )?;
            for o in outcomes {
                let (state, next, done) = match o.decision {
                    Decision::Delivered => ("delivered", o.attempted_at, Some(o.attempted_at)),
                    Decision::Dead => ("dead", o.attempted_at, Some(o.attempted_at)),
                    Decision::Retry { next_attempt_at } => ("pending", next_attempt_at, None),
                };
                update.execute(params![
                    o.seq,
                    state,
                    o.attempts,
                    o.first_attempt_at,
                    next,
                    o.attempted_at,
                    o.status,
                    o.error,
                    done
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes due at `now` every pending delivery scheduled more than `horizon` after it, and returns how many.
    ///
    /// The worker never schedules further ahead than its longest retry delay or honoured `Retry-After`, so such a
    /// row was scheduled before the system clock went back; left alone it would wait for as long as the clock
    /// jumped (years, after a boot with a wrong clock). Without an fsync: a lost update is simply made again.
    pub async fn reschedule_beyond(&self, now: i64, horizon: std::time::Duration) -> Result<usize, StoreError> {
        let latest = now.saturating_add(horizon.as_millis() as i64);
        self.store
            .call_without_fsync(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE deliveries INDEXED BY deliveries_due SET next_attempt_at = ?1
                         WHERE state = 'pending' AND next_attempt_at > ?2",
                    )?
                    .execute(params![now, latest])?)
            })
            .await
    }

    /// Makes every pending delivery scheduled after `now` due at its message's arrival time, so the backlog goes
    /// out oldest first; returns how many. For the end of a PMS outage: those retries waited for the PMS, and the
    /// oldest messages, attempted first, would otherwise go last, up to `max_interval` later.
    pub async fn due_after_outage(&self, now: i64) -> Result<usize, StoreError> {
        self.store
            .call_without_fsync(move |conn| Ok(retry_now(conn, now)?))
            .await
    }

    pub async fn summary(&self) -> Result<OutboxSummary, StoreError> {
        self.store.read(|conn| Ok(summary(conn)?)).await
    }
}

fn outbox_message_at(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<OutboxMessage> {
    Ok(OutboxMessage {
        seq: row.get(offset)?,
        provider: row.get(offset + 1)?,
        message_id: row.get(offset + 2)?,
        conversation_id: row.get(offset + 3)?,
        conversation_type: row.get(offset + 4)?,
        conversation_reference: row.get(offset + 5)?,
        property_id: row.get(offset + 6)?,
        sender_id: row.get(offset + 7)?,
        sender_role: row.get(offset + 8)?,
        sender_name: row.get(offset + 9)?,
        content: row.get(offset + 10)?,
        attachment_ids: row.get(offset + 11)?,
        sent_at: row.get(offset + 12)?,
        first_seen_at: row.get(offset + 13)?,
        raw: row.get(offset + 14)?,
    })
}

pub fn summary(conn: &Connection) -> rusqlite::Result<OutboxSummary> {
    let count = |sql: &str| conn.prepare_cached(sql)?.query_row([], |r| r.get::<_, i64>(0));
    // The lowest pending seq: a scan of the pending rows' index (tens of ms per million), not of the history,
    // which the rowid's min() optimisation would walk from the oldest delivered row.
    let oldest_pending_at = conn
        .query_row(
            "SELECT m.first_seen_at FROM messages m WHERE m.seq =
                (SELECT min(seq) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending')",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(OutboxSummary {
        pending: count("SELECT count(*) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending'")?,
        dead: count("SELECT count(*) FROM deliveries INDEXED BY deliveries_dead WHERE state = 'dead'")?,
        oldest_pending_at,
    })
}

// ---- dead letters (operator commands; their own short transactions beside the daemon) ---------------

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub seq: i64,
    pub provider: String,
    pub message_id: String,
    pub conversation_reference: Option<String>,
    pub attempts: u32,
    pub first_attempt_at: Option<String>,
    pub dead_since: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

pub fn dead_letters(conn: &Connection) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare(
        "SELECT d.seq, m.provider, m.message_id, m.conversation_reference, d.attempts, d.first_attempt_at,
                d.done_at, d.last_status, d.last_error
         FROM deliveries d JOIN messages m ON m.seq = d.seq
         WHERE d.state = 'dead' ORDER BY d.seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeadLetter {
            seq: r.get(0)?,
            provider: r.get(1)?,
            message_id: r.get(2)?,
            conversation_reference: r.get(3)?,
            attempts: r.get::<_, i64>(4)? as u32,
            first_attempt_at: r.get::<_, Option<i64>>(5)?.map(crate::store::format_ms),
            dead_since: r.get::<_, Option<i64>>(6)?.map(crate::store::format_ms),
            last_status: r.get::<_, Option<i64>>(7)?.map(|s| s as u16),
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Makes every pending delivery scheduled after `now` due at its message's arrival time (so they go oldest first)
/// and returns how many: `ota-relay retry-now` after a PMS outage, and the worker itself when a probe succeeds.
pub fn retry_now(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE deliveries INDEXED BY deliveries_due
         SET next_attempt_at = (SELECT m.first_seen_at FROM messages m WHERE m.seq = deliveries.seq)
         WHERE state = 'pending' AND next_attempt_at > ?1",
    )?
    .execute(params![now])
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum Replay {
    All,
    MessageId(String),
}

/// Makes dead letters pending again, due now, with a fresh attempt count (so `give_up_after` restarts).
/// Returns how many were replayed. Tombstones (erased, or past retention) have nothing left to send.
pub fn replay(conn: &mut Connection, which: &Replay, now: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, first_attempt_at = NULL,
                   next_attempt_at = ?1, done_at = NULL
               WHERE state = 'dead'
                   AND seq NOT IN (SELECT seq FROM messages WHERE tombstoned_at IS NOT NULL)";
    let n = match which {
        Replay::All => tx.execute(sql, params![now])?,
        Replay::MessageId(id) => tx.execute(
            &format!("{sql} AND seq IN (SELECT seq FROM messages WHERE message_id = ?2)"),
            params![now, id],
        )?,
    };
    tx.commit()?;
    Ok(n)
}
