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
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
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
