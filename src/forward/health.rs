//! Whether the PMS is up: after a few failures in a row it counts as failing, and one probe at a time goes at
//! the backoff pace until one succeeds.
//!
//! Only probes move the pace: the requests that were already in flight when the PMS turned failing fail too,
//! and counting each of them as a probe doubled the wait a dozen times over (a two-second outage stopped
//! forwarding for ten minutes). The first probe goes `initial_interval` after the PMS turned failing.

use std::time::Instant;

use super::attempt::{AttemptResult, retry_delay};
use crate::config::RetryPolicy;

/// Consecutive failures after which the PMS counts as failing (probe mode).
pub const FAILING_AFTER: u32 = 3;

/// Whether the PMS is up, and when the next probe may go while it is not.
#[derive(Debug)]
pub struct PmsHealth {
    consecutive_failures: u32,
    failing_since: Option<Instant>,
    probes: u32,
    pub next_probe: Instant,
}

impl Default for PmsHealth {
    fn default() -> PmsHealth {
        PmsHealth::new()
    }
}

impl PmsHealth {
    pub fn new() -> PmsHealth {
        PmsHealth {
            consecutive_failures: 0,
            failing_since: None,
            probes: 0,
            next_probe: Instant::now(),
        }
    }

    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    pub fn can_launch(&self, in_flight: usize, concurrency: usize, now: Instant) -> bool {
        if self.failing() {
            in_flight == 0 && now >= self.next_probe
        } else {
            in_flight < concurrency
        }
    }

    /// Records one attempt's result at `now` (`probe`: it was sent as a probe); true when it ends a failing spell
    /// (the PMS is back). `jitter` in [0, 1) spreads the probe times.
    pub fn record(
        &mut self,
        result: &AttemptResult,
        probe: bool,
        policy: &RetryPolicy,
        now: Instant,
        jitter: f64,
    ) -> bool {
        if result.pms_is_up() {
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
        if !self.failing() {
            if self.consecutive_failures >= FAILING_AFTER {
                self.failing_since = Some(now);
                self.probes = 0;
                self.next_probe = now + retry_delay(policy, 1, jitter);
                tracing::error!(
                    consecutive_failures = self.consecutive_failures,
                    "PMS webhook failing; sending one probe at a time until it answers"
                );
            }
        } else if probe {
            self.probes += 1;
            self.next_probe = now + retry_delay(policy, self.probes + 1, jitter);
        }
        false
    }
}
