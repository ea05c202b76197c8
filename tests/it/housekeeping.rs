//! Housekeeping jobs, status, backup, quarantine and erasure: each on a real store prepared with the problem it
//! handles, the operator commands through the real binary.

use std::path::Path;
use std::time::Duration;

use ota_relay::config::{RetentionSettings, Schedule};
use ota_relay::fake::{commit_as_batch, guest_message, poison_message};
use ota_relay::jobs::{self, JobKind};
use ota_relay::store::{Access, Store, now_ms};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const KEEP: RetentionSettings = RetentionSettings {
    content: None,
    tombstones: None,
};
/// The defaults: content for 30 days, tombstones for 400.
const DEFAULT_RETENTION: RetentionSettings = RetentionSettings {
    content: Some(Duration::from_secs(30 * 86_400)),
    tombstones: Some(Duration::from_secs(400 * 86_400)),
};
const DAY_MS: i64 = 86_400_000;

/// Commits `indices` of seed 5's sample messages (plus poison) as one batch, as the drain loop would.
async fn commit(store: &Store, indices: impl IntoIterator<Item = u64>, poison: usize) -> ota_relay::store::Committed {
    commit_at(store, indices, poison, now()).await
}

async fn commit_at(
    store: &Store,
    indices: impl IntoIterator<Item = u64>,
    poison: usize,
    fetched_at: i64,
) -> ota_relay::store::Committed {
    let fetched_at = at(fetched_at);
    let mut elements: Vec<String> = indices.into_iter().map(|i| guest_message(5, i).json).collect();
    elements.extend((0..poison).map(|i| poison_message(i as u64)));
    commit_as_batch(store, &elements, fetched_at).await.unwrap()
}

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("relay.db"), Access::Consumer).unwrap()
}

/// A new store holding seed 5's first `n` sample messages, all pending: its directory, path and handle.
async fn store_of(n: u64) -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = open(dir.path());
    commit(&store, 0..n, 0).await;
    (dir, path, store)
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["--config", config.to_str().unwrap()]);
    std::process::Command::new(BIN)
        .args(&full)
        .env_remove("OTA_RELAY_CONFIG")
        .output()
        .unwrap()
}

fn id(i: u64) -> String {
    guest_message(5, i).message_id
}

#[tokio::test]
async fn duplicate_filter_compacts_redeliveries_and_repairs_delivery_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = open(dir.path());
    // All in one millisecond, as a fast drain of a redelivering queue does: time cannot tell copies apart.
    let then = now();
    commit_at(&store, 0..10, 0, then).await;
    // Redelivered: 0..3 once more, 0 a third time.
    commit_at(&store, 0..3, 0, then).await;
    commit_at(&store, [0], 0, then).await;
    // What an old version or a manual edit could leave: a message without its delivery row (one pending, one
    // tombstone), a delivered one that must stay delivered, and a delivery row without a message.
    {
        let conn = db(&path);
        let seq = |i: u64| -> i64 {
            conn.query_row("SELECT seq FROM messages WHERE message_id = ?1", [id(i)], |r| r.get(0))
                .unwrap()
        };
        conn.execute("DELETE FROM deliveries WHERE seq = ?1", [seq(4)]).unwrap();
        conn.execute("DELETE FROM deliveries WHERE seq = ?1", [seq(5)]).unwrap();
        conn.execute(
            "UPDATE messages SET content = NULL, raw = NULL, tombstoned_at = 1 WHERE seq = ?1",
            [seq(5)],
        )
        .unwrap();
        conn.execute(
            "UPDATE deliveries SET state = 'delivered', done_at = 1 WHERE seq = ?1",
            [seq(6)],
        )
        .unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; INSERT INTO deliveries (seq, next_attempt_at) VALUES (9999, 0);",
        )
        .unwrap();
    }
    let figures = jobs::run_once(&store, JobKind::DuplicateFilter, KEEP).await.unwrap();
    assert_eq!(figures["receipts_compacted"], 14);
    assert_eq!(figures["redeliveries_filtered"], 4);
    assert_eq!(figures["missing_deliveries"], 2);
    assert_eq!(figures["orphan_deliveries"], 1);
    let redeliveries = |i: u64| -> i64 {
        db(&path)
            .query_row(
                "SELECT redeliveries FROM messages WHERE message_id = ?1",
                [id(i)],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!((redeliveries(0), redeliveries(1), redeliveries(3)), (2, 1, 0));
    let state = |i: u64| -> String {
        db(&path)
            .query_row(
                "SELECT d.state FROM deliveries d JOIN messages m USING (seq) WHERE m.message_id = ?1",
                [id(i)],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(state(4), "pending", "a missing row becomes pending");
    assert_eq!(state(5), "dead", "a tombstone is never rescheduled");
    assert_eq!(state(6), "delivered", "a delivered row is left alone");
    assert_eq!(count(&path, "SELECT count(*) FROM receipts"), 0);
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 10);

    // A second run finds nothing, and a later redelivery is counted on top.
    commit_at(&store, [1], 0, then).await;
    let figures = jobs::run_once(&store, JobKind::DuplicateFilter, KEEP).await.unwrap();
    assert_eq!(figures["redeliveries_filtered"], 1);
    assert_eq!(figures["missing_deliveries"], 0);
    assert_eq!(redeliveries(1), 2);
    let (runs, ok): (i64, bool) = db(&path)
        .query_row(
            "SELECT runs, ok FROM job_runs WHERE job = 'duplicate_filter'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((runs, ok), (2, true));
}

#[tokio::test]
async fn retention_keeps_tombstones_that_still_block_redeliveries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = open(dir.path());
    commit(&store, 0..6, 1).await;
    let day = DAY_MS;
    let now = now();
    {
        let conn = db(&path);
        let set = |i: u64, state: &str, done_at: i64| {
            conn.execute(
                "UPDATE deliveries SET state = ?2, done_at = ?3 WHERE seq = (SELECT seq FROM messages WHERE message_id = ?1)",
                rusqlite::params![id(i), state, done_at],
            )
            .unwrap();
        };
        set(0, "delivered", now - 40 * day); // past retention: tombstone
        set(1, "delivered", now - 40 * day);
        set(2, "delivered", now - 2 * day); // recent: kept
        set(3, "dead", now - 40 * day); // dead letters wait for an operator
        // 4 and 5 stay pending, however old.
        conn.execute("UPDATE messages SET first_seen_at = ?1", [now - 60 * day])
            .unwrap();
    }
    let retention = DEFAULT_RETENTION;
    let figures = jobs::run_once(&store, JobKind::Retention, retention).await.unwrap();
    assert_eq!(figures["tombstoned"], 2);
    assert_eq!(figures["tombstones_deleted"], 0);
    let content = |i: u64| -> (Option<String>, Option<String>, Option<String>) {
        db(&path)
            .query_row(
                "SELECT content, raw, content_sha256 FROM messages WHERE message_id = ?1",
                [id(i)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let (c, raw, hash) = content(0);
    assert!(
        c.is_none() && raw.is_none() && hash.is_some(),
        "a tombstone keeps the hash only"
    );
    for kept in [2, 3, 4, 5] {
        assert!(content(kept).0.is_some(), "message {kept} keeps its content");
    }
    assert_eq!(count(&path, "SELECT count(*) FROM quarantine"), 1, "quarantine is kept");

    // A late redelivery of a tombstone is recognised: not stored, not delivered again.
    let again = commit(&store, [0], 0).await;
    assert_eq!((again.summary.new, again.summary.redelivered), (0, 1));
    assert!(content(0).0.is_none());

    // Past the tombstone period the row goes; with "forever" nothing does.
    db(&path)
        .execute(
            "UPDATE messages SET tombstoned_at = ?1 WHERE tombstoned_at IS NOT NULL",
            [now - 401 * day],
        )
        .unwrap();
    let forever = RetentionSettings {
        content: Some(Duration::from_secs(30 * 86_400)),
        tombstones: None,
    };
    let figures = jobs::run_once(&store, JobKind::Retention, forever).await.unwrap();
    assert_eq!(figures["tombstones_deleted"], 0);
    // Old answers' records go too, once nothing refers to them: the first answer's quarantined element still
    // does; the second's receipt did until the duplicate filter compacted it.
    assert_eq!(count(&path, "SELECT count(*) FROM batches"), 2);
    db(&path)
        .execute("UPDATE batches SET fetched_at = ?1", [now - 401 * day])
        .unwrap();
    jobs::run_once(&store, JobKind::DuplicateFilter, retention)
        .await
        .unwrap();
    let figures = jobs::run_once(&store, JobKind::Retention, retention).await.unwrap();
    assert_eq!(figures["tombstones_deleted"], 2);
    assert_eq!(figures["batches_deleted"], 1);
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 4);
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 4);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM batches b JOIN quarantine q ON q.first_batch = b.id"
        ),
        1
    );
}

#[tokio::test]
async fn maintenance_truncates_the_wal_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = open(dir.path());
    commit(&store, 0..200, 0).await;
    db(&path).execute("DELETE FROM receipts", []).unwrap();
    let wal_size = || {
        std::fs::metadata(dir.path().join("relay.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let before = wal_size();
    let figures = jobs::run_once(&store, JobKind::Maintenance, KEEP).await.unwrap();
    assert!(figures["file_bytes"].as_i64().unwrap() > 0, "{figures}");
    // Truncated, then one frame for the job's own record.
    assert!(
        before > 100_000 && wal_size() < 16_384,
        "WAL {before} -> {} bytes",
        wal_size()
    );
    let auto_vacuum: i64 = db(&path).query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(auto_vacuum, 2, "new stores are created with incremental auto-vacuum");
}

/// A schedule keeps firing after the runtime was stalled (the fault tokio-cron-scheduler's issue #113
/// describes), and missed occurrences are not run as a burst.
#[test]
fn a_job_still_fires_after_the_runtime_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        let cancel = CancellationToken::new();
        let schedule = Schedule::parse("* * * * * *").unwrap();
        let task = tokio::spawn(jobs::run_schedule(
            context(&store, &cancel),
            JobKind::DuplicateFilter,
            schedule,
            chrono_tz::UTC,
            KEEP,
        ));
        let runs = || -> i64 {
            db(&path)
                .query_row("SELECT coalesce(max(runs), 0) FROM job_runs", [], |r| r.get(0))
                .unwrap()
        };
        let wait_runs = |n: i64| async move {
            within(10, &format!("{n} runs"), async {
                while runs() < n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
        };
        wait_runs(1).await;
        // The stall: this thread (the runtime's only one) is blocked for 3.5 occurrences.
        std::thread::sleep(Duration::from_millis(3500));
        let after_stall = runs();
        wait_runs(after_stall + 2).await;
        let started: Vec<i64> = {
            // Consecutive runs after the stall are about a second apart, not a burst of the missed ones.
            let conn = db(&path);
            let first: i64 = conn
                .query_row("SELECT started_at FROM job_runs", [], |r| r.get(0))
                .unwrap();
            wait_runs(after_stall + 3).await;
            let second: i64 = conn
                .query_row("SELECT started_at FROM job_runs", [], |r| r.get(0))
                .unwrap();
            vec![first, second]
        };
        assert!(
            started[1] - started[0] >= 500,
            "runs {} ms apart",
            started[1] - started[0]
        );
        cancel.cancel();
        within(5, "the job task stops", task).await.unwrap();
    });
}

#[tokio::test]
async fn the_daemon_runs_scheduled_jobs_and_status_shows_them() {
    let mut relay = TestRelay::with()
        .queued(5, 0..30)
        .config("[jobs]\nduplicate_filter = \"* * * * * *\"\nretention = \"off\"\n")
        .start()
        .await;
    let (dir, config) = (relay.dir().to_owned(), relay.config());
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay.wait_for_job_run("duplicate_filter").await;

    let out = cli(&config, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Pending deliveries without [forward] are young: healthy.
    assert_eq!(out.status.code(), Some(0), "{status}");
    assert_eq!(status["health"], "healthy");
    assert_eq!(status["messages_stored"], 30);
    assert_eq!(status["deliveries"]["pending"], 30);
    assert!(status["daemon_pid"].as_u64().is_some());
    let job = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "duplicate_filter")
        .unwrap();
    assert!(job["runs"].as_i64().unwrap() >= 1, "{job}");
    assert!(status["source"]["last_success_at"].is_string());
    let text = String::from_utf8(cli(&config, &["status"]).stdout).unwrap();
    assert!(
        text.contains("HEALTHY") && text.contains("job duplicate_filter:"),
        "{text}"
    );

    // Each run is logged with its figures; a job turned off says so.
    let stderr = relay.stop().await;
    let line = stderr.lines().find(|l| l.contains("job finished")).unwrap_or_default();
    assert!(
        line.contains("duplicate_filter") && line.contains("receipts_compacted="),
        "{line}"
    );
    assert!(stderr.contains("job is off"), "{stderr}");

    // Degraded: the oldest pending delivery is older than the threshold, even when it is the one due last (a
    // retry far in the future).
    db(&dir.join("relay.db"))
        .execute_batch(
            "UPDATE messages SET first_seen_at = first_seen_at - 7200000 WHERE seq = (SELECT min(seq) FROM messages);
             UPDATE deliveries SET attempts = 3, next_attempt_at = next_attempt_at + 86400000
                 WHERE seq = (SELECT min(seq) FROM deliveries);",
        )
        .unwrap();
    let out = cli(&config, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{status}");
    let age = status["deliveries"]["oldest_pending_age_s"].as_i64().unwrap();
    assert!((7200..7300).contains(&age), "{status}");
    assert!(
        status["problems"][0]
            .as_str()
            .unwrap()
            .contains("oldest pending delivery"),
        "{status}"
    );
    // Degraded: polls failing for longer than the threshold.
    db(&dir.join("relay.db"))
        .execute_batch(
            "UPDATE messages SET first_seen_at = first_seen_at + 7200000 WHERE seq = (SELECT min(seq) FROM messages);
             UPDATE source_state SET failing_since = last_poll_at - 3600000, last_error = 'HTTP 503'",
        )
        .unwrap();
    let out = cli(&config, &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DEGRADED") && text.contains("polls have been failing"),
        "{text}"
    );
    // Degraded: no poll for two hours (the daemon stopped, or its loop is stuck), unless the threshold allows it.
    db(&dir.as_path().join("relay.db"))
        .execute(
            "UPDATE source_state SET failing_since = NULL, last_error = NULL, last_poll_at = ?1",
            [now() - 2 * 3_600_000],
        )
        .unwrap();
    let out = cli(&config, &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no poll recorded for 2h"), "{text}");
    let out = cli(&config, &["status", "--max-silent", "3h"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // An hourly poll is not silence: the threshold grows with poll_interval.
    let hourly = dir.as_path().join("hourly.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &hourly,
        text.replace("poll_interval = \"100ms\"", "poll_interval = \"1h\""),
    )
    .unwrap();
    let out = cli(&hourly, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // Unreadable: not a store.
    std::fs::write(
        dir.as_path().join("relay.db"),
        b"this is not a database, it is a text file of some length",
    )
    .unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.as_path().join(format!("relay.db{ext}")));
    }
    let out = cli(&config, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["health"], "unreadable");
}

#[tokio::test]
async fn a_run_of_failures_that_began_before_the_clock_went_back_is_timed_from_now() {
    let (_dir, path, store) = store_of(1).await;
    store.record_poll_error("booking.com", "HTTP 503".into()).await.unwrap();
    let began = count(&path, "SELECT failing_since FROM source_state");
    store.record_poll_error("booking.com", "HTTP 503".into()).await.unwrap();
    assert_eq!(
        count(&path, "SELECT failing_since FROM source_state"),
        began,
        "a run keeps its start"
    );
    // Set while the clock was five hours fast: `status` would not see the outage for five hours.
    db(&path)
        .execute("UPDATE source_state SET failing_since = ?1", [now() + 5 * 3_600_000])
        .unwrap();
    store.record_poll_error("booking.com", "HTTP 503".into()).await.unwrap();
    let since = count(&path, "SELECT failing_since FROM source_state");
    assert!(since <= now() && since >= began, "{since} is not a time since {began}");
}

#[test]
fn a_job_planned_while_the_clock_was_fast_runs_on_the_true_schedule_once_it_is_set_right() {
    use chrono::{DateTime, Utc};
    let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
    let every_quarter = jobs::parse_schedule("0 */15 * * * *").unwrap();
    let nightly = jobs::parse_schedule("0 30 3 * * *").unwrap();
    let amsterdam = chrono_tz::Europe::Amsterdam;
    let now = at("2026-11-26T13:07:00Z");
    // Planned when the clock read ten years ahead; the clock has since been set right.
    let fast = at("2036-11-26T13:07:00Z");
    for (cron, expected) in [
        (&every_quarter, "2026-11-26T13:15:00Z"),
        (&nightly, "2026-11-27T02:30:00Z"),
    ] {
        let planned = cron
            .find_next_occurrence(&fast.with_timezone(&amsterdam), false)
            .unwrap();
        let due = jobs::next_due(cron, amsterdam, planned.with_timezone(&Utc), now);
        assert_eq!(due, at(expected));
        // A plan made under the right clock stands.
        assert_eq!(jobs::next_due(cron, amsterdam, at(expected), now), at(expected));
    }
}

#[tokio::test]
async fn backup_is_consistent_while_the_daemon_writes() {
    let mut relay = TestRelay::with().queued(5, 0..20_000).start().await;
    let (ota, config) = (&relay.ota, relay.config());
    within(30, "the drain under way", ota.wait_for(|s| s.confirmed >= 2_000)).await;
    let backup = relay.dir().join("backup.db");
    let out = cli(&config, &["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let confirmed_after = ota.read(|s| s.confirmed);
    let copy = db(&backup);
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let messages: i64 = copy
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    let deliveries: i64 = copy
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert!(
        messages >= 2_000 && messages <= confirmed_after as i64 + 100,
        "{messages}"
    );
    assert_eq!(messages, deliveries, "a snapshot: every message with its delivery row");
    // Never overwrites.
    let again = cli(&config, &["backup", backup.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    relay.stop().await;
}

#[tokio::test]
async fn quarantine_and_erase_tools() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    {
        let store = open(dir.path());
        commit(&store, 0..8, 2).await;
    }
    let out = cli(&config, &["quarantine", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 2);
    let first = items[0]["id"].as_i64().unwrap().to_string();
    let shown = cli(&config, &["quarantine", "show", &first]);
    let raw: String = db(&path)
        .query_row("SELECT raw FROM quarantine WHERE id = ?1", [&first], |r| r.get(0))
        .unwrap();
    assert!(
        String::from_utf8(shown.stdout).unwrap().contains(&raw),
        "shown byte for byte"
    );
    assert!(cli(&config, &["quarantine", "purge", &first]).status.success());
    assert_eq!(cli(&config, &["quarantine", "show", &first]).status.code(), Some(1));
    assert!(cli(&config, &["quarantine", "purge", "--all"]).status.success());
    assert_eq!(count(&path, "SELECT count(*) FROM quarantine"), 0);

    // Erase one message (pending: it must never be sent) and a whole conversation (ids 4..7 share one).
    let erased = cli(&config, &["erase", "--message-id", &id(1)]);
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    assert!(String::from_utf8_lossy(&erased.stdout).contains("erased 1 message"));
    let conversation: String = db(&path)
        .query_row(
            "SELECT conversation_id FROM messages WHERE message_id = ?1",
            [id(4)],
            |r| r.get(0),
        )
        .unwrap();
    let erased = cli(&config, &["erase", "--conversation-id", &conversation]);
    assert!(erased.status.success());
    let in_conversation = count(
        &path,
        &format!("SELECT count(*) FROM messages WHERE conversation_id = '{conversation}'"),
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM messages WHERE tombstoned_at IS NOT NULL AND content IS NULL AND raw IS NULL"
        ),
        1 + in_conversation
    );
    assert_eq!(
        count(&path, "SELECT count(*) FROM deliveries WHERE state = 'erased'"),
        1 + in_conversation,
        "closed as erased: never sent, and no dead letter"
    );
    // A replay of dead letters does not resurrect erased messages.
    assert!(cli(&config, &["dead-letters", "replay", "--all"]).status.success());
    assert_eq!(
        count(&path, "SELECT count(*) FROM deliveries WHERE state = 'pending'"),
        8 - 1 - in_conversation
    );
    // And a redelivery of an erased message is not stored again.
    let store = open(dir.path());
    let again = commit(&store, [1], 0).await;
    assert_eq!((again.summary.new, again.summary.redelivered), (0, 1));
    assert_eq!(
        count(
            &path,
            &format!(
                "SELECT count(*) FROM messages WHERE message_id = '{}' AND content IS NULL",
                id(1)
            )
        ),
        1
    );
    drop(store);
    let nothing = cli(&config, &["erase", "--message-id", "no-such-id"]);
    assert!(String::from_utf8_lossy(&nothing.stdout).contains("nothing stored"));
}

#[tokio::test]
async fn a_running_job_is_never_overlapped_and_shutdown_waits_for_it() {
    let mut relay = TestRelay::with()
        .config("[jobs]\nduplicate_filter = \"off\"\nretention = \"off\"\nmaintenance = \"* * * * * *\"\n")
        .start()
        .await;
    let path = relay.path();
    // A reader on an old snapshot: the maintenance job's TRUNCATE checkpoint waits for it (SQLite's busy
    // handler), which holds a run in progress for as long as the test likes. The idle drain loop keeps adding
    // WAL frames after the snapshot.
    let reader = db(&path);
    reader.execute_batch("BEGIN; SELECT count(*) FROM messages;").unwrap();
    let maintenance = |db: &rusqlite::Connection| -> Option<(i64, Option<i64>, i64)> {
        db.query_row(
            "SELECT started_at, finished_at, runs FROM job_runs WHERE job = 'maintenance'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
    };
    relay
        .wait_for_store("a maintenance run started and not finished", |db| {
            maintenance(db).is_some_and(|(_, finished, _)| finished.is_none())
        })
        .await;
    let (held_since, _, runs) = maintenance(&db(&path)).unwrap();
    // Not synchronisation: two more ticks of the every-second schedule pass while the run is held.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        maintenance(&db(&path)),
        Some((held_since, None, runs)),
        "no run started while one was held"
    );
    relay.signal(libc::SIGTERM);
    relay.notifications.wait_for_nth("STOPPING=1", 1).await;
    let stopping_at = now();
    reader.execute_batch("ROLLBACK").unwrap();
    let (status, stderr) = relay.exit().await;
    assert!(status.success(), "{stderr}");

    // The held run finished, after the shutdown began: the daemon waited for it.
    let (started, finished, after) = maintenance(&db(&path)).unwrap();
    assert_eq!(
        (started, after),
        (held_since, runs + 1),
        "the held run, and only it, finished"
    );
    assert!(finished.unwrap() >= stopping_at, "shutdown waited for the run");
    let ok: Option<bool> = db(&path)
        .query_row("SELECT ok FROM job_runs WHERE job = 'maintenance'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, Some(true));
}

#[tokio::test]
async fn retention_tombstones_every_old_delivered_message_across_chunks() {
    // More than two chunks (2,000 rows each), with rows to keep spread among them.
    let (_dir, path, store) = store_of(4_500).await;
    let day = DAY_MS;
    let now = now();
    db(&path)
        .execute(
            "UPDATE deliveries SET state = CASE WHEN seq % 7 = 0 THEN 'pending' ELSE 'delivered' END,
                                   done_at = CASE WHEN seq % 7 = 0 THEN NULL
                                                  WHEN seq % 11 = 0 THEN ?1 ELSE ?2 END",
            [now - 2 * day, now - 40 * day],
        )
        .unwrap();
    let old_delivered = count(
        &path,
        &format!(
            "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND done_at < {}",
            now - 30 * day
        ),
    );
    assert!(old_delivered > 3_000, "{old_delivered}");
    let retention = DEFAULT_RETENTION;
    let figures = jobs::run_once(&store, JobKind::Retention, retention).await.unwrap();
    assert_eq!(figures["tombstoned"], old_delivered);
    assert_eq!(
        count(&path, "SELECT count(*) FROM messages WHERE tombstoned_at IS NOT NULL"),
        old_delivered
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM messages m JOIN deliveries d USING (seq)
             WHERE m.tombstoned_at IS NULL AND (d.state = 'pending' OR d.done_at >= (SELECT max(done_at) FROM deliveries))"
        ),
        4_500 - old_delivered,
        "pending and recent messages keep their content"
    );
    let again = jobs::run_once(&store, JobKind::Retention, retention).await.unwrap();
    assert_eq!(again["tombstoned"], 0);
}

/// Polls once: a store call sends its job on its first poll, so jobs queue in the order of these calls.
fn send<F: std::future::Future>(future: std::pin::Pin<&mut F>) {
    let waker = std::task::Waker::noop();
    assert!(future.poll(&mut std::task::Context::from_waker(waker)).is_pending());
}

/// Holds the store thread until the returned sender is used (or dropped).
fn hold(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    impl std::future::Future<Output = ()> + use<>,
) {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let store = store.clone();
    let mut held = Box::pin(async move {
        store
            .call(move |_| {
                hold.recv().ok();
                Ok(())
            })
            .await
            .unwrap()
    });
    send(held.as_mut());
    (release, held)
}

#[tokio::test]
async fn a_batch_commit_waits_for_one_retention_chunk_not_the_whole_run() {
    let (_dir, path, store) = store_of(4_500).await;
    let day = DAY_MS;
    let now = now();
    db(&path)
        .execute(
            "UPDATE deliveries SET state = 'delivered', done_at = ?1",
            [now - 40 * day],
        )
        .unwrap();
    let tombstoned = "SELECT count(*) FROM messages WHERE tombstoned_at IS NOT NULL";

    // The store thread is held while the retention run, a drained batch and a probe queue behind it.
    let (release, held) = hold(&store);
    let mut retention = std::pin::pin!(store.retention(Some(at(now - 30 * day)), None, at(now)));
    send(retention.as_mut());
    let mut batch = std::pin::pin!(commit_at(&store, 10_000..10_100, 0, now));
    send(batch.as_mut());
    let mut probe = std::pin::pin!(store.call(move |conn| Ok(conn.query_row(tombstoned, [], |r| r.get::<_, i64>(0))?)));
    send(probe.as_mut());
    release.send(()).unwrap();

    held.await;
    assert_eq!(batch.await.summary.new, 100);
    assert_eq!(
        probe.await.unwrap(),
        2_000,
        "the batch and the probe ran after the first chunk only"
    );
    assert_eq!(retention.await.unwrap().tombstoned, 4_500);
    assert_eq!(count(&path, tombstoned), 4_500);
}

#[tokio::test]
async fn a_duplicate_filter_run_compacts_only_the_receipts_present_when_it_started() {
    let (_dir, path, store) = store_of(4_500).await;
    commit(&store, 0..10, 0).await; // redeliveries

    let (release, held) = hold(&store);
    let mut filter = std::pin::pin!(store.duplicate_filter(now_ms()));
    send(filter.as_mut());
    let mut batch = std::pin::pin!(commit_at(&store, 10_000..10_100, 0, now()));
    send(batch.as_mut());
    release.send(()).unwrap();
    held.await;
    batch.await;

    let report = filter.await.unwrap();
    assert_eq!((report.receipts_compacted, report.redeliveries_filtered), (4_510, 10));
    assert_eq!(
        count(&path, "SELECT count(*) FROM receipts"),
        100,
        "the later batch's receipts wait for the next run"
    );
    assert_eq!(count(&path, "SELECT sum(redeliveries) FROM messages"), 10);
}
