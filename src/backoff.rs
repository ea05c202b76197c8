//! Exponential backoff for the loops that wait after a failure (the drain, the forwarder's outcome commits).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential backoff with jitter (backon), capped; restarted after every success.
pub(crate) struct Backoff {
    builder: ExponentialBuilder,
    current: Option<ExponentialBackoff>,
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            builder: ExponentialBuilder::default()
                .with_min_delay(initial)
                .with_max_delay(max)
                .with_jitter()
                .without_max_times(),
            current: None,
            max,
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let builder = self.builder;
        let delays = self.current.get_or_insert_with(|| builder.build());
        delays.next().unwrap_or(self.max).min(self.max)
    }

    pub(crate) fn reset(&mut self) {
        self.current = None;
    }
}
