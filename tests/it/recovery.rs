//! Coming back after bad luck: forwarding resumes soon after a short PMS outage, a PMS's Retry-After is kept
//! when the outage ends, and a token that expired before its first use is renewed.

use std::time::{Duration, Instant};

use ota_relay::channel::booking::drain::DrainError;
use ota_relay::config::RetryPolicy;
use ota_relay::fake::{Endpoint, FakePmsOptions, Fault, PmsReply};
use ota_relay::forward::health::{FAILING_AFTER, PmsHealth};

use crate::support::*;

/// A failed attempt's result, as the worker records it.
fn failure() -> ota_relay::forward::attempt::AttemptResult {
    ota_relay::forward::attempt::AttemptResult::Status {
        code: 503,
        retry_after: None,
    }
}

#[test]
fn requests_in_flight_when_the_pms_turns_failing_do_not_push_the_first_probe_away() {
    let policy = RetryPolicy {
        initial_interval: Duration::from_secs(5),
        max_interval: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(72 * 3600),
    };
    let mut health = PmsHealth::new();
    let now = Instant::now();
    // Fourteen requests were in flight (concurrency 14) when the PMS went down for two seconds.
    for _ in 0..14 {
        health.record(&failure(), false, &policy, now, 0.5);
    }
    assert!(health.failing());
    assert_eq!(
        health.next_probe,
        now + Duration::from_secs(5),
        "one initial interval, not 2^11 of them"
    );
    // Only probes move the pace, doubling from there.
    health.record(&failure(), true, &policy, now, 0.5);
    assert_eq!(health.next_probe, now + Duration::from_secs(10));
    health.record(&failure(), true, &policy, now, 0.5);
    assert_eq!(health.next_probe, now + Duration::from_secs(20));
    // Failing needs that many in a row.
    let mut fresh = PmsHealth::new();
    for _ in 1..FAILING_AFTER {
        fresh.record(&failure(), false, &policy, now, 0.5);
    }
    assert!(!fresh.failing());
}

#[tokio::test]
async fn a_two_second_pms_outage_stops_forwarding_for_seconds_not_minutes() {
    let mut relay = TestRelay::with()
        .pms(|o| FakePmsOptions {
            latency: Duration::from_millis(200), // so that the whole first round is in flight together
            ..o
        })
        .forward("concurrency = 14\n[forward.retry]\ninitial_interval = \"1s\"\nmax_interval = \"1h\"")
        .prepare()
        .await;
    relay.pms.set_down(true);
    relay.enqueue(205, 0..40);
    relay.run();
    relay.wait_for_attempts(14).await;
    relay.pms.set_down(false);
    let back = Instant::now();
    within(
        20,
        "every message after the outage",
        relay.pms.wait_for(|s| s.accepted_count() == 40),
    )
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "forwarding resumed {took:?} after the PMS came back"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_retry_after_the_pms_named_is_kept_when_its_outage_ends() {
    let mut relay = TestRelay::with()
        .stored(206, 0..4)
        .forward("concurrency = 1\n[forward.retry]\ninitial_interval = \"200ms\"\nmax_interval = \"1s\"")
        .prepare()
        .await;
    // The first three are told to come back in two minutes; that makes the PMS "failing". The fourth, a
    // probe, succeeds: the outage is over, but not for the three.
    for _ in 0..3 {
        relay.pms.reply_next(PmsReply::RetryAfter {
            status: 429,
            seconds: 120,
        });
    }
    relay.run();
    relay
        .wait_for_store("the probe delivered", |db| {
            db.query_row("SELECT state FROM deliveries WHERE seq = 4", [], |r| {
                r.get::<_, String>(0)
            })
            .is_ok_and(|s| s == "delivered")
        })
        .await;
    let soon = now() + 100_000;
    let kept = relay.count(&format!(
        "SELECT count(*) FROM deliveries WHERE seq IN (1, 2, 3) AND state = 'pending' AND next_attempt_at > {soon}"
    ));
    assert_eq!(kept, 3, "each keeps the time its Retry-After named");
    // An operator's retry-now does not send them sooner either.
    let out = relay.command(&["retry-now"]).await;
    assert!(out.status.success());
    assert_eq!(
        relay.count(&format!(
            "SELECT count(*) FROM deliveries WHERE seq IN (1, 2, 3) AND next_attempt_at > {soon}"
        )),
        3
    );
    relay.stop().await;
    assert_eq!(
        relay.pms.read(|s| s.requests),
        4,
        "nothing sent before the time the PMS asked for"
    );
}

#[tokio::test]
async fn a_token_that_expires_before_its_first_use_is_exchanged_again() {
    let relay = TestRelay::with().token_auth().queued(207, 0..5).in_process().await;
    let mut drainer = relay.drainer();
    // The new token's first request is lost (a dropped connection)...
    relay.ota.inject(Endpoint::Latest, Fault::Reset);
    assert!(drainer.drain_once().await.is_err());
    // ...and by the next one it has expired: the 401 is not the account's fault.
    relay.ota.expire_tokens();
    match drainer.drain_once().await {
        Err(DrainError::Fetch(e)) => assert!(e.to_string().contains("401"), "{e}"),
        Ok(report) => assert_eq!(report.confirmed, 5, "renewed at once"),
        Err(other) => panic!("{other}"),
    }
    // The refused token is never presented again: the next attempt exchanges a new one and drains.
    for _ in 0..3 {
        if relay.ota.read(|s| s.drained()) {
            break;
        }
        let _ = drainer.drain_once().await;
    }
    assert!(relay.ota.read(|s| s.drained()), "the drain goes on");
    assert_eq!(relay.ota.read(|s| s.token_exchanges.len()), 2);
}
