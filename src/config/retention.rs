//! `[retention]`: how long guest content and the tombstones that replace it are kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value;

/// How long content and tombstones are kept; `None` is "forever".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    #[serde(
        default = "default_content",
        deserialize_with = "value::de_retention",
        serialize_with = "value::ser_retention"
    )]
    pub content: Option<Duration>,
    #[serde(
        default = "default_tombstones",
        deserialize_with = "value::de_retention",
        serialize_with = "value::ser_retention"
    )]
    pub tombstones: Option<Duration>,
}

impl Default for RetentionSettings {
    fn default() -> RetentionSettings {
        RetentionSettings {
            content: default_content(),
            tombstones: default_tombstones(),
        }
    }
}

impl RetentionSettings {
    pub const FOREVER: RetentionSettings = RetentionSettings {
        content: None,
        tombstones: None,
    };
}

fn default_content() -> Option<Duration> {
    Some(Duration::from_secs(30 * value::DAY))
}

fn default_tombstones() -> Option<Duration> {
    Some(Duration::from_secs(400 * value::DAY))
}
