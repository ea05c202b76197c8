//! `[store]`: where the SQLite store lives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Cx};

pub const DEFAULT_STORE_PATH: &str = "/var/lib/ota-relay/relay.db";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Relative paths are taken from the configuration file's directory.
    #[serde(default = "default_path")]
    pub path: PathBuf,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings { path: default_path() }
    }
}

impl StoreSettings {
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(cx.invalid("store.path", "must not be empty"));
        }
        self.path = cx.beside_config(std::mem::take(&mut self.path));
        Ok(())
    }
}

fn default_path() -> PathBuf {
    PathBuf::from(DEFAULT_STORE_PATH)
}
