//! Model-based test of the drain loop: random interleavings of arrivals, faults, drains and restarts against a
//! model of the queue (what was enqueued, what upstream removed for good). After every step the drain
//! invariants hold: nothing removed upstream is missing from the store, nothing is stored twice, no confirm
//! exceeds what the preceding answer held; and in the end everything enqueued is stored.

use std::collections::HashSet;
use std::time::Duration;

use ota_relay::fake::{Endpoint, FakeOtaOptions, Fault, guest_message, poison_message};
use proptest::prelude::*;

use crate::support::*;

#[derive(Debug, Clone)]
enum Step {
    Arrive(u64),
    ArrivePoison,
    FailNextFetch(Fault),
    FailNextConfirm(Fault),
    Drain,
    Restart,
}

fn fetch_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Status(500)),
        Just(Fault::Status(503)),
        Just(Fault::RetryAfter {
            status: 429,
            seconds: 0
        }),
        Just(Fault::Html),
        Just(Fault::Garbage),
        Just(Fault::Truncated),
        Just(Fault::ApiError),
        Just(Fault::Reset),
        Just(Fault::WrongCount),
    ]
}

fn confirm_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Status(500)),
        Just(Fault::Reset),
        Just(Fault::AppliedThenLost),
        Just(Fault::AppliedThenStatus(502)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u64..180).prop_map(Step::Arrive),
        1 => Just(Step::ArrivePoison),
        2 => fetch_fault().prop_map(Step::FailNextFetch),
        2 => confirm_fault().prop_map(Step::FailNextConfirm),
        6 => Just(Step::Drain),
        1 => Just(Step::Restart),
    ]
}

async fn run_case(steps: Vec<Step>, redelivery_rate: f64, seed: u64) -> Result<(), TestCaseError> {
    let relay = TestRelay::with()
        .ota(|o| FakeOtaOptions {
            redelivery_rate,
            seed,
            ..o
        })
        .prepare()
        .await;
    let (fake, path) = (&relay.ota, relay.path());
    // A process: the store opened (with its lock) and a drain loop on it.
    let open = || relay.drainer_on(&relay.open_store());
    let mut drainer = Some(open());
    let mut enqueued: HashSet<String> = HashSet::new();
    let mut next = 0u64;

    let check = |enqueued: &HashSet<String>| -> Result<(), TestCaseError> {
        let stored = stored_ids(&path);
        let stored_set: HashSet<String> = stored.iter().cloned().collect();
        prop_assert_eq!(stored_set.len(), stored.len(), "stored twice");
        prop_assert!(stored_set.is_subset(enqueued), "stored a message never enqueued");
        let (violations, removed) = fake.read(|s| (s.violations.clone(), s.confirmed_ids.clone()));
        prop_assert!(violations.is_empty(), "{:?}", violations);
        let lost: Vec<&String> = removed
            .iter()
            .filter(|id| !id.starts_with('(') && !stored_set.contains(*id))
            .collect();
        prop_assert!(lost.is_empty(), "removed upstream but not stored: {:?}", lost);
        Ok(())
    };

    for step in steps {
        match step {
            Step::Arrive(n) => {
                let batch: Vec<_> = (next..next + n).map(|i| guest_message(seed, i)).collect();
                next += n;
                enqueued.extend(batch.iter().map(|m| m.message_id.clone()));
                fake.enqueue(batch);
            }
            Step::ArrivePoison => fake.enqueue_raw([poison_message(next)]),
            Step::FailNextFetch(fault) => fake.inject(Endpoint::Latest, fault),
            Step::FailNextConfirm(fault) => fake.inject(Endpoint::Confirm, fault),
            Step::Drain => {
                // Failures are part of the model; the invariants are checked either way.
                let _ = drainer.as_mut().unwrap().drain_once().await;
            }
            Step::Restart => {
                drop(drainer.take()); // releases the store and its lock, like a process exit
                drainer = Some(open());
            }
        }
        check(&enqueued)?;
    }
    // Eventually, with no more faults, everything enqueued is stored.
    let drainer = drainer.as_mut().unwrap();
    for _ in 0..200 {
        if fake.read(|s| s.drained()) {
            break;
        }
        let _ = drainer.drain_once().await;
    }
    prop_assert!(fake.read(|s| s.drained()), "the queue never drained");
    check(&enqueued)?;
    let stored: HashSet<String> = stored_ids(&path).into_iter().collect();
    prop_assert_eq!(stored, enqueued);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("OTA_RELAY_MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn drain_invariants_hold_under_any_interleaving(
        steps in proptest::collection::vec(step(), 1..40),
        redelivery_rate in prop_oneof![Just(0.0), 0.0f64..0.5],
        seed in any::<u64>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), run_case(steps, redelivery_rate, seed)).await
        })
        .map_err(|_| TestCaseError::fail("case timed out"))??;
    }
}
