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
