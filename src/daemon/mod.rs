//! The daemon: opens the store, starts the workers and listeners, and stops them on SIGTERM/SIGINT within a
//! bound. Its event loop waits for shutdown, a worker's fatal failure or a reload request, each handled by one
//! method.

mod api;
mod context;
pub mod notify;
mod receiving;
mod reload;
mod signals;
mod workers;

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use context::{Context, Fatal, Wake};
pub use workers::shutdown_grace;

use crate::config::Settings;
use crate::store::{Access, Store};
use receiving::Receiving;
use workers::Workers;

/// SIGHUP requests, and the handle that applies a new log level.
pub struct Reloads {
    pub requests: mpsc::UnboundedReceiver<()>,
    pub log: crate::telemetry::LogHandle,
}

/// `ota-relay run`: the store is opened (and locked) before any worker starts.
pub async fn run(settings: Settings, log: crate::telemetry::LogHandle) -> anyhow::Result<()> {
    for warning in &settings.warnings {
        tracing::warn!("configuration: {warning}");
    }
    // The handlers exist before the pid is published (in the store's lock file) and before the store is checked
    // (a second per million messages): a signal in that window is handled, never the default action that would
    // kill the daemon (and, for SIGHUP, count as a clean exit under systemd).
    let (cancel, wake) = (CancellationToken::new(), Wake::default());
    let (hup, requests) = mpsc::unbounded_channel();
    let signals = signals::listen_for_signals(cancel.clone(), wake.clone(), hup)?;
    let store = open_store(settings.store.path.clone()).await?;
    if cancel.is_cancelled() {
        tracing::info!("shutdown requested while the store was opened; stopping before any worker starts");
        signals.close();
        return Ok(());
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.path().display(),
        "ota-relay started"
    );
    let (cx, fatal) = Context::with_wake(store, cancel, wake);
    let result = serve(&settings, cx, fatal, Some(Reloads { requests, log })).await;
    signals.close();
    tracing::info!("ota-relay stopped");
    result
}

/// Runs the daemon on `cx` until its token fires (or a worker reports a fatal failure), then waits (bounded)
/// for the workers to finish what they hold.
pub async fn serve(
    settings: &Settings,
    cx: Context,
    fatal: mpsc::UnboundedReceiver<Fatal>,
    reloads: Option<Reloads>,
) -> anyhow::Result<()> {
    let listener = start_ops_listener(settings, &cx).await?;
    let receiving = Receiving::start(settings, &cx).await?;
    let senders = crate::reply::Senders::from_settings(settings, &cx.store, &cx.metrics)?;
    let api = api::start(settings, &cx, &senders).await?;
    let workers = Workers::start(settings, &cx, &senders)?;
    // The store is open and checked, every worker runs and the receiver listens.
    notify::ready(if settings.pull().is_some() {
        "started; first poll under way"
    } else {
        "started; receiving pushes"
    });
    let mut daemon = Daemon {
        running: settings.clone(),
        cx,
        workers,
        receiving,
        api,
        senders,
        failure: None,
    };
    daemon.event_loop(fatal, reloads).await;
    daemon.shut_down(listener).await
}

struct Daemon {
    running: Settings,
    cx: Context,
    workers: Workers,
    receiving: Option<Receiving>,
    api: Option<api::Listening>,
    /// The channels replies go through (shared by the API's checks and the reply worker).
    senders: crate::reply::Senders,
    /// Why the daemon stopped on its own: it exits 1 so that systemd starts it again.
    failure: Option<anyhow::Error>,
}

impl Daemon {
    async fn event_loop(&mut self, mut fatal: mpsc::UnboundedReceiver<Fatal>, mut reloads: Option<Reloads>) {
        let cancel = self.cx.cancel.clone();
        loop {
            let requested = async {
                match reloads.as_mut() {
                    Some(r) => r.requests.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(reason) = fatal.recv() => return self.handle_fatal(reason),
                Some(()) = requested => {
                    let log = &reloads.as_ref().expect("a request came from it").log;
                    if !self.handle_reload(log).await {
                        return;
                    }
                }
            }
        }
    }

    fn handle_fatal(&mut self, reason: Fatal) {
        self.failure = Some(reason.into());
        self.cx.cancel.cancel();
    }

    /// Restarts the workers with a changed configuration (the old generation first stops completely). False
    /// when shutdown began meanwhile.
    async fn handle_reload(&mut self, log: &crate::telemetry::LogHandle) -> bool {
        let receiving = &self.receiving;
        let receiver = |new: &Settings| match receiving {
            Some(receiving) => receiving.reload(new),
            None if new.pushes() => vec!["[receive] (a push source added starts listening at the next restart)"],
            None => Vec::new(),
        };
        let Some(new) = reload::reload(&self.running, log, receiver) else {
            return true;
        };
        tracing::info!("restarting the workers with the new configuration");
        if !self.workers.stop(shutdown_grace(&self.running), &self.cx).await {
            return false;
        }
        let senders = match crate::reply::Senders::from_settings(&new, &self.cx.store, &self.cx.metrics) {
            Ok(senders) => senders,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot build the reply senders; keeping the running ones");
                self.senders.clone()
            }
        };
        match Workers::start(&new, &self.cx, &senders) {
            Ok(started) => {
                self.workers = started;
                if let Some(api) = &self.api {
                    api.reload(&new, senders.routes());
                }
                self.senders = senders;
                self.running = new;
                tracing::info!("configuration reloaded and applied");
                notify::status("configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot apply the new configuration; keeping the running one");
                notify::status(&format!("configuration reload failed: {e:#}"));
                match Workers::start(&self.running, &self.cx, &self.senders) {
                    Ok(started) => self.workers = started,
                    Err(e) => {
                        self.failure = Some(e.context("cannot restart the workers with the running configuration"));
                        self.cx.cancel.cancel();
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn shut_down(self, listener: Option<JoinHandle<()>>) -> anyhow::Result<()> {
        self.cx.cancel.cancel();
        notify::stopping();
        let grace = shutdown_grace(&self.running);
        tracing::info!(
            grace_s = grace.as_secs(),
            "shutting down: finishing the batch, the deliveries in flight and a running job"
        );
        let receiving = self.receiving.map(Receiving::stop);
        let (_, ()) = tokio::join!(self.workers.stop(grace, &self.cx), async {
            if let Some(stopping) = receiving {
                stopping.await;
            }
        });
        if let Some(api) = self.api {
            let _ = api.server.await;
        }
        if let Some(task) = listener {
            let _ = task.await;
        }
        match self.failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// `[http] listen`: `/healthz` and `/metrics`. Bound here, so that a taken port fails start-up.
async fn start_ops_listener(settings: &Settings, cx: &Context) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(http) = &settings.http else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", http.listen))?;
    let bound = listener.local_addr().map_or(http.listen, |a| a);
    tracing::info!(listen = %bound, "serving /healthz and /metrics");
    let router = crate::web::ops::router(
        cx.store.path().to_owned(),
        cx.metrics.clone(),
        crate::ops::status::Thresholds::default()
            .fitted_to(settings.pull())
            .with_reconcile_window(settings.replies.reconcile_window),
    );
    let limits = crate::web::Limits::default();
    Ok(Some(tokio::spawn(crate::web::serve(
        listener,
        router,
        cx.cancel.clone(),
        "ops",
        limits,
    ))))
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
        notify::extend_start(3 * EXTEND_EVERY, &status);
        tokio::select! {
            opened = &mut open => return Ok(opened.context("store thread")??),
            _ = tokio::time::sleep(EXTEND_EVERY) => {}
        }
    }
}
