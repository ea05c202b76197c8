//! `[forward]` and `[forward.retry]`: the PMS webhook, how it is signed, and how failed deliveries are retried.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::value::{self, DAY, MINUTE};
use super::{ConfigError, Cx};

pub const ENV_SECRET: &str = "OTA_RELAY_FORWARD_SECRET";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSettings {
    /// Required. Its query (some receivers take a token there) is never shown or logged.
    #[serde(
        deserialize_with = "value::de_webhook_url",
        serialize_with = "value::ser_redacted_url"
    )]
    pub url: Url,
    /// Standard Webhooks secrets: the first signs as current; the rest also sign during a rotation.
    #[serde(skip_deserializing, rename = "secret")]
    pub secrets: Vec<Secret>,
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "value::de_duration::<_, { 10 * MINUTE }>",
        serialize_with = "value::ser_duration"
    )]
    pub request_timeout: Duration,
    /// Deliveries in flight at once; one probe at a time while the PMS is failing.
    #[serde(default = "default_concurrency", deserialize_with = "value::de_count::<_, 1, 256>")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default, rename = "secret", skip_serializing)]
    written_secret: Option<Written>,
    #[serde(default, rename = "secret_file", skip_serializing)]
    written_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(
        default = "default_initial_interval",
        deserialize_with = "value::de_duration::<_, { 7 * DAY }>",
        serialize_with = "value::ser_duration"
    )]
    pub initial_interval: Duration,
    #[serde(
        default = "default_max_interval",
        deserialize_with = "value::de_duration::<_, { 7 * DAY }>",
        serialize_with = "value::ser_duration"
    )]
    pub max_interval: Duration,
    /// Counted from the first attempt; then the delivery becomes a dead letter.
    #[serde(
        default = "default_give_up_after",
        deserialize_with = "value::de_duration::<_, { 365 * DAY }>",
        serialize_with = "value::ser_duration"
    )]
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
            give_up_after: default_give_up_after(),
        }
    }
}

impl ForwardSettings {
    /// The defaults of every key but the receiver and its secrets (the demo and tests build settings in code).
    pub fn new(url: Url, secrets: Vec<Secret>) -> ForwardSettings {
        ForwardSettings {
            url,
            secrets,
            request_timeout: default_request_timeout(),
            concurrency: default_concurrency(),
            retry: RetryPolicy::default(),
            written_secret: None,
            written_secret_file: None,
        }
    }

    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        cx.warn_plain_http("forward.url", &self.url);
        self.secrets = cx.secrets(
            Keys {
                key: "forward.secret",
                file_key: "forward.secret_file",
                env: Some(ENV_SECRET),
            },
            self.written_secret.take(),
            self.written_secret_file.take(),
            |secret| {
                crate::forward::signing::webhook_key(secret)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )?;
        if self.retry.max_interval < self.retry.initial_interval {
            return Err(cx.invalid(
                "forward.retry.max_interval",
                "must not be shorter than forward.retry.initial_interval",
            ));
        }
        Ok(())
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_concurrency() -> usize {
    8
}

fn default_initial_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_max_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_give_up_after() -> Duration {
    Duration::from_secs(72 * 3600)
}
