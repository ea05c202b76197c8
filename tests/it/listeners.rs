//! Listeners are not a way in: half-sent requests cannot exhaust the daemon, a signal during start-up is
//! handled, and the one-consumer lock holds for every path to a store.

use std::io::Write as _;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use crate::support::*;

#[tokio::test]
async fn half_sent_requests_neither_stop_forwarding_nor_hold_the_listener_for_long() {
    // systemd's default soft limit on open files, as a unit without LimitNOFILE= would run it.
    let mut relay = TestRelay::with()
        .forward("concurrency = 4")
        .ops_listener()
        .open_files(1024)
        .start()
        .await;
    let addr = relay.ops_url().trim_start_matches("http://").to_owned();
    // 1,100 connections that send part of a request and then nothing.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        use tokio::io::AsyncWriteExt as _;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        idle.push(stream);
    }
    // Outbound connections still work: messages keep reaching the PMS.
    relay.enqueue(301, 0..20);
    within(
        30,
        "forwarded during the attack",
        relay.pms.wait_for(|s| s.accepted_count() == 20),
    )
    .await;
    let failed = relay.count("SELECT count(*) FROM deliveries WHERE last_error IS NOT NULL");
    assert_eq!(failed, 0, "no delivery failed for want of a file descriptor");
    // The listener closes what never finished its headers, and answers again.
    let mut first = idle.remove(0);
    let mut buf = [0u8; 64];
    let closed = within(30, "a half-sent request closed by the server", first.read(&mut buf)).await;
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(idle);
    let answer = within(30, "/healthz answers again", async {
        loop {
            match reqwest::get(format!("{}/healthz", relay.ops_url())).await {
                Ok(r) => return r.status().as_u16(),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(answer, 200);
    relay.stop().await;
}

/// Starts the daemon while a test connection holds the store's write lock, so that start-up waits in its store
/// check; returns once the daemon has published its pid (its lock file), that is, inside the window.
async fn start_held(relay: &mut TestRelay) -> rusqlite::Connection {
    let holder = relay.db();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    relay.run();
    let pid = relay.daemon().pid().to_string();
    let lock = std::path::PathBuf::from(format!("{}.lock", relay.path().display()));
    within(10, "the pid published", async {
        while std::fs::read_to_string(&lock).ok().as_deref() != Some(pid.as_str()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    holder
}

#[tokio::test]
async fn a_signal_during_start_up_is_handled_not_fatal() {
    let mut relay = TestRelay::with().queued(302, 0..5).prepare().await;
    drop(relay.open_store()); // the store exists: start-up checks it
    // An operator's wake-up and a reload while the store is being checked: the daemon starts regardless.
    let holder = start_held(&mut relay).await;
    relay.signal(libc::SIGUSR1);
    relay.signal(libc::SIGHUP);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    relay.ready(1).await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay.stop().await;

    // A stop right after a (re)start: a clean exit 0, not death by the signal.
    let holder = start_held(&mut relay).await;
    relay.signal(libc::SIGTERM);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let (status, stderr) = relay.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[tokio::test]
async fn a_second_consumer_through_a_symbolic_link_to_the_store_is_refused() {
    let mut relay = TestRelay::with().start().await;
    let link = relay.dir().join("link.db");
    std::os::unix::fs::symlink(relay.path(), &link).unwrap();
    let text = std::fs::read_to_string(relay.config()).unwrap();
    let other = relay.dir().join("other.toml");
    let mut file = std::fs::File::create(&other).unwrap();
    file.write_all(text.replace("relay.db", "link.db").as_bytes()).unwrap();
    let (status, stderr) = Daemon::run(&other).exit().await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("in use by another ota-relay process"), "{stderr}");
    relay.stop().await;
}
