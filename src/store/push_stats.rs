//! `push_stats`: what each push source brought, for status: accepted, duplicates, quarantined, other events
//! acknowledged, and failed authentications.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Millis, format_ms};

/// Counts to add to one source's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub accepted: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub ignored: u64,
    pub refused: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }
}

pub(super) fn add(conn: &Connection, source: &str, tally: &Tally, at: Millis) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO push_stats (source, accepted, duplicates, quarantined, ignored, refused, last_accepted_at,
                                 last_refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?2 > 0 THEN ?7 END, CASE WHEN ?6 > 0 THEN ?7 END)
         ON CONFLICT (source) DO UPDATE SET
             accepted = accepted + ?2, duplicates = duplicates + ?3, quarantined = quarantined + ?4,
             ignored = ignored + ?5, refused = refused + ?6,
             last_accepted_at = CASE WHEN ?2 > 0 THEN ?7 ELSE last_accepted_at END,
             last_refused_at = CASE WHEN ?6 > 0 THEN ?7 ELSE last_refused_at END",
    )?
    .execute(params![
        source,
        tally.accepted as i64,
        tally.duplicates as i64,
        tally.quarantined as i64,
        tally.ignored as i64,
        tally.refused as i64,
        at
    ])?;
    Ok(())
}

/// One push source as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PushSource {
    pub source: String,
    pub accepted: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub ignored: i64,
    pub refused: i64,
    pub last_accepted_at: Option<String>,
    pub last_refused_at: Option<String>,
    #[serde(skip)]
    pub last_accepted_ms: Option<Millis>,
}

pub fn all(conn: &Connection) -> rusqlite::Result<Vec<PushSource>> {
    conn.prepare(
        "SELECT source, accepted, duplicates, quarantined, ignored, refused, last_accepted_at, last_refused_at
         FROM push_stats ORDER BY source",
    )?
    .query_map([], |r| {
        Ok(PushSource {
            source: r.get(0)?,
            accepted: r.get(1)?,
            duplicates: r.get(2)?,
            quarantined: r.get(3)?,
            ignored: r.get(4)?,
            refused: r.get(5)?,
            last_accepted_at: r.get::<_, Option<Millis>>(6)?.map(format_ms),
            last_refused_at: r.get::<_, Option<Millis>>(7)?.map(format_ms),
            last_accepted_ms: r.get(6)?,
        })
    })?
    .collect()
}
