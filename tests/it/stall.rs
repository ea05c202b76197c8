//! The queue never stalls on one message: byte-level defects stay in their element, odd fields are read where
//! their meaning is clear, ids travel in a header whatever they hold, and a message the PMS refuses is that
//! message's failure, not the PMS's.

use std::time::{Duration, Instant};

use base64::Engine as _;
use ota_relay::fake::{Endpoint, Fault, guest_message};

use crate::support::*;

/// The payload the fake PMS accepted under `webhook_id`.
fn payload(relay: &TestRelay, webhook_id: &str) -> serde_json::Value {
    relay.pms.read(|s| {
        let body = &s
            .captured
            .iter()
            .find(|c| c.webhook_id == webhook_id)
            .unwrap_or_else(|| panic!("nothing accepted as {webhook_id}"))
            .body;
        serde_json::from_slice(body).unwrap()
    })
}

#[tokio::test]
async fn bad_bytes_in_one_element_stay_in_that_element_and_the_queue_moves_on() {
    let mut relay = TestRelay::with().forward("").start().await;
    // Latin-1 text (not UTF-8), and a literal TAB inside a string (not JSON): one guest's message each.
    let latin1 = [
        br#"{"message_id":"latin-1","content":"Gr"#.as_slice(),
        &[0xfc, 0xdf],
        b"e aus K",
        &[0xf6],
        br#"ln","conversation":{"conversation_id":"c-1"}}"#,
    ]
    .concat();
    let tab = b"{\"message_id\":\"tab\",\"content\":\"before\tafter\",\"conversation\":{\"conversation_id\":\"c-2\"}}"
        .to_vec();
    relay.ota.enqueue([guest_message(201, 0)]);
    relay.ota.enqueue_bytes([latin1.clone(), tab.clone()]);
    relay.ota.enqueue([guest_message(201, 1)]);
    within(30, "the queue drained", relay.ota.wait_for(|s| s.drained())).await;
    assert_eq!(relay.ota.read(|s| s.confirmed), 4, "N counts every element");
    within(
        30,
        "all four forwarded",
        relay.pms.wait_for(|s| s.accepted_count() == 4),
    )
    .await;
    relay.stop().await;

    let stored = |id: &str| -> (String, Vec<u8>) {
        relay
            .db()
            .query_row(
                "SELECT content, raw_exact FROM messages WHERE message_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(
        stored("latin-1"),
        ("Gr\u{fffd}\u{fffd}e aus K\u{fffd}ln".into(), latin1.clone())
    );
    assert_eq!(stored("tab"), ("before\tafter".into(), tab.clone()));
    assert_eq!(relay.count("SELECT count(*) FROM quarantine"), 0);
    // The PMS gets valid JSON in `raw` and the exact bytes beside it.
    for (id, exact) in [("latin-1", &latin1), ("tab", &tab)] {
        let data = &payload(&relay, &format!("booking.com:{id}"))["data"];
        assert_eq!(data["raw"]["message_id"], id);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data["raw_exact_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&decoded, exact);
    }
    let good = payload(&relay, &webhook_id(&guest_message(201, 0)));
    assert!(good["data"]["raw_exact_base64"].is_null(), "valid bytes need no copy");
}

#[tokio::test]
async fn an_answer_whose_elements_cannot_be_found_confirms_nothing_and_degrades_after_a_few() {
    let mut relay = TestRelay::with().queued(202, 0..3).prepare().await;
    for _ in 0..60 {
        relay.ota.inject(Endpoint::Latest, Fault::Garbage);
    }
    relay.run();
    relay
        .wait_for_store("three identical unreadable answers", |db| {
            db.query_row("SELECT failures FROM source_state", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                >= 3
        })
        .await;
    let (code, status) = relay.status(&[]).await;
    assert_eq!(code, Some(1), "{status}");
    let problems = status["problems"].to_string();
    assert!(problems.contains("answers cannot be parsed"), "{problems}");
    assert_eq!(relay.ota.read(|s| s.puts), 0, "nothing confirmed");
    // Once the answers are readable again, everything arrives.
    within(60, "drained after the bad answers", relay.ota.wait_for(|s| s.drained())).await;
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 3);
}

#[tokio::test]
async fn odd_fields_whose_meaning_is_clear_do_not_quarantine_a_message() {
    let mut relay = TestRelay::with().forward("").start().await;
    relay.ota.enqueue_raw([
        // Half of an emoji's surrogate pair (what truncating it gives), and a property id written as a float.
        r#"{"message_id":"surrogate","content":"cut \ud83d here","conversation":{"conversation_id":"c-3","property_id":1234567.0}}"#.to_owned(),
        // A 20-digit numeric id and a 24-digit reference: beyond any integer type.
        r#"{"message_id":12345678901234567890,"content":"x","conversation":{"conversation_id":"c-4","conversation_reference":123456789012345678901234}}"#.to_owned(),
    ]);
    within(30, "both forwarded", relay.pms.wait_for(|s| s.accepted_count() == 2)).await;
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM quarantine"), 0);
    let (content, property): (String, String) = relay
        .db()
        .query_row(
            "SELECT content, property_id FROM messages WHERE message_id = 'surrogate'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (content.as_str(), property.as_str()),
        ("cut \u{fffd} here", "1234567.0")
    );
    let reference: String = relay
        .db()
        .query_row(
            "SELECT conversation_reference FROM messages WHERE message_id = '12345678901234567890'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reference, "123456789012345678901234", "the exact text of the number");
    let data = &payload(&relay, "booking.com:12345678901234567890")["data"];
    assert_eq!(data["message_id"], "12345678901234567890");
    assert_eq!(data["conversation"]["reference"], "123456789012345678901234");
}

#[tokio::test]
async fn every_id_travels_in_the_webhook_id_header_and_the_body_keeps_it_exactly() {
    let mut relay = TestRelay::with().forward("").start().await;
    let long = "x".repeat(100_000);
    let ids = ["café-ü", "line\nbreak", "del\u{7f}", "50%", long.as_str()];
    relay.ota.enqueue_raw(ids.iter().map(|id| {
        serde_json::json!({"message_id": id, "content": "hi", "conversation": {"conversation_id": "c-5"}}).to_string()
    }));
    within(
        30,
        "every id delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 5),
    )
    .await;
    relay.stop().await;
    let (headers, bad) = relay.pms.read(|s| (s.accepted_order.clone(), s.bad_signatures));
    assert_eq!(bad, 0, "every signature verified against the header as sent");
    for header in &headers {
        assert!(header.len() <= 250, "a bounded header");
        assert!(
            header.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII only: {header:?}"
        );
    }
    // What the header must be, worked out here on its own: percent-encoding outside visible ASCII (and of
    // `%`), a hash for an id too long for a header.
    let expected = |id: &str| {
        let encoded: String = id
            .bytes()
            .map(|b| {
                if (0x21..=0x7e).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let header = format!("booking.com:{encoded}");
        if header.len() <= 200 {
            return header;
        }
        use sha2::Digest as _;
        let hash: String = sha2::Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("booking.com:sha256:{hash}")
    };
    assert_eq!(expected("café-ü"), "booking.com:caf%C3%A9-%C3%BC");
    for id in ids {
        let header = expected(id);
        assert!(headers.contains(&header), "{header} in {headers:?}");
        let body_id = payload(&relay, &header)["data"]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(body_id, id, "the body carries the exact id");
    }
}

#[tokio::test]
async fn messages_the_pms_refuses_are_their_own_failures_and_never_slow_the_others() {
    // Probes would be seconds apart: a good message held back by "PMS failing" would show it.
    let mut relay = TestRelay::with()
        .forward("concurrency = 4\n[forward.retry]\ninitial_interval = \"2s\"\nmax_interval = \"10s\"")
        .start()
        .await;
    let refused: Vec<_> = (0..3).map(|i| guest_message(204, i)).collect();
    for (sample, status) in refused.iter().zip([422, 400, 431]) {
        relay.pms.always(&webhook_id(sample), status);
    }
    relay.ota.enqueue(refused.clone());
    relay.wait_for_attempts(3).await;
    // A trickle of good messages: each goes at once.
    for i in 3..8 {
        let sample = guest_message(204, i);
        let id = webhook_id(&sample);
        let sent = Instant::now();
        relay.ota.enqueue([sample]);
        within(
            30,
            "a good message",
            relay.pms.wait_for(|s| s.accepted.contains_key(&id)),
        )
        .await;
        let latency = sent.elapsed();
        assert!(latency < Duration::from_millis(1500), "message {i} took {latency:?}");
    }
    relay.stop().await;
    // The refused ones are pending, retried at their own pace; none is a dead letter.
    assert_eq!(relay.deliveries("pending"), 3);
    assert_eq!(relay.deliveries("dead"), 0);
}
