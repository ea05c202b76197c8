//! The crash suite: the real binary against the fake OTA and fake PMS with injected faults, killed with SIGKILL
//! at random moments, then checked for loss, over-confirming, duplicates and store integrity.
//!
//! CI runs a short round. The soak: `OTA_RELAY_SOAK=1 cargo test --release crash -- --nocapture` (25 kills,
//! 20,000 messages). A failure prints its seed; `OTA_RELAY_CRASH_SEED=<seed>` replays it.

use std::collections::HashSet;
use std::time::Duration;

use ota_relay::fake::{FakeOtaOptions, FakePmsOptions, guest_message};

use crate::support::*;

const CONCURRENCY: u64 = 8;

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\ncrash suite FAILED with seed {0}; replay it with OTA_RELAY_CRASH_SEED={0} cargo test crash_suite\n",
                self.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_suite_kills_under_faults_lose_nothing() {
    let soak = std::env::var_os("OTA_RELAY_SOAK").is_some();
    let seed = std::env::var("OTA_RELAY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let _guard = SeedGuard(seed);
    let (messages, kills) = if soak { (20_000u64, 25u64) } else { (1_500, 5) };
    eprintln!("crash suite: seed {seed}, {messages} messages, {kills} kills");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut relay = TestRelay::with()
        .ota(|o| FakeOtaOptions {
            redelivery_rate: 0.1,
            fault_rate: 0.12,
            seed,
            stall: Duration::from_millis(1500),
            ..o
        })
        .pms(|o| FakePmsOptions {
            failure_rate: 0.15,
            seed,
            capture: false,
            ..o
        })
        .forward(&format!(
            "concurrency = {CONCURRENCY}\n[forward.retry]\ninitial_interval = \"10ms\"\nmax_interval = \"150ms\""
        ))
        .prepare()
        .await;

    let mut enqueued: Vec<String> = Vec::new();
    let chunk = messages / (kills + 1);
    for round in 0..kills {
        let from = round * chunk;
        let batch: Vec<_> = (from..from + chunk).map(|i| guest_message(seed, i)).collect();
        enqueued.extend(batch.iter().map(|m| m.message_id.clone()));
        relay.ota.enqueue(batch);
        // Now and then the PMS is down for a whole round: an outage across a crash.
        let outage = rng.u32(0..5) == 0;
        relay.pms.set_down(outage);

        relay.run();
        let (ota, pms) = (&relay.ota, &relay.pms);
        // A random moment: after a random number of further requests at one of the fakes.
        let steps = rng.u64(1..80);
        let (ota_now, pms_now) = (ota.read(|s| s.gets + s.puts), pms.read(|s| s.requests));
        if rng.bool() && !outage {
            tokio::select! {
                _ = pms.wait_for(|s| s.requests >= pms_now + steps) => {}
                _ = ota.wait_for(|s| s.gets + s.puts >= ota_now + 400) => {}
            }
        } else {
            ota.wait_for(|s| s.gets + s.puts >= ota_now + steps).await;
        }
        relay.kill9().await;
    }
    relay.pms.set_down(false);
    let from = kills * chunk;
    let rest: Vec<_> = (from..messages).map(|i| guest_message(seed, i)).collect();
    enqueued.extend(rest.iter().map(|m| m.message_id.clone()));
    relay.ota.enqueue(rest);

    relay.run();
    let (ota, pms) = (&relay.ota, &relay.pms);
    let expected = enqueued.len();
    within(
        if soak { 900 } else { 120 },
        "everything stored and delivered after the crashes",
        async {
            ota.wait_for(|s| s.drained()).await;
            pms.wait_for(|s| s.accepted_count() >= expected).await;
        },
    )
    .await;
    relay.stop().await;
    let (ota, pms) = (&relay.ota, &relay.pms);

    let path = relay.path();
    let stored = stored_ids(&path);
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "a message was stored twice");
    let missing: Vec<&String> = enqueued.iter().filter(|id| !stored_set.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} enqueued messages are not in the store: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let (accepted, duplicates) = pms.read(|s| {
        let accepted: HashSet<String> = s.accepted.keys().cloned().collect();
        (accepted, s.duplicates())
    });
    let undelivered: Vec<&String> = enqueued
        .iter()
        .filter(|id| !accepted.contains(&format!("booking.com:{id}")))
        .collect();
    assert!(
        undelivered.is_empty(),
        "{} messages never accepted by the PMS",
        undelivered.len()
    );
    let violations = ota.read(|s| s.violations.clone());
    assert!(
        violations.is_empty(),
        "a PUT confirmed more than the preceding GET served: {violations:?}"
    );
    eprintln!(
        "crash suite: {kills} kills, {duplicates} duplicate deliveries (bound {})",
        CONCURRENCY * kills
    );
    assert!(
        duplicates <= CONCURRENCY * kills,
        "{duplicates} duplicates exceed {CONCURRENCY} per kill"
    );
    let integrity: String = db(&path).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let faults = ota.read(|s| s.faults_injected);
    assert!(faults > 0, "faults were injected");
}
