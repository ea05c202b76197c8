//! `[channex]`: Channex pushes messages to a webhook it sends a header with; its API tells a thread's channel.

use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::{ConfigError, Cx, value};

pub const ENV_WEBHOOK_SECRET: &str = "OTA_RELAY_CHANNEX_WEBHOOK_SECRET";
pub const ENV_API_KEY: &str = "OTA_RELAY_CHANNEX_API_KEY";
pub const DEFAULT_BASE_URL: &str = "https://app.channex.io";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannexSettings {
    /// The header set on the Channex webhook, carrying `webhook_secret`.
    #[serde(default = "default_header", deserialize_with = "de_header")]
    pub webhook_header: String,
    #[serde(skip_deserializing)]
    pub webhook_secret: Secret,
    #[serde(
        default = "default_base_url",
        deserialize_with = "value::de_api_url",
        serialize_with = "value::ser_url"
    )]
    pub base_url: Url,
    /// Channex's API key (`user-api-key`): with it, a thread's channel and title are read once from Channex.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, rename = "webhook_secret", skip_serializing)]
    written_webhook_secret: Option<Written>,
    #[serde(default, rename = "webhook_secret_file", skip_serializing)]
    written_webhook_secret_file: Option<PathBuf>,
    #[serde(default, rename = "api_key", skip_serializing)]
    written_api_key: Option<Written>,
    #[serde(default, rename = "api_key_file", skip_serializing)]
    written_api_key_file: Option<PathBuf>,
}

impl ChannexSettings {
    pub fn new(webhook_secret: Secret) -> ChannexSettings {
        ChannexSettings {
            webhook_header: default_header(),
            webhook_secret,
            base_url: default_base_url(),
            api_key: None,
            written_webhook_secret: None,
            written_webhook_secret_file: None,
            written_api_key: None,
            written_api_key_file: None,
        }
    }

    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        cx.warn_plain_http("channex.base_url", &self.base_url);
        self.webhook_secret = cx.secret(
            Keys {
                key: "channex.webhook_secret",
                file_key: "channex.webhook_secret_file",
                env: Some(ENV_WEBHOOK_SECRET),
            },
            self.written_webhook_secret.take(),
            self.written_webhook_secret_file.take(),
        )?;
        self.api_key = cx.optional_secret(
            Keys {
                key: "channex.api_key",
                file_key: "channex.api_key_file",
                env: Some(ENV_API_KEY),
            },
            self.written_api_key.take(),
            self.written_api_key_file.take(),
        )?;
        Ok(())
    }
}

/// A header name as HTTP allows it, kept in lower case (header names compare without case).
fn de_header<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map(|h| h.as_str().to_owned())
        .map_err(|_| serde::de::Error::custom(format!("{name:?} is not an HTTP header name")))
}

fn default_header() -> String {
    "x-ota-relay-secret".into()
}

fn default_base_url() -> Url {
    DEFAULT_BASE_URL.parse().expect("a valid URL")
}
