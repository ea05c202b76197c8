//! The Channex-compatible API over real HTTP against the real binary: threads and their messages in Channex's
//! shapes, both key headers, the token's property scope, pagination, ordering and filters, and bad input.

use ota_relay::fake::guest_message;
use ota_relay::fake::pms_api::{ApiClient, LIMITED_PROPERTY};
use serde_json::Value;

use crate::support::*;

/// The JSON objects of the seed's code blocks that are answers (`data` at the top).
fn seed_examples() -> Vec<Value> {
    // A copy of the seed's Channex Messages API document, kept with the tests so that a clean checkout has it.
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/seeds/channex-messages-api.md"
    ))
    .expect("the Channex seed");
    seed.split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| serde_json::from_str::<Value>(block.trim_start_matches("javascript").trim()).ok())
        .filter(|v| v.get("data").is_some())
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// Every key the seed's example has, ours has too (ours may add `state` and `ota_message_id`).
fn assert_has_seed_keys(ours: &Value, seed: &Value, what: &str) {
    for key in keys(seed) {
        assert!(ours.get(&key).is_some(), "{what}: {key} missing in {ours}");
    }
}

async fn drained_relay() -> TestRelay {
    let relay = TestRelay::with().queued(960, 0..24).api().start().await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay
}

#[tokio::test]
async fn threads_and_messages_answer_in_channexs_shapes_field_for_field() {
    let mut relay = drained_relay().await;
    let api = relay.api();
    let list = api.get("/api/v1/message_threads").await.unwrap();
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    // 24 messages, 4 per conversation: 6 threads; a page is 10 by default.
    assert_eq!(list["meta"]["total"], 6, "{list}");
    assert_eq!(list["meta"]["page"], 1);
    assert_eq!(list["meta"]["limit"], 10);
    assert_eq!(list["meta"]["order_direction"], "desc");
    let threads = list["data"].as_array().unwrap();
    assert_eq!(threads.len(), 6);

    let examples = seed_examples();
    let thread_example = examples
        .iter()
        .find(|e| e["data"]["type"] == "message_thread")
        .expect("the seed's thread example");
    let message_list_example = examples
        .iter()
        .find(|e| e["data"][0]["type"] == "message")
        .expect("the seed's message list example");

    let first = &threads[0];
    assert_eq!(first["type"], "message_thread");
    assert_has_seed_keys(first, &thread_example["data"], "thread");
    assert_has_seed_keys(
        &first["attributes"],
        &thread_example["data"]["attributes"],
        "thread attributes",
    );
    assert_has_seed_keys(
        &first["relationships"],
        &thread_example["data"]["relationships"],
        "thread relationships",
    );
    assert_has_seed_keys(
        &first["attributes"]["last_message"],
        &thread_example["data"]["attributes"]["last_message"],
        "last_message",
    );
    assert_eq!(first["attributes"]["provider"], "BookingCom");
    assert_eq!(first["attributes"]["message_count"], 4);
    assert_eq!(first["attributes"]["is_closed"], false);
    let stamp = first["attributes"]["inserted_at"].as_str().unwrap();
    assert!(
        stamp.len() == 26 && stamp.as_bytes()[10] == b'T' && stamp[20..].bytes().all(|b| b.is_ascii_digit()),
        "a Channex timestamp: {stamp}"
    );
    uuid::Uuid::parse_str(first["id"].as_str().unwrap()).expect("thread ids are UUIDs");

    let id = first["id"].as_str().unwrap();
    let one = api.get(&format!("/api/v1/message_threads/{id}")).await.unwrap().json();
    assert_eq!(one["data"], *first, "the thread alone is the list's item");

    let messages = api
        .get(&format!("/api/v1/message_threads/{id}/messages"))
        .await
        .unwrap();
    assert_eq!(messages.status, 200, "{}", messages.body);
    let messages = messages.json();
    assert_eq!(messages["meta"]["total"], 4);
    assert_has_seed_keys(&messages["meta"], &message_list_example["meta"], "message meta");
    let m = &messages["data"][0];
    assert_has_seed_keys(m, &message_list_example["data"][0], "message");
    assert_has_seed_keys(
        &m["attributes"],
        &message_list_example["data"][0]["attributes"],
        "message attributes",
    );
    assert_eq!(m["relationships"]["message_thread"]["data"]["id"], id);
    uuid::Uuid::parse_str(m["id"].as_str().unwrap()).expect("message ids are UUIDs");
    // Newest first: every inserted_at is at most the one before it.
    let stamps: Vec<&str> = messages["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attributes"]["inserted_at"].as_str().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");

    // The booking's messages are the thread's.
    let reference = first["relationships"]["booking"]["data"]["id"].as_str().unwrap();
    let by_booking = api
        .get(&format!("/api/v1/bookings/{reference}/messages"))
        .await
        .unwrap()
        .json();
    assert_eq!(by_booking["data"], messages["data"]);
    relay.stop().await;
}

#[tokio::test]
async fn both_key_headers_are_accepted_and_a_limited_token_sees_only_its_property() {
    let mut relay = drained_relay().await;
    let api = relay.api();
    for client in [api.clone(), api.clone().bearer()] {
        assert_eq!(client.get("/api/v1/message_threads").await.unwrap().status, 200);
    }
    for wrong in [
        ApiClient::new(&api.url(""), "not-a-token-at-all"),
        ApiClient::new(&api.url(""), ""),
    ] {
        let answer = wrong.get("/api/v1/message_threads").await.unwrap();
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["errors"]["code"], "unauthorized");
    }
    let all = api
        .get("/api/v1/message_threads?pagination[limit]=100")
        .await
        .unwrap()
        .json();
    let limited = relay.limited_api();
    let mine = limited
        .get("/api/v1/message_threads?pagination[limit]=100")
        .await
        .unwrap()
        .json();
    let own: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["relationships"]["property"]["data"]["id"] == LIMITED_PROPERTY)
        .collect();
    assert!(
        !own.is_empty() && own.len() < 6,
        "the samples spread over three properties"
    );
    assert_eq!(mine["meta"]["total"], own.len());
    for t in mine["data"].as_array().unwrap() {
        assert_eq!(t["relationships"]["property"]["data"]["id"], LIMITED_PROPERTY);
    }
    let other = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["relationships"]["property"]["data"]["id"] != LIMITED_PROPERTY)
        .unwrap();
    let id = other["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/message_threads/{id}"),
        format!("/api/v1/message_threads/{id}/messages"),
    ] {
        let answer = limited.get(&path).await.unwrap();
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.json()["errors"]["code"], "not_found");
        let unknown = limited
            .get(&path.replace(id, "00000000-0000-0000-0000-000000000000"))
            .await
            .unwrap();
        assert_eq!(
            unknown.body, answer.body,
            "another property's thread is as if it did not exist"
        );
    }
    let reply = limited.reply(id, "hello", None).await.unwrap();
    assert_eq!(reply.status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn pagination_ordering_and_filters() {
    let mut relay = drained_relay().await;
    let api = relay.api();
    let page = |q: &str| {
        let api = api.clone();
        let q = q.to_owned();
        async move { api.get(&format!("/api/v1/message_threads?{q}")).await.unwrap() }
    };
    let all = page("pagination[limit]=100").await.json();
    let ids: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let mut paged = Vec::new();
    for p in 1..=3 {
        let answer = page(&format!("pagination[page]={p}&pagination[limit]=2")).await.json();
        assert_eq!(answer["meta"]["page"], p);
        assert_eq!(answer["meta"]["total"], 6);
        paged.extend(
            answer["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(paged, ids, "pages cover the list once, in order");
    let ascending = page("pagination[limit]=100&order[inserted_at]=asc").await.json();
    assert_eq!(ascending["meta"]["order_by"], "inserted_at");
    assert_eq!(ascending["meta"]["order_direction"], "asc");
    let stamps: Vec<&str> = ascending["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attributes"]["inserted_at"].as_str().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    let by_property = page(&format!("filter[property_id]={LIMITED_PROPERTY}")).await.json();
    assert!(
        by_property["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["relationships"]["property"]["data"]["id"] == LIMITED_PROPERTY)
    );
    assert_eq!(page("filter[provider]=BookingCom").await.json()["meta"]["total"], 6);
    assert_eq!(page("filter[provider]=AirBNB").await.json()["meta"]["total"], 0);
    assert_eq!(page("filter[is_closed]=true").await.json()["meta"]["total"], 0);

    // Closing: the thread answers closed, the filter finds it, and a new guest message opens it again.
    let id = &ids[0];
    let closed = api
        .post(&format!("/api/v1/message_threads/{id}/close"), "", None)
        .await
        .unwrap();
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!(closed.json()["data"]["attributes"]["is_closed"], true);
    assert_eq!(page("filter[is_closed]=true").await.json()["meta"]["total"], 1);
    // A reply to a closed thread opens it again, as Channex does; its answer is a message in the seed's shape.
    let reply = api.reply(id, "We are here for you", None).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let example = seed_examples();
    let sent_example = example
        .iter()
        .find(|e| e["data"]["type"] == "message")
        .expect("the seed's message answer");
    assert_has_seed_keys(&reply.json()["data"], &sent_example["data"], "posted message");
    assert_has_seed_keys(
        &reply.json()["data"]["attributes"],
        &sent_example["data"]["attributes"],
        "posted message attributes",
    );
    assert_eq!(page("filter[is_closed]=true").await.json()["meta"]["total"], 0);
    // Closed again, then a guest's new message opens it.
    api.post(&format!("/api/v1/message_threads/{id}/close"), "", None)
        .await
        .unwrap();
    let thread = api.get(&format!("/api/v1/message_threads/{id}")).await.unwrap().json();
    let conversation = relay
        .db()
        .query_row("SELECT conversation_id FROM threads WHERE id = ?1", [id], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(thread["data"]["attributes"]["is_closed"], true);
    let guest = serde_json::json!({
        "message_id": "reopening-guest-message",
        "content": "One more question",
        "sender": {"participant_id": "g-1", "metadata": {"participant_type": "GUEST"}},
        "conversation": {"conversation_id": conversation, "conversation_type": "reservation"}
    });
    relay.ota.enqueue_raw([guest.to_string()]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay
        .wait_for_store("reopened", |db| {
            db.query_row(
                "SELECT is_closed FROM threads WHERE conversation_id = ?1",
                [&conversation],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 0
        })
        .await;

    for (query, field) in [
        ("pagination[limit]=101", "pagination[limit]"),
        ("pagination[page]=0", "pagination[page]"),
        ("order[title]=asc", "order[title]"),
        ("order[inserted_at]=sideways", "order[inserted_at]"),
        ("filter[is_closed]=maybe", "filter[is_closed]"),
        ("filter[provider]=Vrbo", "filter[provider]"),
    ] {
        let answer = page(query).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        let errors = &answer.json()["errors"];
        assert_eq!(errors["code"], "validation_error");
        assert!(errors["details"].get(field).is_some(), "{query}: {errors}");
    }
    relay.stop().await;
    let _ = guest_message(960, 0);
}

#[tokio::test]
async fn no_reply_needed_tags_a_booking_conversation_and_is_refused_elsewhere() {
    let mut relay = TestRelay::with().queued(961, 0..4).receiving().api().start().await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    assert_eq!(
        relay
            .senders()
            .staah(ota_relay::fake::pushes::STAAH_SEED_SAMPLE)
            .await
            .unwrap()
            .status,
        200
    );
    let api = relay.api();
    let list = api.get("/api/v1/message_threads").await.unwrap().json();
    let by = |provider: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["attributes"]["provider"] == provider)
            .unwrap()
            .clone()
    };
    let booking = by("BookingCom");
    let id = booking["id"].as_str().unwrap();
    let answer = api
        .post(&format!("/api/v1/message_threads/{id}/no_reply_needed"), "", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["data"]["id"], id);
    let tags = relay.ota.read(|s| s.tags.clone());
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags[0].0,
        booking["relationships"]["property"]["data"]["id"].as_str().unwrap()
    );
    assert_eq!(tags[0].2, "no_reply_needed");

    let staah = by("AirBNB");
    let refused = api
        .post(
            &format!(
                "/api/v1/message_threads/{}/no_reply_needed",
                staah["id"].as_str().unwrap()
            ),
            "",
            None,
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["errors"]["code"], "not_supported");
    // Without [staah] reply_url, a reply to a STAAH thread is refused at once, naming the key.
    let reply = api.reply(staah["id"].as_str().unwrap(), "Hello", None).await.unwrap();
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.json()["errors"]["title"].as_str().unwrap().contains("reply_url"),
        "{}",
        reply.body
    );
    relay.stop().await;
    assert_eq!(relay.count("SELECT count(*) FROM replies"), 0);
}

#[tokio::test]
async fn api_tokens_are_re_read_on_sighup() {
    let port = free_port();
    let section = |token: &str| {
        format!("[api]\nlisten = \"127.0.0.1:{port}\"\n[[api.tokens]]\nname = \"pms\"\ntoken = \"{token}\"\n")
    };
    let mut relay = TestRelay::with()
        .config(&section("first-token-0123456789"))
        .start()
        .await;
    let base = format!("http://127.0.0.1:{port}");
    let old = ApiClient::new(&base, "first-token-0123456789");
    assert_eq!(old.get("/api/v1/message_threads").await.unwrap().status, 200);
    relay.write_config(&section("second-token-9876543210"));
    assert_eq!(relay.reload().await, "configuration reloaded");
    assert_eq!(
        old.get("/api/v1/message_threads").await.unwrap().status,
        401,
        "the old token is gone"
    );
    let new = ApiClient::new(&base, "second-token-9876543210");
    assert_eq!(new.get("/api/v1/message_threads").await.unwrap().status, 200);
    relay.stop().await;
}
