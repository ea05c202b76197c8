//! SIGHUP: the configuration is read again and applied where it can be without a restart.

use crate::config::Settings;

/// SIGHUP: re-reads the file. An invalid file changes nothing; the log level applies at once, and `receiver`
/// applies the push credentials and TLS files (returning the keys it cannot apply); the store path, the listen
/// addresses and the log format need a restart and are kept. Returns the settings to restart the workers with,
/// when anything they use changed.
pub(super) fn reload(
    running: &Settings,
    log: &crate::telemetry::LogHandle,
    receiver: impl FnOnce(&Settings) -> Vec<&'static str>,
) -> Option<Settings> {
    super::notify::status("reloading configuration");
    let mut new = match crate::config::load(&running.source) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
            super::notify::status(&format!("configuration reload failed: {e}"));
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
    let mut restart_needed = receiver(&new);
    if new.receive.as_ref().map(|r| r.listen) != running.receive.as_ref().map(|r| r.listen) {
        new.receive = running.receive.clone();
    }
    if new.store.path != running.store.path {
        restart_needed.push("store.path");
        new.store = running.store.clone();
    }
    if new.http.as_ref().map(|h| h.listen) != running.http.as_ref().map(|h| h.listen) {
        restart_needed.push("http.listen");
        new.http = running.http;
    }
    if new.api.as_ref().map(|a| a.listen) != running.api.as_ref().map(|a| a.listen) {
        restart_needed.push("api.listen");
        match (&mut new.api, &running.api) {
            (Some(api), Some(old)) => api.listen = old.listen,
            (new_api, old) => *new_api = old.clone(),
        }
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
    // The receiver applied its part itself; the workers do not use it.
    same_level.receive = running.receive.clone();
    same_level.staah = running.staah.clone();
    same_level.channex = running.channex.clone();
    if let (Some(new), Some(running)) = (&mut same_level.booking, &running.booking) {
        new.notifications = running.notifications.clone();
    }
    if same_level == *running {
        if restart_needed.is_empty() {
            tracing::info!("configuration reloaded");
            super::notify::status("configuration reloaded");
        } else {
            super::notify::status(&format!(
                "configuration reloaded; a restart is needed for {}",
                restart_needed.join(", ")
            ));
        }
        return None;
    }
    Some(new)
}
