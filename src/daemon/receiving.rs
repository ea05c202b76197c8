//! The receiver's lifetime in the daemon: its socket (bound, or taken from systemd) and its group commit outlive
//! every reload; SIGHUP re-reads its credentials and TLS files without closing the socket. At shutdown the
//! listener stops first, the requests it holds are answered (their commits still run), and the committer ends
//! last, once nothing can submit to it.

use std::os::fd::FromRawFd as _;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Context, notify};
use crate::config::{Listen, ReceiveSettings, Settings};
use crate::store::Ingest;
use crate::web::receive::{self, Receiver};
use crate::web::tls::{self, Tls};

pub(super) struct Receiving {
    receiver: Receiver,
    listen: Listen,
    tls: Option<Tls>,
    server: JoinHandle<()>,
    committer: JoinHandle<()>,
    heartbeat: Option<JoinHandle<()>>,
    stop_server: CancellationToken,
}

impl Receiving {
    /// Binds `[receive] listen` when any source pushes (so a taken port fails start-up).
    pub(super) async fn start(settings: &Settings, cx: &Context) -> anyhow::Result<Option<Receiving>> {
        if !settings.pushes() {
            return Ok(None);
        }
        let receive = settings
            .receive
            .as_ref()
            .context("[receive] is required with a push source")?;
        let listener = bind(receive).await?;
        let tls = match tls::files(receive) {
            Some((cert, key)) => Some(Tls::load(&cert, &key)?),
            None => None,
        };
        let (ingest, committer) = Ingest::start(cx.store.clone(), cx.wake.commits.clone());
        let receiver = Receiver::new(settings, ingest, cx.metrics.clone(), cx.fatal.clone())?;
        let bound = listener.local_addr().ok();
        tracing::info!(
            listen = %bound.map_or_else(|| "systemd socket".to_owned(), |a| a.to_string()),
            tls = tls.is_some(),
            sources = %push_sources(settings),
            "receiving pushes"
        );
        let stop_server = CancellationToken::new();
        let server = tokio::spawn(crate::web::serve_tls(
            listener,
            receive::router(receiver.clone()),
            stop_server.clone(),
            "receive",
            receive_limits(),
            tls.clone(),
        ));
        // Without the pull, the drain loop sends no watchdog pings; the receiver does, while its store answers.
        let heartbeat = match (settings.pull(), notify::watchdog_interval()) {
            (None, Some(every)) => Some(tokio::spawn(heartbeat(cx.clone(), every))),
            _ => None,
        };
        Ok(Some(Receiving {
            receiver,
            listen: receive.listen,
            tls,
            server,
            committer,
            heartbeat,
            stop_server,
        }))
    }

    /// SIGHUP: the credentials and TLS files as they are now. What it cannot apply it names.
    pub(super) fn reload(&self, new: &Settings) -> Vec<&'static str> {
        let mut restart_needed = Vec::new();
        let Some(receive) = new.receive.as_ref().filter(|_| new.pushes()) else {
            return vec!["[receive] (the receiver stops only with a restart)"];
        };
        if receive.listen != self.listen {
            restart_needed.push("receive.listen");
        }
        if let Err(e) = self.receiver.reload(new) {
            tracing::error!(error = %format!("{e:#}"), "cannot apply the new push credentials; keeping the running ones");
        }
        match (&self.tls, tls::files(receive)) {
            (Some(tls), Some((cert, key))) => match tls.reload(&cert, &key) {
                Ok(()) => tracing::info!("TLS certificate re-read"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the TLS files; serving the running certificate")
                }
            },
            (None, None) => {}
            _ => restart_needed.push("receive.tls_cert_file"),
        }
        restart_needed
    }

    /// Stops taking requests, answers those in flight, then lets the committer finish.
    pub(super) async fn stop(self) {
        self.stop_server.cancel();
        if let Some(heartbeat) = self.heartbeat {
            heartbeat.abort();
        }
        let _ = self.server.await;
        drop(self.receiver);
        let _ = self.committer.await;
    }
}

/// A push-only daemon: a ping whenever the store answers within the interval (a wedged store, or a runtime that
/// no longer runs tasks, stops them, and systemd restarts the daemon).
async fn heartbeat(cx: Context, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cx.cancel.cancelled() => return,
        }
        if let Ok(Ok(())) = tokio::time::timeout(every, cx.store.call(|_| Ok(()))).await {
            notify::watchdog();
        }
    }
}

fn push_sources(settings: &Settings) -> String {
    let mut names = Vec::new();
    if settings.notifications().is_some() {
        names.push("booking_notification");
    }
    if settings.staah.is_some() {
        names.push("staah");
    }
    if settings.channex.is_some() {
        names.push("channex");
    }
    names.join(", ")
}

/// At least 256 connections at once; beyond the cap new ones wait in the backlog.
fn receive_limits() -> crate::web::Limits {
    crate::web::Limits::default()
}

async fn bind(receive: &ReceiveSettings) -> anyhow::Result<tokio::net::TcpListener> {
    match receive.listen {
        Listen::Addr(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("receive.listen: cannot listen on {addr}")),
        Listen::Systemd => {
            let mut fds = sd_notify::listen_fds().context("receive.listen = \"systemd\": LISTEN_FDS")?;
            let fd = match (fds.len(), fds.next()) {
                (1, Some(fd)) => fd,
                (0, _) => anyhow::bail!(
                    "receive.listen = \"systemd\", but systemd passed no socket: start the daemon through \
                     ota-relay.socket (systemctl start ota-relay.socket), or set receive.listen to an address"
                ),
                (n, _) => {
                    anyhow::bail!("receive.listen = \"systemd\": systemd passed {n} sockets; ota-relay.socket has one")
                }
            };
            // SAFETY: systemd passes this descriptor to this process (LISTEN_PID is checked) for it to own; nothing
            // else in the process uses it.
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            listener
                .set_nonblocking(true)
                .context("receive.listen = \"systemd\": the passed socket")?;
            tokio::net::TcpListener::from_std(listener)
                .context("receive.listen = \"systemd\": the passed socket is not a listening TCP socket")
        }
    }
}
