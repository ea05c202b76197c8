//! The real binary: signals, crashes, the one-consumer lock, proxies, reloads.

use ota_relay::fake::{Endpoint, FakeOtaOptions, FakePms, FakePmsOptions, HoldPoint};

use crate::support::*;

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0() {
    let mut relay = TestRelay::with().queued(21, 0..150).prepare().await;
    let mut gate = relay.ota.hold_next(Endpoint::Confirm, HoldPoint::Before);
    relay.run();
    within(30, "the first confirm", gate.arrived()).await;
    relay.signal(libc::SIGTERM);
    relay.notifications.wait_for_nth("STOPPING=1", 1).await;
    gate.release();
    let (status, stderr) = relay.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The held batch was stored and confirmed; nothing was fetched after the signal.
    assert_eq!(
        relay.ota.read(|s| (s.gets, s.puts, s.confirmed)),
        (1, 1, 100),
        "{stderr}"
    );
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 100);
}

/// Kills the daemon with SIGKILL at two kinds of instant (confirm not yet applied; applied but unanswered),
/// restarts it each time, and checks that nothing was lost or stored twice.
#[tokio::test]
async fn sigkill_mid_run_then_restart_loses_nothing_and_stores_nothing_twice() {
    let mut relay = TestRelay::with()
        .ota(|o| FakeOtaOptions {
            redelivery_rate: 0.1,
            ..o
        })
        .queued(21, 0..1200)
        .prepare()
        .await;
    for point in [HoldPoint::Before, HoldPoint::AfterApply, HoldPoint::Before] {
        let mut gate = relay.ota.hold_next(Endpoint::Confirm, point);
        relay.run();
        within(30, "a confirm to be held", gate.arrived()).await;
        relay.kill9().await;
        drop(gate);
    }
    relay.run();
    within(
        60,
        "the queue drained after restarts",
        relay.ota.wait_for(|s| s.drained()),
    )
    .await;
    let stderr = relay.stop().await;

    relay.assert_stored_exactly(relay.queued());
    let redelivered = relay.count("SELECT count(*) FROM receipts") - relay.queued().len() as i64;
    assert!(
        redelivered >= 100,
        "the unconfirmed batches came back as redeliveries ({redelivered})"
    );
    let integrity: String = relay
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // Logs carry ids and counts, never secrets or guest content.
    assert!(!stderr.contains(PASSWORD));
    assert!(!stderr.contains("late check-in"), "message content in the log");
}

#[tokio::test]
async fn a_second_consumer_on_the_same_store_is_refused() {
    let mut relay = TestRelay::with().start().await;
    let second = Daemon::run(&relay.config());
    let (status, stderr) = second.exit().await;
    assert!(!status.success());
    assert!(stderr.contains("in use by another ota-relay process"), "{stderr}");
    relay.stop().await;
}

#[tokio::test]
async fn proxy_environment_variables_are_honoured() {
    // The fake serves absolute-form proxy requests too, so it can stand in for an HTTP proxy.
    let relay = TestRelay::with().queued(21, 0..30).prepare().await;
    let proxy = relay.ota.base_url();
    let config = write_config(relay.dir(), "http://booking.example.invalid", "");
    let daemon = Daemon::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "")],
    );
    within(30, "drained through the proxy", relay.ota.wait_for(|s| s.drained())).await;
    daemon.stop().await;
    relay.assert_stored_exactly(relay.queued());
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused_with_exit_65() {
    let mut relay = TestRelay::with().prepare().await;
    relay.db().execute_batch("PRAGMA user_version = 999;").unwrap();
    relay.run();
    let (status, stderr) = relay.exit().await;
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
            .booking
            .unwrap();
    let longest = defaults.poll_interval.max(defaults.backoff_max) + 2 * defaults.request_timeout;
    assert!(watchdog > longest, "WatchdogSec {watchdog:?} <= {longest:?}");
    let socket = std::fs::read_to_string(unit.with_file_name("ota-relay.socket")).unwrap();
    for directive in ["[Socket]", "ListenStream=", "Accept=no", "WantedBy=sockets.target"] {
        assert!(socket.contains(directive), "the socket unit lacks {directive}");
    }
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
    let jobs_off = "[jobs]\nduplicate_filter = \"off\"\nretention = \"off\"\nmaintenance = \"off\"\n";
    let mut relay = TestRelay::with()
        .forward("")
        .config(&format!("[log]\nlevel = \"info\"\n{jobs_off}"))
        .start()
        .await;
    relay.enqueue(8, 0..5);
    within(
        20,
        "delivered to the first PMS",
        relay.pms.wait_for(|s| s.accepted_count() == 5),
    )
    .await;

    // Log level, forward URL and secret, and a job schedule, all applied without a restart.
    let pms_b = FakePms::start(FakePmsOptions {
        secret: "whsec_YSBzZWNvbmQgd2ViaG9vayBzZWNyZXQh".into(),
        ..FakePmsOptions::default()
    })
    .await
    .unwrap();
    let jobs_on = jobs_off.replace("duplicate_filter = \"off\"", "duplicate_filter = \"* * * * * *\"");
    write_config(
        relay.dir(),
        &relay.ota.base_url(),
        &format!("[log]\nlevel = \"debug\"\n{}{jobs_on}", forward_section(&pms_b, "")),
    );
    assert_eq!(relay.reload().await, "configuration reloaded");
    relay.enqueue(8, 5..10);
    within(
        20,
        "delivered to the new PMS",
        pms_b.wait_for(|s| s.accepted_count() == 5),
    )
    .await;
    assert_eq!(pms_b.read(|s| s.bad_signatures), 0, "signed with the new secret");
    assert_eq!(
        relay.pms.read(|s| s.accepted_count()),
        5,
        "the old URL gets nothing more"
    );
    relay.wait_for_job_run("duplicate_filter").await;
    // The new level applies to the log itself: debug lines appear (the idle poll logs "queue empty" at debug).
    relay.daemon().wait_for_log("queue empty").await;

    // The store path needs a restart: reported, not applied; nothing else changed, so the workers stay.
    let text = std::fs::read_to_string(relay.config()).unwrap();
    std::fs::write(relay.config(), text.replace("relay.db", "elsewhere.db")).unwrap();
    let status = relay.reload().await;
    assert!(status.contains("a restart is needed for store.path"), "{status}");
    let line = relay.daemon().wait_for_log("need a restart").await;
    assert!(line.contains("store.path"), "the log names the key too: {line}");
    std::fs::write(relay.config(), &text).unwrap();

    std::fs::write(relay.config(), "[booking]\nbase_url = 42\n").unwrap();
    let status = relay.reload().await;
    assert!(
        status.contains("configuration reload failed") && status.contains("booking.base_url"),
        "the reason is named: {status}"
    );
    // Still draining and forwarding with the running configuration, into the first store.
    relay.enqueue(8, 10..15);
    within(
        20,
        "forwarded after a failed reload",
        pms_b.wait_for(|s| s.accepted_count() == 10),
    )
    .await;
    assert!(!relay.dir().join("elsewhere.db").exists());
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 15);

    // A changed Booking.com password is used at once (masked in the rendering, yet seen as a change).
    std::fs::write(relay.config(), text.replace(PASSWORD, "another-password")).unwrap();
    assert_eq!(relay.reload().await, "configuration reloaded");
    within(
        20,
        "the new password presented",
        relay.ota.wait_for(|s| s.unauthorized > 0),
    )
    .await;
    let stderr = relay.stop().await;
    assert!(!stderr.contains("another-password"), "secrets never logged");
}
