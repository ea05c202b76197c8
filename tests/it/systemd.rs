//! The systemd notification protocol, read from a real NOTIFY_SOCKET the test binds: READY, STATUS, and the
//! watchdog ping that follows the drain loop's progress.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ota_relay::fake::{Endpoint, FakeOta, FakeOtaOptions, HoldPoint};
use tokio::sync::watch;

use crate::support::*;

/// Every datagram received, in order, and a counter that changes with each.
struct Notifications {
    messages: Arc<Mutex<Vec<String>>>,
    changed: watch::Receiver<usize>,
}

impl Notifications {
    fn bind(path: &std::path::Path) -> Notifications {
        let socket = tokio::net::UnixDatagram::bind(path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0);
        let collected = messages.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let len = {
                    let mut all = collected.lock().unwrap();
                    all.push(text);
                    all.len()
                };
                let _ = tx.send(len);
            }
        });
        Notifications { messages, changed }
    }

    fn watchdogs(&self) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
    }

    fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    async fn wait_for(&mut self, what: &str, mut predicate: impl FnMut(&[String]) -> bool) {
        let messages = self.messages.clone();
        within(20, what, async {
            loop {
                if predicate(&messages.lock().unwrap()) {
                    return;
                }
                self.changed.changed().await.unwrap();
            }
        })
        .await
    }
}

#[tokio::test]
async fn ready_status_and_a_watchdog_that_follows_the_drain_loop() {
    let fake = FakeOta::start(FakeOtaOptions {
        auth: basic_fake_auth(),
        ..FakeOtaOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let mut notes = Notifications::bind(&socket);
    // A long request timeout: a held GET stays held, as a wedged loop would.
    let config = dir.path().join("ota-relay.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[booking]\nbase_url = \"{}\"\nusername = \"relay\"\npassword = \"{PASSWORD}\"\n\
             poll_interval = \"100ms\"\nrequest_timeout = \"20s\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"200ms\"\n",
            dir.path().join("relay.db").display(),
            fake.base_url()
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    notes
        .wait_for("READY=1", |m| m.iter().any(|m| m.contains("READY=1")))
        .await;
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
    let held = notes.watchdogs();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        notes.watchdogs() <= held + 1,
        "pings went on while the loop was stuck: {:?}",
        notes.all()
    );
    let during = notes.watchdogs();
    gate.release();
    notes
        .wait_for("pings resume", |m| {
            m.iter().filter(|m| m.contains("WATCHDOG=1")).count() > during + 2
        })
        .await;
    daemon.stop().await;
    assert!(notes.all().iter().any(|m| m.contains("STOPPING=1")));
}
