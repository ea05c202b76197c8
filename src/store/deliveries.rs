//! `deliveries`: the transactional outbox towards the PMS. One row per event: a stored message
//! (`message.received`, written in the transaction that first stores it) or a state a reply reached (`reply.sent`,
//! `reply.failed`, `reply.unknown`, written with that state); pending until delivered or dead.
//!
//! Nothing is marked "in flight": after a crash every delivery that was being attempted is simply due again, so
//! a crash can duplicate at most the requests in flight and never lose one.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::messages::{self, StoredMessage};
use super::replies::{self, Reply};
use super::{Millis, format_ms};

/// A due delivery, with everything needed to attempt it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The outbox row.
    pub id: i64,
    pub event: Event,
    pub attempts: u32,
    pub first_attempt_at: Option<Millis>,
}

/// What one outbox row tells the PMS.
#[derive(Debug, Clone)]
pub enum Event {
    Message(StoredMessage),
    Reply(ReplyEvent),
}

/// A state a reply reached, as it was then (`state`, `reason`), with the reply as it is now.
#[derive(Debug, Clone)]
pub struct ReplyEvent {
    pub state: String,
    pub reason: Option<String>,
    pub at: Millis,
    pub reply: Reply,
}

impl Event {
    /// The `webhook-id`: the same across retries and replays; one per message, and one per state of a reply.
    pub fn webhook_id(&self) -> String {
        match self {
            Event::Message(m) => m.webhook_id(),
            Event::Reply(r) => format!("reply:{}:{}", r.reply.uuid, r.state),
        }
    }

    /// For the logs: the message's id, or the reply's.
    pub fn subject(&self) -> &str {
        match self {
            Event::Message(m) => &m.message.message_id,
            Event::Reply(r) => &r.reply.uuid,
        }
    }
}

#[derive(Debug, Default)]
pub struct Claim {
    pub due: Vec<DueDelivery>,
    /// When the next pending delivery that was not claimed becomes due.
    pub next_due_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    Retry { next_attempt_at: Millis },
    Dead,
}

/// One attempt's result, to be committed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The outbox row.
    pub id: i64,
    pub attempted_at: Millis,
    pub attempts: u32,
    pub first_attempt_at: Millis,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub decision: Decision,
    /// The PMS's Retry-After, as a time: the delivery is never attempted sooner.
    pub not_before: Option<Millis>,
}

/// What the metrics, the health check and the periodic log need: read from the partial indexes, so its cost
/// follows the pending and dead rows, never the delivered history (which `status` counts on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub pending: i64,
    pub dead: i64,
    /// First-seen time of the oldest pending message.
    pub oldest_pending_at: Option<Millis>,
}

impl OutboxSummary {
    /// Whole seconds the oldest pending message has waited at `now`.
    pub fn oldest_pending_age_s(&self, now: Millis) -> Option<i64> {
        self.oldest_pending_at.map(|at| now.since(at).as_secs() as i64)
    }
}

/// The insert of outbox rows for messages just stored (pending, due at once), prepared once for a batch.
pub(super) struct InsertPending<'c>(rusqlite::CachedStatement<'c>);

impl<'c> InsertPending<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<InsertPending<'c>> {
        conn.prepare_cached("INSERT INTO deliveries (seq, next_attempt_at, created_at) VALUES (?1, ?2, ?2)")
            .map(InsertPending)
    }

    pub(super) fn run(&mut self, seq: i64, at: Millis) -> rusqlite::Result<()> {
        self.0.execute(params![seq, at]).map(|_| ())
    }
}

/// The event of a reply reaching `state` (sent, failed, unknown), due at once; in the transaction of the change.
pub(super) fn insert_reply_event(
    conn: &Connection,
    reply_id: i64,
    state: &str,
    reason: Option<&str>,
    at: Millis,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (event, reply_id, reply_state, reason, next_attempt_at, created_at)
         VALUES ('reply.' || ?2, ?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![reply_id, state, reason, at])?;
    super::changes::record_reply(conn, reply_id, at)
}

/// Up to `limit` deliveries due at `now`, earliest due first (then by id), skipping `in_flight`. Memory is
/// bounded by `limit` whatever the backlog.
pub fn claim_due(conn: &Connection, now: Millis, limit: usize, in_flight: &[i64]) -> rusqlite::Result<Claim> {
    // No LIMIT: the index is walked in order and the loop stops early. A bound LIMIT re-prepared the statement
    // whenever its value changed (SQLite plans with bound values), i.e. at most claims.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.next_attempt_at, d.attempts, d.first_attempt_at, d.id, d.seq, d.reply_state, d.reason,
                d.created_at, {}, {}
         FROM deliveries d INDEXED BY deliveries_due
              LEFT JOIN messages m ON m.seq = d.seq LEFT JOIN replies r ON r.id = d.reply_id
         WHERE d.state = 'pending'
         ORDER BY d.next_attempt_at, d.id",
        messages::COLUMNS,
        replies::COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    let mut claim = Claim::default();
    let replies_at = 8 + messages::COLUMN_COUNT;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(3)?;
        if in_flight.contains(&id) {
            continue;
        }
        let due_at: Millis = row.get(0)?;
        if due_at > now || claim.due.len() == limit {
            claim.next_due_at = Some(due_at.max(now));
            break;
        }
        let event = match row.get::<_, Option<i64>>(4)? {
            Some(_) => Event::Message(messages::read_at(row, 8)?),
            None => Event::Reply(ReplyEvent {
                state: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                reason: row.get(6)?,
                at: row.get::<_, Option<Millis>>(7)?.unwrap_or(due_at),
                reply: replies::read_at(row, replies_at)?,
            }),
        };
        claim.due.push(DueDelivery {
            id,
            event,
            attempts: row.get::<_, i64>(1)? as u32,
            first_attempt_at: row.get(2)?,
        });
    }
    Ok(claim)
}

/// Commits the outcomes that have arrived, in one transaction; a row no longer pending (erased meanwhile) keeps
/// its state.
pub fn record(conn: &mut Connection, outcomes: &[Outcome]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = ?3, first_attempt_at = ?4,
                 next_attempt_at = ?5, last_attempt_at = ?6, last_status = ?7, last_error = ?8,
                 done_at = ?9, not_before = ?10
             WHERE id = ?1 AND state = 'pending'",
        )?;
        for o in outcomes {
            let (state, next, done) = match o.decision {
                Decision::Delivered => ("delivered", o.attempted_at, Some(o.attempted_at)),
                Decision::Dead => ("dead", o.attempted_at, Some(o.attempted_at)),
                Decision::Retry { next_attempt_at } => ("pending", next_attempt_at, None),
            };
            update.execute(params![
                o.id,
                state,
                o.attempts,
                o.first_attempt_at,
                next,
                o.attempted_at,
                o.status,
                o.error,
                done,
                o.not_before
            ])?;
        }
    }
    tx.commit()
}

/// Makes due at `now` every pending delivery scheduled after `latest`; how many.
pub fn reschedule_beyond(conn: &Connection, now: Millis, latest: Millis) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE deliveries INDEXED BY deliveries_due SET next_attempt_at = ?1
         WHERE state = 'pending' AND next_attempt_at > ?2",
    )?
    .execute(params![now, latest])
}

/// Makes every pending delivery scheduled after `now` due at its message's arrival time (an event's own time), so
/// they go oldest first,
/// or at the time the PMS's own Retry-After for it named, whichever is later; returns how many. For
/// `ota-relay retry-now` after a PMS outage, and the worker itself when a probe succeeds.
pub fn retry_now(conn: &Connection, now: Millis) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE deliveries INDEXED BY deliveries_due
         SET next_attempt_at = max(coalesce((SELECT m.first_seen_at FROM messages m WHERE m.seq = deliveries.seq),
                                            created_at, 0),
                                   coalesce(not_before, 0))
         WHERE state = 'pending' AND next_attempt_at > ?1 AND coalesce(not_before, 0) <= ?1",
    )?
    .execute(params![now])
}

pub fn summary(conn: &Connection) -> rusqlite::Result<OutboxSummary> {
    let count = |sql: &str| conn.prepare_cached(sql)?.query_row([], |r| r.get::<_, i64>(0));
    // The lowest pending id (ids grow with arrival): a scan of the pending rows' index (tens of ms per million),
    // not of the history, which the rowid's min() optimisation would walk from the oldest delivered row.
    let oldest_pending_at = conn
        .query_row(
            "SELECT coalesce(m.first_seen_at, d.created_at) FROM deliveries d LEFT JOIN messages m ON m.seq = d.seq
             WHERE d.id = (SELECT min(id) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending')",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(OutboxSummary {
        pending: count("SELECT count(*) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending'")?,
        dead: count("SELECT count(*) FROM deliveries INDEXED BY deliveries_dead WHERE state = 'dead'")?,
        oldest_pending_at,
    })
}

/// Messages (delivered, erased before delivery).
pub fn count_done(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'erased')
         FROM deliveries WHERE seq IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

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
        "SELECT d.id, coalesce(m.provider, 'reply'), coalesce(m.message_id, r.uuid || ':' || d.reply_state),
                m.conversation_reference, d.attempts, d.first_attempt_at, d.done_at, d.last_status, d.last_error
         FROM deliveries d LEFT JOIN messages m ON m.seq = d.seq LEFT JOIN replies r ON r.id = d.reply_id
         WHERE d.state = 'dead' ORDER BY d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeadLetter {
            seq: r.get(0)?,
            provider: r.get(1)?,
            message_id: r.get(2)?,
            conversation_reference: r.get(3)?,
            attempts: r.get::<_, i64>(4)? as u32,
            first_attempt_at: r.get::<_, Option<Millis>>(5)?.map(format_ms),
            dead_since: r.get::<_, Option<Millis>>(6)?.map(format_ms),
            last_status: r.get::<_, Option<i64>>(7)?.map(|s| s as u16),
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum Replay {
    All,
    MessageId(String),
}

/// Makes dead letters pending again, due now, with a fresh attempt count (so `give_up_after` restarts).
/// Returns how many were replayed. Tombstones (erased, or past retention) have nothing left to send.
pub fn replay(conn: &mut Connection, which: &Replay, now: Millis) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, first_attempt_at = NULL,
                   next_attempt_at = ?1, done_at = NULL
               WHERE state = 'dead'
                   AND (seq IS NULL OR seq NOT IN (SELECT seq FROM messages WHERE tombstoned_at IS NOT NULL))";
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

/// Gives every stored message (but a reply's echo) without a delivery row a pending one (a tombstone gets a `dead` one: there is
/// nothing left to send) and removes rows without a message: (created, removed). Existing rows are never
/// touched, so a delivered or dead message is never rescheduled.
pub(super) fn repair(conn: &Connection, now: Millis) -> rusqlite::Result<(u64, u64)> {
    let missing = conn.execute(
        "INSERT INTO deliveries (seq, state, next_attempt_at, done_at, last_error)
         SELECT seq, CASE WHEN tombstoned_at IS NULL THEN 'pending' ELSE 'dead' END, ?1,
                CASE WHEN tombstoned_at IS NULL THEN NULL ELSE ?1 END,
                'delivery row recreated by the duplicate filter'
         FROM messages m
         WHERE m.reply_id IS NULL AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = m.seq)",
        [now],
    )?;
    let orphans = conn.execute(
        "DELETE FROM deliveries
         WHERE seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.seq = deliveries.seq)",
        [],
    )?;
    Ok((missing as u64, orphans as u64))
}

/// Up to `limit` messages delivered before `cutoff` and not yet tombstoned, in seq order after `after`.
pub(super) fn delivered_before(
    conn: &Connection,
    cutoff: Millis,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT d.seq FROM deliveries d JOIN messages m USING (seq)
         WHERE d.seq > ?3 AND d.state = 'delivered' AND d.done_at < ?1 AND m.tombstoned_at IS NULL
         ORDER BY d.seq LIMIT ?2",
    )?
    .query_map(params![cutoff, limit as i64, after], |r| r.get(0))?
    .collect()
}

/// An erased message that was not delivered yet is never sent: its delivery is closed as `erased` (no dead
/// letter: there is nothing for an operator to do). True if it was pending or dead.
pub(super) fn close_erased(conn: &Connection, seq: i64, now: Millis) -> rusqlite::Result<bool> {
    let closed = conn.execute(
        "UPDATE deliveries SET state = 'erased', done_at = ?2, last_error = 'erased on request before delivery'
         WHERE seq = ?1 AND (state = 'pending' OR state = 'dead')",
        params![seq, now],
    )?;
    Ok(closed > 0)
}

pub(super) fn delete(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM deliveries WHERE seq = ?1", [seq])?;
    Ok(())
}
