//! One delivery attempt: the signed POST, and the pure decisions about its outcome (retry delay, dead letter).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use super::outbox::{Decision, DueDelivery, Outcome};
use super::payload;
use super::signing::Signer;
use crate::config::RetryPolicy;
use crate::http_client;
use crate::store::{Millis, now_ms};

/// Beyond the longest delay the worker schedules, so that a clock stepped back by milliseconds (or a row
/// scheduled at the very cap) is not taken for a clock that went back.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

/// What happened to one attempt, before it is decided and committed.
#[derive(Debug)]
pub struct Attempted {
    pub due: DueDelivery,
    pub at: Millis,
    pub result: AttemptResult,
    /// Request latency (zero when no request was sent).
    pub took: Duration,
    /// Sent as a probe, while the PMS counted as failing.
    pub probe: bool,
}

#[derive(Debug, Clone)]
pub enum AttemptResult {
    Status { code: u16, retry_after: Option<Duration> },
    Failed { error: String },
}

impl AttemptResult {
    pub(super) fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Status { code: 200..=299, .. })
    }

    /// 410 Gone is the PMS refusing this message for good.
    pub(super) fn is_gone(&self) -> bool {
        matches!(self, AttemptResult::Status { code: 410, .. })
    }

    /// The PMS answered about this one message (gone, bad request, too large, unprocessable, headers too large):
    /// it is up and judging messages, so this is the message's failure, not the PMS's ill health.
    pub(super) fn is_about_the_message(&self) -> bool {
        matches!(
            self,
            AttemptResult::Status {
                code: 400 | 410 | 413 | 422 | 431,
                ..
            }
        )
    }

    /// The PMS took the message, or answered about it: it is up.
    pub fn pms_is_up(&self) -> bool {
        self.is_success() || self.is_about_the_message()
    }
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
    // Retry-After is honoured on 429 and 503, where it means "not before".
    let told = retry_after.filter(|_| matches!(status, Some(429 | 503)));
    let mut not_before = None;
    let decision = if attempted.result.is_success() {
        Decision::Delivered
    } else if attempted.result.is_gone() || attempted.at.since(first) >= policy.give_up_after {
        Decision::Dead
    } else {
        let mut delay = retry_delay(policy, attempts, jitter);
        if let Some(told) = told {
            delay = delay.max(told);
            not_before = Some(attempted.at.after(told));
        }
        Decision::Retry {
            next_attempt_at: attempted.at.after(delay),
        }
    };
    let error = error.or_else(|| match status {
        Some(code) if !(200..300).contains(&code) => Some(format!("HTTP {code}")),
        _ => None,
    });
    Outcome {
        id: attempted.due.id,
        attempted_at: attempted.at,
        attempts,
        first_attempt_at: first,
        status,
        error,
        decision,
        not_before,
    }
}

/// One signed POST of one delivery.
pub async fn attempt(
    client: reqwest::Client,
    url: Url,
    signer: Arc<Signer>,
    due: DueDelivery,
    probe: bool,
) -> Attempted {
    let at = now_ms();
    let started = Instant::now();
    let mut took = Duration::ZERO;
    let id = due.event.webhook_id();
    let result = match payload::render(&due.event, at) {
        Err(e) => AttemptResult::Failed {
            error: format!("cannot render the payload: {e}"),
        },
        Ok(body) => {
            let timestamp = at.unix_secs();
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
    Attempted {
        due,
        at,
        result,
        took,
        probe,
    }
}
