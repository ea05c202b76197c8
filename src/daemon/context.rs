//! What every worker and server of one daemon shares, handed to each as one value.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// The store, the metrics, the wake-ups between workers, the channel for failures that need a restart, and
/// the cancellation of the worker's generation.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub metrics: Metrics,
    pub wake: Wake,
    pub fatal: mpsc::UnboundedSender<Fatal>,
    pub cancel: CancellationToken,
}

/// What wakes the workers: new messages or events committed, and an operator command (SIGUSR1), which also
/// sends a probe at once when the PMS counts as failing, wake the delivery worker; a reply wakes the reply worker.
#[derive(Clone, Default)]
pub struct Wake {
    pub commits: Arc<Notify>,
    pub operator: Arc<Notify>,
    /// A reply committed (by the API, or an operator's resend): the reply worker looks at once.
    pub replies: Arc<Notify>,
}

/// A worker's failure that waiting cannot fix but a restart does: the daemon stops and exits 1, and systemd
/// starts it again.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The store file was deleted or replaced underneath (a restore by `mv`).
    #[error(transparent)]
    StoreReplaced(StoreError),
}

impl Context {
    /// A context with fresh metrics and wake-ups; the receiver gets the fatal failures.
    pub fn new(store: Store, cancel: CancellationToken) -> (Context, mpsc::UnboundedReceiver<Fatal>) {
        Context::with_wake(store, cancel, Wake::default())
    }

    /// A context with wake-ups made before it (the signal handlers hold them from the start).
    pub fn with_wake(store: Store, cancel: CancellationToken, wake: Wake) -> (Context, mpsc::UnboundedReceiver<Fatal>) {
        let (fatal, reports) = mpsc::unbounded_channel();
        let cx = Context {
            store,
            metrics: Metrics::new(),
            wake,
            fatal,
            cancel,
        };
        (cx, reports)
    }

    /// The same context under a child cancellation token: one generation of workers, stopped on its own.
    pub fn child(&self) -> Context {
        Context {
            cancel: self.cancel.child_token(),
            ..self.clone()
        }
    }

    /// Reports a failure that needs a restart (nobody listening, e.g. in a test: the worker stops regardless).
    pub fn report_fatal(&self, fatal: Fatal) {
        let _ = self.fatal.send(fatal);
    }
}
