//! Storage faults: a full disk, read-only, locked and damaged stores.

use std::path::Path;

use ota_relay::channel::booking::drain::DrainError;
use ota_relay::fake::{commit_as_batch, guest_message};
use ota_relay::store::{Access, Store, StoreError};

use crate::support::*;

#[tokio::test]
async fn a_full_disk_means_no_confirm_a_clear_error_and_recovery_when_space_returns() {
    let relay = TestRelay::with().queued(91, 0..400).in_process().await;
    let (fake, store, path) = (&relay.ota, relay.store(), relay.path());
    let mut drainer = relay.drainer();
    assert_eq!(drainer.drain_once().await.unwrap().confirmed, 100);

    // The file may not grow any further: SQLite answers SQLITE_FULL, exactly as on a full disk.
    store
        .call(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", pages)?;
            Ok(())
        })
        .await
        .unwrap();
    for _ in 0..3 {
        match drainer.drain_once().await {
            Err(e @ DrainError::Store(StoreError::Full(_))) => {
                let text = e.to_string();
                assert!(
                    text.contains("disk holding the store is full") && text.contains("nothing was confirmed"),
                    "{text}"
                );
            }
            other => panic!("expected a full store, got {other:?}"),
        }
    }
    assert_eq!(
        fake.read(|s| (s.puts, s.confirmed)),
        (1, 100),
        "nothing more was confirmed"
    );
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 100, "no partial batch");

    store
        .call(|conn| {
            conn.pragma_update(None, "max_page_count", 1_073_741_823)?;
            Ok(())
        })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(drainer.drain_once().await.unwrap().confirmed, 100);
    }
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 400);
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 400);
    assert!(fake.read(|s| s.violations.is_empty() && s.drained()));
}

#[tokio::test]
async fn a_store_job_that_panics_is_rolled_back_and_the_store_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = Store::open(&path, Access::Consumer).unwrap();
    let panicked = store
        .call(|conn| -> Result<(), StoreError> {
            let tx = conn.transaction()?;
            tx.execute("INSERT INTO token_exchanges (at) VALUES (1)", [])?;
            panic!("injected: a bug inside a store job");
        })
        .await;
    assert!(matches!(panicked, Err(StoreError::Panicked)), "{panicked:?}");
    assert_eq!(count(&path, "SELECT count(*) FROM token_exchanges"), 0, "rolled back");
    // The same with a transaction opened by hand, which no guard rolls back while unwinding.
    let panicked = store
        .call(|conn| -> Result<(), StoreError> {
            conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO token_exchanges (at) VALUES (2);")?;
            panic!("injected: a bug inside a store job");
        })
        .await;
    assert!(matches!(panicked, Err(StoreError::Panicked)), "{panicked:?}");

    let elements: Vec<String> = (0..3).map(|i| guest_message(92, i).json).collect();
    let committed = commit_as_batch(&store, &elements, ota_relay::store::now_ms())
        .await
        .unwrap();
    assert_eq!(committed.summary.new, 3, "the next job runs");
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 3);
}

/// A restore by `mv` while the daemon runs: a consistent copy of the store renamed over it. SQLite would go on
/// writing to the old, now nameless file.
fn replace_store(path: &Path) {
    let restored = path.with_extension("restored");
    db(path)
        .execute("VACUUM INTO ?1", [restored.to_str().unwrap()])
        .unwrap();
    std::fs::rename(&restored, path).unwrap();
}

#[tokio::test]
async fn a_store_replaced_underneath_the_daemon_confirms_nothing_more_and_exits_for_a_restart() {
    let mut relay = TestRelay::with().queued(94, 0..100).start().await;
    let path = relay.path();
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;

    // Idle: the next empty poll notices, and the daemon exits 1 for systemd to start it on the new file.
    replace_store(&path);
    let (status, stderr) = relay.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("ota-relay: store {} was deleted or replaced", path.display())),
        "{stderr}"
    );

    // Busy: messages arrive just after the swap; none is confirmed into the old file.
    relay.run();
    relay.enqueue(94, 100..105);
    within(
        30,
        "drained into the restored file",
        relay.ota.wait_for(|s| s.drained()),
    )
    .await;
    let puts = relay.ota.read(|s| s.puts);
    replace_store(&path);
    relay.enqueue(94, 105..110);
    let (status, stderr) = relay.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        relay.ota.read(|s| (s.puts, s.queue_len())),
        (puts, 5),
        "nothing confirmed after the swap"
    );

    relay.run();
    within(30, "drained after the restart", relay.ota.wait_for(|s| s.drained())).await;
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 110);
}

async fn start_refused(config: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let (status, stderr) = Daemon::spawn(&["run", "--config", config.to_str().unwrap()], envs)
        .exit()
        .await;
    (status.code(), stderr)
}

/// A store that exists and holds messages, drained by the real binary, which is stopped.
async fn populated_store() -> TestRelay {
    TestRelay::with().queued(93, 0..300).drained().await
}

#[tokio::test]
async fn a_read_only_store_is_a_clear_startup_error_even_for_root() {
    let relay = populated_store().await;
    let config = relay.config();
    let store_dir = relay.dir().to_str().unwrap();

    // 1. The store's directory on a read-only mount (a private mount namespace: nothing leaks out of the test).
    let script = format!(
        "mount --bind {store_dir} {store_dir} && mount -o remount,ro,bind {store_dir} && exec {BIN} run --config {}",
        config.display()
    );
    let output = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output();
    match output {
        Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("unshare failed") => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "started on a read-only mount: {stderr}");
            assert!(stderr.contains("is not writable"), "{stderr}");
        }
        _ => eprintln!("unshare is not available here; read-only mount case not run"),
    }

    // 2. The store file itself immutable (chattr +i stops root too).
    let file = relay.path();
    if std::process::Command::new("chattr")
        .arg("+i")
        .arg(&file)
        .status()
        .is_ok_and(|s| s.success())
    {
        let (code, stderr) = start_refused(&config, &[]).await;
        let _ = std::process::Command::new("chattr").arg("-i").arg(&file).status();
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains("is not writable"), "{stderr}");
    } else {
        eprintln!("chattr is not available here; immutable-file case not run");
    }
}

#[tokio::test]
async fn a_store_locked_by_another_program_is_a_clear_startup_error() {
    let relay = populated_store().await;
    let config = relay.config();
    let holder = relay.db();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (code, stderr) = start_refused(&config, &[]).await;
    holder.execute_batch("ROLLBACK").unwrap();
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("locked by another program"), "{stderr}");
}

#[tokio::test]
async fn a_damaged_store_is_refused_with_instructions_and_left_untouched() {
    let relay = populated_store().await;
    let (config, path) = (relay.config(), relay.path());
    // Overwrite a stretch of b-tree pages in the middle of the file.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "a store with some pages");
    let middle = bytes.len() / 2;
    for (i, b) in bytes[middle..middle + 8192].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (code, stderr) = start_refused(&config, &[]).await;
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("restore the latest backup"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the damaged store was modified");

    // Not a database at all.
    std::fs::write(
        &path,
        b"this is not an SQLite database, it is a text file that is long enough",
    )
    .unwrap();
    let _ = std::fs::remove_file(relay.dir().join("relay.db-wal"));
    let (code, stderr) = start_refused(&config, &[]).await;
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(
        std::fs::read(&path).unwrap().starts_with(b"this is not an SQLite"),
        "never recreated"
    );
}

#[tokio::test]
async fn store_jobs_run_at_synchronous_full_again_after_an_outcome_commit() {
    async fn level(store: &Store) -> i64 {
        store
            .call(|conn| Ok(conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))?))
            .await
            .unwrap()
    }
    const FULL: i64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("relay.db"), Access::Consumer).unwrap();
    assert_eq!(level(&store).await, FULL);
    // Outcomes commit at NORMAL; whatever runs next (a batch that allows a confirm, a token reservation) is FULL.
    ota_relay::forward::Outbox::new(store.clone())
        .record(Vec::new())
        .await
        .unwrap();
    assert_eq!(level(&store).await, FULL);
}

#[tokio::test]
async fn migrating_schema_5_keeps_every_delivery_and_checks_states_without_a_temporary_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    {
        let store = Store::open(&path, Access::Consumer).unwrap();
        let messages: Vec<String> = (0..3).map(|i| guest_message(5, i).json).collect();
        ota_relay::fake::commit_as_batch(&store, &messages, at(1_000))
            .await
            .unwrap();
    }
    // Back to version 5's table, with one delivery in each state.
    db(&path)
        .execute_batch(
            "DROP TABLE deliveries;
             CREATE TABLE deliveries (
                 seq INTEGER PRIMARY KEY REFERENCES messages(seq),
                 state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
                 attempts INTEGER NOT NULL DEFAULT 0, first_attempt_at INTEGER, next_attempt_at INTEGER NOT NULL,
                 last_attempt_at INTEGER, last_status INTEGER, last_error TEXT, done_at INTEGER) STRICT;
             CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state = 'pending';
             CREATE INDEX deliveries_dead ON deliveries (done_at) WHERE state = 'dead';
             INSERT INTO deliveries VALUES (1, 'delivered', 1, 10, 10, 10, 200, NULL, 10);
             INSERT INTO deliveries VALUES (2, 'dead', 7, 20, 20, 90, 410, 'HTTP 410', 90);
             INSERT INTO deliveries VALUES (3, 'pending', 2, 30, 99, 40, 503, 'HTTP 503', NULL);
             ALTER TABLE messages DROP COLUMN raw_exact; ALTER TABLE quarantine DROP COLUMN raw_exact;
             ALTER TABLE source_state DROP COLUMN failures; ALTER TABLE job_runs DROP COLUMN stopped;
             ALTER TABLE messages DROP COLUMN source; ALTER TABLE messages DROP COLUMN ota;
             ALTER TABLE messages DROP COLUMN push_id; DROP TABLE push_stats;
             DROP TRIGGER messages_fts_update; DROP TRIGGER messages_fts_delete;
             DROP TABLE messages_fts; DROP TABLE sessions; DROP TABLE one_time_tokens; DROP TABLE changes;
             DROP TABLE replies; DROP TABLE threads; DROP INDEX messages_thread; DROP INDEX messages_seq_thread;
             ALTER TABLE messages DROP COLUMN uuid; ALTER TABLE messages DROP COLUMN reply_id;
             PRAGMA user_version = 5;",
        )
        .unwrap();
    let rows = |path: &Path| -> Vec<String> {
        let conn = db(path);
        let mut stmt = conn
            .prepare(
                "SELECT seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at,
                             last_status, last_error, done_at FROM deliveries ORDER BY seq",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((0..9)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join(","))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let before = rows(&path);

    let store = Store::open(&path, Access::Consumer).unwrap();
    let outbox = ota_relay::forward::Outbox::new(store.clone());
    let summary = outbox.summary().await.unwrap();
    assert_eq!((summary.pending, summary.dead), (1, 1), "the partial indexes are back");
    drop((outbox, store));
    assert_eq!(rows(&path), before);
    let conn = db(&path);
    assert_eq!(
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .unwrap(),
        ota_relay::store::SCHEMA_VERSION
    );
    let bad = conn.execute("UPDATE deliveries SET state = 'sent' WHERE seq = 3", []);
    assert!(
        bad.unwrap_err().to_string().contains("CHECK"),
        "states are still checked"
    );
    let plan: Vec<String> = conn
        .prepare("EXPLAIN UPDATE deliveries SET state = 'delivered' WHERE seq = ?1")
        .unwrap()
        .query_map([1], |r| r.get::<_, String>(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|op| op == "Update" || op == "Insert"), "{plan:?}");
    assert!(
        !plan.iter().any(|op| op == "OpenEphemeral"),
        "the state check builds a temporary b-tree: {plan:?}"
    );
}
