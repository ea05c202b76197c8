//! `[api]`: the Channex-compatible API for the PMS (threads, messages, replies), with one token per client.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::{ConfigError, Cx, value};

/// Shorter tokens are refused: they are guessable by a caller who can reach the listener.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(deserialize_with = "value::de_listen")]
    pub listen: std::net::SocketAddr,
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
    /// The address staff reach the inbox at (links are built from it); default: `http://` + `listen`.
    #[serde(
        default,
        deserialize_with = "de_public_url",
        serialize_with = "ser_public_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_url: Option<reqwest::Url>,
    /// PMS origins that may show the inbox in an iframe (CSP `frame-ancestors`); none by default.
    #[serde(default)]
    pub frame_ancestors: Vec<String>,
    /// An inbox session unused for this long is signed out.
    #[serde(
        default = "default_session_idle",
        deserialize_with = "value::de_duration::<_, { 30 * 86_400 }>",
        serialize_with = "value::ser_duration"
    )]
    pub session_idle: std::time::Duration,
    /// TLS on the API listener (both or neither; re-read on SIGHUP), for an https `public_url` without a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

fn default_session_idle() -> std::time::Duration {
    std::time::Duration::from_secs(12 * 3600)
}

fn de_public_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    value::de_api_url(d).map(Some)
}

fn ser_public_url<S: serde::Serializer>(url: &Option<reqwest::Url>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => value::ser_url(url, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Recorded as the author of the replies it sends.
    #[serde(deserialize_with = "value::de_non_empty")]
    pub name: String,
    #[serde(skip_deserializing)]
    pub token: Secret,
    /// This token sees only these properties (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_ids: Option<Vec<String>>,
    #[serde(default, rename = "token", skip_serializing)]
    written_token: Option<Written>,
    #[serde(default, rename = "token_file", skip_serializing)]
    written_token_file: Option<PathBuf>,
}

impl ApiToken {
    pub fn new(name: &str, token: Secret, property_ids: Option<Vec<String>>) -> ApiToken {
        ApiToken {
            name: name.to_owned(),
            token,
            property_ids,
            written_token: None,
            written_token_file: None,
        }
    }

    /// Whether this token may see `property_id` (a thread without a property only for unrestricted tokens).
    pub fn sees(&self, property_id: Option<&str>) -> bool {
        match (&self.property_ids, property_id) {
            (None, _) => true,
            (Some(ids), Some(p)) => ids.iter().any(|id| id == p),
            (Some(_), None) => false,
        }
    }
}

impl ApiSettings {
    pub fn new(listen: std::net::SocketAddr, tokens: Vec<ApiToken>) -> ApiSettings {
        ApiSettings {
            listen,
            tokens,
            public_url: None,
            frame_ancestors: Vec::new(),
            session_idle: default_session_idle(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }

    /// Where staff open the inbox: `public_url`, else the listen address.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls_cert_file.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// Cookies for an iframe on another site must be `SameSite=None; Secure`, which browsers keep only over https.
    pub fn secure_cookies(&self) -> bool {
        self.base_url().starts_with("https://")
    }

    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err(cx.invalid("api.tls_key_file", "is required with api.tls_cert_file")),
            (None, Some(_)) => return Err(cx.invalid("api.tls_cert_file", "is required with api.tls_key_file")),
            _ => {}
        }
        self.tls_cert_file = self.tls_cert_file.take().map(|p| cx.beside_config(p));
        self.tls_key_file = self.tls_key_file.take().map(|p| cx.beside_config(p));
        for (i, origin) in self.frame_ancestors.iter().enumerate() {
            let ok = reqwest::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.path() == "/"
                    && u.query().is_none()
                    && !origin.ends_with('/')
            });
            if !ok {
                return Err(cx.invalid(
                    &format!("api.frame_ancestors[{i}]"),
                    "must be an origin like \"https://pms.example.com\" (scheme and host, no path)",
                ));
            }
        }
        if !self.frame_ancestors.is_empty() && !self.secure_cookies() {
            cx.warnings.push(
                "api.frame_ancestors is set but the inbox is not served over https (api.public_url): browsers do not \
                 keep its session cookie inside another site's iframe"
                    .into(),
            );
        }
        if self.tokens.is_empty() {
            return Err(cx.invalid(
                "api.tokens",
                "[api] needs at least one [[api.tokens]] entry (name and token): nobody could call it",
            ));
        }
        for (i, t) in self.tokens.iter_mut().enumerate() {
            let key = format!("api.tokens[{i}].token");
            let file_key = format!("api.tokens[{i}].token_file");
            t.token = cx.secret(
                Keys {
                    key: &key,
                    file_key: &file_key,
                    env: None,
                },
                t.written_token.take(),
                t.written_token_file.take(),
            )?;
            if cx.resolves_secrets() && t.token.expose().chars().count() < MIN_TOKEN_LEN {
                return Err(cx.invalid(&key, &format!("must be at least {MIN_TOKEN_LEN} characters")));
            }
            if t.property_ids.as_ref().is_some_and(|ids| ids.is_empty()) {
                return Err(cx.invalid(
                    &format!("api.tokens[{i}].property_ids"),
                    "is empty: the token would see nothing (leave it out for every property)",
                ));
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if self.tokens[..i].iter().any(|other| other.name == t.name) {
                return Err(cx.invalid(&format!("api.tokens[{i}].name"), &format!("{:?} is used twice", t.name)));
            }
            if cx.resolves_secrets()
                && self.tokens[..i]
                    .iter()
                    .any(|other| other.token.expose() == t.token.expose())
            {
                return Err(cx.invalid(&format!("api.tokens[{i}].token"), "is the same as another token's"));
            }
        }
        Ok(())
    }
}
