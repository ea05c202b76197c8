//! The TOML configuration: parsed once, validated, and turned into typed [`Settings`].
//!
//! Key names are a contract with operators and outside checks; every error names the file and the key.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ota-relay/ota-relay.toml";
pub const DEFAULT_STORE_PATH: &str = "/var/lib/ota-relay/relay.db";
pub const DEFAULT_BOOKING_BASE_URL: &str = "https://supply-xml.booking.com";
pub const DEFAULT_TOKEN_URL: &str =
    "https://connectivity-authentication.booking.com/token-based-authentication/exchange";
pub const ENV_BOOKING_PASSWORD: &str = "OTA_RELAY_BOOKING_PASSWORD";
pub const ENV_BOOKING_CLIENT_SECRET: &str = "OTA_RELAY_BOOKING_CLIENT_SECRET";
pub const ENV_FORWARD_SECRET: &str = "OTA_RELAY_FORWARD_SECRET";
const DEFAULT_DUPLICATE_FILTER: &str = "0 */15 * * * *";
const DEFAULT_RETENTION_JOB: &str = "0 30 3 * * *";
const DEFAULT_MAINTENANCE: &str = "0 0 4 * * 0";
const MINUTE: u64 = 60;
const DAY: u64 = 86_400;
/// A century: the longest finite retention (longer is a typo, or "forever").
const RETENTION_MAX_DAYS: u64 = 36_500;
const DEFAULT_CONTENT_RETENTION: &str = "30d";
const DEFAULT_TOMBSTONE_RETENTION: &str = "400d";
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// Standard Webhooks secrets are "whsec_" + base64 of the key; shorter keys are refused as too weak.
const MIN_WEBHOOK_KEY_BYTES: usize = 16;

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
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub store: StoreSettings,
    pub booking: BookingSettings,
    pub log: LogSettings,
    /// Absent: nothing is sent; deliveries wait in the outbox until it is configured.
    pub forward: Option<ForwardSettings>,
    pub jobs: JobsSettings,
    pub retention: RetentionSettings,
    /// Absent: no health or metrics listener.
    pub http: Option<HttpSettings>,
    /// Legal but suspicious choices, reported by `check-config` and logged at start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BookingSettings {
    pub base_url: Url,
    pub auth: BookingAuth,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub enum BookingAuth {
    Basic {
        username: String,
        password: Secret,
    },
    Token {
        client_id: String,
        client_secret: Secret,
        token_url: Url,
    },
}

#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub url: Url,
    /// The first signs as current; the rest are also signed with during a rotation.
    pub secrets: Vec<Secret>,
    pub request_timeout: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Counted from the first attempt; then the delivery becomes a dead letter.
    pub give_up_after: Duration,
}

/// The housekeeping schedules; `None` is a job turned "off".
#[derive(Debug, Clone)]
pub struct JobsSettings {
    pub duplicate_filter: Option<Schedule>,
    pub retention: Option<Schedule>,
    pub maintenance: Option<Schedule>,
    pub timezone: chrono_tz::Tz,
}

impl JobsSettings {
    /// Every job turned off (the demo, tests that drive jobs themselves).
    pub fn off() -> JobsSettings {
        JobsSettings {
            duplicate_filter: None,
            retention: None,
            maintenance: None,
            timezone: chrono_tz::UTC,
        }
    }
}

/// A cron pattern with a seconds field, as written and as parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub pattern: String,
    pub cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.pattern == other.pattern
    }
}

/// How long content and tombstones are kept; `None` is "forever".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub content: Option<Duration>,
    pub tombstones: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A secret and where it came from (the source is printable, the value never is).
#[derive(Debug, Clone)]
pub struct Secret {
    value: SecretString,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Key(String),
    File(PathBuf),
    Env(&'static str),
}

impl Secret {
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    fn unresolved() -> Secret {
        Secret {
            value: SecretString::from(String::new()),
            source: SecretSource::Key("(not read by operator commands)".into()),
        }
    }

    #[doc(hidden)] // the built-in demo and tests configure secrets directly
    pub fn inline(value: &str) -> Secret {
        Secret {
            value: SecretString::from(value.to_owned()),
            source: SecretSource::Key("(built in)".into()),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Key(key) => write!(f, "from {key}"),
            SecretSource::File(path) => write!(f, "from file {}", path.display()),
            SecretSource::Env(var) => write!(f, "from environment variable {var}"),
        }
    }
}

// ---- raw TOML shape -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: RawStore,
    booking: Option<RawBooking>,
    #[serde(default)]
    log: RawLog,
    forward: Option<RawForward>,
    #[serde(default)]
    jobs: RawJobs,
    #[serde(default)]
    retention: RawRetention,
    http: Option<RawHttp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    duplicate_filter: Option<String>,
    retention: Option<String>,
    maintenance: Option<String>,
    timezone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    content: Option<String>,
    tombstones: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    url: Option<String>,
    secret: Option<OneOrMany>,
    secret_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    concurrency: Option<i64>,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default, with = "humantime_serde")]
    initial_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    give_up_after: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathBuf>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum RawAuthMode {
    Basic,
    Token,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBooking {
    base_url: Option<String>,
    auth: Option<RawAuthMode>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    token_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    backoff_initial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    backoff_max: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<String>,
}

// ---- loading ----------------------------------------------------------------------------------------

/// Reads and validates the configuration file. Environment variables are read for secrets only.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Parses configuration text; `env` looks up environment variables (injectable for tests).
pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    parse_with(path, text, env, true)
}

/// For operator commands (status, dead letters, backups): the whole file is validated except that secrets are
/// not resolved, since they may only be readable by the service (systemd credentials, its environment).
pub fn load_for_tools(path: &Path) -> Result<Settings, ConfigError> {
    let text = read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_for_tools(path, &text)
}

/// [`load_for_tools`] on text already read.
pub fn parse_for_tools(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    parse_with(path, text, &|_| None, false)
}

fn parse_with(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_secrets: bool,
) -> Result<Settings, ConfigError> {
    let raw: RawConfig = deserialize(path, text)?;
    let ctx = Ctx {
        path,
        env,
        resolve_secrets,
    };
    let mut warnings = Vec::new();

    let store = StoreSettings {
        path: ctx.beside_config(raw.store.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH))),
    };
    if store.path.as_os_str().is_empty() {
        return Err(ctx.invalid("store.path", "must not be empty"));
    }

    let booking = raw
        .booking
        .ok_or_else(|| ctx.invalid("booking", "missing section [booking]"))?;
    let booking = ctx.booking(booking, &mut warnings)?;

    let level = raw.log.level.unwrap_or_else(|| "info".into());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        return Err(ctx.invalid("log.level", &format!("{level:?} is not a valid filter: {e}")));
    }
    let log = LogSettings {
        format: raw.log.format.unwrap_or(LogFormat::Pretty),
        level,
    };

    let forward = match raw.forward {
        Some(f) => Some(ctx.forward(f, &mut warnings)?),
        None => None,
    };

    let jobs = ctx.jobs(raw.jobs)?;
    let retention = RetentionSettings {
        content: ctx.retention("retention.content", raw.retention.content, DEFAULT_CONTENT_RETENTION)?,
        tombstones: ctx.retention(
            "retention.tombstones",
            raw.retention.tombstones,
            DEFAULT_TOMBSTONE_RETENTION,
        )?,
    };
    if jobs.retention.is_none() && (retention.content.is_some() || retention.tombstones.is_some()) {
        warnings.push("jobs.retention is \"off\": [retention] periods are not applied".into());
    }
    let http = match raw.http {
        Some(h) => Some(ctx.http(h)?),
        None => None,
    };

    Ok(Settings {
        source: path.to_owned(),
        store,
        booking,
        log,
        forward,
        jobs,
        retention,
        http,
        warnings,
    })
}

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
        let key = match e.path().to_string() {
            p if p == "." => "(top level)".to_owned(),
            p => p,
        };
        let inner = e.inner();
        located(key, inner.message().to_owned(), inner.span())
    })
}

struct Ctx<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    resolve_secrets: bool,
}

impl Ctx<'_> {
    /// A relative path is taken from the configuration file's directory, not from the working directory, so that
    /// the daemon (started in `/` by systemd) and an operator's command run elsewhere mean the same file.
    fn beside_config(&self, path: PathBuf) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    fn invalid(&self, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    fn booking(&self, raw: RawBooking, warnings: &mut Vec<String>) -> Result<BookingSettings, ConfigError> {
        let base_url = self.url(
            "booking.base_url",
            raw.base_url.as_deref().unwrap_or(DEFAULT_BOOKING_BASE_URL),
            warnings,
        )?;
        let mode = raw.auth.unwrap_or(RawAuthMode::Basic);
        let auth = match mode {
            RawAuthMode::Basic => {
                self.forbid_other_mode(
                    "basic",
                    &[
                        ("booking.client_id", raw.client_id.is_some()),
                        ("booking.client_secret", raw.client_secret.is_some()),
                        ("booking.client_secret_file", raw.client_secret_file.is_some()),
                        ("booking.token_url", raw.token_url.is_some()),
                    ],
                )?;
                let username = self.required("booking.username", raw.username, "auth = \"basic\"")?;
                let password = self.secret(
                    ("booking.password", raw.password),
                    ("booking.password_file", raw.password_file),
                    ENV_BOOKING_PASSWORD,
                )?;
                BookingAuth::Basic { username, password }
            }
            RawAuthMode::Token => {
                self.forbid_other_mode(
                    "token",
                    &[
                        ("booking.username", raw.username.is_some()),
                        ("booking.password", raw.password.is_some()),
                        ("booking.password_file", raw.password_file.is_some()),
                    ],
                )?;
                let client_id = self.required("booking.client_id", raw.client_id, "auth = \"token\"")?;
                let client_secret = self.secret(
                    ("booking.client_secret", raw.client_secret),
                    ("booking.client_secret_file", raw.client_secret_file),
                    ENV_BOOKING_CLIENT_SECRET,
                )?;
                let token_url = self.url(
                    "booking.token_url",
                    raw.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL),
                    warnings,
                )?;
                BookingAuth::Token {
                    client_id,
                    client_secret,
                    token_url,
                }
            }
        };
        let poll_interval = self.duration("booking.poll_interval", raw.poll_interval, 30, DAY)?;
        let request_timeout = self.duration("booking.request_timeout", raw.request_timeout, 30, 10 * MINUTE)?;
        let backoff_initial = self.duration("booking.backoff_initial", raw.backoff_initial, 1, DAY)?;
        let backoff_max = self.duration("booking.backoff_max", raw.backoff_max, 60, DAY)?;
        if backoff_max < backoff_initial {
            return Err(self.invalid(
                "booking.backoff_max",
                "must not be shorter than booking.backoff_initial",
            ));
        }
        Ok(BookingSettings {
            base_url,
            auth,
            poll_interval,
            request_timeout,
            backoff_initial,
            backoff_max,
        })
    }

    fn forward(&self, raw: RawForward, warnings: &mut Vec<String>) -> Result<ForwardSettings, ConfigError> {
        let url = raw
            .url
            .ok_or_else(|| self.invalid("forward.url", "is required in [forward]"))?;
        let url = self.url_with_query("forward.url", &url, warnings)?;
        let secrets = self.webhook_secrets(raw.secret, raw.secret_file)?;
        let request_timeout = self.duration("forward.request_timeout", raw.request_timeout, 15, 10 * MINUTE)?;
        let concurrency = match raw.concurrency {
            None => 8,
            Some(n @ 1..=256) => n as usize,
            Some(n) => return Err(self.invalid("forward.concurrency", &format!("{n} is not between 1 and 256"))),
        };
        let retry = RetryPolicy {
            initial_interval: self.duration(
                "forward.retry.initial_interval",
                raw.retry.initial_interval,
                5,
                7 * DAY,
            )?,
            max_interval: self.duration("forward.retry.max_interval", raw.retry.max_interval, 3600, 7 * DAY)?,
            give_up_after: self.duration(
                "forward.retry.give_up_after",
                raw.retry.give_up_after,
                72 * 3600,
                365 * DAY,
            )?,
        };
        if retry.max_interval < retry.initial_interval {
            return Err(self.invalid(
                "forward.retry.max_interval",
                "must not be shorter than forward.retry.initial_interval",
            ));
        }
        Ok(ForwardSettings {
            url,
            secrets,
            request_timeout,
            concurrency,
            retry,
        })
    }

    /// One source, as for every secret; the key may hold several (rotation), the file one per line.
    fn webhook_secrets(&self, inline: Option<OneOrMany>, file: Option<PathBuf>) -> Result<Vec<Secret>, ConfigError> {
        if !self.resolve_secrets {
            return Ok(vec![Secret::unresolved()]);
        }
        let (key, file_key) = ("forward.secret", "forward.secret_file");
        let from_env = (self.env)(ENV_FORWARD_SECRET).filter(|v| !v.trim().is_empty());
        let (values, source): (Vec<String>, SecretSource) = match (inline, file, from_env) {
            (Some(_), Some(_), _) => {
                return Err(self.invalid(key, &format!("{key} and {file_key} are both set; use one of them")));
            }
            (Some(_), None, Some(_)) => {
                return Err(self.invalid(
                    key,
                    &format!("{key} and the environment variable {ENV_FORWARD_SECRET} are both set; use one of them"),
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(self.invalid(
                    file_key,
                    &format!(
                        "{file_key} and the environment variable {ENV_FORWARD_SECRET} are both set; use one of them"
                    ),
                ));
            }
            (Some(OneOrMany::One(s)), None, None) => (vec![s], SecretSource::Key(key.into())),
            (Some(OneOrMany::Many(list)), None, None) => (list, SecretSource::Key(key.into())),
            (None, Some(path), None) => {
                let path = self.beside_config(path);
                let text = read_bounded(&path, MAX_SECRET_FILE_BYTES)
                    .map_err(|e| self.invalid(file_key, &format!("cannot read {}: {e}", path.display())))?;
                let lines = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                (lines, SecretSource::File(path))
            }
            (None, None, Some(v)) => (
                v.split_whitespace().map(str::to_owned).collect(),
                SecretSource::Env(ENV_FORWARD_SECRET),
            ),
            (None, None, None) => {
                return Err(self.invalid(
                    key,
                    &format!("no signing secret configured: set {key}, {file_key}, or the environment variable {ENV_FORWARD_SECRET}"),
                ));
            }
        };
        if values.is_empty() {
            return Err(self.invalid(key, &format!("no secret found {source}")));
        }
        let mut secrets = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            if let Err(problem) = webhook_key(&value) {
                return Err(self.invalid(key, &format!("secret #{} {source}: {problem}", i + 1)));
            }
            secrets.push(Secret {
                value: SecretString::from(value),
                source: source.clone(),
            });
        }
        Ok(secrets)
    }

    fn forbid_other_mode(&self, mode: &str, keys: &[(&str, bool)]) -> Result<(), ConfigError> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(self.invalid(
                key,
                &format!("is set but booking.auth = \"{mode}\" does not use it; remove it or change booking.auth"),
            )),
            None => Ok(()),
        }
    }

    fn required(&self, key: &str, value: Option<String>, because: &str) -> Result<String, ConfigError> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(self.invalid(key, "must not be empty")),
            None => Err(self.invalid(key, &format!("is required with {because}"))),
        }
    }

    /// Exactly one source: the key, the `_file` key, or (only when neither is set) the environment variable.
    fn secret(
        &self,
        (key, inline): (&str, Option<String>),
        (file_key, file): (&str, Option<PathBuf>),
        env_var: &'static str,
    ) -> Result<Secret, ConfigError> {
        if !self.resolve_secrets {
            return Ok(Secret::unresolved());
        }
        let from_env = (self.env)(env_var).filter(|v| !v.is_empty());
        let (value, source) = match (inline, file, from_env) {
            (Some(_), Some(_), _) => {
                return Err(self.invalid(key, &format!("{key} and {file_key} are both set; use one of them")));
            }
            (Some(_), None, Some(_)) => {
                return Err(self.invalid(
                    key,
                    &format!("{key} and the environment variable {env_var} are both set; use one of them"),
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(self.invalid(
                    file_key,
                    &format!("{file_key} and the environment variable {env_var} are both set; use one of them"),
                ));
            }
            (Some(v), None, None) => (v, SecretSource::Key(key.to_owned())),
            (None, Some(path), None) => {
                let path = self.beside_config(path);
                let text = read_bounded(&path, MAX_SECRET_FILE_BYTES)
                    .map_err(|e| self.invalid(file_key, &format!("cannot read {}: {e}", path.display())))?;
                let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned();
                (trimmed, SecretSource::File(path))
            }
            (None, None, Some(v)) => (v, SecretSource::Env(env_var)),
            (None, None, None) => {
                return Err(self.invalid(
                    key,
                    &format!("no secret configured: set {key}, {file_key}, or the environment variable {env_var}"),
                ));
            }
        };
        if value.is_empty() {
            return Err(self.invalid(key, &format!("the secret {source} is empty")));
        }
        Ok(Secret {
            value: SecretString::from(value),
            source,
        })
    }

    fn url(&self, key: &str, value: &str, warnings: &mut Vec<String>) -> Result<Url, ConfigError> {
        let url = self.url_with_query(key, value, warnings)?;
        if url.query().is_some() {
            return Err(self.invalid(key, "must not have a query"));
        }
        Ok(url)
    }

    /// A webhook URL may carry a query (some receivers route or authenticate by it); it is never logged.
    fn url_with_query(&self, key: &str, value: &str, warnings: &mut Vec<String>) -> Result<Url, ConfigError> {
        let url = Url::parse(value).map_err(|e| {
            // Echo what was written, but not a query or userinfo: either may hold a token.
            let shown = match value.split_once('?') {
                Some((before, _)) => format!("{before:?} (query not shown)"),
                None => format!("{value:?}"),
            };
            let shown = if value.contains('@') {
                "the value".to_owned()
            } else {
                shown
            };
            self.invalid(key, &format!("{shown} is not a URL: {e}"))
        })?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if !loopback {
                    warnings.push(format!(
                        "{key} uses plain http to {}: credentials and guest data travel unencrypted",
                        url.host_str().unwrap_or("?")
                    ));
                }
            }
            other => {
                return Err(self.invalid(key, &format!("scheme {other:?} is not http or https")));
            }
        }
        if url.fragment().is_some() {
            return Err(self.invalid(key, "must not have a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.invalid(key, "must not embed credentials; use the credential keys"));
        }
        Ok(url)
    }

    /// A duration above zero and at most `max_secs`: beyond any sensible setting, where a typo ("30y" for "30s")
    /// would otherwise overflow the timer arithmetic.
    fn duration(
        &self,
        key: &str,
        value: Option<Duration>,
        default_secs: u64,
        max_secs: u64,
    ) -> Result<Duration, ConfigError> {
        let max = Duration::from_secs(max_secs);
        match value {
            Some(d) if d.is_zero() => Err(self.invalid(key, "must be longer than zero")),
            Some(d) if d > max => Err(self.invalid(key, &format!("must be at most {}", duration_text(max)))),
            Some(d) => Ok(d),
            None => Ok(Duration::from_secs(default_secs)),
        }
    }
}

impl Ctx<'_> {
    fn jobs(&self, raw: RawJobs) -> Result<JobsSettings, ConfigError> {
        let timezone = raw.timezone.unwrap_or_else(|| "UTC".into());
        let timezone = timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            self.invalid(
                "jobs.timezone",
                &format!("{timezone:?} is not an IANA time zone name (like \"UTC\" or \"Europe/Amsterdam\")"),
            )
        })?;
        Ok(JobsSettings {
            duplicate_filter: self.schedule("jobs.duplicate_filter", raw.duplicate_filter, DEFAULT_DUPLICATE_FILTER)?,
            retention: self.schedule("jobs.retention", raw.retention, DEFAULT_RETENTION_JOB)?,
            maintenance: self.schedule("jobs.maintenance", raw.maintenance, DEFAULT_MAINTENANCE)?,
            timezone,
        })
    }

    fn schedule(&self, key: &str, value: Option<String>, default: &str) -> Result<Option<Schedule>, ConfigError> {
        let pattern = value.unwrap_or_else(|| default.to_owned());
        if pattern.trim() == "off" {
            return Ok(None);
        }
        let cron = crate::jobs::parse_schedule(&pattern).map_err(|e| {
            self.invalid(
                key,
                &format!(
                    "{pattern:?} is not a cron schedule with a seconds field (like \"0 */15 * * * *\"), or \"off\": {e}"
                ),
            )
        })?;
        Ok(Some(Schedule { pattern, cron }))
    }

    fn retention(&self, key: &str, value: Option<String>, default: &str) -> Result<Option<Duration>, ConfigError> {
        let text = value.unwrap_or_else(|| default.to_owned());
        if text.trim() == "forever" {
            return Ok(None);
        }
        match humantime::parse_duration(&text) {
            Ok(d) if d > Duration::from_secs(RETENTION_MAX_DAYS * DAY) => Err(self.invalid(
                key,
                &format!("must be at most {RETENTION_MAX_DAYS}days; to keep data indefinitely, write \"forever\""),
            )),
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            Ok(_) => Err(self.invalid(key, "must be above zero, or \"forever\"")),
            Err(e) => Err(self.invalid(
                key,
                &format!("{text:?} is not a duration (like \"30d\") or \"forever\": {e}"),
            )),
        }
    }

    fn http(&self, raw: RawHttp) -> Result<HttpSettings, ConfigError> {
        let listen = raw
            .listen
            .ok_or_else(|| self.invalid("http.listen", "missing (an address like \"127.0.0.1:9477\")"))?;
        let listen = listen.parse().map_err(|_| {
            self.invalid(
                "http.listen",
                &format!("{listen:?} is not an IP address and port (like \"127.0.0.1:9477\")"),
            )
        })?;
        Ok(HttpSettings { listen })
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

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("must start with \"whsec_\" (Standard Webhooks format: whsec_ + base64)")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the part after whsec_ is not valid base64".to_owned())?;
    if key.len() < MIN_WEBHOOK_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; at least {MIN_WEBHOOK_KEY_BYTES} are required",
            key.len()
        ));
    }
    Ok(key)
}

// ---- effective settings, as `check-config` prints them --------------------------------------------

impl Settings {
    /// The effective settings as TOML, every default filled in and every secret masked.
    pub fn render_masked(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# effective settings of {}", self.source.display());
        let _ = writeln!(
            out,
            "[store]\npath = {}\n",
            quote(&self.store.path.display().to_string())
        );
        let b = &self.booking;
        let _ = writeln!(out, "[booking]\nbase_url = {}", quote(b.base_url.as_str()));
        match &b.auth {
            BookingAuth::Basic { username, password } => {
                let _ = writeln!(out, "auth = \"basic\"\nusername = {}", quote(username));
                let _ = writeln!(out, "password = \"********\"  # {}", password.source);
            }
            BookingAuth::Token {
                client_id,
                client_secret,
                token_url,
            } => {
                let _ = writeln!(out, "auth = \"token\"\nclient_id = {}", quote(client_id));
                let _ = writeln!(out, "client_secret = \"********\"  # {}", client_secret.source);
                let _ = writeln!(out, "token_url = {}", quote(token_url.as_str()));
            }
        }
        for (key, d) in [
            ("poll_interval", b.poll_interval),
            ("request_timeout", b.request_timeout),
            ("backoff_initial", b.backoff_initial),
            ("backoff_max", b.backoff_max),
        ] {
            let _ = writeln!(out, "{key} = \"{}\"", duration_text(d));
        }
        let format = match self.log.format {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        };
        let _ = writeln!(
            out,
            "\n[log]\nformat = \"{format}\"\nlevel = {}",
            quote(&self.log.level)
        );
        if let Some(f) = &self.forward {
            let masked = vec!["\"********\""; f.secrets.len()].join(", ");
            let hidden = if f.url.query().is_some() {
                "  # its query is not shown"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "\n[forward]\nurl = {}{hidden}",
                quote(&crate::http_client::redacted(&f.url))
            );
            let _ = writeln!(out, "secret = [{masked}]  # {}", f.secrets[0].source);
            let _ = writeln!(out, "request_timeout = \"{}\"", duration_text(f.request_timeout));
            let _ = writeln!(out, "concurrency = {}", f.concurrency);
            let r = &f.retry;
            let _ = writeln!(out, "\n[forward.retry]");
            for (key, d) in [
                ("initial_interval", r.initial_interval),
                ("max_interval", r.max_interval),
                ("give_up_after", r.give_up_after),
            ] {
                let _ = writeln!(out, "{key} = \"{}\"", duration_text(d));
            }
        } else {
            let _ = writeln!(
                out,
                "\n# [forward] is not configured: messages are stored and wait in the outbox."
            );
        }
        let j = &self.jobs;
        let _ = writeln!(out, "\n[jobs]");
        for (key, schedule) in [
            ("duplicate_filter", &j.duplicate_filter),
            ("retention", &j.retention),
            ("maintenance", &j.maintenance),
        ] {
            let _ = writeln!(
                out,
                "{key} = {}",
                quote(schedule.as_ref().map_or("off", |s| &s.pattern))
            );
        }
        let _ = writeln!(out, "timezone = {}", quote(j.timezone.name()));
        let _ = writeln!(out, "\n[retention]");
        for (key, d) in [
            ("content", self.retention.content),
            ("tombstones", self.retention.tombstones),
        ] {
            let value = d.map_or("forever".to_owned(), duration_text);
            let _ = writeln!(out, "{key} = {}", quote(&value));
        }
        match &self.http {
            Some(h) => {
                let _ = writeln!(out, "\n[http]\nlisten = {}", quote(&h.listen.to_string()));
            }
            None => {
                let _ = writeln!(out, "\n# [http] is not configured: no health or metrics listener.");
            }
        }
        out
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A duration as it would be written: whole days as days ("400days"), where humantime's own format gives
/// "1year 1month 4days 7h 26m 24s" (its year and month are averages); anything else as humantime prints it.
fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 86_400, secs % 86_400, d.subsec_nanos()) {
        (1, 0, 0) => "1day".to_owned(),
        (days, 0, 0) if days > 1 => format!("{days}days"),
        _ => humantime::format_duration(d).to_string(),
    }
}
