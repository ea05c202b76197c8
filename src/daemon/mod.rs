//! The daemon: opens the store, starts the workers, and stops them on SIGTERM/SIGINT within a bound.

pub mod notify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::booking::drain::Drainer;
use crate::config::Settings;
use crate::forward::Forwarder;
use crate::jobs::JobKind;
use crate::metrics::Metrics;
use crate::store::{Access, Store};

/// What wakes the delivery worker: new messages committed by the drain loop, and an operator command (SIGUSR1),
/// which also sends a probe at once when the PMS counts as failing.
#[derive(Clone, Default)]
pub struct Wake {
    pub commits: Arc<Notify>,
    pub operator: Arc<Notify>,
}

/// SIGHUP requests, and the handle that applies a new log level.
pub struct Reloads {
    pub requests: tokio::sync::mpsc::UnboundedReceiver<()>,
    pub log: crate::telemetry::LogHandle,
}

/// Runs the daemon until `cancel` fires, then waits (bounded) for the workers to finish what they hold.
/// `wake` wakes the delivery worker (new messages are committed, or an operator changed the outbox).
pub async fn serve(
    settings: &Settings,
    store: Store,
    cancel: CancellationToken,
    wake: Wake,
    mut reloads: Option<Reloads>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let listener_task = match &settings.http {
        Some(http) => {
            let listener = tokio::net::TcpListener::bind(http.listen)
                .await
                .with_context(|| format!("http.listen: cannot listen on {}", http.listen))?;
            let bound = listener.local_addr().map_or(http.listen, |a| a);
            tracing::info!(listen = %bound, "serving /healthz and /metrics");
            let router = crate::web::ops::router(
                store.path().to_owned(),
                metrics.clone(),
                crate::ops::status::Thresholds::default().fitted_to(&settings.booking),
            );
            Some(tokio::spawn(crate::web::serve(listener, router, cancel.clone(), "ops")))
        }
        None => None,
    };
    let mut running = settings.clone();
    // A worker's failure that only a restart fixes: the daemon stops and exits 1, and systemd starts it again.
    let (fatal, mut fatal_reports) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut failure = None;
    let mut workers = Workers::start(&running, &store, &wake, &metrics, &fatal, &cancel)?;
    // The store is open and checked, and every worker runs.
    crate::daemon::notify::ready("started; first poll under way");

    loop {
        let requested = async {
            match reloads.as_mut() {
                Some(r) => r.requests.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(reason) = fatal_reports.recv() => {
                failure = Some(reason);
                cancel.cancel();
                break;
            }
            Some(()) = requested => {
                let log = &reloads.as_ref().expect("a request came from it").log;
                let Some(new) = reload(&running, log) else { continue };
                tracing::info!("restarting the workers with the new configuration");
                if !workers.stop(shutdown_grace(&running), &cancel).await {
                    break;
                }
                match Workers::start(&new, &store, &wake, &metrics, &fatal, &cancel) {
                    Ok(started) => {
                        workers = started;
                        running = new;
                        tracing::info!("configuration reloaded and applied");
                        crate::daemon::notify::status("configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot apply the new configuration; keeping the running one");
                        workers = Workers::start(&running, &store, &wake, &metrics, &fatal, &cancel)?;
                    }
                }
            }
        }
    }
    crate::daemon::notify::stopping();
    let grace = shutdown_grace(&running);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: finishing the batch, the deliveries in flight and a running job"
    );
    workers.stop(grace, &cancel).await;
    if let Some(task) = listener_task {
        let _ = task.await;
    }
    match failure {
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}

/// One generation of workers (drain loop, delivery worker, job schedules) under a child token, so that a reload
/// can stop and restart them while the store, the listener and the metrics stay.
struct Workers {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Workers {
    fn start(
        settings: &Settings,
        store: &Store,
        wake: &Wake,
        metrics: &Metrics,
        fatal: &tokio::sync::mpsc::UnboundedSender<String>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Workers> {
        let token = cancel.child_token();
        let tracker = TaskTracker::new();
        let drainer = Drainer::new(&settings.booking, store.clone(), token.clone())
            .context("cannot build the Booking.com HTTP client")?
            .notify_on_commit(wake.commits.clone())
            .report_fatal_to(fatal.clone())
            .with_metrics(metrics.clone());
        let forwarder = match &settings.forward {
            Some(forward) => Some(
                Forwarder::new(forward, store.clone(), wake.commits.clone(), token.clone())?
                    .woken_by_operator(wake.operator.clone())
                    .with_metrics(metrics.clone()),
            ),
            None => {
                tracing::info!("[forward] is not configured: messages are stored and wait in the outbox");
                None
            }
        };
        tracker.spawn(drainer.run());
        if let Some(forwarder) = forwarder {
            tracker.spawn(forwarder.run());
        }
        spawn_jobs(&tracker, settings, store, &token, metrics);
        tracker.close();
        Ok(Workers { token, tracker })
    }

    /// Stops this generation. Waits for it to finish: a second drain loop must never run beside the first (two
    /// consumers confirming by count confirm each other's messages). During shutdown (`cancel` fired) the wait is
    /// bounded by `grace`. False when shutdown began while waiting for a reload.
    async fn stop(&self, grace: Duration, cancel: &CancellationToken) -> bool {
        let shutting_down = cancel.is_cancelled();
        self.token.cancel();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_ok() {
            return true;
        }
        if shutting_down {
            // Safe anyway: a batch is confirmed only after it is committed, and an unconfirmed one is fetched
            // again; an unrecorded delivery is attempted again.
            tracing::warn!("workers did not stop within {grace:?}; exiting regardless");
            return false;
        }
        tracing::warn!("workers are still finishing after {grace:?}; the new configuration waits for them");
        tokio::select! {
            _ = self.tracker.wait() => !cancel.is_cancelled(),
            _ = cancel.cancelled() => false,
        }
    }
}

/// SIGHUP: re-reads the file. An invalid file changes nothing; the log level applies at once; the store path,
/// the listen address and the log format need a restart and are kept. Returns the settings to restart the
/// workers with, when anything they use changed.
fn reload(running: &Settings, log: &crate::telemetry::LogHandle) -> Option<Settings> {
    crate::daemon::notify::status("reloading configuration");
    let mut new = match crate::config::load(&running.source) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
            return None;
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
    let mut restart_needed = Vec::new();
    if new.store.path != running.store.path {
        restart_needed.push("store.path");
        new.store = running.store.clone();
    }
    if new.http.as_ref().map(|h| h.listen) != running.http.as_ref().map(|h| h.listen) {
        restart_needed.push("http.listen");
        new.http = running.http;
    }
    if new.log.format != running.log.format {
        restart_needed.push("log.format");
        new.log.format = running.log.format;
    }
    if !restart_needed.is_empty() {
        tracing::warn!(
            keys = %restart_needed.join(", "),
            "these changes need a restart and are not applied (`systemctl restart ota-relay`)"
        );
    }
    let mut same_level = new.clone();
    same_level.log.level = running.log.level.clone();
    if same_level == *running {
        if restart_needed.is_empty() {
            tracing::info!("configuration reloaded");
            crate::daemon::notify::status("configuration reloaded");
        }
        return None;
    }
    Some(new)
}

/// One task per scheduled job; a run in progress is waited for like the workers.
fn spawn_jobs(
    tracker: &TaskTracker,
    settings: &Settings,
    store: &Store,
    cancel: &CancellationToken,
    metrics: &Metrics,
) {
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
                    metrics.clone(),
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
    let store = open_store(settings.store.path.clone()).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.path().display(),
        "ota-relay started"
    );
    let cancel = CancellationToken::new();
    let wake = Wake::default();
    let (hup, requests) = tokio::sync::mpsc::unbounded_channel();
    let signals = listen_for_signals(cancel.clone(), wake.operator.clone(), hup)?;
    let result = serve(&settings, store, cancel, wake, Some(Reloads { requests, log })).await;
    signals.close();
    tracing::info!("ota-relay stopped");
    result
}

/// Opening checks the whole file (`quick_check`) and may migrate it: about a second per million messages. Under
/// systemd the start-up timeout (90 s by default) is extended while that runs, so a large store is not killed
/// half-checked at every start, over and over.
async fn open_store(path: std::path::PathBuf) -> anyhow::Result<Store> {
    const EXTEND_EVERY: Duration = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut open = tokio::task::spawn_blocking(move || Store::open(&path, Access::Consumer));
    loop {
        let status = format!("checking the store ({} s)", started.elapsed().as_secs());
        crate::daemon::notify::extend_start(3 * EXTEND_EVERY, &status);
        tokio::select! {
            opened = &mut open => return Ok(opened.context("store thread")??),
            _ = tokio::time::sleep(EXTEND_EVERY) => {}
        }
    }
}

/// SIGTERM and SIGINT cancel `cancel`; SIGUSR1 (sent by operator commands) wakes the delivery worker; SIGHUP
/// asks `serve` to reload.
fn listen_for_signals(
    cancel: CancellationToken,
    operator: Arc<Notify>,
    hup: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<signal_hook_tokio::Handle> {
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => {
                    let _ = hup.send(());
                }
                SIGUSR1 => {
                    tracing::debug!("SIGUSR1: looking at the outbox");
                    operator.notify_one();
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
