//! Replies reach the guest exactly once through the thread's channel: stored before they are sent, a lost
//! answer reconciled (the echo, the conversation read), never repeated blindly; the PMS hears each outcome.

use ota_relay::fake::pushes::{self, STAAH_SEED_SAMPLE};
use ota_relay::fake::{FakeChannex, FakeStaah, ReplyFault, StaahAnswer};
use serde_json::Value;

use crate::support::*;

const QUICK: &str = "[replies]\nrequest_timeout = \"1s\"\nreconcile_window = \"2s\"\nretry_initial = \"100ms\"\n";

/// A relay that drained a few Booking.com conversations, with the API and forwarding.
async fn relay() -> TestRelay {
    let relay = TestRelay::with()
        .queued(970, 0..8)
        .api()
        .forward("")
        .config(QUICK)
        .start()
        .await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay
}

/// The first thread the API lists.
async fn a_thread(relay: &TestRelay) -> Value {
    let list = relay.api().get("/api/v1/message_threads").await.unwrap().json();
    list["data"][0].clone()
}

/// The reply's state as the store has it.
fn state(relay: &TestRelay, uuid: &str) -> String {
    relay
        .db()
        .query_row("SELECT state FROM replies WHERE uuid = ?1", [uuid], |r| r.get(0))
        .unwrap()
}

/// The PMS accepted the event of `uuid` reaching `state`; its payload.
async fn event(relay: &TestRelay, uuid: &str, state: &str) -> Value {
    let id = format!("reply:{uuid}:{state}");
    within(
        30,
        &format!("{id} delivered"),
        relay.pms.wait_for(|s| s.accepted.contains_key(&id)),
    )
    .await;
    relay.pms.read(|s| {
        let a = s.captured.iter().find(|a| a.webhook_id == id).unwrap();
        serde_json::from_slice(&a.body).unwrap()
    })
}

#[tokio::test]
async fn a_reply_reaches_booking_once_and_its_echo_is_the_reply_not_guest_news() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    let id = thread["id"].as_str().unwrap();
    let answer = relay
        .api()
        .reply(id, "We look forward to your stay!", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let reply = answer.json()["data"].clone();
    assert_eq!(reply["attributes"]["state"], "pending");
    assert_eq!(reply["attributes"]["sender"], "property");
    assert_eq!(reply["attributes"]["message"], "We look forward to your stay!");
    let uuid = reply["id"].as_str().unwrap().to_owned();

    let sent = event(&relay, &uuid, "sent").await;
    assert_eq!(sent["type"], "reply.sent");
    assert_eq!(sent["data"]["thread_id"], id);
    assert_eq!(sent["data"]["author"], "pms");
    let posted = relay.ota.read(|s| s.posted.clone());
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].content, "We look forward to your stay!");
    assert_eq!(
        thread["relationships"]["property"]["data"]["id"],
        posted[0].property_id.as_str()
    );
    assert!(
        posted[0].authorization.starts_with("Basic "),
        "the [booking] credentials"
    );
    assert_eq!(sent["data"]["channel_message_id"], posted[0].message_id.as_str());

    // The echo the queue served is the reply: drained, never forwarded as message.received.
    within(30, "the echo drained", relay.ota.wait_for(|s| s.drained())).await;
    let echo_id = format!("booking.com:{}", posted[0].message_id);
    relay
        .wait_for_store("the echo stored", |db| {
            db.query_row("SELECT count(*) FROM messages WHERE reply_id IS NOT NULL", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 1
        })
        .await;
    relay.stop().await;
    assert!(
        !relay.pms.read(|s| s.accepted.contains_key(&echo_id)),
        "the PMS got its own reply as guest news"
    );
    let messages = relay.count("SELECT count(*) FROM deliveries WHERE event = 'message.received'");
    assert_eq!(messages, 8, "one message.received per guest message, none for the echo");
    let listed = relay
        .db()
        .query_row("SELECT message_count FROM threads WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(
        listed,
        thread["attributes"]["message_count"].as_i64().unwrap() + 1,
        "the reply counts once"
    );
}

#[tokio::test]
async fn a_timed_out_send_is_not_repeated_and_becomes_sent_when_its_echo_arrives() {
    for fault in [
        ReplyFault::AppliedThenLost,
        ReplyFault::EchoBeforeAnswer,
        ReplyFault::AppliedThenStatus(502),
    ] {
        let mut relay = relay().await;
        relay.ota.reply_fault(fault.clone());
        let thread = a_thread(&relay).await;
        let answer = relay
            .api()
            .reply(thread["id"].as_str().unwrap(), "Late check-in is fine.", None)
            .await
            .unwrap();
        let uuid = answer.json()["data"]["id"].as_str().unwrap().to_owned();
        event(&relay, &uuid, "sent").await;
        relay.stop().await;
        let (attempts, posted) = relay.ota.read(|s| (s.reply_attempts, s.posted.len()));
        assert_eq!((attempts, posted), (1, 1), "{fault:?}: sent once");
        let reason: Option<String> = relay
            .db()
            .query_row("SELECT reason FROM replies WHERE uuid = ?1", [&uuid], |r| r.get(0))
            .unwrap();
        assert_eq!(reason.as_deref(), Some("its echo arrived"), "{fault:?}");
    }
}

#[tokio::test]
async fn without_an_echo_the_conversation_read_settles_it_or_proves_it_did_not_arrive() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    let id = thread["id"].as_str().unwrap();
    relay.ota.reply_fault(ReplyFault::AppliedSilentlyThenLost);
    let arrived = relay.api().reply(id, "Parking is free.", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    event(&relay, &arrived, "unknown").await;
    let sent = event(&relay, &arrived, "sent").await;
    assert_eq!(sent["data"]["reason"], "found in the conversation");

    relay.ota.reply_fault(ReplyFault::LostUnapplied);
    let lost = relay.api().reply(id, "Breakfast is at 7.", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = event(&relay, &lost, "failed").await;
    assert!(
        failed["data"]["reason"].as_str().unwrap().contains("did not arrive"),
        "{failed}"
    );
    relay.stop().await;
    let (attempts, posted, reads) = relay
        .ota
        .read(|s| (s.reply_attempts, s.posted.len(), s.conversation_reads));
    assert_eq!((attempts, posted), (2, 1), "each sent once, never again by itself");
    assert!(reads >= 2);
}

#[tokio::test]
async fn refusals_fail_with_the_reason_and_a_refusal_before_processing_is_retried() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    let id = thread["id"].as_str().unwrap();
    relay.ota.reply_fault(ReplyFault::Refused(400));
    let refused = relay.api().reply(id, "One", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = event(&relay, &refused, "failed").await;
    assert!(
        failed["data"]["reason"].as_str().unwrap().contains("HTTP 400"),
        "{failed}"
    );
    assert!(
        failed["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("Refused by the fake"),
        "{failed}"
    );

    relay.ota.reply_fault(ReplyFault::Refused(503));
    let retried = relay.api().reply(id, "Two", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    event(&relay, &retried, "sent").await;
    relay.stop().await;
    assert_eq!(
        relay.ota.read(|s| (s.reply_attempts, s.posted.len())),
        (3, 1),
        "400 once, 503 then its retry"
    );
    assert_eq!(state(&relay, &refused), "failed");
}

#[tokio::test]
async fn the_same_idempotency_key_twice_sends_once() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    let id = thread["id"].as_str().unwrap();
    let first = relay.api().reply(id, "Only once", Some("key-1")).await.unwrap().json();
    let again = relay.api().reply(id, "Only once", Some("key-1")).await.unwrap().json();
    assert_eq!(
        first["data"]["id"], again["data"]["id"],
        "the retry gets the same message back"
    );
    let uuid = first["data"]["id"].as_str().unwrap();
    event(&relay, uuid, "sent").await;
    // Another token's key is its own.
    let other = relay.api().reply(id, "Another", Some("key-2")).await.unwrap().json();
    event(&relay, other["data"]["id"].as_str().unwrap(), "sent").await;
    relay.stop().await;
    assert_eq!(relay.ota.read(|s| s.posted.len()), 2);
    assert_eq!(relay.count("SELECT count(*) FROM replies"), 2);
}

#[tokio::test]
async fn bad_reply_requests_get_the_documented_errors() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    let path = format!("/api/v1/message_threads/{}/messages", thread["id"].as_str().unwrap());
    let api = relay.api();
    for (body, field) in [
        (r#"{"message": {"message": "   "}}"#, "message"),
        (r#"{"message": {}}"#, "message"),
        (r#"{"message": "#, "message"),
        (r#"{"text": "hi"}"#, "message"),
    ] {
        let answer = api.post(&path, body, None).await.unwrap();
        assert_eq!(answer.status, 422, "{body}: {}", answer.body);
        assert_eq!(answer.json()["errors"]["code"], "validation_error");
        assert!(
            answer.json()["errors"]["details"].get(field).is_some(),
            "{body}: {}",
            answer.body
        );
    }
    let plain = api
        .send(
            api.client()
                .post(api.url(&path))
                .header("user-api-key", ota_relay::fake::pms_api::PMS_TOKEN)
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await
        .unwrap();
    assert_eq!(plain.status, 422);
    assert!(
        plain.json()["errors"]["details"].get("content-type").is_some(),
        "{}",
        plain.body
    );
    let unknown = api
        .reply("00000000-0000-0000-0000-000000000000", "hi", None)
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.json()["errors"]["code"].as_str()),
        (404, Some("not_found"))
    );
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM replies"), 0);
    assert_eq!(relay.ota.read(|s| s.reply_attempts), 0);
}

#[tokio::test]
async fn staah_and_channex_replies_reach_their_endpoints_with_the_right_body_and_credentials() {
    let staah = FakeStaah::start().await.unwrap();
    let channex = FakeChannex::start("channex-api-key-1").await.unwrap();
    channex.add_thread("4e160f0b-016a-424a-a30d-a9f0a8b1cbaa", "BookingCom", "Maldonado Roxy");
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .staah_keys(&format!(
            "reply_url = \"{}\"\nreply_username = \"su-user\"\nreply_password = \"su-pass\"",
            staah.reply_url()
        ))
        .channex_api(&channex)
        .api()
        .forward("")
        .config(QUICK)
        .start()
        .await;
    let senders = relay.senders();
    assert_eq!(senders.staah(STAAH_SEED_SAMPLE).await.unwrap().status, 200);
    let sample = pushes::channex_message(971, 1, "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa");
    assert_eq!(senders.channex(&sample.body).await.unwrap().status, 200);
    let list = relay.api().get("/api/v1/message_threads").await.unwrap().json();
    let find = |provider: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["attributes"]["provider"] == provider)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (staah_thread, channex_thread) = (find("AirBNB"), find("BookingCom"));

    let to_staah = relay
        .api()
        .reply(&staah_thread, "Hi Chris!", None)
        .await
        .unwrap()
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = event(&relay, &to_staah, "sent").await;
    let (body, authorization) = staah.read(|s| s.replies[0].clone());
    assert_eq!(body["hotelid"], "abc123");
    assert_eq!(body["channelid"], "244");
    assert_eq!(body["message"], "Hi Chris!");
    assert_eq!(body["threadid"], "991462322");
    assert_eq!(body["guestid"], "320338222");
    assert_eq!(body["bookingid"], "ABCAJKYSJ8");
    assert_eq!(body["listingid"], "47522522");
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("su-user:su-pass")
    );
    assert_eq!(authorization.as_deref(), Some(basic.as_str()));
    assert!(
        sent["data"]["channel_message_id"].is_string(),
        "STAAH's ota_tracking_id: {sent}"
    );

    staah.answer_next(StaahAnswer::Fail("No property found for given property id".into()));
    let refused = relay.api().reply(&staah_thread, "Again", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = event(&relay, &refused, "failed").await;
    assert_eq!(
        failed["data"]["reason"],
        "STAAH: No property found for given property id"
    );

    let to_channex = relay
        .api()
        .reply(&channex_thread, "Dogs are welcome.", None)
        .await
        .unwrap()
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = event(&relay, &to_channex, "sent").await;
    let posted = channex.read(|s| s.posted.clone());
    assert_eq!(posted.len(), 1);
    assert_eq!(
        (posted[0].0.as_str(), posted[0].1.as_str()),
        ("4e160f0b-016a-424a-a30d-a9f0a8b1cbaa", "Dogs are welcome.")
    );
    assert_eq!(sent["data"]["channel_message_id"], posted[0].2.as_str());
    channex.fail_next_post(403);
    let forbidden = relay.api().reply(&channex_thread, "Again", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = event(&relay, &forbidden, "failed").await;
    assert!(
        failed["data"]["reason"].as_str().unwrap().contains("Forbidden"),
        "{failed}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn sigkill_while_sending_leaves_unknown_never_a_second_send() {
    let mut relay = relay().await;
    let thread = a_thread(&relay).await;
    relay.ota.reply_fault(ReplyFault::AppliedSilentlyThenLost);
    let uuid = relay
        .api()
        .reply(thread["id"].as_str().unwrap(), "Mid-send", None)
        .await
        .unwrap()
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    within(30, "the send arrived", relay.ota.wait_for(|s| s.reply_attempts == 1)).await;
    assert_eq!(state(&relay, &uuid), "sending", "committed before the request went out");
    relay.kill9().await;
    relay.run();
    relay.ready(2).await;
    let unknown = event(&relay, &uuid, "unknown").await;
    assert!(
        unknown["data"]["reason"].as_str().unwrap().contains("daemon stopped"),
        "{unknown}"
    );
    // The conversation read then finds it: sent, with one request in all.
    event(&relay, &uuid, "sent").await;
    relay.stop().await;
    assert_eq!(relay.ota.read(|s| s.reply_attempts), 1);
}
