//! Whether the PMS is up: after a few failures in a row it counts as failing, and one probe at a time goes at
//! the backoff pace until one succeeds.

use std::time::Instant;

use super::attempt::{AttemptResult, retry_delay};
use crate::config::RetryPolicy;

/// Consecutive failures after which the PMS counts as failing (probe mode).
const FAILING_AFTER: u32 = 3;

/// Whether the PMS is up, and when the next probe may go while it is not.
pub(super) struct PmsHealth {
    consecutive_failures: u32,
    failing_since: Option<Instant>,
    probes: u32,
    pub(super) next_probe: Instant,
}

impl PmsHealth {
    pub(super) fn new() -> PmsHealth {
        PmsHealth {
            consecutive_failures: 0,
            failing_since: None,
            probes: 0,
            next_probe: Instant::now(),
        }
    }

    pub(super) fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    pub(super) fn can_launch(&self, in_flight: usize, concurrency: usize, now: Instant) -> bool {
        if self.failing() {
            in_flight == 0 && now >= self.next_probe
        } else {
            in_flight < concurrency
        }
    }

    /// Records one attempt's result; true when it ends a failing spell (the PMS is back).
    pub(super) fn record(&mut self, result: &AttemptResult, policy: &RetryPolicy) -> bool {
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
