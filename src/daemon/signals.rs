//! Signals: SIGTERM and SIGINT stop the daemon, SIGHUP reloads the configuration, SIGUSR1 (sent by operator
//! commands) wakes the delivery worker and the reply worker.

use anyhow::Context as _;
use futures_util::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use tokio_util::sync::CancellationToken;

/// SIGTERM and SIGINT cancel `cancel`; SIGUSR1 (sent by operator commands) wakes the delivery worker and the
/// reply worker; SIGHUP asks `serve` to reload.
pub(super) fn listen_for_signals(
    cancel: CancellationToken,
    wake: super::Wake,
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
                    tracing::debug!("SIGUSR1: looking at the outboxes");
                    wake.operator.notify_one();
                    wake.replies.notify_one();
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
