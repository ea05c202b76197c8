//! `[staah]`: STAAH pushes guest messages with HTTP Basic credentials that we issue.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::{ConfigError, Cx, value};

pub const ENV_PASSWORD: &str = "OTA_RELAY_STAAH_PASSWORD";
pub const ENV_REPLY_PASSWORD: &str = "OTA_RELAY_STAAH_REPLY_PASSWORD";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaahSettings {
    #[serde(deserialize_with = "value::de_non_empty")]
    pub username: String,
    #[serde(skip_deserializing)]
    pub password: Secret,
    /// STAAH's reply endpoint (its sandbox: `https://connect-sandbox.su-api.com/SUAPI/jservice/messagingAB`);
    /// without it, replies to STAAH threads are refused.
    #[serde(
        default,
        deserialize_with = "de_reply_url",
        serialize_with = "ser_reply_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_url: Option<reqwest::Url>,
    /// HTTP Basic for the reply endpoint, when STAAH gives you credentials for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_username: Option<String>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub reply_password: Option<Secret>,
    #[serde(default, rename = "reply_password", skip_serializing)]
    written_reply_password: Option<Written>,
    #[serde(default, rename = "reply_password_file", skip_serializing)]
    written_reply_password_file: Option<PathBuf>,
    #[serde(default, rename = "password", skip_serializing)]
    written_password: Option<Written>,
    #[serde(default, rename = "password_file", skip_serializing)]
    written_password_file: Option<PathBuf>,
}

impl StaahSettings {
    pub fn new(username: &str, password: Secret) -> StaahSettings {
        StaahSettings {
            username: username.to_owned(),
            password,
            reply_url: None,
            reply_username: None,
            reply_password: None,
            written_reply_password: None,
            written_reply_password_file: None,
            written_password: None,
            written_password_file: None,
        }
    }

    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        self.password = cx.secret(
            Keys {
                key: "staah.password",
                file_key: "staah.password_file",
                env: Some(ENV_PASSWORD),
            },
            self.written_password.take(),
            self.written_password_file.take(),
        )?;
        self.reply_password = cx.optional_secret(
            Keys {
                key: "staah.reply_password",
                file_key: "staah.reply_password_file",
                env: Some(ENV_REPLY_PASSWORD),
            },
            self.written_reply_password.take(),
            self.written_reply_password_file.take(),
        )?;
        if let Some(url) = &self.reply_url {
            cx.warn_plain_http("staah.reply_url", url);
        }
        if self.reply_password.is_some() != self.reply_username.is_some() {
            return Err(cx.invalid(
                "staah.reply_username",
                "staah.reply_username and staah.reply_password go together (HTTP Basic for the reply endpoint)",
            ));
        }
        Ok(())
    }
}

fn de_reply_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    value::de_api_url(d).map(Some)
}

fn ser_reply_url<S: serde::Serializer>(url: &Option<reqwest::Url>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => value::ser_url(url, s),
        None => s.serialize_none(),
    }
}
