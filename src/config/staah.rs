//! `[staah]`: STAAH pushes guest messages with HTTP Basic credentials that we issue.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Keys, Secret, Written};
use super::{ConfigError, Cx, value};

pub const ENV_PASSWORD: &str = "OTA_RELAY_STAAH_PASSWORD";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaahSettings {
    #[serde(deserialize_with = "value::de_non_empty")]
    pub username: String,
    #[serde(skip_deserializing)]
    pub password: Secret,
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
        Ok(())
    }
}
