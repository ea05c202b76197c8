//! The delivery worker: sends every pending delivery to the PMS webhook, signed, at least once.
//!
//! Invariants:
//! - An outcome is committed only after its response (or failure) arrived; nothing records "in flight", so after
//!   a crash those deliveries are simply due again. New requests are launched only after the completed ones are
//!   committed, so requests sent but not recorded never exceed `concurrency`: that bounds a crash's duplicates.
//! - Retry times are computed from the stored attempt count and stored (a durable outbox cannot keep a retry
//!   iterator across restarts).
//! - While the PMS is failing, one probe at a time at the backoff pace, not every due row: a PMS coming back
//!   from an outage is not hit by the whole backlog's retries at once. When a probe succeeds, the retries
//!   scheduled during the outage are due again, and go at full concurrency, oldest first.
//!
//! The loop is a state machine: [`Forwarder::step`] does the work (record, claim, launch), each `select!` arm
//! calls one `handle_*` method, and when to wake next is the pure [`next_wake`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::task::JoinError;
use tokio_util::task::JoinMap;

use super::attempt::{Attempted, attempt, decide, schedule_horizon};
use super::health::PmsHealth;
use super::outbox::{Decision, DueDelivery, Outbox, Outcome};
use super::signing::Signer;
use crate::backoff::Backoff;
use crate::config::{ForwardSettings, RetryPolicy};
use crate::daemon::Context;
use crate::http_client;
use crate::metrics::Metrics;
use crate::store::{StoreError, now_ms};

/// Look at the outbox at least this often even without a wake-up (e.g. a replay from another process that could
/// not signal the daemon).
pub const IDLE_RESCAN: Duration = Duration::from_secs(30);
const SUMMARY_EVERY: Duration = Duration::from_secs(300);
/// Waits between attempts to record outcomes the store refused (a full disk, a lock held elsewhere).
const COMMIT_RETRY_FIRST: Duration = Duration::from_secs(1);
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub attempted: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

/// What the next wake-up depends on.
#[derive(Debug, Clone, Copy)]
pub struct WakeInputs {
    pub now: Instant,
    pub in_flight: usize,
    pub concurrency: usize,
    /// Claimed deliveries not launched yet.
    pub ready: usize,
    /// Completed outcomes wait for the store, which refused them; retried at `commit_retry_at`.
    pub holding: bool,
    pub commit_retry_at: Option<Instant>,
    pub failing: bool,
    pub next_probe: Instant,
    /// When the outbox is next looked at: the next due row, or at once after a wake-up.
    pub rescan_at: Instant,
    pub summary_at: Instant,
    pub clock_check_at: Instant,
}

/// When the loop wakes if nothing else (an attempt finishing, a wake-up) comes first. Never a time that has
/// passed while nothing can be done then: that was a spin at 100% CPU (twice).
pub fn next_wake(w: &WakeInputs) -> Instant {
    let mut wake_at = (w.now + IDLE_RESCAN).min(w.summary_at).min(w.clock_check_at);
    if let Some(at) = w.commit_retry_at.filter(|_| w.holding) {
        wake_at = wake_at.min(at);
    } else if w.failing && w.in_flight == 0 {
        // Nothing may be sent before the next probe, so there is nothing to claim before it either; and with
        // nothing ready, a probe also waits for a row to come due (a past probe time would spin until then).
        let probe_at = if w.ready == 0 {
            w.next_probe.max(w.rescan_at)
        } else {
            w.next_probe
        };
        wake_at = wake_at.min(probe_at);
    } else if !w.failing && w.ready == 0 && w.in_flight < w.concurrency {
        // (Failing with a request in flight, nothing can be claimed before it ends: it is waited for.)
        wake_at = wake_at.min(w.rescan_at);
    }
    wake_at
}

pub struct Forwarder {
    outbox: Outbox,
    client: reqwest::Client,
    url: Url,
    signer: Arc<Signer>,
    concurrency: usize,
    retry: RetryPolicy,
    request_timeout: Duration,
    cx: Context,
    metrics: Metrics,
    health: PmsHealth,
    attempts: JoinMap<i64, Attempted>,
    ready: VecDeque<DueDelivery>,
    /// Finished attempts whose outcomes are not recorded yet. While any wait for the store, nothing new is
    /// claimed or sent: freed rows would be due again and sent again, as fast as the PMS answers.
    completed: Vec<Attempted>,
    rescan_at: Instant,
    commit_retry_at: Option<Instant>,
    commit_backoff: Backoff,
    summary_at: Instant,
    clock_check_at: Instant,
    delivered_since_summary: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("forward.secret: {0}")]
    Secret(#[from] super::signing::KeyError),
}

impl Forwarder {
    /// A delivery worker on `cx`: woken by its commits and operator wake-ups, counting into its metrics.
    pub fn new(settings: &ForwardSettings, cx: &Context) -> Result<Forwarder, ForwardError> {
        let now = Instant::now();
        Ok(Forwarder {
            outbox: Outbox::new(cx.store.clone()),
            client: http_client::client(settings.request_timeout)?,
            url: settings.url.clone(),
            signer: Arc::new(Signer::new(&settings.secrets)?),
            concurrency: settings.concurrency,
            retry: settings.retry,
            request_timeout: settings.request_timeout,
            cx: cx.clone(),
            metrics: cx.metrics.clone(),
            health: PmsHealth::new(),
            attempts: JoinMap::new(),
            ready: VecDeque::new(),
            completed: Vec::new(),
            rescan_at: now,
            commit_retry_at: None,
            commit_backoff: Backoff::new(COMMIT_RETRY_FIRST, COMMIT_RETRY_MAX),
            summary_at: now + SUMMARY_EVERY,
            clock_check_at: now,
            delivered_since_summary: 0,
        })
    }

    /// Delivers until cancelled; then lets the requests in flight finish within the request timeout.
    pub async fn run(mut self) {
        tracing::info!(url = %http_client::redacted(&self.url), concurrency = self.concurrency, "forwarding to the PMS webhook");
        let (commits, operator, cancel) = (
            self.cx.wake.commits.clone(),
            self.cx.wake.operator.clone(),
            self.cx.cancel.clone(),
        );
        loop {
            // Failures are logged where they happen; the wake-up below retries them.
            let _ = self.step().await;
            let wake_at = next_wake(&self.wake_inputs(Instant::now()));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some((delivery, joined)) = self.attempts.join_next(), if !self.attempts.is_empty() => {
                    self.handle_finished(delivery, joined);
                }
                _ = commits.notified() => self.handle_commit_wake(),
                _ = operator.notified() => self.handle_operator_wake(),
                _ = tokio::time::sleep_until(wake_at.into()) => self.handle_timer().await,
            }
        }
        self.finish_in_flight().await;
    }

    /// One turn of the loop: records the finished attempts (kept for later if the store refuses), makes due the
    /// rows a clock step left far ahead, claims what is due, and launches what the PMS's health allows. Returns
    /// what it recorded.
    pub async fn step(&mut self) -> Result<StepReport, StoreError> {
        let mut recorded = Ok(StepReport::default());
        if !self.completed.is_empty() && self.commit_retry_at.is_none_or(|at| Instant::now() >= at) {
            recorded = self.record_completed().await;
        }
        if !self.completed.is_empty() {
            return recorded;
        }
        if Instant::now() >= self.clock_check_at {
            self.clock_check_at = Instant::now() + IDLE_RESCAN;
            if self.reschedule_after_clock_step().await {
                self.rescan_at = Instant::now();
            }
        }
        let now = Instant::now();
        if self.ready.is_empty()
            && now >= self.rescan_at
            && self.health.can_launch(self.attempts.len(), self.concurrency, now)
        {
            self.claim(now).await;
        }
        while self
            .health
            .can_launch(self.attempts.len(), self.concurrency, Instant::now())
        {
            let Some(due) = self.ready.pop_front() else { break };
            let (client, url, signer) = (self.client.clone(), self.url.clone(), self.signer.clone());
            let probe = self.health.failing();
            self.attempts.spawn(due.id, attempt(client, url, signer, due, probe));
        }
        recorded
    }

    /// One pass for tests and tools, through the loop's own [`Self::step`]: claims what is due, sends it, waits
    /// for every answer, and records the outcomes.
    pub async fn deliver_due(&mut self) -> Result<StepReport, StoreError> {
        self.rescan_at = Instant::now();
        self.step().await?;
        while let Some((delivery, joined)) = self.attempts.join_next().await {
            self.handle_finished(delivery, joined);
        }
        if self.completed.is_empty() {
            return Ok(StepReport::default());
        }
        self.record_completed().await
    }

    fn wake_inputs(&self, now: Instant) -> WakeInputs {
        WakeInputs {
            now,
            in_flight: self.attempts.len(),
            concurrency: self.concurrency,
            ready: self.ready.len(),
            holding: !self.completed.is_empty(),
            commit_retry_at: self.commit_retry_at,
            failing: self.health.failing(),
            next_probe: self.health.next_probe,
            rescan_at: self.rescan_at,
            summary_at: self.summary_at,
            clock_check_at: self.clock_check_at,
        }
    }

    /// An attempt ended. A panicked one leaves its row pending and due in the store: it is claimed again.
    fn handle_finished(&mut self, delivery: i64, joined: Result<Attempted, JoinError>) {
        match joined {
            Ok(attempted) => self.completed.push(attempted),
            Err(e) if e.is_panic() => {
                tracing::error!(delivery, error = %e, "a delivery attempt panicked; it will be retried");
            }
            Err(_) => {}
        }
        while let Some((delivery, joined)) = self.attempts.try_join_next() {
            self.handle_finished(delivery, joined);
        }
    }

    /// New messages were committed.
    fn handle_commit_wake(&mut self) {
        self.rescan_at = Instant::now();
    }

    /// An operator command changed the outbox (SIGUSR1): look now, and while the PMS counts as failing, send the
    /// next probe now rather than at the backoff pace (the operator says the PMS is back).
    fn handle_operator_wake(&mut self) {
        self.rescan_at = Instant::now();
        self.health.next_probe = Instant::now();
    }

    async fn handle_timer(&mut self) {
        if Instant::now() >= self.summary_at {
            self.summary_at = Instant::now() + SUMMARY_EVERY;
            self.log_summary().await;
        }
    }

    async fn claim(&mut self, now: Instant) {
        let claim_size = (self.concurrency * 2).max(16);
        let in_flight: Vec<i64> = self.attempts.keys().copied().collect();
        match self.outbox.claim_due(now_ms(), claim_size, in_flight).await {
            Ok(claim) => {
                let full = claim.due.len() == claim_size;
                self.ready.extend(claim.due);
                self.rescan_at = if full {
                    now
                } else {
                    claim
                        .next_due_at
                        .map(|at| now + now_ms().until(at))
                        .unwrap_or(now + IDLE_RESCAN)
                        .min(now + IDLE_RESCAN)
                };
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                self.rescan_at = now + Duration::from_secs(1);
            }
        }
    }

    /// Records the finished attempts in one transaction. When the store refuses (a full disk), they are kept and
    /// recording is retried with backoff; nothing new goes out meanwhile.
    async fn record_completed(&mut self) -> Result<StepReport, StoreError> {
        let outcomes: Vec<Outcome> = self
            .completed
            .iter()
            .map(|a| decide(&self.retry, a, fastrand::f64()))
            .collect();
        if let Err(e) = self.outbox.record(outcomes.clone()).await {
            tracing::error!(
                error = %e,
                deliveries = self.completed.len(),
                "cannot record delivery outcomes; nothing more is sent until they are recorded (retrying)"
            );
            self.commit_retry_at = Some(Instant::now() + self.commit_backoff.next());
            return Err(e);
        }
        self.commit_retry_at = None;
        self.commit_backoff.reset();
        let completed = std::mem::take(&mut self.completed);
        let report = self.report(&completed, &outcomes).await;
        // Retries were just scheduled and rows freed: the next claim finds the true next due time.
        self.rescan_at = Instant::now();
        Ok(report)
    }

    /// Health, metrics and logs for outcomes just recorded.
    async fn report(&mut self, attempted: &[Attempted], outcomes: &[Outcome]) -> StepReport {
        let mut report = StepReport {
            attempted: attempted.len(),
            ..StepReport::default()
        };
        let mut recovered = false;
        for (a, o) in attempted.iter().zip(outcomes) {
            recovered |= self
                .health
                .record(&a.result, a.probe, &self.retry, Instant::now(), fastrand::f64());
            if !a.took.is_zero() {
                self.metrics.request("pms", "deliver", a.took);
            }
            let id = a.due.event.subject();
            match o.decision {
                Decision::Delivered => {
                    self.metrics.delivery("delivered");
                    report.delivered += 1;
                    tracing::debug!(delivery = o.id, message_id = %id, attempt = o.attempts, "delivered");
                }
                Decision::Retry { next_attempt_at } => {
                    self.metrics.delivery("retry");
                    report.retried += 1;
                    tracing::warn!(
                        delivery = o.id,
                        subject = %id,
                        status = o.status,
                        error = o.error.as_deref(),
                        attempt = o.attempts,
                        next_try_in_ms = o.attempted_at.until(next_attempt_at).as_millis() as u64,
                        "delivery attempt failed"
                    );
                }
                Decision::Dead => {
                    self.metrics.delivery("dead");
                    report.dead += 1;
                    tracing::error!(
                        delivery = o.id,
                        subject = %id,
                        status = o.status,
                        error = o.error.as_deref(),
                        attempts = o.attempts,
                        "delivery gave up: dead letter (inspect with `ota-relay dead-letters list`, retry with `ota-relay dead-letters replay`)"
                    );
                }
            }
        }
        self.delivered_since_summary += report.delivered as u64;
        self.metrics.pms_failing(self.health.failing());
        if recovered {
            // The retries scheduled during the outage waited for the PMS, not for their messages.
            match self.outbox.due_after_outage(now_ms()).await {
                Ok(n) => tracing::info!(deliveries = n, "deliveries that waited for a retry are due now"),
                Err(e) => tracing::warn!(error = %e, "cannot reschedule the deliveries that waited for the PMS"),
            }
        }
        report
    }

    /// At shutdown: the requests in flight get the request timeout to finish, and what finished is recorded.
    async fn finish_in_flight(&mut self) {
        let bound = self.request_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, async {
            while let Some((delivery, joined)) = self.attempts.join_next().await {
                self.handle_finished(delivery, joined);
            }
        })
        .await;
        let abandoned = self.attempts.len();
        self.attempts.abort_all();
        if !self.completed.is_empty() && self.record_completed().await.is_err() {
            tracing::warn!(
                deliveries = self.completed.len(),
                "unrecorded deliveries will be sent again after a restart"
            );
        }
        tracing::info!(abandoned, "delivery worker stopped");
    }

    /// Makes due the pending rows scheduled beyond [`schedule_horizon`]; true if there were any.
    async fn reschedule_after_clock_step(&mut self) -> bool {
        let horizon = schedule_horizon(&self.retry);
        match self.outbox.reschedule_beyond(now_ms(), horizon).await {
            Ok(0) => false,
            Ok(n) => {
                tracing::warn!(
                    deliveries = n,
                    horizon_s = horizon.as_secs(),
                    "pending deliveries were scheduled further ahead than any retry delay (the system clock went \
                     back?); they are due now"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the outbox for deliveries scheduled before a clock step");
                false
            }
        }
    }

    async fn log_summary(&mut self) {
        match self.outbox.summary().await {
            Ok(s) => {
                let oldest_pending_age_s = s.oldest_pending_age_s(now_ms());
                tracing::info!(
                    delivered = self.delivered_since_summary,
                    pending = s.pending,
                    oldest_pending_age_s,
                    dead = s.dead,
                    "forwarding summary"
                );
                self.delivered_since_summary = 0;
            }
            Err(e) => tracing::warn!(error = %e, "cannot summarise the outbox"),
        }
    }
}
