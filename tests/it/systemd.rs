//! The systemd notification protocol, read from a real NOTIFY_SOCKET the test binds: READY, STATUS, and the
//! watchdog ping that follows the drain loop's progress.

use std::time::Duration;

use ota_relay::fake::{Endpoint, HoldPoint};

use crate::support::*;

#[tokio::test]
async fn ready_status_and_a_watchdog_that_follows_the_drain_loop() {
    // A long request timeout: a held GET stays held, as a wedged loop would.
    let mut relay = TestRelay::with()
        .booking("request_timeout = \"20s\"")
        .env("WATCHDOG_USEC", "2000000")
        .start()
        .await;
    let mut notes = relay.notifications.clone();
    let fake = &relay.ota;
    // An idle queue is not a hang: the pings go on, and STATUS says why.
    notes
        .wait_for("pings through an idle queue", |m| {
            m.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 5
        })
        .await;
    assert!(
        notes.all().iter().any(|m| m.contains("STATUS=queue empty")),
        "{:?}",
        notes.all()
    );
    let ready_at = notes.all().iter().position(|m| m.contains("READY=1")).unwrap();
    let first_ping = notes.all().iter().position(|m| m.contains("WATCHDOG=1")).unwrap();
    assert!(ready_at < first_ping, "READY comes first");
    // The store's start-up check extends systemd's start timeout (a large store takes minutes) before READY.
    let extended_at = notes
        .all()
        .iter()
        .position(|m| m.contains("EXTEND_TIMEOUT_USEC=30000000") && m.contains("STATUS=checking the store"))
        .unwrap_or_else(|| panic!("no start timeout extension: {:?}", notes.all()));
    assert!(extended_at < ready_at);

    // A loop stuck in a request: no ping for as long as it is stuck.
    let mut gate = fake.hold_next(Endpoint::Latest, HoldPoint::Before);
    within(10, "the GET held", gate.arrived()).await;
    // At most one ping can already be on its way; then silence while the loop is held.
    let held = notes.count("WATCHDOG=1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        notes.count("WATCHDOG=1") <= held + 1,
        "pings went on while the loop was stuck: {:?}",
        notes.all()
    );
    let during = notes.count("WATCHDOG=1");
    gate.release();
    notes
        .wait_for("pings resume", |m| {
            m.iter().filter(|m| m.contains("WATCHDOG=1")).count() > during + 2
        })
        .await;
    relay.stop().await;
    assert!(notes.all().iter().any(|m| m.contains("STOPPING=1")));
}
