//! A fake's state behind a lock, with a change signal, so that tests wait for a state rather than for time.

use std::sync::Mutex;

use tokio::sync::watch;

pub(crate) struct Observed<S> {
    state: Mutex<S>,
    changed: watch::Sender<u64>,
}

impl<S> Observed<S> {
    pub(crate) fn new(state: S) -> Observed<S> {
        Observed {
            state: Mutex::new(state),
            changed: watch::channel(0).0,
        }
    }

    /// Changes the state and wakes every waiter.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let result = f(&mut self.state.lock().expect("fake state"));
        self.changed.send_modify(|v| *v += 1);
        result
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.state.lock().expect("fake state"))
    }

    /// Waits until `predicate` holds; re-checked after every change of state (no polling).
    pub(crate) async fn wait_for(&self, mut predicate: impl FnMut(&S) -> bool) {
        let mut changes = self.changed.subscribe();
        loop {
            if self.read(&mut predicate) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}
