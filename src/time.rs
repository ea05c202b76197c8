//! Wall-clock instants as the store keeps them: milliseconds since the Unix epoch, in one type, so that the
//! conversions to and from `Duration` (saturating, never wrapping) are written once.

use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(i64);

impl Millis {
    pub const fn from_unix_ms(ms: i64) -> Millis {
        Millis(ms)
    }

    pub fn now() -> Millis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down, also before 1970).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn after(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(d)))
    }

    pub fn before(self, d: Duration) -> Millis {
        Millis(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long from `self` until `later`; zero if `later` is not later.
    pub fn until(self, later: Millis) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// How long `earlier` was before `self`; zero if it was not earlier.
    pub fn since(self, earlier: Millis) -> Duration {
        earlier.until(self)
    }

    /// RFC 3339 UTC with milliseconds, for logs, reports and payloads.
    pub fn rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| format!("{} ms", self.0))
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ToSql for Millis {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for Millis {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Millis> {
        i64::column_result(value).map(Millis)
    }
}
