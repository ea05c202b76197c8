//! The real binary: signals, crashes, the one-consumer lock, proxies.

use std::collections::HashSet;

use ota_relay::fake::{
    Endpoint, FakeOta, FakeOtaOptions, FakePms, FakePmsOptions, HoldPoint, SampleMessage, guest_message,
};

use crate::support::*;

async fn fake_with(messages: u64, options: FakeOtaOptions) -> (FakeOta, Vec<SampleMessage>) {
    let fake = FakeOta::start(FakeOtaOptions {
        auth: basic_fake_auth(),
        ..options
    })
    .await
    .unwrap();
    let samples: Vec<SampleMessage> = (0..messages).map(|i| guest_message(21, i)).collect();
    fake.enqueue(samples.clone());
    (fake, samples)
}

fn assert_stored_exactly(path: &std::path::Path, samples: &[SampleMessage]) {
    let stored = stored_ids(path);
    let set: HashSet<&String> = stored.iter().collect();
    assert_eq!(set.len(), stored.len(), "stored twice");
    for s in samples {
        assert!(set.contains(&s.message_id), "lost {}", s.message_id);
    }
    assert_eq!(stored.len(), samples.len());
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0() {
    let (fake, _) = fake_with(150, FakeOtaOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    let mut gate = fake.hold_next(Endpoint::Confirm, HoldPoint::Before);
    let mut daemon = Daemon::run(&config);
    within(30, "the first confirm", gate.arrived()).await;
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_log("shutdown requested").await;
    gate.release();
    let (status, stderr) = daemon.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The held batch was stored and confirmed; nothing was fetched after the signal.
    assert_eq!(fake.read(|s| (s.gets, s.puts, s.confirmed)), (1, 1, 100), "{stderr}");
    assert_eq!(
        count(&dir.path().join("relay.db"), "SELECT count(*) FROM messages"),
        100
    );
    assert!(stderr.contains("batch drained"), "{stderr}");
}

/// Kills the daemon with SIGKILL at two kinds of instant (confirm not yet applied; applied but unanswered),
/// restarts it each time, and checks that nothing was lost or stored twice.
#[tokio::test]
async fn sigkill_mid_run_then_restart_loses_nothing_and_stores_nothing_twice() {
    let (fake, samples) = fake_with(
        1200,
        FakeOtaOptions {
            redelivery_rate: 0.1,
            ..FakeOtaOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    let path = dir.path().join("relay.db");

    for point in [HoldPoint::Before, HoldPoint::AfterApply, HoldPoint::Before] {
        let mut gate = fake.hold_next(Endpoint::Confirm, point);
        let daemon = Daemon::run(&config);
        within(30, "a confirm to be held", gate.arrived()).await;
        daemon.kill9().await;
        drop(gate);
    }
    let daemon = Daemon::run(&config);
    within(60, "the queue drained after restarts", fake.wait_for(|s| s.drained())).await;
    let stderr = daemon.stop().await;

    assert_stored_exactly(&path, &samples);
    let violations = fake.read(|s| s.violations.clone());
    assert!(violations.is_empty(), "{violations:?}");
    let redelivered = count(&path, "SELECT count(*) FROM receipts") - samples.len() as i64;
    assert!(
        redelivered >= 100,
        "the unconfirmed batches came back as redeliveries ({redelivered})"
    );
    let integrity: String = db(&path).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    // Logs carry ids and counts, never secrets or guest content.
    assert!(!stderr.contains(PASSWORD));
    assert!(!stderr.contains("late check-in"), "message content in the log");
}

#[tokio::test]
async fn a_second_consumer_on_the_same_store_is_refused() {
    let (fake, _) = fake_with(0, FakeOtaOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    let mut first = Daemon::run(&config);
    first.wait_for_log("draining the Booking.com queue").await;
    let second = Daemon::run(&config);
    let (status, stderr) = second.exit().await;
    assert!(!status.success());
    assert!(stderr.contains("in use by another ota-relay process"), "{stderr}");
    first.signal(libc::SIGTERM);
    assert!(first.exit().await.0.success());
}

#[tokio::test]
async fn proxy_environment_variables_are_honoured() {
    // The fake serves absolute-form proxy requests too, so it can stand in for an HTTP proxy.
    let (fake, samples) = fake_with(30, FakeOtaOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://booking.example.invalid", "");
    let proxy = fake.base_url();
    let daemon = Daemon::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "")],
    );
    within(30, "drained through the proxy", fake.wait_for(|s| s.drained())).await;
    daemon.stop().await;
    assert_stored_exactly(&dir.path().join("relay.db"), &samples);
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused_with_exit_65() {
    let (fake, _) = fake_with(0, FakeOtaOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    db(&dir.path().join("relay.db"))
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();
    let (status, stderr) = Daemon::run(&config).exit().await;
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("schema version 999, newer than this ota-relay"),
        "{stderr}"
    );
}

#[test]
fn the_systemd_unit_is_sandboxed_to_an_exposure_of_at_most_2() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ota-relay.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=ota-relay",
        "ConfigurationDirectory=ota-relay",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "StartLimitIntervalSec=",
        "StartLimitBurst=",
        "TimeoutStopSec=",
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
    ] {
        assert!(text.contains(directive), "the unit lacks {directive}");
    }
    // WatchdogSec must outlast the longest silence of the drain loop with the default settings.
    let watchdog = text
        .lines()
        .find_map(|l| l.strip_prefix("WatchdogSec="))
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .expect("WatchdogSec parses");
    let defaults =
        ota_relay::config::parse_for_tools(std::path::Path::new("defaults.toml"), "[booking]\nusername = \"u\"\n")
            .unwrap()
            .booking;
    let longest = defaults.poll_interval.max(defaults.backoff_max) + 2 * defaults.request_timeout;
    assert!(watchdog > longest, "WatchdogSec {watchdog:?} <= {longest:?}");
    // systemd-analyze ships with systemd; on a machine without it the directives above are all we can check.
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit)
        .output()
    else {
        eprintln!("systemd-analyze not found; exposure not measured");
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exposure above 2.0:\n{stdout}");
    let level = stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for ota-relay.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("an exposure level");
    assert!(level <= 2.0, "exposure {level}");
}

#[tokio::test]
async fn sighup_applies_a_valid_file_live_and_keeps_the_old_one_when_invalid() {
    let fake = FakeOta::start(FakeOtaOptions {
        auth: basic_fake_auth(),
        ..FakeOtaOptions::default()
    })
    .await
    .unwrap();
    let pms_a = FakePms::start(FakePmsOptions::default()).await.unwrap();
    let pms_b = FakePms::start(FakePmsOptions {
        secret: "whsec_YSBzZWNvbmQgd2ViaG9vayBzZWNyZXQh".into(),
        ..FakePmsOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jobs_off = "[jobs]\nduplicate_filter = \"off\"\nretention = \"off\"\nmaintenance = \"off\"\n";
    let config = write_config(
        dir.path(),
        &fake.base_url(),
        &format!("[log]\nlevel = \"info\"\n{}{jobs_off}", forward_section(&pms_a, "")),
    );
    let mut daemon = Daemon::run(&config);
    daemon.wait_for_log("draining the Booking.com queue").await;
    fake.enqueue((0..5).map(|i| guest_message(8, i)));
    within(
        20,
        "delivered to the first PMS",
        pms_a.wait_for(|s| s.accepted_count() == 5),
    )
    .await;

    // Log level, forward URL and secret, and a job schedule, all applied without a restart.
    let jobs_on = jobs_off.replace("duplicate_filter = \"off\"", "duplicate_filter = \"* * * * * *\"");
    write_config(
        dir.path(),
        &fake.base_url(),
        &format!("[log]\nlevel = \"debug\"\n{}{jobs_on}", forward_section(&pms_b, "")),
    );
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("log level changed").await;
    daemon.wait_for_log("configuration reloaded and applied").await;
    fake.enqueue((5..10).map(|i| guest_message(8, i)));
    within(
        20,
        "delivered to the new PMS",
        pms_b.wait_for(|s| s.accepted_count() == 5),
    )
    .await;
    assert_eq!(pms_b.read(|s| s.bad_signatures), 0, "signed with the new secret");
    assert_eq!(pms_a.read(|s| s.accepted_count()), 5, "the old URL gets nothing more");
    daemon.wait_for_log("receipts_compacted=").await;
    // Debug lines now appear (the idle poll logs "queue empty" at debug).
    daemon.wait_for_log("queue empty").await;

    // The store path needs a restart: reported, not applied; nothing else changed, so the workers stay.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("relay.db", "elsewhere.db")).unwrap();
    daemon.signal(libc::SIGHUP);
    let line = daemon.wait_for_log("need a restart").await;
    assert!(line.contains("store.path"), "{line}");
    std::fs::write(&config, &text).unwrap();

    std::fs::write(&config, "[booking]\nbase_url = 42\n").unwrap();
    daemon.signal(libc::SIGHUP);
    let line = daemon.wait_for_log("configuration reload failed").await;
    assert!(line.contains("booking.base_url"), "the reason is named: {line}");
    // Still draining and forwarding with the running configuration, into the first store.
    fake.enqueue((10..15).map(|i| guest_message(8, i)));
    within(
        20,
        "forwarded after a failed reload",
        pms_b.wait_for(|s| s.accepted_count() == 10),
    )
    .await;
    assert!(!dir.path().join("elsewhere.db").exists());
    assert_eq!(count(&dir.path().join("relay.db"), "SELECT count(*) FROM messages"), 15);

    // A changed Booking.com password is used at once (masked in the rendering, yet seen as a change).
    std::fs::write(&config, text.replace(PASSWORD, "another-password")).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_logs("configuration reloaded and applied", 2).await;
    daemon.wait_for_log("credentials").await;
    let stderr = daemon.stop().await;
    assert!(!stderr.contains("another-password"), "secrets never logged");
}
