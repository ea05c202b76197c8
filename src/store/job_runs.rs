//! `job_runs`: the last run of each housekeeping job.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Millis, format_ms};

pub(crate) fn started(conn: &Connection, job: &str, at: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO job_runs (job, started_at) VALUES (?1, ?2)
         ON CONFLICT (job) DO UPDATE SET started_at = ?2, finished_at = NULL, ok = NULL",
        params![job, at],
    )?;
    Ok(())
}

pub(crate) fn finished(conn: &Connection, job: &str, at: Millis, ok: bool, summary: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE job_runs SET finished_at = ?2, ok = ?3, summary = ?4, runs = runs + 1 WHERE job = ?1",
        params![job, at, ok, summary],
    )?;
    Ok(())
}

/// The job cannot run on (its schedule has no next occurrence): kept until the daemon schedules it again.
pub(crate) fn stopped(conn: &Connection, job: &str, at: Millis, reason: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO job_runs (job, started_at, stopped) VALUES (?1, ?2, ?3)
         ON CONFLICT (job) DO UPDATE SET stopped = ?3",
        params![job, at, reason],
    )?;
    Ok(())
}

/// The daemon (re)scheduled the job, or turned it off: it is not stopped.
pub(crate) fn scheduled(conn: &Connection, job: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE job_runs SET stopped = NULL WHERE job = ?1", [job])?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct JobRun {
    pub job: String,
    pub last_started_at: String,
    pub last_finished_at: Option<String>,
    pub ok: Option<bool>,
    pub summary: Option<serde_json::Value>,
    pub runs: i64,
    /// Why the job stopped for good, if it did.
    pub stopped: Option<String>,
}

pub fn all(conn: &Connection) -> rusqlite::Result<Vec<JobRun>> {
    let mut stmt =
        conn.prepare("SELECT job, started_at, finished_at, ok, summary, runs, stopped FROM job_runs ORDER BY job")?;
    stmt.query_map([], |r| {
        let summary: Option<String> = r.get(4)?;
        Ok(JobRun {
            job: r.get(0)?,
            last_started_at: format_ms(r.get(1)?),
            last_finished_at: r.get::<_, Option<Millis>>(2)?.map(format_ms),
            ok: r.get(3)?,
            summary: summary.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s))),
            runs: r.get(5)?,
            stopped: r.get(6)?,
        })
    })?
    .collect()
}
