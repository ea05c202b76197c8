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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outbox::{Decision, DueDelivery, Outbox, Outcome};
use super::payload;
use super::signing::Signer;
use crate::backoff::Backoff;
use crate::config::{ForwardSettings, RetryPolicy};
use crate::http_client;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, now_ms};

/// Consecutive failures after which the PMS counts as failing (probe mode).
const FAILING_AFTER: u32 = 3;
/// Look at the outbox at least this often even without a wake-up (e.g. a replay from another process that could
/// not signal the daemon).
const IDLE_RESCAN: Duration = Duration::from_secs(30);
const SUMMARY_EVERY: Duration = Duration::from_secs(300);
/// Beyond the longest delay the worker schedules, so that a clock stepped back by milliseconds (or a row
/// scheduled at the very cap) is not taken for a clock that went back.
const CLOCK_SLACK: Duration = Duration::from_secs(60);
/// Waits between attempts to record outcomes the store refused (a full disk, a lock held elsewhere).
const COMMIT_RETRY_FIRST: Duration = Duration::from_secs(1);
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(30);

/// What happened to one attempt, before it is decided and committed.
#[derive(Debug)]
pub struct Attempted {
    pub due: DueDelivery,
    pub at: i64,
    pub result: AttemptResult,
    /// Request latency (zero when no request was sent).
    pub took: Duration,
}

#[derive(Debug, Clone)]
pub enum AttemptResult {
    Status { code: u16, retry_after: Option<Duration> },
    Failed { error: String },
}

impl AttemptResult {
    fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Status { code: 200..=299, .. })
    }

    /// 410 Gone is the PMS refusing this message for good; it says nothing about the PMS's health.
    fn is_gone(&self) -> bool {
        matches!(self, AttemptResult::Status { code: 410, .. })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub attempted: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

/// Exponential from `initial_interval`, capped at `max_interval`, ±20% jitter (`jitter` in [0, 1)).
pub fn retry_delay(policy: &RetryPolicy, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(40);
    let base = policy.initial_interval.as_secs_f64() * 2f64.powi(exponent as i32);
    let capped = base.min(policy.max_interval.as_secs_f64());
    Duration::from_secs_f64((capped * (0.8 + 0.4 * jitter)).min(policy.max_interval.as_secs_f64()))
}

/// How far ahead the worker may schedule a retry: its delays are capped at `max_interval` and `Retry-After` at
/// [`http_client::MAX_RETRY_AFTER`]. A pending row further ahead than this was scheduled before the clock went back.
pub fn schedule_horizon(policy: &RetryPolicy) -> Duration {
    policy.max_interval.max(http_client::MAX_RETRY_AFTER) + CLOCK_SLACK
}

/// Turns an attempt into the outcome to commit.
pub fn decide(policy: &RetryPolicy, attempted: &Attempted, jitter: f64) -> Outcome {
    let attempts = attempted.due.attempts + 1;
    let first = attempted.due.first_attempt_at.unwrap_or(attempted.at);
    let (status, error, retry_after) = match &attempted.result {
        AttemptResult::Status { code, retry_after } => (Some(*code), None, *retry_after),
        AttemptResult::Failed { error } => (None, Some(error.clone()), None),
    };
    let decision = if attempted.result.is_success() {
        Decision::Delivered
    } else if attempted.result.is_gone() || attempted.at - first >= policy.give_up_after.as_millis() as i64 {
        Decision::Dead
    } else {
        let mut delay = retry_delay(policy, attempts, jitter);
        if matches!(status, Some(429 | 503))
            && let Some(told) = retry_after
        {
            delay = delay.max(told);
        }
        Decision::Retry {
            next_attempt_at: attempted.at + delay.as_millis() as i64,
        }
    };
    let error = error.or_else(|| match status {
        Some(code) if !(200..300).contains(&code) => Some(format!("HTTP {code}")),
        _ => None,
    });
    Outcome {
        seq: attempted.due.message.seq,
        attempted_at: attempted.at,
        attempts,
        first_attempt_at: first,
        status,
        error,
        decision,
    }
}

/// One signed POST of one delivery.
pub async fn attempt(client: reqwest::Client, url: Url, signer: Arc<Signer>, due: DueDelivery) -> Attempted {
    let at = now_ms();
    let started = Instant::now();
    let mut took = Duration::ZERO;
    let id = due.message.webhook_id();
    let result = match payload::render(&due.message, at) {
        Err(e) => AttemptResult::Failed {
            error: format!("cannot render the payload: {e}"),
        },
        Ok(body) => {
            let timestamp = at.div_euclid(1000);
            let signature = signer.sign(&id, timestamp, &body);
            let sent = client
                .post(url)
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp)
                .header("webhook-signature", signature)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            took = started.elapsed();
            match sent {
                Ok(response) => {
                    let code = response.status().as_u16();
                    let retry_after = http_client::retry_after(response.headers());
                    // Read (and discard) the answer so the connection can be reused.
                    let _ = http_client::read_limited(response, 64 * 1024).await;
                    AttemptResult::Status { code, retry_after }
                }
                // reqwest's error text names the URL, whose query may carry the receiver's token.
                Err(e) => AttemptResult::Failed {
                    error: http_client::chain(&e.without_url()),
                },
            }
        }
    };
    Attempted { due, at, result, took }
}

/// Whether the PMS is up, and when the next probe may go while it is not.
struct PmsHealth {
    consecutive_failures: u32,
    failing_since: Option<Instant>,
    probes: u32,
    next_probe: Instant,
}

impl PmsHealth {
    fn new() -> PmsHealth {
        PmsHealth {
            consecutive_failures: 0,
            failing_since: None,
            probes: 0,
            next_probe: Instant::now(),
        }
    }

    fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    fn can_launch(&self, in_flight: usize, concurrency: usize, now: Instant) -> bool {
        if self.failing() {
            in_flight == 0 && now >= self.next_probe
        } else {
            in_flight < concurrency
        }
    }

    /// Records one attempt's result; true when it ends a failing spell (the PMS is back).
    fn record(&mut self, result: &AttemptResult, policy: &RetryPolicy) -> bool {
        if result.is_success() || result.is_gone() {
            let recovered = self.failing_since.take().inspect(|since| {
                tracing::info!(
                    down_for_s = since.elapsed().as_secs(),
                    probes = self.probes,
                    "PMS webhook recovered; resuming full concurrency with the deliveries that waited for it"
                );
            });
            self.consecutive_failures = 0;
            self.probes = 0;
            return recovered.is_some();
        }
        self.consecutive_failures += 1;
        if !self.failing() && self.consecutive_failures >= FAILING_AFTER {
            self.failing_since = Some(Instant::now());
            tracing::error!(
                consecutive_failures = self.consecutive_failures,
                "PMS webhook failing; sending one probe at a time until it answers"
            );
        }
        if self.failing() {
            self.probes += 1;
            self.next_probe = Instant::now() + retry_delay(policy, self.probes, fastrand::f64());
        }
        false
    }
}

pub struct Forwarder {
    outbox: Outbox,
    client: reqwest::Client,
    url: Url,
    signer: Arc<Signer>,
    concurrency: usize,
    retry: RetryPolicy,
    request_timeout: Duration,
    wake: Arc<Notify>,
    operator: Arc<Notify>,
    cancel: CancellationToken,
    health: PmsHealth,
    delivered_since_summary: u64,
    commit_backoff: Backoff,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("forward.secret: {0}")]
    Secret(#[from] super::signing::KeyError),
}

impl Forwarder {
    pub fn new(
        settings: &ForwardSettings,
        store: Store,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> Result<Forwarder, ForwardError> {
        Ok(Forwarder {
            outbox: Outbox::new(store),
            client: http_client::client(settings.request_timeout)?,
            url: settings.url.clone(),
            signer: Arc::new(Signer::new(&settings.secrets)?),
            concurrency: settings.concurrency,
            retry: settings.retry,
            request_timeout: settings.request_timeout,
            wake,
            operator: Arc::new(Notify::new()),
            cancel,
            health: PmsHealth::new(),
            delivered_since_summary: 0,
            commit_backoff: Backoff::new(COMMIT_RETRY_FIRST, COMMIT_RETRY_MAX),
            metrics: Metrics::default(),
        })
    }

    /// Woken by an operator command (SIGUSR1): looks at the outbox at once and, while the PMS counts as failing,
    /// sends the next probe now rather than at the backoff pace (the operator says the PMS is back).
    pub fn woken_by_operator(mut self, operator: Arc<Notify>) -> Self {
        self.operator = operator;
        self
    }

    /// Counts deliveries by outcome and their latency into `metrics` (the daemon's `/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// One step, for tests and tools: claims up to `concurrency` due deliveries, attempts them concurrently and
    /// commits their outcomes together.
    pub async fn deliver_due(&mut self) -> Result<StepReport, StoreError> {
        let claim = self.outbox.claim_due(now_ms(), self.concurrency, Vec::new()).await?;
        let mut tasks = JoinSet::new();
        for due in claim.due {
            tasks.spawn(attempt(self.client.clone(), self.url.clone(), self.signer.clone(), due));
        }
        let mut attempted = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            attempted.push(joined.expect("an attempt does not panic"));
        }
        self.commit(&attempted).await
    }

    /// Decides, commits (one transaction) and logs a set of completed attempts.
    async fn commit(&mut self, attempted: &[Attempted]) -> Result<StepReport, StoreError> {
        let mut report = StepReport {
            attempted: attempted.len(),
            ..StepReport::default()
        };
        let outcomes: Vec<Outcome> = attempted
            .iter()
            .map(|a| decide(&self.retry, a, fastrand::f64()))
            .collect();
        self.outbox.record(outcomes.clone()).await?;
        let mut recovered = false;
        for (a, o) in attempted.iter().zip(&outcomes) {
            recovered |= self.health.record(&a.result, &self.retry);
            if !a.took.is_zero() {
                self.metrics.request("pms", "deliver", a.took);
            }
            let id = &a.due.message.message_id;
            match o.decision {
                Decision::Delivered => {
                    self.metrics.delivery("delivered");
                    report.delivered += 1;
                    tracing::debug!(seq = o.seq, message_id = %id, attempt = o.attempts, "delivered");
                }
                Decision::Retry { next_attempt_at } => {
                    self.metrics.delivery("retry");
                    report.retried += 1;
                    tracing::warn!(
                        seq = o.seq,
                        message_id = %id,
                        status = o.status,
                        error = o.error.as_deref(),
                        attempt = o.attempts,
                        next_try_in_ms = next_attempt_at - o.attempted_at,
                        "delivery attempt failed"
                    );
                }
                Decision::Dead => {
                    self.metrics.delivery("dead");
                    report.dead += 1;
                    tracing::error!(
                        seq = o.seq,
                        message_id = %id,
                        status = o.status,
                        error = o.error.as_deref(),
                        attempts = o.attempts,
                        "delivery gave up: dead letter (inspect with `ota-relay dead-letters list`, retry with `ota-relay dead-letters replay`)"
                    );
                }
            }
        }
        self.delivered_since_summary += report.delivered as u64;
        if recovered {
            // The retries scheduled during the outage waited for the PMS, not for their messages.
            match self.outbox.due_after_outage(now_ms()).await {
                Ok(n) => tracing::info!(deliveries = n, "deliveries that waited for a retry are due now"),
                Err(e) => tracing::warn!(error = %e, "cannot reschedule the deliveries that waited for the PMS"),
            }
        }
        Ok(report)
    }

    /// Delivers until cancelled; then lets the requests in flight finish within the request timeout.
    pub async fn run(mut self) {
        tracing::info!(url = %http_client::redacted(&self.url), concurrency = self.concurrency, "forwarding to the PMS webhook");
        let mut tasks: JoinSet<Attempted> = JoinSet::new();
        let mut task_seq: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut in_flight: HashSet<i64> = HashSet::new();
        let mut ready: VecDeque<DueDelivery> = VecDeque::new();
        let mut completed: Vec<Attempted> = Vec::new();
        let mut rescan_at = Instant::now();
        // Set while completed outcomes wait for the store: nothing new is claimed or sent until they are recorded.
        let mut commit_retry_at: Option<Instant> = None;
        let mut summary_at = Instant::now() + SUMMARY_EVERY;
        let mut clock_check_at = Instant::now();
        let claim_size = (self.concurrency * 2).max(16);

        loop {
            if !completed.is_empty() && commit_retry_at.is_none_or(|at| Instant::now() >= at) {
                if self.commit_completed(&mut completed, &mut in_flight).await {
                    commit_retry_at = None;
                    // Retries were just scheduled and rows freed: the next claim finds the true next due time.
                    rescan_at = Instant::now();
                } else {
                    commit_retry_at = Some(Instant::now() + self.commit_backoff.next());
                }
            }
            let holding = !completed.is_empty();
            if !holding && Instant::now() >= clock_check_at {
                clock_check_at = Instant::now() + IDLE_RESCAN;
                if self.reschedule_after_clock_step().await {
                    rescan_at = Instant::now();
                }
            }
            let now = Instant::now();
            if !holding
                && ready.is_empty()
                && now >= rescan_at
                && self.health.can_launch(tasks.len(), self.concurrency, now)
            {
                let exclude: Vec<i64> = in_flight.iter().copied().collect();
                match self.outbox.claim_due(now_ms(), claim_size, exclude).await {
                    Ok(claim) => {
                        let full = claim.due.len() == claim_size;
                        ready.extend(claim.due);
                        rescan_at = if full {
                            now
                        } else {
                            claim
                                .next_due_at
                                .map(|at| now + Duration::from_millis((at - now_ms()).max(0) as u64))
                                .unwrap_or(now + IDLE_RESCAN)
                                .min(now + IDLE_RESCAN)
                        };
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                        rescan_at = now + Duration::from_secs(1);
                    }
                }
            }
            while !holding && self.health.can_launch(tasks.len(), self.concurrency, Instant::now()) {
                let Some(due) = ready.pop_front() else { break };
                in_flight.insert(due.message.seq);
                let seq = due.message.seq;
                let handle = tasks.spawn(attempt(self.client.clone(), self.url.clone(), self.signer.clone(), due));
                task_seq.insert(handle.id(), seq);
            }

            let now = Instant::now();
            let mut wake_at = (now + IDLE_RESCAN).min(summary_at).min(clock_check_at);
            if let Some(at) = commit_retry_at.filter(|_| holding) {
                wake_at = wake_at.min(at);
            } else if self.health.failing() && tasks.is_empty() {
                // Nothing may be sent before the next probe, so there is nothing to claim before it either; and
                // with nothing ready, a probe also waits for a row to come due (waking at a past probe time
                // instead would spin until then).
                let probe_at = if ready.is_empty() {
                    self.health.next_probe.max(rescan_at)
                } else {
                    self.health.next_probe
                };
                wake_at = wake_at.min(probe_at);
            } else if !self.health.failing() && ready.is_empty() && tasks.len() < self.concurrency {
                // (Failing with a request in flight, nothing can be claimed before it ends: wait for it.)
                wake_at = wake_at.min(rescan_at);
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    collect(joined, &mut task_seq, &mut in_flight, &mut completed);
                    while let Some(joined) = tasks.try_join_next_with_id() {
                        collect(joined, &mut task_seq, &mut in_flight, &mut completed);
                    }
                }
                _ = self.wake.notified() => rescan_at = Instant::now(),
                _ = self.operator.notified() => {
                    rescan_at = Instant::now();
                    self.health.next_probe = Instant::now();
                }
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
            if Instant::now() >= summary_at {
                summary_at = Instant::now() + SUMMARY_EVERY;
                self.log_summary().await;
            }
        }

        let bound = self.request_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, async {
            while let Some(joined) = tasks.join_next_with_id().await {
                collect(joined, &mut task_seq, &mut in_flight, &mut completed);
            }
        })
        .await;
        tasks.abort_all();
        if !completed.is_empty() && !self.commit_completed(&mut completed, &mut in_flight).await {
            tracing::warn!(
                deliveries = completed.len(),
                "unrecorded deliveries will be sent again after a restart"
            );
        }
        tracing::info!(abandoned = tasks.len(), "delivery worker stopped");
    }

    /// Records the completed attempts; true once they are committed. When the store refuses (a full disk), they
    /// are kept for the next try rather than freed: freed rows would be due again and sent again, as fast as
    /// the PMS answers, for as long as the store cannot record anything.
    async fn commit_completed(&mut self, completed: &mut Vec<Attempted>, in_flight: &mut HashSet<i64>) -> bool {
        match self.commit(completed).await {
            Ok(_) => {
                for attempted in completed.drain(..) {
                    in_flight.remove(&attempted.due.message.seq);
                }
                self.commit_backoff.reset();
                true
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    deliveries = completed.len(),
                    "cannot record delivery outcomes; nothing more is sent until they are recorded (retrying)"
                );
                false
            }
        }
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

fn collect(
    joined: Result<(tokio::task::Id, Attempted), tokio::task::JoinError>,
    task_seq: &mut HashMap<tokio::task::Id, i64>,
    in_flight: &mut HashSet<i64>,
    completed: &mut Vec<Attempted>,
) {
    match joined {
        Ok((id, attempted)) => {
            task_seq.remove(&id);
            completed.push(attempted);
        }
        Err(e) => {
            // The row is still pending and due in the store; freeing it lets it be claimed again.
            if let Some(seq) = task_seq.remove(&e.id()) {
                in_flight.remove(&seq);
            }
            if e.is_panic() {
                tracing::error!(error = %e, "a delivery attempt panicked; it will be retried");
            }
        }
    }
}
