//! `replies`: what the property answers, stored before it is sent, and the one place its state changes.
//!
//! Invariants, enforced by the `WHERE state = ...` of every update here:
//! - a reply is sent only from `pending`, and is `sending` (committed) before its request goes out, so a crash
//!   mid-send leaves `sending`, which start-up turns into `unknown`: never sent again by itself;
//! - `sent` is final (an echo or an answer that proves it), `failed` and `unknown` change only by an operator
//!   (or, for `unknown`, by the echo or the conversation read that proves it arrived);
//! - every state a reply reaches (sent, failed, unknown) is an event in the PMS outbox, in the same transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::threads::{self, Thread};
use super::{Millis, deliveries};

/// How long an `Idempotency-Key` names the same reply.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyState {
    Pending,
    /// Its request is out (shown as `pending` by the API).
    Sending,
    Sent,
    Failed,
    Unknown,
}

impl ReplyState {
    pub fn name(self) -> &'static str {
        match self {
            ReplyState::Pending => "pending",
            ReplyState::Sending => "sending",
            ReplyState::Sent => "sent",
            ReplyState::Failed => "failed",
            ReplyState::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<ReplyState> {
        [
            ReplyState::Pending,
            ReplyState::Sending,
            ReplyState::Sent,
            ReplyState::Failed,
            ReplyState::Unknown,
        ]
        .into_iter()
        .find(|s| s.name() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: i64,
    pub uuid: String,
    pub thread_id: String,
    pub author: String,
    pub content: Option<String>,
    pub attachments: Vec<String>,
    pub state: ReplyState,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub reason: Option<String>,
    pub channel_message_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub unknown_since: Option<Millis>,
}

pub(super) const COLUMNS: &str = "r.id, r.uuid, r.thread_id, r.author, r.content, r.attachments, r.state,
    r.attempts, r.next_attempt_at, r.reason, r.channel_message_id, r.created_at, r.updated_at, r.unknown_since";

pub(super) fn read_at(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<Reply> {
    let attachments: String = row.get(offset + 5)?;
    let state: String = row.get(offset + 6)?;
    Ok(Reply {
        id: row.get(offset)?,
        uuid: row.get(offset + 1)?,
        thread_id: row.get(offset + 2)?,
        author: row.get(offset + 3)?,
        content: row.get(offset + 4)?,
        attachments: serde_json::from_str(&attachments).unwrap_or_default(),
        state: ReplyState::parse(&state).unwrap_or(ReplyState::Unknown),
        attempts: row.get::<_, i64>(offset + 7)? as u32,
        next_attempt_at: row.get(offset + 8)?,
        reason: row.get(offset + 9)?,
        channel_message_id: row.get(offset + 10)?,
        created_at: row.get(offset + 11)?,
        updated_at: row.get(offset + 12)?,
        unknown_since: row.get(offset + 13)?,
    })
}

/// A reply to store.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub thread_id: String,
    pub author: String,
    pub content: String,
    pub attachments: Vec<String>,
    /// (token name, key): the same pair within [`IDEMPOTENCY_WINDOW_MS`] is the same reply.
    pub idempotency: Option<(String, String)>,
}

/// Stores a reply (pending, due at once) and counts it into its thread, in one transaction; with an
/// idempotency key seen within the window, changes nothing and returns the reply it made. True when new.
pub fn create(conn: &mut Connection, new: &NewReply, now: Millis) -> rusqlite::Result<(Reply, bool)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some((token, key)) = &new.idempotency {
        let earlier: Option<(i64, Millis)> = tx
            .query_row(
                "SELECT id, created_at FROM replies WHERE idempotency_token = ?1 AND idempotency_key = ?2",
                params![token, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match earlier {
            Some((id, at)) if now.unix_ms() - at.unix_ms() < IDEMPOTENCY_WINDOW_MS => {
                let reply = by_id(&tx, id)?.expect("the row just read");
                tx.commit()?;
                return Ok((reply, false));
            }
            // Past the window the key is free again.
            Some((id, _)) => {
                tx.execute("UPDATE replies SET idempotency_key = NULL WHERE id = ?1", [id])?;
            }
            None => {}
        }
    }
    let (token, key) = new.idempotency.clone().unzip();
    tx.execute(
        "INSERT INTO replies (uuid, thread_id, author, content, attachments, next_attempt_at, idempotency_token,
             idempotency_key, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?6, ?6)",
        params![
            uuid::Uuid::new_v4().to_string(),
            new.thread_id,
            new.author,
            new.content,
            serde_json::to_string(&new.attachments).unwrap_or_else(|_| "[]".into()),
            now,
            token,
            key
        ],
    )?;
    let id = tx.last_insert_rowid();
    threads::add_reply(&tx, &new.thread_id, now)?;
    let reply = by_id(&tx, id)?.expect("the row just inserted");
    tx.commit()?;
    Ok((reply, true))
}

pub fn by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Reply>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM replies r WHERE r.id = ?1"))?
        .query_row([id], |r| read_at(r, 0))
        .optional()
}

/// The reply the channel knows by this id, if any.
pub fn find_by_channel_id(conn: &Connection, channel_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM replies WHERE channel_message_id = ?1")?
        .query_row([channel_id], |r| r.get(0))
        .optional()
}

/// By its UUID, or by its number (what `replies list` shows).
pub fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<Reply>> {
    match id.parse::<i64>() {
        Ok(n) => by_id(conn, n),
        Err(_) => conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM replies r WHERE r.uuid = ?1"))?
            .query_row([id], |r| read_at(r, 0))
            .optional(),
    }
}

/// Pending replies due now, each with its thread, and when the next one not taken is due.
#[derive(Debug, Default)]
pub struct Due {
    pub due: Vec<(Reply, Thread)>,
    pub next_due_at: Option<Millis>,
}

/// Up to `limit` pending replies due at `now`, oldest first.
pub fn due(conn: &Connection, now: Millis, limit: usize) -> rusqlite::Result<Due> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, {} FROM replies r JOIN threads t ON t.id = r.thread_id
         WHERE r.state = 'pending' ORDER BY r.next_attempt_at, r.id",
        threads::COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    let mut due = Due::default();
    while let Some(row) = rows.next()? {
        let reply = read_at(row, 0)?;
        let at = reply.next_attempt_at.unwrap_or(now);
        if at > now || due.due.len() == limit {
            due.next_due_at = Some(at.max(now));
            break;
        }
        due.due.push((reply, threads::read_at(row, 14)?));
    }
    Ok(due)
}

/// Committed before the request goes out. False when the reply is no longer pending (its echo arrived).
pub fn mark_sending(conn: &Connection, id: i64, now: Millis) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE replies SET state = 'sending', attempts = attempts + 1, updated_at = ?2
         WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// What a send's answer proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent {
        channel_message_id: Option<String>,
    },
    /// Not processed (refused connection, 429, 503 with Retry-After): sent again at `at`.
    Retry {
        at: Millis,
        reason: String,
    },
    Failed {
        reason: String,
    },
    /// The answer was lost (timeout, reset, 5xx): reconciled, never repeated blindly.
    Unknown {
        reason: String,
    },
}

/// Records a send's outcome, unless something else decided first (its echo made it `sent`): then nothing
/// changes and false is returned.
pub fn record(conn: &mut Connection, id: i64, outcome: &SendOutcome, now: Millis) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (state, reason, channel_id, next) = match outcome {
        SendOutcome::Sent { channel_message_id } => ("sent", None, channel_message_id.as_deref(), None),
        SendOutcome::Retry { at, reason } => ("pending", Some(reason.as_str()), None, Some(*at)),
        SendOutcome::Failed { reason } => ("failed", Some(reason.as_str()), None, None),
        SendOutcome::Unknown { reason } => ("unknown", Some(reason.as_str()), None, None),
    };
    let changed = tx.execute(
        "UPDATE replies SET state = ?2, reason = ?3, channel_message_id = coalesce(?4, channel_message_id),
             next_attempt_at = coalesce(?5, next_attempt_at), updated_at = ?6,
             unknown_since = CASE WHEN ?2 = 'unknown' THEN ?6 ELSE unknown_since END
         WHERE id = ?1 AND state = 'sending'",
        params![id, state, reason, channel_id, next, now],
    )? == 1;
    if changed && state != "pending" {
        deliveries::insert_reply_event(&tx, id, state, reason, now)?;
    }
    tx.commit()?;
    Ok(changed)
}

/// Start-up: a reply that was being sent when the daemon stopped may or may not have arrived.
pub fn unknown_after_restart(conn: &mut Connection, now: Millis) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<i64> = tx
        .prepare("SELECT id FROM replies WHERE state = 'sending'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let reason = "the daemon stopped while it was being sent; it may have arrived";
    for id in &ids {
        tx.execute(
            "UPDATE replies SET state = 'unknown', reason = ?2, unknown_since = ?3, updated_at = ?3 WHERE id = ?1",
            params![id, reason, now],
        )?;
        deliveries::insert_reply_event(&tx, *id, "unknown", Some(reason), now)?;
    }
    tx.commit()?;
    Ok(ids.len())
}

/// Same text, ignoring how whitespace was rewrapped on the way (channels trim and fold it).
pub fn same_text(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// A property message of `thread` that a channel brought: the reply it is the echo of, if any: the one the
/// channel already named by this id, else the oldest unsettled (pending, sending, unknown) with the same text.
/// A match becomes `sent` with the channel's id (an event, unless it was sent already). Inside the message's
/// own transaction.
pub(super) fn match_echo(
    conn: &Connection,
    thread_id: &str,
    channel_message_id: &str,
    content: Option<&str>,
    now: Millis,
) -> rusqlite::Result<Option<i64>> {
    // One look at the thread's replies (usually none): most property messages are not echoes. Without
    // INDEXED BY (and with ORDER BY id) SQLite re-prepared this statement at every run, a tenth of the drain's
    // store time; the oldest-first order is kept in Rust.
    let mut replies: Vec<(i64, Option<String>, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, channel_message_id, state, content FROM replies INDEXED BY replies_thread WHERE thread_id = ?1",
        )?
        .query_map([thread_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    replies.sort_unstable_by_key(|r| r.0);
    if replies.is_empty() {
        return Ok(None);
    }
    let named = replies
        .iter()
        .find(|(_, channel_id, _, _)| channel_id.as_deref() == Some(channel_message_id));
    let unsettled = |state: &str| matches!(state, "pending" | "sending" | "unknown");
    let id = named.map(|r| r.0).or_else(|| {
        let content = content?;
        replies
            .iter()
            .find(|(_, _, state, text)| unsettled(state) && text.as_deref().is_some_and(|t| same_text(t, content)))
            .map(|r| r.0)
    });
    let Some(id) = id else {
        return Ok(None);
    };
    settle_sent(conn, id, channel_message_id, "its echo arrived", now)?;
    Ok(Some(id))
}

/// Makes a reply `sent` with the channel's id, unless it is already; the event goes with it.
pub(super) fn settle_sent(
    conn: &Connection,
    id: i64,
    channel_id: &str,
    how: &str,
    now: Millis,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE replies SET state = 'sent', channel_message_id = ?2, reason = ?3, updated_at = ?4
         WHERE id = ?1 AND state <> 'sent'",
        params![id, channel_id, how, now],
    )? == 1;
    if changed {
        deliveries::insert_reply_event(conn, id, "sent", Some(how), now)?;
    }
    if !changed {
        conn.execute(
            "UPDATE replies SET channel_message_id = coalesce(channel_message_id, ?2) WHERE id = ?1",
            params![id, channel_id],
        )?;
    }
    Ok(changed)
}

/// Replies whose outcome is unknown, with their threads (for the conversation reads).
pub fn unknown(conn: &Connection) -> rusqlite::Result<Vec<(Reply, Thread)>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, {} FROM replies r JOIN threads t ON t.id = r.thread_id
         WHERE r.state = 'unknown' ORDER BY r.id",
        threads::COLUMNS
    ))?
    .query_map([], |row| Ok((read_at(row, 0)?, threads::read_at(row, 14)?)))?
    .collect()
}

/// A conversation read proved it: `sent` with the channel's id, or (past the reconcile window) `failed`.
pub fn settle(
    conn: &mut Connection,
    id: i64,
    found: Option<&str>,
    reason: &str,
    now: Millis,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = match found {
        Some(channel_id) => {
            let unsettled: bool = tx
                .query_row("SELECT state = 'unknown' FROM replies WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(false);
            unsettled && settle_sent(&tx, id, channel_id, reason, now)?
        }
        None => {
            let n = tx.execute(
                "UPDATE replies SET state = 'failed', reason = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'unknown'",
                params![id, reason, now],
            )?;
            if n == 1 {
                deliveries::insert_reply_event(&tx, id, "failed", Some(reason), now)?;
            }
            n == 1
        }
    };
    tx.commit()?;
    Ok(changed)
}

/// An operator's word: `sent` (checked in the extranet) or `failed` (a pending one is then never sent). Not
/// while it is being sent, and never for one already `sent`.
pub fn resolve(conn: &mut Connection, id: i64, sent: bool, now: Millis) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (state, reason) = if sent {
        ("sent", "resolved as sent by an operator")
    } else {
        ("failed", "resolved as failed by an operator")
    };
    let n = tx.execute(
        "UPDATE replies SET state = ?2, reason = ?3, updated_at = ?4
         WHERE id = ?1 AND state <> 'sent' AND state <> 'sending' AND state <> ?2",
        params![id, state, reason, now],
    )?;
    if n == 1 {
        deliveries::insert_reply_event(&tx, id, state, Some(reason), now)?;
    }
    tx.commit()?;
    Ok(n == 1)
}

/// An operator sends a `failed` or `unknown` reply again: pending, due now.
pub fn resend(conn: &Connection, id: i64, now: Millis) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE replies SET state = 'pending', next_attempt_at = ?2, reason = NULL, unknown_since = NULL,
             updated_at = ?2
         WHERE id = ?1 AND (state = 'failed' OR state = 'unknown') AND content IS NOT NULL",
        params![id, now],
    )?;
    if n == 1 {
        super::changes::record_reply(conn, id, now)?;
    }
    Ok(n == 1)
}

/// Replies by state, for status and metrics; and since when the oldest `unknown` one is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub by_state: Vec<(String, i64)>,
    pub oldest_unknown_since: Option<Millis>,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let by_state = conn
        .prepare("SELECT state, count(*) FROM replies GROUP BY state ORDER BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let oldest_unknown_since = conn.query_row(
        "SELECT min(unknown_since) FROM replies WHERE state = 'unknown'",
        [],
        |r| r.get(0),
    )?;
    Ok(Counts {
        by_state,
        oldest_unknown_since,
    })
}

/// Replies in `state` (all without one), newest first.
pub fn list(conn: &Connection, state: Option<ReplyState>, limit: usize) -> rusqlite::Result<Vec<(Reply, Thread)>> {
    let filter = if state.is_some() {
        "WHERE r.state = ?1"
    } else {
        "WHERE ?1 IS NULL"
    };
    conn.prepare(&format!(
        "SELECT {COLUMNS}, {} FROM replies r JOIN threads t ON t.id = r.thread_id {filter}
         ORDER BY r.id DESC LIMIT ?2",
        threads::COLUMNS
    ))?
    .query_map(params![state.map(ReplyState::name), limit as i64], |row| {
        Ok((read_at(row, 0)?, threads::read_at(row, 14)?))
    })?
    .collect()
}

/// Erasure: the text of every reply of `thread_id` goes (the row stays, for the outbox and the dedup).
pub(super) fn erase_thread(conn: &Connection, thread_id: &str, now: Millis) -> rusqlite::Result<u64> {
    Ok(conn.execute(
        "UPDATE replies SET content = NULL, attachments = '[]', tombstoned_at = ?2
         WHERE thread_id = ?1 AND tombstoned_at IS NULL",
        params![thread_id, now],
    )? as u64)
}

/// Erasure by id: the reply with this UUID or channel message id.
pub(super) fn erase_named(conn: &Connection, id: &str, now: Millis) -> rusqlite::Result<u64> {
    Ok(conn.execute(
        "UPDATE replies SET content = NULL, attachments = '[]', tombstoned_at = ?2
         WHERE (uuid = ?1 OR channel_message_id = ?1) AND tombstoned_at IS NULL",
        params![id, now],
    )? as u64)
}

/// Retention: the text of settled replies (sent or failed) last changed before `cutoff`.
pub(super) fn tombstone_settled_before(conn: &Connection, cutoff: Millis, now: Millis) -> rusqlite::Result<u64> {
    Ok(conn.execute(
        "UPDATE replies SET content = NULL, attachments = '[]', tombstoned_at = ?2
         WHERE (state = 'sent' OR state = 'failed') AND updated_at < ?1 AND tombstoned_at IS NULL",
        params![cutoff, now],
    )? as u64)
}
