//! `ota-relay status [--json]`: what the store says, read beside a running daemon (WAL readers never block it).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::BookingSettings;
use crate::store::deliveries::{self, OutboxSummary};
use crate::store::job_runs::{self, JobRun};
use crate::store::source_state::{self, Source, SourceTimes};
use std::collections::BTreeMap;

use crate::store::{self, StoreError, batches, messages, quarantine, replies};

/// When a healthy store becomes "degraded".
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// The oldest pending delivery is older than this.
    pub pending_age: Duration,
    /// Polls have been failing for longer than this.
    pub failing_for: Duration,
    /// An answer that cannot be parsed has persisted for longer than this (a format change upstream).
    pub parse_failing_for: Duration,
    /// No poll has been recorded for longer than this: the daemon is stopped, or its drain loop is stuck.
    pub silent_for: Duration,
    /// The pull runs, so polls are expected.
    pub expect_polls: bool,
    /// A reply has been `unknown` for longer than this (`[replies] reconcile_window`): nothing settled it.
    pub reply_unknown_for: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            pending_age: Duration::from_secs(3600),
            failing_for: Duration::from_secs(15 * 60),
            parse_failing_for: Duration::from_secs(5 * 60),
            silent_for: Duration::from_secs(15 * 60),
            expect_polls: true,
            reply_unknown_for: Duration::from_secs(600),
        }
    }
}

impl Thresholds {
    /// Raises `silent_for` to twice the longest quiet spell this configuration has without failing (a poll
    /// interval or backoff wait and two request timeouts), so that a long `poll_interval` is not reported.
    /// Without a pull (`None`) no poll is expected, and silence is no problem: a receiver that accepts nothing for
    /// long is not unhealthy by itself.
    /// `unknown` replies are a problem past the reconcile window.
    pub fn with_reconcile_window(mut self, window: Duration) -> Thresholds {
        self.reply_unknown_for = window;
        self
    }

    pub fn fitted_to(mut self, pull: Option<&BookingSettings>) -> Thresholds {
        match pull {
            Some(booking) => {
                let quiet = booking.poll_interval.max(booking.backoff_max) + 2 * booking.request_timeout;
                self.silent_for = self.silent_for.max(2 * quiet);
            }
            None => self.expect_polls = false,
        }
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub store: String,
    /// "healthy" or "degraded".
    pub health: &'static str,
    pub problems: Vec<String>,
    pub daemon_pid: Option<u32>,
    pub source: Option<Source>,
    pub messages_stored: i64,
    pub tombstones: i64,
    pub redeliveries_filtered: i64,
    pub quarantined: i64,
    pub deliveries: Deliveries,
    /// Each push source that sent anything: accepted, duplicates, quarantined, ignored, refused.
    pub pushes: Vec<store::push_stats::PushSource>,
    /// Replies by state.
    pub replies: std::collections::BTreeMap<String, i64>,
    pub jobs: Vec<JobRun>,
}

#[derive(Debug, Serialize)]
pub struct Deliveries {
    pub pending: i64,
    pub oldest_pending_age_s: Option<i64>,
    pub delivered: i64,
    /// Erased on request before they were delivered: closed, never sent, not dead letters.
    pub erased: i64,
    pub dead_letters: i64,
}

/// Reads the status; an error means the store is unreadable (exit code 2).
pub fn read(store_path: &Path, thresholds: Thresholds) -> Result<Status, StoreError> {
    let conn = store::open_for_tools(store_path)?;
    let now = store::now_ms();
    let source = source_state::read(&conn)?;
    let outbox = deliveries::summary(&conn)?;
    let (messages_stored, tombstones) = messages::counts(&conn)?;
    let (delivered, erased) = deliveries::count_done(&conn)?;
    let mut status = Status {
        store: store_path.display().to_string(),
        health: "healthy",
        problems: Vec::new(),
        daemon_pid: store::consumer_pid(store_path),
        messages_stored,
        tombstones,
        redeliveries_filtered: batches::redeliveries_filtered(&conn)?,
        quarantined: quarantine::count(&conn)?,
        deliveries: Deliveries {
            pending: outbox.pending,
            oldest_pending_age_s: outbox.oldest_pending_age_s(now),
            delivered,
            erased,
            dead_letters: outbox.dead,
        },
        pushes: store::push_stats::all(&conn)?,
        replies: BTreeMap::new(),
        jobs: job_runs::all(&conn)?,
        source: source.as_ref().map(|(s, _)| s.clone()),
    };
    status.problems = problems(now, thresholds, &outbox, &source);
    let replies = replies::counts(&conn)?;
    status.problems.extend(reply_problem(now, thresholds, &replies));
    status.replies = replies.by_state.into_iter().collect();
    status.problems.extend(job_problems(&status.jobs));
    status.problems.extend(disk_problem(store_path));
    if !status.problems.is_empty() {
        status.health = "degraded";
    }
    Ok(status)
}

/// The verdict and each push source (what `/healthz` serves): reads the source, the outbox's pending and dead
/// rows and the push counts, none of the counts over the whole history that `read` reports.
pub fn problems_now(
    store_path: &Path,
    thresholds: Thresholds,
) -> Result<(Vec<String>, Vec<store::push_stats::PushSource>), StoreError> {
    let conn = store::open_for_tools(store_path)?;
    let source = source_state::read(&conn)?;
    let outbox = deliveries::summary(&conn)?;
    let mut found = problems(store::now_ms(), thresholds, &outbox, &source);
    found.extend(reply_problem(store::now_ms(), thresholds, &replies::counts(&conn)?));
    found.extend(job_problems(&job_runs::all(&conn)?));
    found.extend(disk_problem(store_path));
    Ok((found, store::push_stats::all(&conn)?))
}

/// A reply left `unknown` past the reconcile window: nothing could settle it; an operator must look.
fn reply_problem(now: store::Millis, thresholds: Thresholds, counts: &replies::Counts) -> Option<String> {
    let since = counts.oldest_unknown_since?;
    let age = now.since(since);
    (age > thresholds.reply_unknown_for).then(|| {
        let unknown = counts
            .by_state
            .iter()
            .find(|(s, _)| s == "unknown")
            .map_or(0, |(_, n)| *n);
        format!(
            "{unknown} reply(ies) of unknown outcome, the oldest for {}: check the extranet, then `ota-relay replies \
             resolve ID --sent|--failed`",
            human(age.as_secs() as i64)
        )
    })
}

fn problems(
    now: store::Millis,
    thresholds: Thresholds,
    outbox: &OutboxSummary,
    source: &Option<(Source, SourceTimes)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(age) = outbox.oldest_pending_age_s(now)
        && age as u64 > thresholds.pending_age.as_secs()
    {
        problems.push(format!(
            "the oldest pending delivery is {} old (threshold {})",
            human(age),
            humantime::format_duration(thresholds.pending_age)
        ));
    }
    if let Some((_, times)) = source
        && thresholds.expect_polls
        && let Some(at) = times.last_poll_at
        && now.since(at).as_secs() > thresholds.silent_for.as_secs()
    {
        problems.push(format!(
            "no poll recorded for {} (threshold {}): ota-relay is not running, or its drain loop is stuck",
            human(now.since(at).as_secs() as i64),
            humantime::format_duration(thresholds.silent_for)
        ));
    }
    if let Some((s, times)) = source
        && let Some(since) = times.failing_since
    {
        let failing_s = now.since(since).as_secs() as i64;
        let error = s.last_error.as_deref().unwrap_or("");
        // An answer that cannot be read does not get better by waiting: a few in a row already say so.
        let parse = error.contains("unusable answer");
        let limit = if parse {
            thresholds.parse_failing_for
        } else {
            thresholds.failing_for
        };
        if parse && times.failures >= PARSE_FAILURES {
            problems.push(format!(
                "answers cannot be parsed ({} in a row, nothing confirmed): {error}",
                times.failures
            ));
        } else if failing_s as u64 > limit.as_secs() {
            let what = if parse {
                "answers cannot be parsed"
            } else {
                "polls have been failing"
            };
            problems.push(format!("{what} for {}: {error}", human(failing_s)));
        }
    }
    if outbox.dead > 0 {
        problems.push(format!(
            "{} dead letter(s) wait for an operator (`ota-relay dead-letters list`)",
            outbox.dead
        ));
    }
    problems
}

/// The same unreadable answer this many times in a row makes the store degraded.
const PARSE_FAILURES: i64 = 3;
/// Less free space than this on the store's file system is a full disk.
const DISK_FULL_BELOW: u64 = 1024 * 1024;

/// A full disk, as the file system says: nothing new can be stored (nor confirmed upstream).
fn disk_problem(store_path: &Path) -> Option<String> {
    let free = store::free_bytes(store_path)?;
    (free < DISK_FULL_BELOW).then(|| {
        format!(
            "the disk holding the store is full ({} KiB free): nothing new is stored or confirmed until space is freed",
            free / 1024
        )
    })
}

/// A job that stopped for good, or whose last run failed: the retention of personal data may not be happening.
fn job_problems(jobs: &[JobRun]) -> Vec<String> {
    let mut problems = Vec::new();
    for job in jobs {
        if let Some(reason) = &job.stopped {
            problems.push(format!(
                "job {} stopped: {reason}; fix jobs.{} and restart",
                job.job, job.job
            ));
        } else if job.ok == Some(false) {
            let summary = job.summary.as_ref().map(|s| s.to_string()).unwrap_or_default();
            problems.push(format!("the last {} run failed: {summary}", job.job));
        }
    }
    problems
}

fn human(seconds: i64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0) as u64)).to_string()
}

impl Status {
    /// 0 healthy, 1 degraded.
    pub fn exit_code(&self) -> u8 {
        if self.problems.is_empty() { 0 } else { 1 }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let dash = || "-".to_owned();
        let _ = writeln!(out, "ota-relay status: {}", self.health.to_uppercase());
        for p in &self.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
        let _ = writeln!(out, "store:                 {}", self.store);
        let daemon = self
            .daemon_pid
            .map_or("not running".to_owned(), |pid| format!("running (pid {pid})"));
        let _ = writeln!(out, "daemon:                {daemon}");
        match &self.source {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "last poll:             {}",
                    s.last_poll_at.clone().unwrap_or_else(dash)
                );
                let _ = writeln!(
                    out,
                    "last successful poll:  {}",
                    s.last_success_at.clone().unwrap_or_else(dash)
                );
                let _ = writeln!(
                    out,
                    "last batch:            {}",
                    s.last_batch_at.clone().unwrap_or_else(dash)
                );
                if let Some(since) = &s.failing_since {
                    let _ = writeln!(out, "failing since:         {since}");
                }
                if let Some(error) = &s.last_error {
                    let at = s.last_error_at.clone().unwrap_or_else(dash);
                    let _ = writeln!(out, "last error:            {at}: {error}");
                }
            }
            None => {
                let _ = writeln!(out, "last poll:             never");
            }
        }
        let _ = writeln!(
            out,
            "messages stored:       {} ({} tombstones)",
            self.messages_stored, self.tombstones
        );
        let _ = writeln!(out, "redeliveries filtered: {}", self.redeliveries_filtered);
        let _ = writeln!(out, "quarantined:           {}", self.quarantined);
        let d = &self.deliveries;
        let oldest = d
            .oldest_pending_age_s
            .map_or(String::new(), |s| format!(", oldest {} old", human(s)));
        let _ = writeln!(out, "deliveries pending:    {}{oldest}", d.pending);
        let _ = writeln!(out, "delivered:             {}", d.delivered);
        if d.erased > 0 {
            let _ = writeln!(out, "erased before delivery: {}", d.erased);
        }
        let _ = writeln!(out, "dead letters:          {}", d.dead_letters);
        for p in &self.pushes {
            let last = p.last_accepted_at.clone().unwrap_or_else(|| "never".to_owned());
            let _ = writeln!(
                out,
                "push {:<16} accepted {}, duplicates {}, quarantined {}, ignored {}, refused {}; last accepted {last}",
                format!("{}:", p.source),
                p.accepted,
                p.duplicates,
                p.quarantined,
                p.ignored,
                p.refused
            );
        }
        if !self.replies.is_empty() {
            let counts: Vec<String> = self.replies.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let _ = writeln!(out, "replies:               {}", counts.join(", "));
        }
        if self.jobs.is_empty() {
            let _ = writeln!(out, "jobs:                  none has run yet");
        }
        for j in &self.jobs {
            let outcome = match j.ok {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "running",
            };
            let summary = j.summary.as_ref().map_or(String::new(), |s| format!(" {s}"));
            let _ = writeln!(
                out,
                "job {:<17} last run {} {outcome} (runs: {}){summary}",
                format!("{}:", j.job),
                j.last_started_at,
                j.runs
            );
        }
        out
    }
}
