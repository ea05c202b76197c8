//! The one write path for messages: every answer (a poll, a search page) is committed here, in one transaction
//! across the tables it touches. For a polled answer it is the step that makes a confirm upstream legal.

use rusqlite::TransactionBehavior;

use super::batches::{self, BatchOrigin, BatchSummary};
use super::messages::{self, NewMessage};
use super::{Millis, Store, StoreError, deliveries, quarantine, receipts, source_state};

/// One fetched answer, parsed element by element.
#[derive(Debug)]
pub struct IncomingBatch {
    pub provider: &'static str,
    pub fetched_at: Millis,
    pub ruid: Option<String>,
    pub elements: Vec<Element>,
    pub origin: BatchOrigin,
}

#[derive(Debug)]
pub enum Element {
    Message(Box<NewMessage>),
    Poison(Poison),
}

/// An element that could not be understood, kept byte for byte.
#[derive(Debug, Clone)]
pub struct Poison {
    /// As JSON text (repaired where its bytes were not valid JSON).
    pub raw: String,
    /// The exact bytes, when `raw` had to repair them.
    pub raw_exact: Option<Vec<u8>>,
    /// The field and the problem, never the value (guest data).
    pub reason: String,
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
    /// Stores every element of one answer in one transaction: new messages once (each with its outbox row), every
    /// copy in `receipts`, poison in `quarantine`. Returns only after COMMIT (WAL, synchronous=FULL) succeeded.
    pub async fn commit_batch(&self, batch: IncomingBatch) -> Result<Committed, StoreError> {
        let file = self.open_file();
        self.call(move |conn| {
            // Invariant 1 (nothing confirmed before it is durable) rests on this commit's fsync: `Store::call`
            // runs every job at synchronous=FULL, switching back after outcome commits (which run at NORMAL).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = batch.fetched_at;
            let batch_id = batches::insert(
                &tx,
                batch.provider,
                at,
                batch.elements.len(),
                batch.ruid.as_deref(),
                batch.origin,
            )?;
            let mut summary = BatchSummary {
                fetched: batch.elements.len(),
                ..BatchSummary::default()
            };
            {
                let mut insert_message = messages::Insert::prepare(&tx)?;
                let mut insert_delivery = deliveries::InsertPending::prepare(&tx)?;
                let mut insert_receipt = receipts::Insert::prepare(&tx)?;
                for element in &batch.elements {
                    match element {
                        Element::Message(m) => {
                            let stored = insert_message.run(batch.provider, m, at)?;
                            if stored {
                                // The outbox row commits with the message or not at all: no stored message can
                                // miss its delivery, and a redelivered one never gets a second.
                                insert_delivery.run(tx.last_insert_rowid(), at)?;
                                summary.new += 1;
                            } else {
                                summary.redelivered += 1;
                            }
                            insert_receipt.run(batch_id, batch.provider, &m.message_id, at, stored)?;
                        }
                        Element::Poison(p) => {
                            quarantine::upsert(
                                &tx,
                                batch.provider,
                                &p.raw,
                                p.raw_exact.as_deref(),
                                &p.reason,
                                batch_id,
                                at,
                            )?;
                            summary.quarantined += 1;
                        }
                    }
                }
            }
            batches::set_summary(&tx, batch_id, &summary)?;
            if batch.origin == BatchOrigin::Queue {
                source_state::record_success(&tx, batch.provider, at, true)?;
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
}
