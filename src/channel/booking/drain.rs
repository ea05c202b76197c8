//! The drain loop: empties the Booking.com queue of a machine account into the store.
//!
//! `GET /messages/latest` → commit every element in one SQLite transaction → `PUT /messages?number_of_messages=N`
//! → again at once while answers are non-empty; sleep `poll_interval` after an empty answer.
//!
//! Invariants (each enforced where noted):
//! 1. Nothing is confirmed before it is durably stored: the PUT takes a [`ConfirmCount`], which only a committed
//!    transaction produces ([`Store::commit_batch`]).
//! 2. N is the number of elements of the answer just committed (new, already stored and quarantined alike),
//!    never more than that answer held; `data.number_of_messages` is only compared, never used.
//! 3. A PUT whose outcome is unknown is never repeated ([`Drainer::drain_once`]): the confirm counts from the head
//!    of the queue, so if the first PUT was applied, a second would remove messages this process never saw.
//!    The loop fetches again instead; messages already stored come back as redeliveries and are deduplicated.
//! 4. One consumer per store: the store's lock ([`crate::store::Access::Consumer`]). Two consumers confirming by
//!    count would confirm each other's messages.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::channel::booking::auth::AuthError;
use crate::channel::booking::client::{ClientError, FailureKind};
use crate::channel::booking::{BookingClient, FetchError, PROVIDER};
use crate::config::BookingSettings;
use crate::daemon::notify;
use crate::daemon::{Context, Fatal};
use crate::metrics::Metrics;
use crate::store::{BatchSummary, IncomingBatch, Store, StoreError, now_ms};

/// Consecutive identical failures after which a persisting failure is logged at error rather than warn.
const PERSISTING_AFTER: u32 = 5;
const IDLE_HEARTBEAT: Duration = Duration::from_secs(15 * 60);

/// What one GET → commit → PUT cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub summary: BatchSummary,
    /// Messages confirmed upstream: equals `summary.fetched` after a successful PUT.
    pub confirmed: usize,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Fetch(FetchError),
    #[error("cannot store the fetched batch (nothing was confirmed): {0}")]
    Store(#[from] StoreError),
    /// The batch is stored but the confirm's outcome is unknown; it is not repeated.
    #[error("batch stored, but the confirm's outcome is unknown and it is not repeated; fetching again: {source}")]
    ConfirmUnknown { report: BatchReport, source: FetchError },
    #[error("shutting down")]
    Cancelled,
}

impl DrainError {
    fn fetch_error(&self) -> Option<&FetchError> {
        match self {
            DrainError::Fetch(e) | DrainError::ConfirmUnknown { source: e, .. } => Some(e),
            _ => None,
        }
    }

    fn kind(&self) -> FailureKind {
        match self {
            DrainError::Store(_) => FailureKind::named("store"),
            DrainError::Cancelled => FailureKind::named("cancelled"),
            DrainError::ConfirmUnknown { source, .. } => FailureKind {
                confirm: true,
                ..source.kind()
            },
            DrainError::Fetch(e) => e.kind(),
        }
    }
}

pub struct Drainer {
    client: BookingClient,
    store: Store,
    cx: Context,
    metrics: Metrics,
    poll_interval: Duration,
    backoff: Backoff,
    failures: FailureRun,
    idle: IdleLog,
    stored_since_start: u64,
}

impl Drainer {
    /// A drain loop on `cx`: it stores into its store, counts into its metrics, wakes the forwarder after every
    /// commit that stored new messages, stops on its cancellation, and reports a replaced store as fatal.
    pub fn new(settings: &BookingSettings, cx: &Context) -> Result<Drainer, ClientError> {
        Ok(Drainer {
            client: BookingClient::new(settings, cx.store.clone(), cx.metrics.clone())?,
            store: cx.store.clone(),
            metrics: cx.metrics.clone(),
            cx: cx.clone(),
            poll_interval: settings.poll_interval,
            backoff: Backoff::new(settings.backoff_initial, settings.backoff_max),
            failures: FailureRun::default(),
            idle: IdleLog::new(),
            stored_since_start: 0,
        })
    }

    /// One GET → commit → PUT cycle. An empty answer is a report with `fetched == 0` and no PUT.
    ///
    /// Cancellation stops the GET; once an answer is in hand, it is committed and confirmed regardless, each step
    /// bounded by the request timeout.
    pub async fn drain_once(&mut self) -> Result<BatchReport, DrainError> {
        let started = Instant::now();
        let answer = tokio::select! {
            biased;
            _ = self.cx.cancel.cancelled() => return Err(DrainError::Cancelled),
            answer = self.client.fetch_latest() => answer,
        };
        self.metrics.request("booking", "latest", started.elapsed());
        let answer = answer
            .inspect_err(|_| self.metrics.poll("error"))
            .map_err(DrainError::Fetch)?;
        if let Some(declared) = answer.declared_count
            && declared != answer.elements.len() as u64
        {
            tracing::warn!(
                declared,
                received = answer.elements.len(),
                ruid = answer.ruid.as_deref(),
                "data.number_of_messages disagrees with the messages array; trusting the array"
            );
        }
        if answer.elements.is_empty() {
            self.metrics.poll("empty");
            // An idle queue commits nothing, so a replaced store file is looked for here too.
            self.store.check_file()?;
            return Ok(BatchReport {
                elapsed: started.elapsed(),
                ..BatchReport::default()
            });
        }
        self.metrics.poll("messages");
        for element in &answer.elements {
            if let crate::store::Element::Poison(p) = element {
                tracing::error!(reason = %p.reason, ruid = answer.ruid.as_deref(), "quarantined a message that cannot be understood");
            }
        }
        let committed = self
            .store
            .commit_batch(IncomingBatch {
                provider: PROVIDER,
                fetched_at: now_ms(),
                ruid: answer.ruid,
                elements: answer.elements,
                origin: crate::store::BatchOrigin::Queue,
            })
            .await?;
        self.metrics.batch(&committed.summary);
        if committed.summary.new > 0 {
            self.cx.wake.commits.notify_one();
        }
        let mut report = BatchReport {
            summary: committed.summary,
            confirmed: 0,
            elapsed: started.elapsed(),
        };
        // Invariant 3: exactly one PUT per committed answer; its failure is reported, never retried here.
        let put_started = Instant::now();
        let confirmed = self.client.confirm(committed.confirm).await;
        self.metrics.request("booking", "confirm", put_started.elapsed());
        self.metrics
            .confirm(confirmed.as_ref().ok().map(|_| committed.confirm.get()));
        match confirmed {
            Ok(_) => {
                report.confirmed = committed.confirm.get();
                report.elapsed = started.elapsed();
                Ok(report)
            }
            Err(source) => {
                report.elapsed = started.elapsed();
                Err(DrainError::ConfirmUnknown { report, source })
            }
        }
    }

    /// Drains until cancelled. Never returns early on failure: every failure is logged and backed off.
    pub async fn run(mut self) {
        tracing::info!(poll_interval = ?self.poll_interval, "draining the Booking.com queue");
        loop {
            if self.cx.cancel.is_cancelled() {
                break;
            }
            let wait = match self.drain_once().await {
                Ok(report) => {
                    self.succeeded(&report).await;
                    if report.summary.fetched > 0 {
                        Duration::ZERO
                    } else {
                        self.poll_interval
                    }
                }
                Err(DrainError::Cancelled) => break,
                Err(DrainError::Store(e @ StoreError::Replaced(_))) => {
                    tracing::error!(error = %e, "stopping: the store must be opened again");
                    self.cx.report_fatal(Fatal::StoreReplaced(e));
                    break;
                }
                Err(error) => self.failed(error).await,
            };
            // An iteration completed (a poll answered, or a failure handled and its wait chosen).
            notify::watchdog();
            if !wait.is_zero() && !self.wait_sliced(wait).await {
                break;
            }
        }
        tracing::info!("drain loop stopped");
    }

    /// Waits `wait` (poll interval, backoff, Retry-After, token quota) in slices of at most the backoff cap, with
    /// a watchdog ping after each: no legitimate wait outlasts `WatchdogSec`. False when cancelled.
    async fn wait_sliced(&self, wait: Duration) -> bool {
        let slice = self.backoff.max.max(Duration::from_millis(100));
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if !sleep_or_cancel(&self.cx.cancel, left.min(slice)).await {
                return false;
            }
            notify::watchdog();
        }
    }

    async fn succeeded(&mut self, report: &BatchReport) {
        if self.failures.count > 0 {
            tracing::info!(
                failures = self.failures.count,
                failing_for_s = self.failures.since.map(|s| s.elapsed().as_secs()).unwrap_or(0),
                "Booking.com queue reachable again"
            );
        }
        self.failures = FailureRun::default();
        self.backoff.reset();
        let s = report.summary;
        if s.fetched > 0 {
            self.stored_since_start += s.new as u64;
            notify::status(&format!(
                "draining: last batch {} new at {}; {} stored since start",
                s.new,
                clock(),
                self.stored_since_start
            ));
            self.idle.busy();
            tracing::info!(
                fetched = s.fetched,
                new = s.new,
                redelivered = s.redelivered,
                quarantined = s.quarantined,
                confirmed = report.confirmed,
                ms = report.elapsed.as_millis() as u64,
                "batch drained"
            );
        } else {
            tracing::debug!(ms = report.elapsed.as_millis() as u64, "queue empty");
            notify::status(&format!(
                "queue empty at {}; {} stored since start",
                clock(),
                self.stored_since_start
            ));
            if let Err(e) = self.store.record_poll_ok(PROVIDER).await {
                tracing::warn!(error = %e, "cannot record the poll in the store");
            }
            self.idle.idle_poll();
        }
    }

    /// Logs a failure and returns how long to wait before the next attempt.
    async fn failed(&mut self, error: DrainError) -> Duration {
        let kind = error.kind();
        self.failures.record(kind);
        let fetch = error.fetch_error();
        let wait = match fetch {
            Some(FetchError::Auth(AuthError::QuotaExhausted { until, .. })) => {
                now_ms().until(*until) + Duration::from_millis(50)
            }
            Some(e) if e.is_credentials() => self.backoff.max,
            Some(e) => {
                let next = self.backoff.next();
                e.retry_after().map_or(next, |told| told.max(next))
            }
            None => self.backoff.next(),
        };
        if let DrainError::ConfirmUnknown { report, .. } = &error {
            tracing::warn!(
                fetched = report.summary.fetched,
                new = report.summary.new,
                redelivered = report.summary.redelivered,
                quarantined = report.summary.quarantined,
                "batch stored but not confirmed"
            );
        }
        let message = error.to_string();
        notify::status(&format!(
            "Booking.com failing ({} in a row): {kind}",
            self.failures.count
        ));
        let persisting = self.failures.same >= PERSISTING_AFTER;
        let credentials = fetch.is_some_and(|e| e.is_credentials());
        let retry_in_ms = wait.as_millis() as u64;
        if credentials || persisting || matches!(error, DrainError::Store(_)) {
            tracing::error!(
                error = %message,
                kind = %kind,
                failures = self.failures.count,
                retry_in_ms,
                "drain failing"
            );
        } else {
            tracing::warn!(error = %message, kind = %kind, failures = self.failures.count, retry_in_ms, "drain attempt failed");
        }
        if let Err(e) = self.store.record_poll_error(PROVIDER, message).await {
            tracing::warn!(error = %e, "cannot record the failure in the store");
        }
        wait
    }
}

/// UTC wall-clock time for status lines.
fn clock() -> String {
    chrono::Utc::now().format("%H:%M:%S UTC").to_string()
}

/// Sleeps for `duration` unless cancelled first; false when cancelled.
pub async fn sleep_or_cancel(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

/// The current run of consecutive failures, and how many of the latest were the same failure.
#[derive(Default)]
struct FailureRun {
    count: u32,
    same: u32,
    since: Option<Instant>,
    last_kind: Option<FailureKind>,
}

impl FailureRun {
    fn record(&mut self, kind: FailureKind) {
        if self.last_kind == Some(kind) {
            self.same += 1;
        } else {
            self.last_kind = Some(kind);
            self.same = 1;
        }
        self.count += 1;
        self.since.get_or_insert_with(Instant::now);
    }
}

/// An info heartbeat every 15 minutes while the queue stays empty, so silence in the log means trouble.
struct IdleLog {
    last_line: Instant,
    polls: u64,
}

impl IdleLog {
    fn new() -> IdleLog {
        IdleLog {
            last_line: Instant::now(),
            polls: 0,
        }
    }

    fn busy(&mut self) {
        self.last_line = Instant::now();
        self.polls = 0;
    }

    fn idle_poll(&mut self) {
        self.polls += 1;
        if self.last_line.elapsed() >= IDLE_HEARTBEAT {
            tracing::info!(empty_polls = self.polls, "idle: the Booking.com queue is empty");
            self.busy();
        }
    }
}
