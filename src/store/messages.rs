//! Committing fetched batches: the step that makes a confirm upstream legal.

use rusqlite::{TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, now_ms};

/// One fetched answer, parsed element by element.
#[derive(Debug)]
pub struct IncomingBatch {
    pub provider: &'static str,
    pub fetched_at: i64,
    pub ruid: Option<String>,
    pub elements: Vec<Element>,
    pub origin: BatchOrigin,
}

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

#[derive(Debug)]
pub enum Element {
    Message(Box<NewMessage>),
    Poison(Poison),
}

/// A message understood well enough to store; every field but `message_id` may be missing upstream.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub message_id: String,
    pub conversation_id: Option<String>,
    pub conversation_type: Option<String>,
    pub conversation_reference: Option<String>,
    pub property_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_role: Option<String>,
    pub sender_name: Option<String>,
    pub content: Option<String>,
    pub attachment_ids: Vec<String>,
    pub sent_at: Option<String>,
    /// The message object's bytes exactly as received.
    pub raw: String,
}

/// An element that could not be understood, kept byte for byte.
#[derive(Debug, Clone)]
pub struct Poison {
    pub raw: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub fetched: usize,
    pub new: usize,
    pub redelivered: usize,
    pub quarantined: usize,
}

/// How many elements of one answer may be confirmed upstream.
///
/// Invariant: the only constructor is [`Store::commit_batch`], after its transaction committed, and the value is
/// the number of elements of that one answer. A confirm can therefore never count a message that is not durably
/// stored, nor more messages than the answer it follows held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmCount(usize);

impl ConfirmCount {
    pub fn get(self) -> usize {
        self.0
    }
}

#[derive(Debug)]
pub struct Committed {
    pub batch_id: i64,
    pub summary: BatchSummary,
    pub confirm: ConfirmCount,
}

impl Store {
    /// Stores every element of one answer in one transaction: new messages once, every copy in `receipts`,
    /// poison in `quarantine`. Returns only after COMMIT (WAL, synchronous=FULL) succeeded.
    pub async fn commit_batch(&self, batch: IncomingBatch) -> Result<Committed, StoreError> {
        let file = self.open_file();
        self.call(move |conn| {
            // Invariant 1 (nothing confirmed before it is durable) rests on this commit's fsync: `Store::call`
            // runs every job at synchronous=FULL, switching back after outcome commits (which run at NORMAL).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO batches (provider, fetched_at, fetched, new, redelivered, quarantined, ruid, origin)
                 VALUES (?1, ?2, ?3, 0, 0, 0, ?4, ?5)",
            )?
            .execute(params![batch.provider, batch.fetched_at, batch.elements.len() as i64, batch.ruid, batch.origin.name()])?;
            let batch_id = tx.last_insert_rowid();
            let mut summary = BatchSummary {
                fetched: batch.elements.len(),
                ..BatchSummary::default()
            };
            {
                let mut insert_message = tx.prepare_cached(
                    "INSERT INTO messages (provider, message_id, conversation_id, conversation_type,
                         conversation_reference, property_id, sender_id, sender_role, sender_name, content,
                         attachment_ids, sent_at, first_seen_at, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT (provider, message_id) DO NOTHING",
                )?;
                let mut insert_delivery =
                    tx.prepare_cached("INSERT INTO deliveries (seq, next_attempt_at) VALUES (?1, ?2)")?;
                let mut insert_receipt = tx.prepare_cached(
                    "INSERT INTO receipts (batch_id, provider, message_id, received_at, stored) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut insert_poison = tx.prepare_cached(
                    "INSERT INTO quarantine (provider, raw_sha256, raw, reason, first_batch, first_seen_at, last_seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT (provider, raw_sha256)
                     DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = seen_count + 1",
                )?;
                for element in &batch.elements {
                    match element {
                        Element::Message(m) => {
                            let attachments = serde_json::to_string(&m.attachment_ids).unwrap_or_else(|_| "[]".into());
                            let inserted = insert_message.execute(params![
                                batch.provider,
                                m.message_id,
                                m.conversation_id,
                                m.conversation_type,
                                m.conversation_reference,
                                m.property_id,
                                m.sender_id,
                                m.sender_role,
                                m.sender_name,
                                m.content,
                                attachments,
                                m.sent_at,
                                batch.fetched_at,
                                m.raw,
                            ])?;
                            let stored = inserted == 1;
                            if stored {
                                // The outbox row commits with the message or not at all: no stored message can
                                // miss its delivery, and a redelivered one (inserted == 0) never gets a second.
                                insert_delivery.execute(params![tx.last_insert_rowid(), batch.fetched_at])?;
                                summary.new += 1;
                            } else {
                                summary.redelivered += 1;
                            }
                            insert_receipt.execute(params![batch_id, batch.provider, m.message_id, batch.fetched_at, stored])?;
                        }
                        Element::Poison(p) => {
                            insert_poison.execute(params![
                                batch.provider,
                                sha256_hex(p.raw.as_bytes()),
                                p.raw,
                                p.reason,
                                batch_id,
                                batch.fetched_at,
                            ])?;
                            summary.quarantined += 1;
                        }
                    }
                }
            }
            tx.prepare_cached("UPDATE batches SET new = ?2, redelivered = ?3, quarantined = ?4 WHERE id = ?1")?
                .execute(params![batch_id, summary.new as i64, summary.redelivered as i64, summary.quarantined as i64])?;
            if batch.origin == BatchOrigin::Queue {
                upsert_success(&tx, batch.provider, batch.fetched_at, true)?;
            }
            if let Some(file) = &file {
                file.verify()?;
            }
            tx.commit()?;
            Ok(Committed {
                batch_id,
                summary,
                confirm: ConfirmCount(batch.elements.len()),
            })
        })
        .await
    }

    /// Records a poll that was answered (with nothing to store, or after a batch).
    pub async fn record_poll_ok(&self, provider: &'static str) -> Result<(), StoreError> {
        self.call(move |conn| {
            upsert_success(conn, provider, now_ms(), false)?;
            Ok(())
        })
        .await
    }

    /// Records a failed poll or confirm; `failing_since` keeps the start of the current run of failures (moved
    /// back to now if it lies ahead: set before the system clock went back, it would hide an outage).
    pub async fn record_poll_error(&self, provider: &'static str, error: String) -> Result<(), StoreError> {
        self.call(move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO source_state (provider, last_poll_at, failing_since, last_error, last_error_at)
                 VALUES (?1, ?2, ?2, ?3, ?2)
                 ON CONFLICT (provider) DO UPDATE SET last_poll_at = ?2,
                     failing_since = min(COALESCE(failing_since, ?2), ?2), last_error = ?3, last_error_at = ?2",
                params![provider, now, error],
            )?;
            Ok(())
        })
        .await
    }
}

fn upsert_success(conn: &rusqlite::Connection, provider: &str, at: i64, batch: bool) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO source_state (provider, last_poll_at, last_success_at, last_batch_at)
         VALUES (?1, ?2, ?2, CASE WHEN ?3 THEN ?2 END)
         ON CONFLICT (provider) DO UPDATE SET last_poll_at = ?2, last_success_at = ?2, failing_since = NULL,
             last_batch_at = CASE WHEN ?3 THEN ?2 ELSE last_batch_at END",
    )?
    .execute(params![provider, at, batch])?;
    Ok(())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
