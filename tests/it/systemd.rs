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

#[tokio::test]
async fn a_push_only_daemon_feeds_the_watchdog_without_polling() {
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .env("WATCHDOG_USEC", "2000000")
        .start()
        .await;
    let mut notes = relay.notifications.clone();
    notes
        .wait_for("pings with nothing to poll and nothing pushed", |m| {
            m.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 5
        })
        .await;
    assert!(
        notes
            .all()
            .iter()
            .any(|m| m.contains("STATUS=started; receiving pushes")),
        "{:?}",
        notes.all()
    );
    assert_eq!(relay.ota.read(|s| s.gets), 0, "no poll without the pull");
    let (code, status) = relay.status(&[]).await;
    assert_eq!(
        code,
        Some(0),
        "a receiver that has accepted nothing is not unhealthy: {status}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn with_socket_activation_a_push_sent_during_a_restart_waits_and_is_answered() {
    let mut relay = TestRelay::with()
        .socket_activated()
        .without_pull()
        .forward("")
        .start()
        .await;
    let senders = relay.senders();
    let first = ota_relay::fake::pushes::staah_message(930, 1);
    assert_eq!(senders.staah(&first.body).await.unwrap().status, 200);
    relay.stop().await;

    // Nobody serves the socket now: the connection is made (the kernel's backlog) and the whole request sent.
    let second = ota_relay::fake::pushes::staah_message(930, 2);
    let c = &senders.credentials;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", c.staah_username, c.staah_password),
    );
    let request = format!(
        "POST /staah/messages HTTP/1.1\r\nHost: relay\r\nAuthorization: Basic {basic}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        second.body.len(),
        second.body
    );
    let addr = relay.receive_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    relay.run();
    relay.ready(2).await;
    let mut answer = String::new();
    within(
        30,
        "the waiting push answered",
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer),
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"Success"}"#), "{answer}");
    within(30, "both delivered", relay.pms.wait_for(|s| s.accepted_count() == 2)).await;
    relay.stop().await;
}
