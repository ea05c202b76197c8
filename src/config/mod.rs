//! The TOML configuration, deserialized straight into validated settings: one file per section, each value
//! checked by its field type as it is read ([`value`]), each section's cross-key rules in its `finish`, and
//! every secret resolved by one rule ([`secret`]).
//!
//! Key names are a contract with operators and outside checks; every error names the file, the key and (where
//! the value was written) the line.

mod api;
mod booking;
mod channex;
mod forward;
mod http;
mod jobs;
mod log;
mod receive;
mod render;
mod replies;
mod retention;
mod secret;
mod staah;
mod store;
pub mod value;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use api::{ApiSettings, ApiToken};
pub use booking::{
    BookingAuth, BookingSettings, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, ENV_CLIENT_SECRET, ENV_PASSWORD, NoCredentials,
    NotificationSettings,
};
pub use channex::ChannexSettings;
pub use forward::{ENV_SECRET as ENV_FORWARD_SECRET, ForwardSettings, RetryPolicy};
pub use http::HttpSettings;
pub use jobs::{JobsSettings, Schedule};
pub use log::{LogFormat, LogSettings};
pub use receive::{Listen, ReceiveSettings};
pub use replies::RepliesSettings;
pub use retention::RetentionSettings;
pub use secret::{Secret, SecretSource};
pub use staah::StaahSettings;
pub use store::{DEFAULT_STORE_PATH, StoreSettings};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ota-relay/ota-relay.toml";
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Everything `ota-relay run` needs, validated.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(default)]
    pub store: StoreSettings,
    /// Booking.com: the pull (`pull = true`), its notifications, or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<BookingSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staah: Option<StaahSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channex: Option<ChannexSettings>,
    /// The HTTP listener for every push; required when a push source is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<ReceiveSettings>,
    #[serde(default)]
    pub log: LogSettings,
    /// Absent: nothing is sent; deliveries wait in the outbox until it is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardSettings>,
    #[serde(default)]
    pub jobs: JobsSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Absent: no health or metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
    /// The Channex-compatible API for the PMS; absent: no API listener (and no replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSettings>,
    #[serde(default)]
    pub replies: RepliesSettings,
    /// Legal but suspicious choices, reported by `check-config` and logged at start.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Settings {
    /// Settings built in code (the demo): every optional section absent, jobs off, nothing ever expires.
    pub fn built_in(store: PathBuf, booking: BookingSettings) -> Settings {
        Settings {
            source: "(built in)".into(),
            store: StoreSettings { path: store },
            booking: Some(booking),
            staah: None,
            channex: None,
            receive: None,
            log: LogSettings::default(),
            forward: None,
            jobs: JobsSettings::off(),
            retention: RetentionSettings::FOREVER,
            http: None,
            api: None,
            replies: RepliesSettings::default(),
            warnings: Vec::new(),
        }
    }

    /// The Booking.com queue drain, when it runs.
    pub fn pull(&self) -> Option<&BookingSettings> {
        self.booking.as_ref().filter(|b| b.pull)
    }

    /// `[booking.notifications]`, when Booking.com pushes.
    pub fn notifications(&self) -> Option<&NotificationSettings> {
        self.booking.as_ref().and_then(|b| b.notifications.as_ref())
    }

    /// Whether any source pushes (and so the receiver listens).
    pub fn pushes(&self) -> bool {
        self.notifications().is_some() || self.staah.is_some() || self.channex.is_some()
    }

    fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        self.store.finish(cx)?;
        if let Some(booking) = &mut self.booking {
            booking.finish(cx)?;
        }
        if let Some(staah) = &mut self.staah {
            staah.finish(cx)?;
        }
        if let Some(channex) = &mut self.channex {
            channex.finish(cx)?;
        }
        if let Some(receive) = &mut self.receive {
            receive.finish(cx)?;
        }
        if self.pull().is_none() && !self.pushes() {
            let key = if self.booking.is_some() {
                "booking.pull"
            } else {
                "(top level)"
            };
            return Err(cx.invalid(
                key,
                "no source of messages is configured: add [booking] (the Booking.com pull), \
                 [booking.notifications] (Booking.com's pushes), [staah] or [channex]",
            ));
        }
        if self.pushes() && self.receive.is_none() {
            return Err(cx.invalid(
                "receive",
                "missing section [receive]: the push sources configured ([booking.notifications], [staah], \
                 [channex]) need its listen address (like listen = \"0.0.0.0:8443\", or \"systemd\")",
            ));
        }
        if self.receive.is_some() && !self.pushes() {
            cx.warnings
                .push("[receive] is configured but no source pushes: it listens for nothing".into());
        }
        if let Some(forward) = &mut self.forward {
            forward.finish(cx)?;
        }
        if let Some(api) = &mut self.api {
            api.finish(cx)?;
        }
        if self.jobs.retention.is_none() && self.retention != RetentionSettings::FOREVER {
            cx.warnings
                .push("jobs.retention is \"off\": [retention] periods are not applied".into());
        }
        Ok(())
    }
}

/// Reads and validates the configuration file. Environment variables are read for secrets only.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    parse(path, &read_config(path)?, &|name| std::env::var(name).ok())
}

/// Parses configuration text; `env` looks up environment variables (injectable for tests).
pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    parse_with(path, text, env, true)
}

/// For operator commands (status, dead letters, backups): the whole file is validated except that secrets are
/// not resolved, since they may only be readable by the service (systemd credentials, its environment).
pub fn load_for_tools(path: &Path) -> Result<Settings, ConfigError> {
    parse_for_tools(path, &read_config(path)?)
}

/// [`load_for_tools`] on text already read.
pub fn parse_for_tools(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    parse_with(path, text, &|_| None, false)
}

fn read_config(path: &Path) -> Result<String, ConfigError> {
    read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_with(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_secrets: bool,
) -> Result<Settings, ConfigError> {
    let mut settings: Settings = deserialize(path, text)?;
    let mut cx = Cx {
        path,
        env,
        resolve_secrets,
        warnings: Vec::new(),
    };
    settings.finish(&mut cx)?;
    settings.source = path.to_owned();
    settings.warnings = cx.warnings;
    Ok(settings)
}

/// Deserializes with the key path of any error (serde_path_to_error) and its line.
fn deserialize<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let located = |key: String, message: String, span: Option<std::ops::Range<usize>>| {
        let line = span.map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let message = match line {
            Some(line) => format!("{message} (line {line})"),
            None => message,
        };
        ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        }
    };
    let de =
        toml::Deserializer::parse(text).map_err(|e| located("(syntax)".into(), e.message().to_owned(), e.span()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        let message = inner.message().to_owned();
        let at = match e.path().to_string() {
            p if p == "." => None,
            p => Some(p),
        };
        // serde names a missing key "missing field"; say what it is in this file.
        let (key, message) = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            Some(name) => match at {
                None => (name.to_owned(), format!("missing section [{name}]")),
                Some(section) => (format!("{section}.{name}"), format!("is required in [{section}]")),
            },
            None => (at.unwrap_or_else(|| "(top level)".to_owned()), message),
        };
        located(key, message, inner.span())
    })
}

/// What a section's `finish` needs: where the file is (relative paths, errors), how to read secrets, and where
/// to put warnings.
pub(crate) struct Cx<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    resolve_secrets: bool,
    warnings: Vec<String>,
}

impl Cx<'_> {
    /// A relative path is taken from the configuration file's directory, not from the working directory, so that
    /// the daemon (started in `/` by systemd) and an operator's command run elsewhere mean the same file.
    fn beside_config(&self, path: PathBuf) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// False for tools that check a file without its secrets (`check-config` on another machine, the fuzzer).
    fn resolves_secrets(&self) -> bool {
        self.resolve_secrets
    }

    fn invalid(&self, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    fn required(&self, key: &str, value: Option<String>, because: &str) -> Result<String, ConfigError> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(self.invalid(key, "must not be empty")),
            None => Err(self.invalid(key, &format!("is required with {because}"))),
        }
    }

    /// A key set for the authentication mode not chosen is an error: it would otherwise be silently ignored.
    fn forbid_other_mode(&self, mode: &str, keys: &[(&str, bool)]) -> Result<(), ConfigError> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(self.invalid(
                key,
                &format!("is set but booking.auth = \"{mode}\" does not use it; remove it or change booking.auth"),
            )),
            None => Ok(()),
        }
    }

    fn warn_plain_http(&mut self, key: &str, url: &reqwest::Url) {
        self.warnings.extend(value::plain_http_warning(key, url));
    }
}

/// Reads a text file of at most `limit` bytes: a path pointing at a device or a huge file is an error, not an
/// unbounded allocation.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB; is this the right file?",
            limit / 1024
        )));
    }
    Ok(text)
}
