//! Waking the running daemon after an operator command changed the store.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Woken {
    /// The daemon holding the store's lock was sent SIGUSR1.
    Daemon(u32),
    /// No daemon holds the store; the change takes effect when one starts.
    NoDaemon,
    /// A daemon runs but could not be signalled (another user?); it rescans the outbox within 30 s anyway.
    NotPermitted(u32),
}

/// Sends SIGUSR1 to the daemon consuming the store at `store_path`, if any.
pub fn wake_daemon(store_path: &Path) -> Woken {
    let Some(pid) = crate::store::consumer_pid(store_path) else {
        return Woken::NoDaemon;
    };
    // SAFETY: kill(2) with a pid read from the lock file that the daemon holds while it runs (checked above),
    // so the pid cannot have been reused by an unrelated process.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) };
    if rc == 0 {
        Woken::Daemon(pid)
    } else {
        Woken::NotPermitted(pid)
    }
}

impl std::fmt::Display for Woken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Woken::Daemon(pid) => write!(f, "the running daemon (pid {pid}) picks it up now"),
            Woken::NoDaemon => write!(f, "no daemon is running on this store; it takes effect when one starts"),
            Woken::NotPermitted(pid) => write!(
                f,
                "could not signal the daemon (pid {pid}); it picks the change up within 30 s"
            ),
        }
    }
}
