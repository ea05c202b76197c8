//! The daemon: opens the store, starts the workers, and stops them on SIGTERM/SIGINT within a bound.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::drain::Drainer;
use crate::store::{Access, Store};

/// Runs the daemon until `cancel` fires, then waits (bounded) for the workers to finish what they hold.
pub async fn serve(
    settings: &Settings,
    store: Store,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let drainer = Drainer::new(&settings.booking, store.clone(), cancel.clone())
        .context("cannot build the Booking.com HTTP client")?;
    tracker.spawn(drainer.run());
    tracker.close();

    cancel.cancelled().await;
    let grace = shutdown_grace(settings);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: finishing the batch in flight"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        // Safe anyway: a batch is confirmed only after it is committed, and an unconfirmed one is fetched again.
        tracing::warn!("workers did not stop within {grace:?}; exiting regardless");
    }
    Ok(())
}

/// Long enough for a commit and one confirm in flight; the unit's TimeoutStopSec must exceed it.
pub fn shutdown_grace(settings: &Settings) -> Duration {
    settings.booking.request_timeout * 2 + Duration::from_secs(5)
}

/// `ota-relay run`: the store is opened (and locked) before any worker starts.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    for warning in &settings.warnings {
        tracing::warn!("configuration: {warning}");
    }
    let path = settings.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&path, Access::Consumer))
        .await
        .context("store thread")??;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.path().display(),
        "ota-relay started"
    );
    let cancel = CancellationToken::new();
    let signals = listen_for_signals(cancel.clone())?;
    let result = serve(&settings, store, cancel).await;
    signals.close();
    tracing::info!("ota-relay stopped");
    result
}

/// SIGTERM and SIGINT cancel `cancel`; SIGHUP is logged (reload is handled by the ops layer when present).
fn listen_for_signals(cancel: CancellationToken) -> anyhow::Result<signal_hook_tokio::Handle> {
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => tracing::info!(
                    "SIGHUP received; configuration reload is not supported by this version"
                ),
                _ => {
                    let name = if signal == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    tracing::info!(signal = name, "shutdown requested");
                    cancel.cancel();
                }
            }
        }
    });
    Ok(handle)
}
