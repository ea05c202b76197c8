//! The daemon: opens the store, starts the workers, and stops them on SIGTERM/SIGINT within a bound.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::drain::Drainer;
use crate::forward::Forwarder;
use crate::jobs::JobKind;
use crate::store::{Access, Store};

/// Runs the daemon until `cancel` fires, then waits (bounded) for the workers to finish what they hold.
/// `wake` wakes the delivery worker (new messages are committed, or an operator replayed dead letters).
pub async fn serve(
    settings: &Settings,
    store: Store,
    cancel: CancellationToken,
    wake: Arc<Notify>,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let drainer = Drainer::new(&settings.booking, store.clone(), cancel.clone())
        .context("cannot build the Booking.com HTTP client")?
        .notify_on_commit(wake.clone());
    tracker.spawn(drainer.run());
    match &settings.forward {
        Some(forward) => {
            let forwarder = Forwarder::new(forward, store.clone(), wake, cancel.clone())?;
            tracker.spawn(forwarder.run());
        }
        None => tracing::info!("[forward] is not configured: messages are stored and wait in the outbox"),
    }
    spawn_jobs(&tracker, settings, &store, &cancel);
    tracker.close();
    // The store is open and checked, and every worker runs.
    crate::ops::notify::ready("started; first poll under way");

    cancel.cancelled().await;
    crate::ops::notify::stopping();
    let grace = shutdown_grace(settings);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: finishing the batch and the deliveries in flight"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        // Safe anyway: a batch is confirmed only after it is committed, and an unconfirmed one is fetched again;
        // an unrecorded delivery is attempted again.
        tracing::warn!("workers did not stop within {grace:?}; exiting regardless");
    }
    Ok(())
}

/// SIGHUP: re-reads the file. An invalid file changes nothing; the log level applies at once; other changes are
/// reported as needing a restart (live re-application of the workers' settings is not implemented yet).
fn reload(running: &Settings, log: &crate::telemetry::LogHandle) {
    crate::ops::notify::status("reloading configuration");
    let new = match crate::config::load(&running.source) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
            return;
        }
    };
    for warning in &new.warnings {
        tracing::warn!("configuration: {warning}");
    }
    if new.log.level != running.log.level {
        match log.set_level(&new.log.level) {
            Ok(()) => tracing::info!(level = %new.log.level, "log level changed"),
            Err(e) => tracing::error!(error = %e, "cannot apply log.level"),
        }
    }
    let mut same_log = new.clone();
    same_log.log = running.log.clone();
    // The rendering masks secrets, so they are compared apart.
    if same_log.render_masked() != running.render_masked() || secret_values(&new) != secret_values(running) {
        tracing::warn!(
            "configuration changed beyond log.level; restart ota-relay to apply it (`systemctl restart ota-relay`)"
        );
    } else {
        tracing::info!("configuration reloaded");
    }
}

fn secret_values(settings: &Settings) -> Vec<&str> {
    let booking = match &settings.booking.auth {
        crate::config::BookingAuth::Basic { password, .. } => password,
        crate::config::BookingAuth::Token { client_secret, .. } => client_secret,
    };
    let forward = settings.forward.iter().flat_map(|f| f.secrets.iter());
    std::iter::once(booking).chain(forward).map(|s| s.expose()).collect()
}

/// One task per scheduled job; a run in progress is waited for at shutdown like the workers.
fn spawn_jobs(tracker: &TaskTracker, settings: &Settings, store: &Store, cancel: &CancellationToken) {
    let jobs = &settings.jobs;
    for (kind, schedule) in [
        (JobKind::DuplicateFilter, &jobs.duplicate_filter),
        (JobKind::Retention, &jobs.retention),
        (JobKind::Maintenance, &jobs.maintenance),
    ] {
        match schedule {
            Some(schedule) => {
                tracker.spawn(crate::jobs::run_schedule(
                    store.clone(),
                    kind,
                    schedule.clone(),
                    jobs.timezone,
                    settings.retention,
                    cancel.clone(),
                ));
            }
            None => tracing::info!(job = kind.name(), "job is off"),
        }
    }
}

/// Long enough for a commit and one confirm in flight; the unit's TimeoutStopSec must exceed it.
pub fn shutdown_grace(settings: &Settings) -> Duration {
    let drain = settings.booking.request_timeout * 2 + Duration::from_secs(5);
    let forward = settings
        .forward
        .as_ref()
        .map_or(Duration::ZERO, |f| f.request_timeout + Duration::from_secs(5));
    drain.max(forward)
}

/// `ota-relay run`: the store is opened (and locked) before any worker starts.
pub async fn run(settings: Settings, log: crate::telemetry::LogHandle) -> anyhow::Result<()> {
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
    let wake = Arc::new(Notify::new());
    let signals = listen_for_signals(cancel.clone(), wake.clone(), settings.clone(), log)?;
    let result = serve(&settings, store, cancel, wake).await;
    signals.close();
    tracing::info!("ota-relay stopped");
    result
}

/// SIGTERM and SIGINT cancel `cancel`; SIGUSR1 (sent by operator commands) wakes the delivery worker.
fn listen_for_signals(
    cancel: CancellationToken,
    wake: Arc<Notify>,
    running: Settings,
    log: crate::telemetry::LogHandle,
) -> anyhow::Result<signal_hook_tokio::Handle> {
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => reload(&running, &log),
                SIGUSR1 => {
                    tracing::debug!("SIGUSR1: looking at the outbox");
                    wake.notify_one();
                }
                _ => {
                    let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
                    tracing::info!(signal = name, "shutdown requested");
                    cancel.cancel();
                }
            }
        }
    });
    Ok(handle)
}
