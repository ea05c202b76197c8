//! Hostile input in CI: the cargo-fuzz seeds (and any local corpus) replayed, then random bytes and random JSON-shaped answers,
//! through the same checks the fuzz targets run (`ota_relay::hostile`). A panic or an assertion there fails.

use std::path::Path;

use ota_relay::hostile;
use ota_relay::store::Element;
use proptest::prelude::*;

/// The committed seeds of a fuzz target, plus the working corpus a local fuzz run grew (not committed), if any.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = fuzz.join("seeds").join(target);
    let mut inputs = read_dir(&seeds).unwrap_or_else(|e| panic!("{}: {e}", seeds.display()));
    assert!(inputs.len() >= 3, "the {target} seeds are missing");
    inputs.extend(read_dir(&fuzz.join("corpus").join(target)).unwrap_or_default());
    inputs
}

fn read_dir(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    std::fs::read_dir(dir)?
        .map(|entry| std::fs::read(entry?.path()))
        .collect()
}

/// A fuzz target's check of one input.
type Check = fn(&[u8]);

/// Each fuzz target's check, by the target's name.
const TARGETS: [(&str, Check); 8] = [
    ("booking_latest", hostile::check_latest_answer),
    ("booking_confirm", hostile::check_confirm_answer),
    ("config", hostile::check_config),
    ("retry_after", hostile::check_retry_after),
    ("booking_notification", hostile::check_booking_notification),
    ("staah_message", hostile::check_staah_message),
    ("channex_webhook", hostile::check_channex_webhook),
    ("token_request", hostile::check_token_request),
];

#[test]
fn fuzz_corpus_replays_without_panic() {
    for (target, check) in TARGETS {
        for input in corpus(target) {
            check(&input);
        }
    }
}

#[test]
fn a_message_without_id_is_quarantined_and_the_rest_survive() {
    let body = br#"{"data":{"messages":[{"message_id":"a","content":"hi"},{"content":"no id"},{"message_id":7}],
        "number_of_messages":3,"ok":true},"errors":[],"warnings":[]}"#;
    let answer =
        ota_relay::channel::booking::wire::parse_latest(body).expect("an envelope with poison elements is accepted");
    assert_eq!(
        answer.elements.len(),
        3,
        "every element is kept, good or poison, so the count stays exact"
    );
    let kinds: Vec<bool> = answer
        .elements
        .iter()
        .map(|e| matches!(e, Element::Poison(_)))
        .collect();
    assert_eq!(kinds, [false, true, false], "only the element without an id is poison");
    hostile::check_latest_answer(body);
}

/// JSON-ish answers: a valid envelope with element values drawn from awkward shapes.
fn element() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        "[a-z0-9]{0,12}".prop_map(|id| format!(r#"{{"message_id":"{id}","content":"x"}}"#)),
        any::<i64>().prop_map(|n| format!(r#"{{"message_id":{n}}}"#)),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        "\\PC{0,40}".prop_map(|s| format!(
            r#"{{"message_id":"m","content":{}}}"#,
            serde_json::to_string(&s).unwrap()
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (_, check) in TARGETS {
            check(&data);
        }
    }

    #[test]
    fn random_push_bodies_keep_their_bytes(
        elements in proptest::collection::vec(element(), 1..3),
        id in prop_oneof![Just("\"m-1\"".to_owned()), Just("42".to_owned()), Just("null".to_owned()), Just("{}".to_owned())],
    ) {
        let element = &elements[0];
        let notification = format!(r#"{{"metadata":{{"uuid":{id},"type":"MESSAGING_API_NEW_MESSAGE"}},"payload":{element}}}"#);
        hostile::check_booking_notification(notification.as_bytes());
        let staah = format!(r#"{{"message":{element},"messageid":{id},"channel_id":"244","threadid":{id}}}"#);
        hostile::check_staah_message(staah.as_bytes());
        let channex = format!(r#"{{"event":"message","payload":{{"id":{id},"message":{element},"message_thread_id":"t"}}}}"#);
        hostile::check_channex_webhook(channex.as_bytes());
    }

    #[test]
    fn random_envelopes_never_panic(
        elements in proptest::collection::vec(element(), 0..8),
        count in prop_oneof![Just(None), any::<i32>().prop_map(Some)],
        ok in prop_oneof![Just("\"true\""), Just("\"false\""), Just("true"), Just("1")],
    ) {
        let count = count.map(|n| format!(r#","number_of_messages":{n}"#)).unwrap_or_default();
        let body = format!(r#"{{"data":{{"messages":[{}]{count},"ok":{ok}}},"errors":[]}}"#, elements.join(","));
        hostile::check_latest_answer(body.as_bytes());
        hostile::check_confirm_answer(body.as_bytes());
    }

    #[test]
    fn random_config_values_name_the_file(key in "[a-z_]{1,12}", value in "\\PC{0,20}") {
        let text = format!("[store]\npath = \"/tmp/x.db\"\n[booking]\n{key} = {}\n", serde_json::to_string(&value).unwrap());
        hostile::check_config(text.as_bytes());
    }
}
