//! Pushed messages over real HTTP into the real binary: each source's samples stored and forwarded with their
//! mapped fields, acknowledged only once committed, deduplicated with the pull, and refused when unauthenticated.

use ota_relay::fake::pushes::{self, STAAH_SEED_SAMPLE};
use ota_relay::fake::{FakeChannex, guest_message};
use serde_json::Value;

use crate::support::*;

/// The PMS payloads received so far, by webhook-id.
fn payload(relay: &TestRelay, webhook_id: &str) -> Value {
    relay.pms.read(|s| {
        let accepted = s
            .captured
            .iter()
            .find(|a| a.webhook_id == webhook_id)
            .unwrap_or_else(|| panic!("{webhook_id} was not delivered: {:?}", s.accepted_order));
        serde_json::from_slice(&accepted.body).unwrap()
    })
}

#[tokio::test]
async fn each_sources_sample_is_stored_and_forwarded_with_its_mapped_fields() {
    let channex = FakeChannex::start("channex-api-key").await.unwrap();
    channex.add_thread("4e160f0b-016a-424a-a30d-a9f0a8b1cbaa", "AirBNB", "Maldonado Roxy");
    let mut relay = TestRelay::with()
        .receiving()
        .channex_api(&channex)
        .without_pull()
        .forward("")
        .start()
        .await;
    let senders = relay.senders();

    let token = senders.booking_token().await.unwrap();
    let booking = guest_message(901, 1);
    let notification = pushes::booking_notification(&booking, "6f1c0d8e-notification-1");
    let answer = senders.notify(&token, &notification.body).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    let answer = senders.staah(STAAH_SEED_SAMPLE).await.unwrap();
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (200, Some("Success")),
        "{}",
        answer.body
    );

    let channex_sample = pushes::channex_message(901, 1, "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa");
    let answer = senders.channex(&channex_sample.body).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    within(30, "three delivered", relay.pms.wait_for(|s| s.accepted_count() == 3)).await;

    let p = payload(&relay, &notification.webhook_id);
    let d = &p["data"];
    assert_eq!(d["provider"], "booking.com");
    assert_eq!(d["source"], "booking_notification");
    assert_eq!(d["message_id"], booking.message_id.as_str());
    let sample: Value = serde_json::from_str(&booking.json).unwrap();
    assert_eq!(d["conversation"]["id"], sample["conversation"]["conversation_id"]);
    assert_eq!(
        d["conversation"]["reference"],
        sample["conversation"]["conversation_reference"]
    );
    assert_eq!(
        d["raw"],
        serde_json::from_str::<Value>(&notification.body).unwrap(),
        "raw is the whole request body"
    );

    let p = payload(&relay, "staah:244:9623318922");
    let d = &p["data"];
    assert_eq!(d["provider"], "airbnb");
    assert_eq!(d["source"], "staah");
    assert_eq!(d["message_id"], "9623318922");
    assert_eq!(d["content"], "Hello, How are you? How acan we help you.?");
    assert_eq!(d["conversation"]["id"], "991462322");
    assert_eq!(d["conversation"]["reference"], "ABCAJKYSJ8");
    assert_eq!(d["conversation"]["type"], "reservation");
    assert_eq!(d["conversation"]["property_id"], "abc123");
    assert_eq!(d["sender"]["id"], "320338222");
    assert_eq!(d["sender"]["role"], "guest");
    assert_eq!(d["sender"]["name"], "Chris", "the one user under the role guest");
    assert_eq!(d["raw"], serde_json::from_str::<Value>(STAAH_SEED_SAMPLE).unwrap());

    let p = payload(&relay, &channex_sample.webhook_id);
    let d = &p["data"];
    assert_eq!(d["provider"], "airbnb", "learned from the thread");
    assert_eq!(d["source"], "channex");
    assert_eq!(d["conversation"]["id"], "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa");
    assert_eq!(d["conversation"]["reference"], "4d8240fd-d709-454b-a866-08bca2a5a909");
    assert_eq!(d["conversation"]["property_id"], "71d34923-a8be-4682-9625-e4a2f080df92");
    assert_eq!(d["sender"]["role"], "guest");
    assert_eq!(d["sender"]["name"], "Maldonado Roxy");
    assert_eq!(d["content"], "Can we bring our dog? (#1)");

    // A second message in the same thread does not ask Channex again.
    let second = pushes::channex_message(901, 2, "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa");
    assert_eq!(senders.channex(&second.body).await.unwrap().status, 200);
    within(
        30,
        "the fourth delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 4),
    )
    .await;
    assert_eq!(channex.lookups("4e160f0b-016a-424a-a30d-a9f0a8b1cbaa"), 1);
    relay.stop().await;
}

#[tokio::test]
async fn without_an_api_key_a_channex_message_has_no_provider() {
    let mut relay = TestRelay::with().receiving().without_pull().forward("").start().await;
    let sample = pushes::channex_message(902, 1, "thread-without-lookup");
    assert_eq!(relay.senders().channex(&sample.body).await.unwrap().status, 200);
    within(30, "delivered", relay.pms.wait_for(|s| s.accepted_count() == 1)).await;
    let p = payload(&relay, &sample.webhook_id);
    assert_eq!(p["data"]["provider"], Value::Null);
    assert_eq!(p["data"]["source"], "channex");
    relay.stop().await;
}

#[tokio::test]
async fn authenticated_bodies_that_cannot_be_understood_get_400_and_are_kept_in_quarantine() {
    let mut relay = TestRelay::with().receiving().without_pull().forward("").start().await;
    let senders = relay.senders();
    let token = senders.booking_token().await.unwrap();
    let broken_notification =
        r#"{"metadata":{"uuid":"u-1","type":"MESSAGING_API_NEW_MESSAGE"},"payload":{"content":"no id, Erika"}}"#;
    let answer = senders.notify(&token, broken_notification).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.json()["message"].as_str().unwrap().contains("message_id"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("Erika"), "the answer quotes no value");

    let broken_staah = r#"{"message": "Hi", "channel_id": "244", "threadid": "t-1"}"#;
    let answer = senders.staah(broken_staah).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["status"], "Fail");
    assert!(
        answer.json()["response"].as_str().unwrap().contains("messageid"),
        "{}",
        answer.body
    );

    let not_json = "event=message&payload=Erika";
    let answer = senders.channex(not_json).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);

    // A webhook created with send_data: false: acknowledged, kept, not forwarded.
    let no_data = r#"{"event": "message", "property_id": "p-1", "user_id": null, "timestamp": "2026-11-30T10:00:00"}"#;
    let answer = senders.channex(no_data).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Other event and notification types: acknowledged, not stored, not forwarded.
    let review = r#"{"metadata":{"uuid":"u-2","type":"RESERVATION_NEW","payloadVersion":"1.0"},"payload":{}}"#;
    assert_eq!(senders.notify(&token, review).await.unwrap().status, 200);
    let booking_event = r#"{"event":"booking_new","property_id":"p-1","payload":{"booking_id":"b-1"}}"#;
    assert_eq!(senders.channex(booking_event).await.unwrap().status, 200);

    let log = relay.stop().await;
    assert!(log.contains("send_data: true"), "{log}");
    assert!(!log.contains("Erika"), "{log}");
    let db = relay.db();
    let mut kept: Vec<(String, String)> = db
        .prepare("SELECT provider, raw FROM quarantine ORDER BY provider, raw")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    kept.sort();
    let mut expected = vec![
        ("booking_notification".to_owned(), broken_notification.to_owned()),
        ("channex".to_owned(), no_data.to_owned()),
        ("channex".to_owned(), not_json.to_owned()),
        ("staah".to_owned(), broken_staah.to_owned()),
    ];
    expected.sort();
    assert_eq!(
        kept, expected,
        "every authenticated body is kept byte for byte, with its source"
    );
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(relay.pms.read(|s| s.requests), 0);
    let (_, status) = relay.status(&[]).await;
    let by_source = |source: &str, field: &str| {
        status["pushes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == source)
            .map_or(0, |s| s[field].as_i64().unwrap())
    };
    assert_eq!(by_source("channex", "quarantined"), 2, "{status}");
    assert_eq!(by_source("channex", "ignored"), 1, "{status}");
    assert_eq!(by_source("booking_notification", "ignored"), 1, "{status}");
}

#[tokio::test]
async fn an_oversized_body_is_refused_while_it_is_read_not_after() {
    let mut relay = TestRelay::with().receiving().without_pull().start().await;
    let senders = relay.senders();
    // Declared too large: refused before a byte of it is read.
    let big = "x".repeat(1024 * 1024 + 1);
    let answer = senders.staah(&big).await;
    match answer {
        Ok(answer) => assert_eq!(answer.status, 413, "{}", answer.body),
        // The receiver may close before the client finished sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Streamed without a length and never ending: the answer comes while the sender is still sending.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let c = &senders.credentials;
    let request = senders
        .client()
        .post(senders.url("/staah/messages"))
        .basic_auth(&c.staah_username, Some(&c.staah_password))
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let feeder = tokio::spawn(async move {
        let mut sent = 0usize;
        let chunk = vec![b'x'; 64 * 1024];
        while tx.send(Ok(chunk.clone())).await.is_ok() {
            sent += chunk.len();
            if sent > 64 * 1024 * 1024 {
                break;
            }
        }
        sent
    });
    let response = within(30, "the answer to an endless body", request).await.unwrap();
    assert_eq!(response.status(), 413);
    let sent = feeder.await.unwrap();
    assert!(sent < 8 * 1024 * 1024, "{sent} bytes were read before the refusal");
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM quarantine"), 0);
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 0);
}

#[tokio::test]
async fn a_message_pushed_twice_or_pushed_and_pulled_is_forwarded_once() {
    let both = guest_message(903, 7);
    let mut relay = TestRelay::with().receiving().forward("").start().await;
    let senders = relay.senders();
    let token = senders.booking_token().await.unwrap();
    let notification = pushes::booking_notification(&both, "uuid-903");
    for _ in 0..2 {
        let answer = senders.notify(&token, &notification.body).await.unwrap();
        assert_eq!(answer.status, 200, "a sender's retry is answered 2xx too");
    }
    let staah = pushes::staah_message(903, 1);
    let channex = pushes::channex_message(903, 1, "thread-903");
    for _ in 0..2 {
        assert_eq!(senders.staah(&staah.body).await.unwrap().status, 200);
        assert_eq!(senders.channex(&channex.body).await.unwrap().status, 200);
    }
    // The same Booking.com message arrives by the pull too.
    relay.ota.enqueue(vec![both.clone()]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    within(30, "three delivered", relay.pms.wait_for(|s| s.accepted_count() == 3)).await;
    relay.stop().await;
    let accepted = relay.pms.read(|s| s.accepted.clone());
    for id in [&notification.webhook_id, &staah.webhook_id, &channex.webhook_id] {
        assert_eq!(accepted.get(id.as_str()), Some(&1), "{id}: {accepted:?}");
    }
    assert_eq!(accepted.len(), 3);
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 3);
    let (source, push_id): (String, Option<String>) = relay
        .db()
        .query_row(
            "SELECT source, push_id FROM messages WHERE message_id = ?1",
            [&both.message_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (source.as_str(), push_id.as_deref()),
        ("booking_notification", Some("uuid-903"))
    );
}

#[tokio::test]
async fn two_hundred_concurrent_pushes_lose_nothing() {
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .forward("concurrency = 8")
        .start()
        .await;
    let senders = relay.senders();
    let token = senders.booking_token().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let senders = senders.clone();
        let (sample, kind) = match i % 3 {
            0 => (
                pushes::booking_notification(&guest_message(904, i), &format!("uuid-{i}")),
                0,
            ),
            1 => (pushes::staah_message(904, i), 1),
            _ => (pushes::channex_message(904, i, "thread-904"), 2),
        };
        expected.push(sample.webhook_id.clone());
        let token = token.clone();
        tasks.spawn(async move {
            let answer = match kind {
                0 => senders.notify(&token, &sample.body).await,
                1 => senders.staah(&sample.body).await,
                _ => senders.channex(&sample.body).await,
            };
            answer.unwrap().status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    within(60, "all delivered", relay.pms.wait_for(|s| s.accepted_count() == 200)).await;
    relay.stop().await;
    let accepted = relay.pms.read(|s| s.accepted.clone());
    for id in &expected {
        assert_eq!(accepted.get(id.as_str()), Some(&1), "{id}");
    }
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 200);
}

#[tokio::test]
async fn when_the_store_cannot_commit_the_push_gets_503_and_nothing_is_acknowledged() {
    let mut relay = TestRelay::with().receiving().without_pull().forward("").start().await;
    let senders = relay.senders();
    relay
        .db()
        .execute_batch(
            "CREATE TRIGGER full_disk BEFORE INSERT ON messages BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
        )
        .unwrap();
    let sample = pushes::staah_message(905, 1);
    let answer = senders.staah(&sample.body).await.unwrap();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["status"], "Fail");
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 0);

    relay.db().execute_batch("DROP TRIGGER full_disk;").unwrap();
    let answer = senders.staah(&sample.body).await.unwrap();
    assert_eq!(answer.status, 200, "the sender's retry is stored: {}", answer.body);
    within(30, "delivered", relay.pms.wait_for(|s| s.accepted_count() == 1)).await;
    relay.stop().await;
}
