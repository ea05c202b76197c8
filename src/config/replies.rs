//! `[replies]`: how replies to guests are sent and settled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value;

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesSettings {
    /// A Booking.com reply whose send's outcome is unknown becomes `failed` when reading the conversation has not
    /// shown it for this long.
    #[serde(
        default = "default_reconcile_window",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub reconcile_window: Duration,
    /// A send refused before it was processed (refused connection, 429, 503 with Retry-After) is tried again
    /// after this, doubling up to `retry_max`.
    #[serde(
        default = "default_retry_initial",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub retry_initial: Duration,
    #[serde(
        default = "default_retry_max",
        deserialize_with = "value::de_duration::<_, DAY>",
        serialize_with = "value::ser_duration"
    )]
    pub retry_max: Duration,
    /// Past this since it was written, a reply that could not be sent is `failed` (a guest answer a day late is
    /// worse than the PMS knowing it failed).
    #[serde(
        default = "default_give_up_after",
        deserialize_with = "value::de_duration::<_, WEEK>",
        serialize_with = "value::ser_duration"
    )]
    pub give_up_after: Duration,
    /// One send's request timeout; past it, its outcome is unknown.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "value::de_duration::<_, 600>",
        serialize_with = "value::ser_duration"
    )]
    pub request_timeout: Duration,
}

impl Default for RepliesSettings {
    fn default() -> RepliesSettings {
        RepliesSettings {
            reconcile_window: default_reconcile_window(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            give_up_after: default_give_up_after(),
            request_timeout: default_request_timeout(),
        }
    }
}

fn default_reconcile_window() -> Duration {
    Duration::from_secs(600)
}

fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}

fn default_give_up_after() -> Duration {
    Duration::from_secs(DAY)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
