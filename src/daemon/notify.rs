//! systemd's notification protocol (`Type=notify`): READY once the workers run, a one-line STATUS, STOPPING, and
//! WATCHDOG=1 from the drain loop (or, without the pull, from the receiver). Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

use sd_notify::NotifyState;

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Start-up is still making progress: systemd waits `by` more before giving up on it (never less than its own
/// `TimeoutStartSec`).
pub fn extend_start(by: std::time::Duration, status: &str) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec), NotifyState::Status(status)]);
}

/// The drain loop is alive: sent after every iteration and every slice of a wait.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping: a third of `WatchdogSec`, when systemd watches this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled().map(|every| (every / 3).max(std::time::Duration::from_millis(100)))
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}
