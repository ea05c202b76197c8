//! The drain loop against the fake Booking.com queue over real HTTP, into a real SQLite file.

use std::collections::HashSet;
use std::time::Duration;

use ota_relay::channel::booking::FetchError;
use ota_relay::channel::booking::drain::{DrainError, Drainer};
use ota_relay::fake::{Endpoint, FakeOta, FakeOtaOptions, Fault, SampleMessage, guest_message, poison_message};
use ota_relay::store::{Access, Store};
use tokio_util::sync::CancellationToken;

use crate::support::*;

struct Setup {
    fake: FakeOta,
    store: Store,
    dir: tempfile::TempDir,
    samples: Vec<SampleMessage>,
}

impl Setup {
    async fn new(options: FakeOtaOptions, messages: u64) -> Setup {
        let fake = FakeOta::start(FakeOtaOptions {
            auth: basic_fake_auth(),
            ..options
        })
        .await
        .unwrap();
        let samples: Vec<SampleMessage> = (0..messages).map(|i| guest_message(11, i)).collect();
        fake.enqueue(samples.clone());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("relay.db"), Access::Consumer).unwrap();
        Setup {
            fake,
            store,
            dir,
            samples,
        }
    }

    fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("relay.db")
    }

    fn drainer(&self, cancel: CancellationToken) -> Drainer {
        Drainer::new(&basic_settings(&self.fake), &context(&self.store, &cancel)).unwrap()
    }

    /// Runs the real loop until the fake's queue is empty.
    async fn drain_all(&self) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.drainer(cancel.clone()).run());
        within(60, "the fake queue to be drained", self.fake.wait_for(|s| s.drained())).await;
        cancel.cancel();
        within(10, "the drain loop to stop", task).await.unwrap();
    }

    fn assert_all_stored_once(&self) {
        let stored = stored_ids(&self.db_path());
        let expected: Vec<String> = self.samples.iter().map(|s| s.message_id.clone()).collect();
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "a message was stored twice");
        let stored_set: HashSet<String> = stored.iter().cloned().collect();
        let missing: Vec<&String> = expected.iter().filter(|id| !stored_set.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "{} messages lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        assert_eq!(stored.len(), expected.len());
        let violations = self.fake.read(|s| s.violations.clone());
        assert!(violations.is_empty(), "protocol violations: {violations:?}");
    }
}

#[tokio::test]
async fn drains_1000_messages_exactly_once_keeping_raw_bytes() {
    let setup = Setup::new(FakeOtaOptions::default(), 1000).await;
    setup.drain_all().await;
    setup.assert_all_stored_once();

    let path = setup.db_path();
    assert_eq!(
        count(&path, "SELECT count(*) FROM receipts"),
        1000,
        "one receipt per fetched copy"
    );
    assert_eq!(setup.fake.read(|s| s.confirmed), 1000);
    assert_eq!(count(&path, "SELECT count(*) FROM batches"), 10, "100 per GET");
    // Arrival order is seq order.
    let expected: Vec<String> = setup.samples.iter().map(|s| s.message_id.clone()).collect();
    assert_eq!(stored_ids(&path), expected);
    // raw is the exact bytes served, never re-serialised.
    let conn = db(&path);
    let mut stmt = conn.prepare("SELECT message_id, raw FROM messages").unwrap();
    let raws: std::collections::HashMap<String, String> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for sample in &setup.samples {
        assert_eq!(
            raws[&sample.message_id], sample.json,
            "raw bytes of {}",
            sample.message_id
        );
    }
    // Typed columns: numeric ids become decimal strings, roles lower-case, property_id a string.
    let numeric = &setup.samples[13].message_id;
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
    let setup = Setup::new(
        FakeOtaOptions {
            redelivery_rate: 0.5,
            seed: 3,
            ..FakeOtaOptions::default()
        },
        600,
    )
    .await;
    setup.drain_all().await;
    setup.assert_all_stored_once();
    let redeliveries = setup.fake.read(|s| s.redeliveries) as i64;
    assert!(redeliveries > 100, "the fake redelivered {redeliveries}");
    let path = setup.db_path();
    assert_eq!(count(&path, "SELECT count(*) FROM receipts"), 600 + redeliveries);
    assert_eq!(count(&path, "SELECT sum(redelivered) FROM batches"), redeliveries);
}

#[tokio::test]
async fn random_faults_and_redeliveries_lose_nothing_and_never_overconfirm() {
    let setup = Setup::new(
        FakeOtaOptions {
            redelivery_rate: 0.2,
            fault_rate: 0.3,
            seed: 42,
            stall: Duration::from_millis(1500),
            ..FakeOtaOptions::default()
        },
        800,
    )
    .await;
    setup.drain_all().await;
    setup.assert_all_stored_once();
    assert!(setup.fake.read(|s| s.faults_injected) >= 3, "faults were injected");
}

/// Each kind of bad answer: an error naming it, nothing stored, no PUT; the next attempt succeeds.
#[tokio::test]
async fn every_kind_of_bad_answer_is_transient_and_confirms_nothing() {
    let setup = Setup::new(FakeOtaOptions::default(), 300).await;
    let mut drainer = setup.drainer(CancellationToken::new());
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
        let puts = setup.fake.read(|s| s.puts);
        let stored = count(&setup.db_path(), "SELECT count(*) FROM messages");
        setup.fake.inject(Endpoint::Latest, fault.clone());
        match drainer.drain_once().await {
            Err(DrainError::Fetch(e)) => assert_eq!(e.kind().to_string(), kind, "{fault:?}: {e}"),
            other => panic!("{fault:?}: expected a fetch error, got {other:?}"),
        }
        assert_eq!(setup.fake.read(|s| s.puts), puts, "{fault:?} was followed by a PUT");
        assert_eq!(count(&setup.db_path(), "SELECT count(*) FROM messages"), stored);
    }
    for _ in 0..3 {
        let report = drainer.drain_once().await.expect("recovers");
        assert_eq!(report.confirmed, 100);
    }
    setup.assert_all_stored_once();
}

#[tokio::test]
async fn a_confirm_applied_upstream_whose_answer_is_lost_is_not_repeated() {
    let setup = Setup::new(FakeOtaOptions::default(), 250).await;
    let mut drainer = setup.drainer(CancellationToken::new());
    setup.fake.inject(Endpoint::Confirm, Fault::AppliedThenLost);
    match drainer.drain_once().await {
        Err(DrainError::ConfirmUnknown { report, .. }) => assert_eq!(report.summary.new, 100),
        other => panic!("expected an unknown confirm outcome, got {other:?}"),
    }
    assert_eq!(setup.fake.read(|s| (s.puts, s.confirmed)), (1, 100));
    // The next cycle fetches again: the queue moved on, so it gets the next 100, all new.
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(
        (report.summary.new, report.summary.redelivered, report.confirmed),
        (100, 0, 100)
    );
    drainer.drain_once().await.unwrap();
    assert_eq!(drainer.drain_once().await.unwrap().summary.fetched, 0);
    setup.assert_all_stored_once();
}

#[tokio::test]
async fn a_failed_confirm_means_the_same_batch_comes_back_as_redeliveries() {
    let setup = Setup::new(FakeOtaOptions::default(), 150).await;
    let mut drainer = setup.drainer(CancellationToken::new());
    setup.fake.inject(Endpoint::Confirm, Fault::Status(500));
    assert!(matches!(
        drainer.drain_once().await,
        Err(DrainError::ConfirmUnknown { .. })
    ));
    assert_eq!(setup.fake.read(|s| s.confirmed), 0);
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(
        (report.summary.new, report.summary.redelivered, report.confirmed),
        (0, 100, 100)
    );
    assert_eq!(drainer.drain_once().await.unwrap().summary.new, 50);
    setup.assert_all_stored_once();
}

#[tokio::test]
async fn poison_elements_are_quarantined_counted_and_the_queue_keeps_moving() {
    let setup = Setup::new(FakeOtaOptions::default(), 10).await;
    let poison: Vec<String> = (0..4).map(poison_message).collect();
    setup.fake.enqueue_raw(poison.clone());
    let more: Vec<SampleMessage> = (10..20).map(|i| guest_message(11, i)).collect();
    setup.fake.enqueue(more.clone());
    let mut drainer = setup.drainer(CancellationToken::new());
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(report.summary.fetched, 24);
    assert_eq!(report.summary.quarantined, 4);
    assert_eq!(report.confirmed, 24, "poison counts in N");
    assert!(setup.fake.read(|s| s.drained()));
    let path = setup.db_path();
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
    let setup = Setup::new(FakeOtaOptions::default(), 0).await;
    setup.fake.enqueue_raw([poison_message(0)]);
    let mut drainer = setup.drainer(CancellationToken::new());
    drainer.drain_once().await.unwrap();
    setup.fake.enqueue_raw([poison_message(0)]);
    drainer.drain_once().await.unwrap();
    assert_eq!(count(&setup.db_path(), "SELECT count(*) FROM quarantine"), 1);
    assert_eq!(count(&setup.db_path(), "SELECT seen_count FROM quarantine"), 2);
}

#[tokio::test]
async fn a_wrong_number_of_messages_is_ignored_in_favour_of_the_array() {
    let setup = Setup::new(FakeOtaOptions::default(), 40).await;
    setup.fake.inject(Endpoint::Latest, Fault::WrongCount);
    let mut drainer = setup.drainer(CancellationToken::new());
    let report = drainer.drain_once().await.unwrap();
    assert_eq!(report.confirmed, 40);
    setup.assert_all_stored_once();
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_request() {
    let setup = Setup::new(FakeOtaOptions::default(), 5).await;
    setup.fake.inject(
        Endpoint::Latest,
        Fault::RetryAfter {
            status: 429,
            seconds: 1,
        },
    );
    setup.drain_all().await;
    let requests = setup.fake.read(|s| s.requests.clone());
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
    setup.assert_all_stored_once();
}

#[tokio::test]
async fn cancellation_during_a_fetch_stops_without_confirming() {
    let setup = Setup::new(FakeOtaOptions::default(), 5).await;
    let mut gate = setup
        .fake
        .hold_next(Endpoint::Latest, ota_relay::fake::HoldPoint::Before);
    let cancel = CancellationToken::new();
    let mut drainer = setup.drainer(cancel.clone());
    let attempt = tokio::spawn(async move { drainer.drain_once().await });
    within(10, "the GET to arrive", gate.arrived()).await;
    cancel.cancel();
    let outcome = within(10, "drain_once to return", attempt).await.unwrap();
    assert!(matches!(outcome, Err(DrainError::Cancelled)), "{outcome:?}");
    assert_eq!(setup.fake.read(|s| s.puts), 0);
    drop(gate);
}

#[tokio::test]
async fn wrong_basic_credentials_are_reported_as_a_credentials_problem() {
    let setup = Setup::new(FakeOtaOptions::default(), 5).await;
    let mut settings = basic_settings(&setup.fake);
    settings.auth = ota_relay::config::BookingAuth::Basic {
        username: "relay".into(),
        password: ota_relay::config::Secret::inline("wrong"),
    };
    let mut drainer = drainer(&settings, &setup.store.clone());
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
