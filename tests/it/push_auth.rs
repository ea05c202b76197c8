//! Who may push: our token endpoint as RFC 6749 §4.4 has it, tokens that survive a restart but not a rotated
//! secret nor their expiry, and every failure answered 401 alike, logged without what was presented, storing
//! nothing, and limited per peer.

use base64::Engine as _;
use ota_relay::fake::guest_message;
use ota_relay::fake::pushes::{self, STAAH_SEED_SAMPLE};

use crate::support::*;

#[tokio::test]
async fn the_token_endpoint_answers_as_rfc_6749_says() {
    let mut relay = TestRelay::with().receiving().without_pull().start().await;
    let senders = relay.senders();
    let c = senders.credentials.clone();

    let answer = senders
        .token_request(&c.notifications_client_id, &c.notifications_client_secret)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 3600, "token_ttl defaults to 1h");
    assert!(json["access_token"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["pragma"], "no-cache");

    // Client authentication by form fields (§2.3.1) works as well.
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        c.notifications_client_id, c.notifications_client_secret
    );
    let by_form = senders
        .post(senders.client().post(senders.url("/oauth/token")).body(form))
        .await
        .unwrap();
    assert_eq!(by_form.status, 200, "{}", by_form.body);

    let wrong = senders
        .token_request(&c.notifications_client_id, "not the secret")
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(wrong.headers.contains_key("www-authenticate"));
    assert_eq!(wrong.headers["cache-control"], "no-store");
    let unknown = senders
        .token_request("someone-else", &c.notifications_client_secret)
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (401, wrong.body.clone()),
        "no hint which part was wrong"
    );

    for (body, error) in [
        ("grant_type=password&username=a&password=b", "unsupported_grant_type"),
        ("client_id=cns-client", "invalid_request"),
    ] {
        let answer = senders
            .post(senders.client().post(senders.url("/oauth/token")).body(body))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.json()["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_store_nothing_and_are_logged_without_what_was_presented() {
    let mut relay = TestRelay::with().receiving().without_pull().start().await;
    let senders = relay.senders();
    let notification = pushes::booking_notification(&guest_message(911, 1), "uuid-911");
    let channex = pushes::channex_message(911, 1, "thread-911");
    let client = senders.client();
    let presented = "presented-credential-9c2f";
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let c = senders.credentials.clone();
    let attempts = [
        ("/booking/notifications", None, notification.body.clone()),
        (
            "/booking/notifications",
            Some(("authorization", format!("Bearer {presented}"))),
            notification.body.clone(),
        ),
        ("/staah/messages", None, STAAH_SEED_SAMPLE.to_owned()),
        (
            "/staah/messages",
            Some(("authorization", basic(&c.staah_username, presented))),
            STAAH_SEED_SAMPLE.to_owned(),
        ),
        (
            "/staah/messages",
            Some(("authorization", basic(presented, &c.staah_password))),
            STAAH_SEED_SAMPLE.to_owned(),
        ),
        ("/channex/webhook", None, channex.body.clone()),
        (
            "/channex/webhook",
            Some(("x-ota-relay-secret", presented.to_owned())),
            channex.body.clone(),
        ),
        (
            "/channex/webhook",
            Some(("x-ota-relay-secret", String::new())),
            channex.body.clone(),
        ),
    ];
    let mut bodies = std::collections::HashSet::new();
    for (path, header, body) in attempts {
        let mut request = client.post(senders.url(path)).body(body);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let answer = senders.post(request).await.unwrap();
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        let challenge = answer.headers["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("realm=\"ota-relay\""), "{challenge}");
        bodies.insert((path, answer.body));
    }
    assert_eq!(bodies.len(), 3, "one body per endpoint, whatever was wrong: {bodies:?}");
    let log = relay.stop().await;
    // Refusals are counted with the next commit, or at the latest at shutdown.
    let (_, status) = relay.status(&[]).await;
    let refused: i64 = status["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["refused"].as_i64().unwrap())
        .sum();
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM quarantine"), 0);
    assert_eq!(refused, 8, "{status}");
    assert_eq!(log.matches("push refused: authentication failed").count(), 8, "{log}");
    assert!(log.contains("peer=127.0.0.1"), "{log}");
    assert!(!log.contains(presented), "what was presented reached the log");
}

#[tokio::test]
async fn a_token_survives_a_restart_but_not_a_rotated_secret() {
    let mut relay = TestRelay::with().receiving().without_pull().forward("").start().await;
    let senders = relay.senders();
    let token = senders.booking_token().await.unwrap();
    let first = pushes::booking_notification(&guest_message(912, 1), "uuid-1");
    assert_eq!(senders.notify(&token, &first.body).await.unwrap().status, 200);

    relay.stop().await;
    relay.run();
    relay.ready(2).await;
    let second = pushes::booking_notification(&guest_message(912, 2), "uuid-2");
    let answer = senders.notify(&token, &second.body).await.unwrap();
    assert_eq!(
        answer.status, 200,
        "CNS caches its token across our restart: {}",
        answer.body
    );

    relay.change_push_credentials(|c| c.notifications_client_secret = "a-rotated-secret-77d1".into());
    let status = relay.reload().await;
    assert_eq!(status, "configuration reloaded");
    let third = pushes::booking_notification(&guest_message(912, 3), "uuid-3");
    let answer = senders.notify(&token, &third.body).await.unwrap();
    assert_eq!(
        answer.status, 401,
        "a token signed with the old secret: {}",
        answer.body
    );
    let senders = relay.senders();
    let fresh = senders.booking_token().await.unwrap();
    assert_eq!(senders.notify(&fresh, &third.body).await.unwrap().status, 200);
    within(30, "three delivered", relay.pms.wait_for(|s| s.accepted_count() == 3)).await;
    relay.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused_from_its_expiry_second() {
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .notification_keys("token_ttl = \"1s\"")
        .start()
        .await;
    let senders = relay.senders();
    let answer = senders.booking_token().await.unwrap();
    let claims = answer.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // Pushes until the first refusal: each answered by the clock it was sent and answered under.
    let mut accepted = 0;
    let refused_at = within(10, "the token expired", async {
        for i in 0.. {
            let sent = now();
            let body = pushes::booking_notification(&guest_message(913, i), &format!("uuid-{i}")).body;
            let status = senders.notify(&answer, &body).await.unwrap().status;
            if status == 401 {
                return sent;
            }
            assert_eq!(status, 200);
            assert!(sent < (exp + 1) as f64, "accepted at {sent} though it expired at {exp}");
            accepted += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        unreachable!()
    })
    .await;
    assert!(accepted > 0, "the token worked before it expired");
    assert!(
        now() >= exp as f64 && refused_at < (exp + 2) as f64,
        "refused at {refused_at}, exp {exp}"
    );
    let later = pushes::booking_notification(&guest_message(913, 999), "uuid-late").body;
    assert_eq!(
        senders.notify(&answer, &later).await.unwrap().status,
        401,
        "and stays refused"
    );
    relay.stop().await;
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM messages"), accepted);
}

#[tokio::test]
async fn a_peer_that_keeps_failing_is_refused_for_a_while_even_with_the_right_credentials() {
    let mut relay = TestRelay::with().receiving().without_pull().start().await;
    let senders = relay.senders();
    let mut wrong = senders.clone();
    wrong.credentials.staah_password = "wrong".into();
    for i in 0..20 {
        assert_eq!(wrong.staah(STAAH_SEED_SAMPLE).await.unwrap().status, 401, "failure {i}");
    }
    let answer = senders.staah(STAAH_SEED_SAMPLE).await.unwrap();
    assert_eq!(answer.status, 429, "{}", answer.body);
    let wait: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    relay.stop().await;
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM messages"), 0);
}

#[tokio::test]
async fn check_config_shows_the_receiver_with_every_push_secret_masked() {
    let relay = TestRelay::with().receiving().without_pull().prepare().await;
    let out = relay.command(&["check-config"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[receive]") && text.contains("[booking.notifications]"),
        "{text}"
    );
    for (key, source) in [
        ("client_secret", "booking.notifications.client_secret"),
        ("password", "staah.password"),
        ("webhook_secret", "channex.webhook_secret"),
    ] {
        assert!(
            text.contains(&format!("{key} = \"********\"  # from {source}")),
            "{key}: {text}"
        );
    }
    let c = ota_relay::fake::PushCredentials::default();
    for secret in [&c.notifications_client_secret, &c.staah_password, &c.channex_secret] {
        assert!(!text.contains(secret.as_str()), "a secret was printed: {text}");
    }
}
