//! Token-exchange authentication against the fake's token endpoint.

use ota_relay::channel::booking::FetchError;
use ota_relay::channel::booking::auth::AuthError;
use ota_relay::channel::booking::drain::DrainError;
use ota_relay::fake::FakeOtaOptions;
use std::time::Duration;

use ota_relay::store::{Access, Millis, Reservation, Store};
use tokio_util::sync::CancellationToken;

use crate::support::*;

fn quota_error(
    result: &Result<ota_relay::channel::booking::drain::BatchReport, DrainError>,
) -> Option<(Millis, usize)> {
    match result {
        Err(DrainError::Fetch(FetchError::Auth(AuthError::QuotaExhausted { until, used }))) => Some((*until, *used)),
        _ => None,
    }
}

#[tokio::test]
async fn tokens_are_reused_and_renewed_at_once_when_they_expire_early() {
    // Each token stops working after 3 requests: a lifetime much shorter than the assumed hour.
    let relay = TestRelay::with()
        .token_auth()
        .ota(|o| FakeOtaOptions {
            token_max_uses: Some(3),
            ..o
        })
        .queued(5, 0..1000)
        .in_process()
        .await;
    relay.drain_all().await;
    let fake = &relay.ota;

    let (exchanges, unauthorized, violations, gets, puts) = fake.read(|s| {
        (
            s.token_exchanges.len(),
            s.unauthorized,
            s.violations.clone(),
            s.gets,
            s.puts,
        )
    });
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(relay.stored_ids().len(), 1000);
    let accepted = gets + puts; // requests that got past authentication
    assert!(exchanges >= 2, "tokens were renewed ({exchanges})");
    // Reuse: a token serves 3 requests, so about a third as many exchanges as requests, never one per request.
    assert!(
        exchanges as u64 <= accepted / 3 + 2,
        "{exchanges} exchanges for {accepted} requests"
    );
    assert!(
        unauthorized <= exchanges as u64,
        "one 401 per expired token at most ({unauthorized})"
    );
    assert_eq!(
        relay.count("SELECT count(*) FROM token_exchanges"),
        exchanges as i64,
        "every exchange is logged in the store"
    );
}

#[tokio::test]
async fn the_hourly_token_quota_is_never_exceeded_even_across_restarts() {
    // Every token works exactly once, so the client needs a new token for almost every request.
    let relay = TestRelay::with()
        .token_auth()
        .ota(|o| FakeOtaOptions {
            token_max_uses: Some(1),
            ..o
        })
        .queued(5, 0..5000)
        .prepare()
        .await;
    let fake = &relay.ota;
    {
        let store = relay.open_store();
        let mut drainer = relay.drainer_on(&store);
        let mut quota = None;
        for _ in 0..200 {
            let result = drainer.drain_once().await;
            if let Some(q) = quota_error(&result) {
                quota = Some(q);
                break;
            }
        }
        let (until, used) = quota.expect("the quota was reached");
        assert_eq!(used, 30);
        let wait_ms = ota_relay::store::now_ms().until(until).as_millis();
        assert!(
            wait_ms > 3_500_000,
            "waits for the oldest exchange to leave the hour ({wait_ms} ms)"
        );
        assert_eq!(fake.read(|s| s.token_exchanges.len()), 30);
        let text = format!("{}", AuthError::QuotaExhausted { until, used });
        assert!(text.contains("quota"), "{text}");
    }
    // A restart (new process state, same store) must not exchange again.
    let store = relay.open_store();
    let mut drainer = relay.drainer_on(&store);
    assert!(quota_error(&drainer.drain_once().await).is_some());
    assert_eq!(
        fake.read(|s| s.token_exchanges.len()),
        30,
        "no exchange after the restart"
    );
    assert!(fake.read(|s| s.violations.is_empty()));
}

#[tokio::test]
async fn a_token_refused_from_the_start_is_a_credentials_problem_and_never_presented_again() {
    let relay = TestRelay::with().token_auth().queued(5, 0..10).in_process().await;
    let fake = &relay.ota;
    fake.revoke_tokens(true);
    let mut drainer = relay.drainer();
    for _ in 0..3 {
        match drainer.drain_once().await {
            Err(DrainError::Fetch(e)) => assert!(e.is_credentials(), "{e}"),
            other => panic!("expected a credentials error, got {other:?}"),
        }
    }
    // Each attempt (the drain loop makes one per backoff_max) exchanges anew, within the hourly quota: a token
    // refused once is not presented again.
    assert_eq!(fake.read(|s| (s.token_exchanges.len(), s.unauthorized)), (3, 3));
    fake.revoke_tokens(false);
    assert_eq!(drainer.drain_once().await.unwrap().confirmed, 10);
}

#[tokio::test]
async fn a_rejected_client_secret_is_reported_without_revealing_it() {
    let relay = TestRelay::with().token_auth().queued(5, 0..1).in_process().await;
    let mut settings = relay.booking();
    if let Some(ota_relay::config::BookingAuth::Token { client_secret, .. }) = &mut settings.auth {
        *client_secret = ota_relay::config::Secret::inline("not-the-secret");
    }
    let mut drainer = relay.drainer_with(&settings, &CancellationToken::new());
    match drainer.drain_once().await {
        Err(DrainError::Fetch(e @ FetchError::Auth(AuthError::Rejected { .. }))) => {
            assert!(e.is_credentials());
            assert!(e.to_string().contains("client_secret"), "names the key: {e}");
            assert!(!e.to_string().contains("not-the-secret"));
        }
        other => panic!("expected a rejected exchange, got {other:?}"),
    }
}

#[tokio::test]
async fn exchanges_recorded_before_the_clock_went_back_count_as_made_now() {
    const HOUR: Duration = Duration::from_secs(3600);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("relay.db"), Access::Consumer).unwrap();
    let now = ota_relay::store::now_ms();
    // A clock five hours fast recorded the hour's 30 exchanges (a crash loop), then was set right.
    for _ in 0..30 {
        let made = store
            .reserve_token_exchange(now.after(5 * HOUR), HOUR, 30)
            .await
            .unwrap();
        assert_eq!(made, Reservation::Granted);
    }
    // The quota stays used up, but frees an hour from now, not an hour after the fast clock's times.
    assert_eq!(
        store.reserve_token_exchange(now, HOUR, 30).await.unwrap(),
        Reservation::Exhausted {
            until: now.after(HOUR),
            used: 30
        }
    );
    assert_eq!(
        store
            .reserve_token_exchange(now.after(HOUR + Duration::from_millis(1)), HOUR, 30)
            .await
            .unwrap(),
        Reservation::Granted
    );
}

#[tokio::test]
async fn the_binary_waits_on_an_exhausted_quota_after_a_restart_and_says_why() {
    let mut relay = TestRelay::with().token_auth().queued(5, 0..1).prepare().await;
    // A previous run (or crash loop) already used the hour's 30 exchanges.
    {
        let store = relay.open_store();
        for _ in 0..30 {
            store
                .reserve_token_exchange(ota_relay::store::now_ms(), Duration::from_secs(3600), 30)
                .await
                .unwrap();
        }
    }
    relay.run();
    // What the operator reads is the point: the wait, its reason and until when.
    let line = relay.daemon().wait_for_log("token exchange quota reached").await;
    assert!(line.contains("30 tokens"), "{line}");
    let (_, status) = relay.status(&[]).await;
    assert!(
        status["source"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("quota"),
        "status says why too: {status}"
    );
    let stderr = relay.stop().await;
    assert_eq!(
        relay.ota.read(|s| s.token_exchanges.len()),
        0,
        "no exchange was attempted"
    );
    assert!(!stderr.contains(CLIENT_SECRET));
}
