//! The one write path for messages: every answer (a poll, a search page) and every push is committed here, in
//! one transaction across the tables it touches. For a polled answer it is the step that makes a confirm
//! upstream legal; for a push, the step that makes its 2xx legal.
//!
//! Pushes share commits ([`Ingest`]): the pushes that arrive while one commit runs go into the next, so each is
//! durable (synchronous=FULL) before it is answered without costing a fsync of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::TransactionBehavior;
use tokio::sync::{Notify, mpsc, oneshot};

use super::batches::{self, BatchOrigin, BatchSummary};
use super::messages::{self, NewMessage, Origin};
use super::push_stats::{self, Tally};
use super::{Millis, Store, StoreError, deliveries, quarantine, receipts, replies, source_state, threads};

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
                let mut follow_up = FollowUp::prepare(&tx)?;
                let mut insert_receipt = receipts::Insert::prepare(&tx)?;
                for element in &batch.elements {
                    match element {
                        Element::Message(m) => {
                            let stored = insert_message.run(batch.provider, Origin::BOOKING_PULL, m, at)?;
                            if stored {
                                follow_up.run(&tx, batch.provider, Origin::BOOKING_PULL.ota, m, at)?;
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
                                Some(batch_id),
                                at,
                            )?;
                            summary.quarantined += 1;
                        }
                    }
                }
                follow_up.finish(&tx)?;
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

/// What a new message's row brings with it, in its transaction: its text enters the search index, its thread
/// counts it, and its outbox row is written (so no stored message can miss its delivery, and a redelivered one
/// never gets a second), unless it is the channel's echo of a reply: then it is recorded as that reply's proof,
/// never as guest news.
struct FollowUp<'c> {
    threads: threads::Deltas,
    deliveries: deliveries::InsertPending<'c>,
    /// The transaction's first new message: the store has one writer, so every later `seq` is this transaction's.
    first_seq: Option<i64>,
}

impl<'c> FollowUp<'c> {
    fn prepare(conn: &'c rusqlite::Connection) -> rusqlite::Result<FollowUp<'c>> {
        Ok(FollowUp {
            threads: threads::Deltas::default(),
            deliveries: deliveries::InsertPending::prepare(conn)?,
            first_seq: None,
        })
    }

    /// The threads' changes and the search index, once per transaction, before its commit.
    fn finish(self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        if let Some(first) = self.first_seq {
            messages::index_text(conn, first)?;
        }
        self.threads.write(conn)
    }

    /// For the message just inserted (the connection's last rowid).
    fn run(
        &mut self,
        conn: &rusqlite::Connection,
        provider: &str,
        ota: Option<&str>,
        m: &NewMessage,
        at: Millis,
    ) -> rusqlite::Result<()> {
        let seq = conn.last_insert_rowid();
        self.first_seq.get_or_insert(seq);
        if m.sender_role.as_deref() == Some("property")
            && let Some(conversation) = m.conversation_id.as_deref()
        {
            let thread = threads::thread_uuid(provider, conversation);
            if let Some(reply) = replies::match_echo(conn, &thread, &m.message_id, m.content.as_deref(), at)? {
                messages::mark_echo(conn, seq, reply)?;
                return Ok(());
            }
        }
        self.threads.add(provider, ota, m, at);
        self.deliveries.run(seq, at)
    }
}

/// One pushed request, parsed: a message to store, or what could not be understood (kept byte for byte).
#[derive(Debug, Clone)]
pub struct Push {
    /// The push source's name (`booking_notification`, `staah`, `channex`), for its counts and its quarantine.
    pub source: &'static str,
    pub content: PushContent,
}

#[derive(Debug, Clone)]
pub enum PushContent {
    Message {
        /// The dedup namespace: `booking.com` (shared with the pull), `staah:<channel>`, `channex`.
        namespace: String,
        ota: Option<String>,
        push_id: Option<String>,
        message: Box<NewMessage>,
    },
    Quarantine(Poison),
}

/// What a committed push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Stored,
    /// Stored before (a sender's retry, or the same message by pull): nothing changed.
    Duplicate,
    Quarantined,
}

impl Store {
    /// Stores pushes in one transaction of their own, outside the group commit (a backfill run by an operator
    /// beside the daemon).
    pub async fn commit_pushes_now(&self, pushes: Vec<Push>) -> Result<Vec<PushOutcome>, StoreError> {
        let file = self.open_file();
        self.call(move |conn| commit_pushes(conn, &pushes, &[], file.as_ref()))
            .await
    }
}

/// Stores pushes in one transaction, with the counts of `tallies` (failed authentications and acknowledged
/// events counted meanwhile). Returns only after COMMIT (synchronous=FULL) succeeded.
fn commit_pushes(
    conn: &mut rusqlite::Connection,
    pushes: &[Push],
    tallies: &[(&'static str, Tally)],
    file: Option<&super::OpenFile>,
) -> Result<Vec<PushOutcome>, StoreError> {
    let at = super::now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts: Vec<(&'static str, Tally)> = tallies.to_vec();
    let mut outcomes = Vec::with_capacity(pushes.len());
    {
        let mut insert_message = messages::Insert::prepare(&tx)?;
        let mut follow_up = FollowUp::prepare(&tx)?;
        for push in pushes {
            let outcome = match &push.content {
                PushContent::Message {
                    namespace,
                    ota,
                    push_id,
                    message,
                } => {
                    let origin = Origin {
                        source: push.source,
                        ota: ota.as_deref(),
                        push_id: push_id.as_deref(),
                    };
                    if insert_message.run(namespace, origin, message, at)? {
                        follow_up.run(&tx, namespace, ota.as_deref(), message, at)?;
                        PushOutcome::Stored
                    } else {
                        PushOutcome::Duplicate
                    }
                }
                PushContent::Quarantine(p) => {
                    quarantine::upsert(&tx, push.source, &p.raw, p.raw_exact.as_deref(), &p.reason, None, at)?;
                    PushOutcome::Quarantined
                }
            };
            let tally = tally_of(&mut counts, push.source);
            match outcome {
                PushOutcome::Stored => tally.accepted += 1,
                PushOutcome::Duplicate => tally.duplicates += 1,
                PushOutcome::Quarantined => tally.quarantined += 1,
            }
            outcomes.push(outcome);
        }
        follow_up.finish(&tx)?;
    }
    for (source, tally) in &counts {
        push_stats::add(&tx, source, tally, at)?;
    }
    if let Some(file) = file {
        file.verify()?;
    }
    tx.commit()?;
    Ok(outcomes)
}

fn tally_of<'a>(counts: &'a mut Vec<(&'static str, Tally)>, source: &'static str) -> &'a mut Tally {
    let index = match counts.iter().position(|(s, _)| *s == source) {
        Some(i) => i,
        None => {
            counts.push((source, Tally::default()));
            counts.len() - 1
        }
    };
    &mut counts[index].1
}

/// The most pushes one commit takes; the rest wait for the next.
const GROUP: usize = 512;
/// How often counts gathered without a push (refused requests) are written.
const TALLY_EVERY: Duration = Duration::from_secs(10);

struct Job {
    push: Push,
    answer: oneshot::Sender<Result<PushOutcome, StoreError>>,
}

/// The group commit of pushes: a handle to submit them, and the task that commits them.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
    pending: Arc<Mutex<Vec<(&'static str, Tally)>>>,
}

impl Ingest {
    /// Starts the committer on `store`; `committed` is woken after every commit that stored a new message. The
    /// task ends once every handle is dropped and what was submitted is committed.
    pub fn start(store: Store, committed: Arc<Notify>) -> (Ingest, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(4 * GROUP);
        let pending = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run_committer(store, queue, pending.clone(), committed));
        (Ingest { jobs, pending }, task)
    }

    /// Stores `push` and answers once it is durable (or the store refused it: then nothing is stored).
    pub async fn submit(&self, push: Push) -> Result<PushOutcome, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job { push, answer })
            .await
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }

    /// Counts a request of `source` that stores nothing (a failed authentication, an event acknowledged and
    /// ignored); written with the next commit, or within [`TALLY_EVERY`].
    pub fn count(&self, source: &'static str, add: impl FnOnce(&mut Tally)) {
        let mut pending = self.pending.lock().expect("tally lock");
        add(tally_of(&mut pending, source));
    }
}

async fn run_committer(
    store: Store,
    mut queue: mpsc::Receiver<Job>,
    pending: Arc<Mutex<Vec<(&'static str, Tally)>>>,
    committed: Arc<Notify>,
) {
    let file = store.open_file();
    loop {
        let mut jobs = Vec::new();
        tokio::select! {
            received = queue.recv_many(&mut jobs, GROUP) => {
                if received == 0 {
                    break;
                }
            }
            _ = tokio::time::sleep(TALLY_EVERY) => {}
        }
        let tallies: Vec<(&'static str, Tally)> = std::mem::take(&mut *pending.lock().expect("tally lock"));
        if jobs.is_empty() && tallies.iter().all(|(_, t)| t.is_empty()) {
            continue;
        }
        let pushes: Vec<Push> = jobs.iter().map(|j| j.push.clone()).collect();
        let file = file.clone();
        let retry = tallies.clone();
        let result = store
            .call(move |conn| commit_pushes(conn, &pushes, &tallies, file.as_ref()))
            .await;
        match result {
            Ok(outcomes) => {
                if outcomes.contains(&PushOutcome::Stored) {
                    committed.notify_one();
                }
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.answer.send(Ok(outcome));
                }
            }
            Err(e) => {
                // Nothing of this commit is stored: every push in it is refused (and sent again by its sender);
                // the counts wait for the next commit.
                pending.lock().expect("tally lock").extend(retry);
                for job in jobs {
                    let _ = job.answer.send(Err(e.for_each_caller()));
                }
            }
        }
    }
    let tallies: Vec<(&'static str, Tally)> = std::mem::take(&mut *pending.lock().expect("tally lock"));
    if !tallies.is_empty() {
        let file = store.open_file();
        let _ = store
            .call(move |conn| commit_pushes(conn, &[], &tallies, file.as_ref()))
            .await;
    }
}
