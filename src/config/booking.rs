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
pub const ENV_NOTIFICATIONS_CLIENT_SECRET: &str = "OTA_RELAY_BOOKING_NOTIFICATIONS_CLIENT_SECRET";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BookingSettings {
    #[serde(
        default = "default_base_url",
        deserialize_with = "value::de_api_url",
        serialize_with = "value::ser_url"
    )]
    pub base_url: Url,
    /// Drain the queue (`GET /messaging/messages/latest`). Off for notifications only.
    #[serde(default = "default_pull")]
    pub pull: bool,
    /// The machine account's credentials, built from the keys below once they are all read: required by the
    /// pull, and by backfill; absent only with `pull = false` and no credential keys.
    #[serde(skip_deserializing, flatten)]
    pub auth: Option<BookingAuth>,
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
    /// `[booking.notifications]`: Booking.com pushes messages (its Connectivity Notification Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationSettings>,
}

/// `[booking.notifications]`: what Booking.com's CNS authenticates with. ota-relay is its OAuth 2.0 authorization
/// server: CNS exchanges these client credentials at `POST /oauth/token` for a bearer token.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    #[serde(deserialize_with = "value::de_non_empty")]
    pub client_id: String,
    #[serde(skip_deserializing)]
    pub client_secret: Secret,
    /// How long an issued token is valid.
    #[serde(
        default = "default_token_ttl",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub token_ttl: Duration,
    #[serde(default, rename = "client_secret", skip_serializing)]
    written_client_secret: Option<Written>,
    #[serde(default, rename = "client_secret_file", skip_serializing)]
    written_client_secret_file: Option<PathBuf>,
}

impl NotificationSettings {
    pub fn new(client_id: &str, client_secret: Secret) -> NotificationSettings {
        NotificationSettings {
            client_id: client_id.to_owned(),
            client_secret,
            token_ttl: default_token_ttl(),
            written_client_secret: None,
            written_client_secret_file: None,
        }
    }

    fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        self.client_secret = cx.secret(
            Keys {
                key: "booking.notifications.client_secret",
                file_key: "booking.notifications.client_secret_file",
                env: Some(ENV_NOTIFICATIONS_CLIENT_SECRET),
            },
            self.written_client_secret.take(),
            self.written_client_secret_file.take(),
        )?;
        Ok(())
    }
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
            pull: true,
            auth: Some(auth),
            notifications: None,
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

    /// The credentials, or an error for what needs them (the pull, backfill, replies).
    pub fn credentials(&self) -> Result<&BookingAuth, NoCredentials> {
        self.auth.as_ref().ok_or(NoCredentials)
    }

    /// Builds [`Self::auth`] from the keys of its mode; a key of the other mode is an error, not ignored.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        cx.warn_plain_http("booking.base_url", &self.base_url);
        if let Some(notifications) = &mut self.notifications {
            notifications.finish(cx)?;
        }
        let given = self.written_username.is_some()
            || self.written_password.is_some()
            || self.written_password_file.is_some()
            || self.written_client_id.is_some()
            || self.written_client_secret.is_some()
            || self.written_client_secret_file.is_some()
            || self.written_auth == AuthMode::Token;
        if !self.pull && !given {
            // Notifications only; credentials stay optional (backfill and replies ask for them).
            self.auth = None;
            return self.check_backoff(cx);
        }
        let because = if self.pull {
            "the pull (for notifications only, set booking.pull = false)"
        } else {
            "the credentials given"
        };
        self.auth = Some(match self.written_auth {
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
                    username: cx.required(
                        "booking.username",
                        self.written_username.take(),
                        &format!("auth = \"basic\" and {because}"),
                    )?,
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
                    client_id: cx.required(
                        "booking.client_id",
                        self.written_client_id.take(),
                        &format!("auth = \"token\" and {because}"),
                    )?,
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
        });
        self.check_backoff(cx)
    }

    fn check_backoff(&self, cx: &Cx<'_>) -> Result<(), ConfigError> {
        if self.backoff_max < self.backoff_initial {
            return Err(cx.invalid(
                "booking.backoff_max",
                "must not be shorter than booking.backoff_initial",
            ));
        }
        Ok(())
    }
}

/// What needs the machine account's credentials, when `[booking]` has none.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "[booking] has no machine-account credentials (booking.username and booking.password, or auth = \"token\" \
     with booking.client_id and booking.client_secret): the pull, backfill and replies to Booking.com need them"
)]
pub struct NoCredentials;

fn default_pull() -> bool {
    true
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
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
