//! `[log]`: the log's format and filter.

use serde::{Deserialize, Serialize};

use super::value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default = "default_format")]
    pub format: LogFormat,
    /// `EnvFilter` syntax; `RUST_LOG` overrides it.
    #[serde(default = "default_level", deserialize_with = "value::de_log_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: default_format(),
            level: default_level(),
        }
    }
}

fn default_format() -> LogFormat {
    LogFormat::Pretty
}

fn default_level() -> String {
    "info".into()
}
