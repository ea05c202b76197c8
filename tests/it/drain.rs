//! The drain loop against the fake Booking.com queue over real HTTP, into a real SQLite file.

use std::time::Duration;

use ota_relay::channel::booking::FetchError;
use ota_relay::channel::booking::drain::DrainError;
use ota_relay::fake::{Endpoint, FakeOtaOptions, Fault, SampleMessage, guest_message, poison_message};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A relay in this process whose fake queue holds seed 11's first `messages` sample messages.
async fn relay(messages: u64, change: impl FnOnce(FakeOtaOptions) -> FakeOtaOptions) -> TestRelay {
    TestRelay::with().ota(change).queued(11, 0..messages).in_process().await
}

fn same(options: FakeOtaOptions) -> FakeOtaOptions {
    options
}

#[tokio::test]
async fn drains_1000_messages_exactly_once_keeping_raw_bytes() {
    let setup = relay(1000, same).await;
    setup.drain_all().await;
    setup.assert_stored_exactly(setup.queued());

    let path = setup.path();
    assert_eq!(
        count(&path, "SELECT count(*) FROM receipts"),
        1000,
        "one receipt per fetched copy"
    );
    assert_eq!(setup.ota.read(|s| s.confirmed), 1000);
    assert_eq!(count(&path, "SELECT count(*) FROM batches"), 10, "100 per GET");
    // Arrival order is seq order.
    let expected: Vec<String> = setup.queued().iter().map(|s| s.message_id.clone()).collect();
    assert_eq!(stored_ids(&path), expected);
    // raw is the exact bytes served, never re-serialised.
    let conn = db(&path);
    let mut stmt = conn.prepare("SELECT message_id, raw FROM messages").unwrap();
    let raws: std::collections::HashMap<String, String> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for sample in setup.queued() {
        assert_eq!(
            raws[&sample.message_id], sample.json,
            "raw bytes of {}",
            sample.message_id
        );
    }
    // Typed columns: numeric ids become decimal strings, roles lower-case, property_id a string.
    let numeric = &setup.queued()[13].message_id;
    assert!(
        numeric.bytes().all(|b| b.is_ascii_digit()),
        "sample 13 has a numeric id"
    );
    let (role, property, conv): (String, String, String) = conn
        .query_row(
            "SELECT sender_role, property_id, conversation_id FROM messages WHERE message_id = ?1",
            [numeric],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(role == "guest" || role == "property", "role {role}");
    assert!(property.starts_with("801185"), "property_id {property}");
    assert_eq!(conv, "conv-000003");
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM messages WHERE sender_role NOT IN ('guest','property')"
        ),
        0
    );
}

#[tokio::test]
async fn redelivered_messages_are_recorded_but_never_stored_twice() {
    let setup = relay(600, |o| FakeOtaOptions {
        redelivery_rate: 0.5,
        seed: 3,
        ..o
    })
    .await;
    setup.drain_all().await;
    setup.assert_stored_exactly(setup.queued());
    let redeliveries = setup.ota.read(|s| s.redeliveries) as i64;
    assert!(redeliveries > 100, "the fake redelivered {redeliveries}");
    let path = setup.path();
    assert_eq!(count(&path, "SELECT count(*) FROM receipts"), 600 + redeliveries);
    assert_eq!(count(&path, "SELECT sum(redelivered) FROM batches"), redeliveries);
}

#[tokio::test]
async fn random_faults_and_redeliveries_lose_nothing_and_never_overconfirm() {
    let setup = relay(800, |o| FakeOtaOptions {
        redelivery_rate: 0.2,
        fault_rate: 0.3,
        seed: 42,
        stall: Duration::from_millis(1500),
        ..o
    })
    .await;
    setup.drain_all().await;
    setup.assert_stored_exactly(setup.queued());
    assert!(setup.ota.read(|s| s.faults_injected) >= 3, "faults were injected");
}

/// Each kind of bad answer: an error naming it, nothing stored, no PUT; the next attempt succeeds.
#[tokio::test]
async fn every_kind_of_bad_answer_is_transient_and_confirms_nothing() {
    let setup = relay(300, same).await;
    let mut drainer = setup.drainer();
    let cases: Vec<(Fault, &str)> = vec![
        (Fault::Status(500), "http_500"),
        (Fault::Status(503), "http_503"),
        (
            Fault::RetryAfter {
                status: 429,
                seconds: 0,
            },
            "http_429",
        ),
        (Fault::Garbage, "malformed"),
        (Fault::Html, "malformed"),
        (Fault::ApiError, "api_error"),
        (Fault::Truncated, "connection"),
        (Fault::Reset, "connection"),
        (Fault::Stall, "timeout"),
        (Fault::Oversized, "too_large"),
        (Fault::Status(404), "http_404"),
    ];
    for (fault, kind) in cases {
        let puts = setup.ota.read(|s| s.puts);
        let stored = count(&setup.path(), "SELECT count(*) FROM messages");
        setup.ota.inject(Endpoint::Latest, fault.clone());
        match drainer.drain_once().await {
            Err(DrainError::Fetch(e)) => assert_eq!(e.kind().to_string(), kind, "{fault:?}: {e}"),
            other => panic!("{fault:?}: expected a fetch error, got {other:?}"),
        }
        assert_eq!(setup.ota.read(|s| s.puts), puts, "{fault:?} was followed by a PUT");
        assert_eq!(count(&setup.path(), "SELECT count(*) FROM messages"), stored);
    }
    for _ in 0..3 {
        let report = drainer.drain_once().await.expect("recovers");
        assert_eq!(report.confirmed, 100);
    }
    setup.assert_stored_exactly(setup.queued());
}

#[tokio::test]
async fn a_confirm_applied_upstream_whose_answer_is_lost_is_not_repeated() {
    let setup = relay(250, same).await;
    let mut drainer = setup.drainer();
    setup.ota.inject(Endpoint::Confirm, Fault::AppliedThenLost);
    match drainer.drain_once().await {
        Err(DrainError::ConfirmUnknown { report, .. }) => assert_eq!(report.summary.new, 100),
        other => panic!("expected an unknown confirm outcome, got {other:?}"),
    }
    assert_eq!(setup.ota.read(|s| (s.puts, s.confirmed)), (1, 100));
    // The next cycle fetches again: the queue moved on, so it gets the next 100, all new.
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(
        (report.summary.new, report.summary.redelivered, report.confirmed),
        (100, 0, 100)
    );
    drainer.drain_once().await.unwrap();
    assert_eq!(drainer.drain_once().await.unwrap().summary.fetched, 0);
    setup.assert_stored_exactly(setup.queued());
}

#[tokio::test]
async fn a_failed_confirm_means_the_same_batch_comes_back_as_redeliveries() {
    let setup = relay(150, same).await;
    let mut drainer = setup.drainer();
    setup.ota.inject(Endpoint::Confirm, Fault::Status(500));
    assert!(matches!(
        drainer.drain_once().await,
        Err(DrainError::ConfirmUnknown { .. })
    ));
    assert_eq!(setup.ota.read(|s| s.confirmed), 0);
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(
        (report.summary.new, report.summary.redelivered, report.confirmed),
        (0, 100, 100)
    );
    assert_eq!(drainer.drain_once().await.unwrap().summary.new, 50);
    setup.assert_stored_exactly(setup.queued());
}

#[tokio::test]
async fn poison_elements_are_quarantined_counted_and_the_queue_keeps_moving() {
    let setup = relay(10, same).await;
    let poison: Vec<String> = (0..4).map(poison_message).collect();
    setup.ota.enqueue_raw(poison.clone());
    let more: Vec<SampleMessage> = (10..20).map(|i| guest_message(11, i)).collect();
    setup.ota.enqueue(more.clone());
    let mut drainer = setup.drainer();
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(report.summary.fetched, 24);
    assert_eq!(report.summary.quarantined, 4);
    assert_eq!(report.confirmed, 24, "poison counts in N");
    assert!(setup.ota.read(|s| s.drained()));
    let path = setup.path();
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 20);
    let conn = db(&path);
    let mut stmt = conn.prepare("SELECT raw, reason FROM quarantine ORDER BY id").unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        poison,
        "kept byte for byte"
    );
    assert!(
        rows[0].1.contains("message_id"),
        "reason names the problem: {}",
        rows[0].1
    );
    assert!(
        rows[2].1.contains("attachment_ids") || rows[2].1.contains("sequence"),
        "{}",
        rows[2].1
    );
}

#[tokio::test]
async fn a_redelivered_poison_element_is_counted_not_duplicated() {
    let setup = relay(0, same).await;
    setup.ota.enqueue_raw([poison_message(0)]);
    let mut drainer = setup.drainer();
    drainer.drain_once().await.unwrap();
    setup.ota.enqueue_raw([poison_message(0)]);
    drainer.drain_once().await.unwrap();
    assert_eq!(count(&setup.path(), "SELECT count(*) FROM quarantine"), 1);
    assert_eq!(count(&setup.path(), "SELECT seen_count FROM quarantine"), 2);
}

#[tokio::test]
async fn a_wrong_number_of_messages_is_ignored_in_favour_of_the_array() {
    let setup = relay(40, same).await;
    setup.ota.inject(Endpoint::Latest, Fault::WrongCount);
    let mut drainer = setup.drainer();
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(report.confirmed, 40);
    setup.assert_stored_exactly(setup.queued());
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_request() {
    let setup = relay(5, same).await;
    setup.ota.inject(
        Endpoint::Latest,
        Fault::RetryAfter {
            status: 429,
            seconds: 1,
        },
    );
    setup.drain_all().await;
    let requests = setup.ota.read(|s| s.requests.clone());
    let (at_429, _, _) = requests.iter().find(|r| r.2 == 429).copied().expect("a 429 was served");
    let (next, _, _) = requests
        .iter()
        .find(|r| r.0 > at_429)
        .copied()
        .expect("a later request");
    let gap = next - at_429;
    assert!(
        gap >= Duration::from_millis(990),
        "next request {gap:?} after a 429 with Retry-After: 1"
    );
    setup.assert_stored_exactly(setup.queued());
}

#[tokio::test]
async fn cancellation_during_a_fetch_stops_without_confirming() {
    let setup = relay(5, same).await;
    let mut gate = setup
        .ota
        .hold_next(Endpoint::Latest, ota_relay::fake::HoldPoint::Before);
    let cancel = CancellationToken::new();
    let mut drainer = setup.drainer_until(&cancel);
    let attempt = tokio::spawn(async move { drainer.drain_once().await });
    within(10, "the GET to arrive", gate.arrived()).await;
    cancel.cancel();
    let outcome = within(10, "drain_once to return", attempt).await.unwrap();
    assert!(matches!(outcome, Err(DrainError::Cancelled)), "{outcome:?}");
    assert_eq!(setup.ota.read(|s| s.puts), 0);
    drop(gate);
}

#[tokio::test]
async fn wrong_basic_credentials_are_reported_as_a_credentials_problem() {
    let setup = relay(5, same).await;
    let mut settings = setup.booking();
    settings.auth = Some(ota_relay::config::BookingAuth::Basic {
        username: "relay".into(),
        password: ota_relay::config::Secret::inline("wrong"),
    });
    let mut drainer = setup.drainer_with(&settings, &CancellationToken::new());
    match drainer.drain_once().await {
        Err(DrainError::Fetch(e @ FetchError::Unauthorized { .. })) => {
            assert!(e.is_credentials());
            let text = e.to_string();
            assert!(text.contains("credentials"), "{text}");
            assert!(!text.contains("wrong"), "the password leaked into {text}");
        }
        other => panic!("expected 401, got {other:?}"),
    }
}
