//! `[jobs]`: when the housekeeping jobs run.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::value;

const DEFAULT_DUPLICATE_FILTER: &str = "0 */15 * * * *";
const DEFAULT_RETENTION: &str = "0 30 3 * * *";
const DEFAULT_MAINTENANCE: &str = "0 0 4 * * 0";

/// The housekeeping schedules; `None` is a job turned "off".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    #[serde(default = "default_duplicate_filter", with = "schedule")]
    pub duplicate_filter: Option<Schedule>,
    #[serde(default = "default_retention", with = "schedule")]
    pub retention: Option<Schedule>,
    #[serde(default = "default_maintenance", with = "schedule")]
    pub maintenance: Option<Schedule>,
    #[serde(
        default = "default_timezone",
        deserialize_with = "value::de_timezone",
        serialize_with = "value::ser_timezone"
    )]
    pub timezone: chrono_tz::Tz,
}

impl Default for JobsSettings {
    fn default() -> JobsSettings {
        JobsSettings {
            duplicate_filter: default_duplicate_filter(),
            retention: default_retention(),
            maintenance: default_maintenance(),
            timezone: default_timezone(),
        }
    }
}

impl JobsSettings {
    /// Every job turned off (the demo, tests that drive jobs themselves).
    pub fn off() -> JobsSettings {
        JobsSettings {
            duplicate_filter: None,
            retention: None,
            maintenance: None,
            timezone: chrono_tz::UTC,
        }
    }
}

/// A cron pattern with a seconds field, as written and as parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub pattern: String,
    pub cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.pattern == other.pattern
    }
}

impl Schedule {
    /// A pattern that parses and fires: one that never does (the 31st of February) would leave its job, and the
    /// retention of personal data with it, silently undone.
    pub fn parse(pattern: &str) -> Result<Schedule, crate::jobs::ScheduleError> {
        let cron = crate::jobs::parse_schedule(pattern)?;
        cron.find_next_occurrence(&chrono::Utc::now(), false)
            .map_err(|_| crate::jobs::ScheduleError::NeverFires)?;
        Ok(Schedule {
            pattern: pattern.to_owned(),
            cron,
        })
    }
}

/// A cron pattern, or "off".
mod schedule {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Schedule>, D::Error> {
        let pattern = String::deserialize(d)?;
        if pattern.trim() == "off" {
            return Ok(None);
        }
        Schedule::parse(&pattern).map(Some).map_err(|e| {
            de::Error::custom(format!(
                "{pattern:?} is not a cron schedule with a seconds field (like \"0 */15 * * * *\"), or \"off\": {e}"
            ))
        })
    }

    pub fn serialize<S: Serializer>(schedule: &Option<Schedule>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(schedule.as_ref().map_or("off", |s| &s.pattern))
    }
}

fn builtin(pattern: &str) -> Option<Schedule> {
    Some(Schedule::parse(pattern).expect("the built-in schedules parse"))
}

fn default_duplicate_filter() -> Option<Schedule> {
    builtin(DEFAULT_DUPLICATE_FILTER)
}

fn default_retention() -> Option<Schedule> {
    builtin(DEFAULT_RETENTION)
}

fn default_maintenance() -> Option<Schedule> {
    builtin(DEFAULT_MAINTENANCE)
}

fn default_timezone() -> chrono_tz::Tz {
    chrono_tz::UTC
}
