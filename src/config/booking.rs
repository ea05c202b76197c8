//! `[booking]`: the Booking.com machine account and the drain loop's pacing.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::value::{self, DAY, MINUTE};
use super::{ConfigError, Cx};

pub const DEFAULT_BASE_URL: &str = "https://supply-xml.booking.com";
pub const DEFAULT_TOKEN_URL: &str =
    "https://connectivity-authentication.booking.com/token-based-authentication/exchange";
pub const ENV_PASSWORD: &str = "OTA_RELAY_BOOKING_PASSWORD";
pub const ENV_CLIENT_SECRET: &str = "OTA_RELAY_BOOKING_CLIENT_SECRET";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BookingSettings {
    #[serde(
        default = "default_base_url",
        deserialize_with = "value::de_api_url",
        serialize_with = "value::ser_url"
    )]
    pub base_url: Url,
    /// The credentials, built from the keys below once they are all read.
    #[serde(skip_deserializing, flatten)]
    pub auth: BookingAuth,
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub poll_interval: Duration,
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "value::de_duration::<_, { 10 * MINUTE }>",
        serialize_with = "value::ser_duration"
    )]
    pub request_timeout: Duration,
    #[serde(
        default = "default_backoff_initial",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub backoff_initial: Duration,
    #[serde(
        default = "default_backoff_max",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub backoff_max: Duration,
    #[serde(default, rename = "auth", skip_serializing)]
    written_auth: AuthMode,
    #[serde(default, rename = "username", skip_serializing)]
    written_username: Option<String>,
    #[serde(default, rename = "password", skip_serializing)]
    written_password: Option<Written>,
    #[serde(default, rename = "password_file", skip_serializing)]
    written_password_file: Option<PathBuf>,
    #[serde(default, rename = "client_id", skip_serializing)]
    written_client_id: Option<String>,
    #[serde(default, rename = "client_secret", skip_serializing)]
    written_client_secret: Option<Written>,
    #[serde(default, rename = "client_secret_file", skip_serializing)]
    written_client_secret_file: Option<PathBuf>,
    #[serde(default, rename = "token_url", deserialize_with = "de_token_url", skip_serializing)]
    written_token_url: Option<Url>,
}

/// How the machine account authenticates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "auth", rename_all = "lowercase")]
pub enum BookingAuth {
    Basic {
        username: String,
        password: Secret,
    },
    /// Client id and secret exchanged at `token_url` for a bearer token (Booking.com is retiring Basic).
    Token {
        client_id: String,
        client_secret: Secret,
        #[serde(serialize_with = "value::ser_url")]
        token_url: Url,
    },
}

impl Default for BookingAuth {
    fn default() -> BookingAuth {
        BookingAuth::Basic {
            username: String::new(),
            password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthMode {
    #[default]
    Basic,
    Token,
}

impl BookingSettings {
    /// The defaults of every key but the credentials (the demo and tests build settings in code).
    pub fn new(base_url: Url, auth: BookingAuth) -> BookingSettings {
        BookingSettings {
            base_url,
            auth,
            poll_interval: default_poll_interval(),
            request_timeout: default_request_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            written_auth: AuthMode::default(),
            written_username: None,
            written_password: None,
            written_password_file: None,
            written_client_id: None,
            written_client_secret: None,
            written_client_secret_file: None,
            written_token_url: None,
        }
    }

    /// Builds [`Self::auth`] from the keys of its mode; a key of the other mode is an error, not ignored.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        cx.warn_plain_http("booking.base_url", &self.base_url);
        self.auth = match self.written_auth {
            AuthMode::Basic => {
                cx.forbid_other_mode(
                    "basic",
                    &[
                        ("booking.client_id", self.written_client_id.is_some()),
                        ("booking.client_secret", self.written_client_secret.is_some()),
                        ("booking.client_secret_file", self.written_client_secret_file.is_some()),
                        ("booking.token_url", self.written_token_url.is_some()),
                    ],
                )?;
                BookingAuth::Basic {
                    username: cx.required("booking.username", self.written_username.take(), "auth = \"basic\"")?,
                    password: cx.secret(
                        Keys {
                            key: "booking.password",
                            file_key: "booking.password_file",
                            env: Some(ENV_PASSWORD),
                        },
                        self.written_password.take(),
                        self.written_password_file.take(),
                    )?,
                }
            }
            AuthMode::Token => {
                cx.forbid_other_mode(
                    "token",
                    &[
                        ("booking.username", self.written_username.is_some()),
                        ("booking.password", self.written_password.is_some()),
                        ("booking.password_file", self.written_password_file.is_some()),
                    ],
                )?;
                let token_url = self
                    .written_token_url
                    .take()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.parse().expect("a valid URL"));
                cx.warn_plain_http("booking.token_url", &token_url);
                BookingAuth::Token {
                    client_id: cx.required("booking.client_id", self.written_client_id.take(), "auth = \"token\"")?,
                    client_secret: cx.secret(
                        Keys {
                            key: "booking.client_secret",
                            file_key: "booking.client_secret_file",
                            env: Some(ENV_CLIENT_SECRET),
                        },
                        self.written_client_secret.take(),
                        self.written_client_secret_file.take(),
                    )?,
                    token_url,
                }
            }
        };
        if self.backoff_max < self.backoff_initial {
            return Err(cx.invalid(
                "booking.backoff_max",
                "must not be shorter than booking.backoff_initial",
            ));
        }
        Ok(())
    }
}

fn de_token_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    value::de_api_url(d).map(Some)
}

fn default_base_url() -> Url {
    DEFAULT_BASE_URL.parse().expect("a valid URL")
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}

fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
