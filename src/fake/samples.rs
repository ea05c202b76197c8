//! Sample guest messages in Booking.com's wire shape: realistic variety (roles in both cases, emoji, long and
//! control-character texts, numeric ids, unknown fields), deterministic for a seed.

use serde_json::json;

/// A sample message: its id and the exact JSON object upstream serves.
#[derive(Debug, Clone)]
pub struct SampleMessage {
    pub message_id: String,
    pub json: String,
}

const TEXTS: &[&str] = &[
    "Hello! We will arrive around 22:00, is late check-in possible?",
    "Could we get a baby cot in the room, please? 👶🛏️",
    "Grüße aus München — wir freuen uns auf den Aufenthalt!",
    "Is parking available on site? We come by car 🚗",
    "مرحبا، هل يمكننا تسجيل الوصول مبكرا؟",
    "Quote \"test\" and backslash \\ and a tab\tin one message",
    "我们想要一个安静的房间，谢谢",
    "Control characters \u{1}\u{7f} kept as sent",
];

/// The `index`-th sample of a deterministic stream for `seed`; `index` also makes the id unique.
pub fn guest_message(seed: u64, index: u64) -> SampleMessage {
    let mut rng = fastrand::Rng::with_seed(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let conversation = index / 4;
    let message_id = if index % 97 == 13 {
        // Some OTAs send numeric ids; the store keeps their decimal string.
        (9_000_000_000 + index).to_string()
    } else {
        format!(
            "{:08x}-e0aa-11ea-{:04x}-{:012x}",
            index as u32,
            (seed & 0xffff) as u16,
            index
        )
    };
    let content = match rng.u32(0..100) {
        0 => "Long message. ".repeat(1500), // ~21 KB
        1..=10 => TEXTS[rng.usize(0..TEXTS.len())].repeat(8),
        _ => format!("{} (#{index})", TEXTS[rng.usize(0..TEXTS.len())]),
    };
    let role = match rng.u32(0..3) {
        0 => "property",
        1 => "GUEST",
        _ => "guest",
    };
    let attachments: Vec<String> = (0..rng.usize(0..2)).map(|k| format!("att-{index}-{k}")).collect();
    let id_value = if message_id.bytes().all(|b| b.is_ascii_digit()) {
        json!(message_id.parse::<u64>().expect("digits"))
    } else {
        json!(message_id)
    };
    let mut message = json!({
        "message_id": id_value,
        "content": content,
        "timestamp": format!("2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z", 1 + index % 28, index % 24, index % 60, (index / 60) % 60, index % 1000),
        "attachment_ids": attachments,
        "sender": {
            "participant_id": format!("p-{:x}", conversation * 2 + (role == "property") as u64),
            "metadata": { "participant_type": role }
        },
        "conversation": {
            "conversation_type": "reservation",
            "conversation_id": format!("conv-{conversation:06}"),
            "conversation_reference": format!("{}", 3_812_000_000u64 + conversation),
            "property_id": 8_011_855 + (conversation % 3)
        }
    });
    if rng.u32(0..5) == 0 {
        message["sender"]["metadata"]["name"] = json!("Maria García");
    }
    if rng.u32(0..7) == 0 {
        // Fields the docs do not list must survive in `raw`.
        message["x_unlisted_field"] = json!({"kept": true});
    }
    SampleMessage {
        message_id,
        json: message.to_string(),
    }
}

/// Elements no parser can turn into a message (no id, wrong types, not an object).
pub fn poison_message(index: u64) -> String {
    match index % 4 {
        0 => json!({"content": format!("a message without an id #{index}"), "timestamp": "2026-11-01T00:00:00.000Z"}),
        1 => json!({"message_id": {"nested": index}, "content": "id of the wrong type"}),
        2 => json!({"message_id": format!("poison-{index}"), "attachment_ids": "not-an-array"}),
        _ => json!(format!("just a string #{index}")),
    }
    .to_string()
}

/// Stores message objects (JSON, as upstream serves them) as one drained batch would be: through the real parser
/// and `Store::commit_batch`. For tests and benchmarks that need a prepared store without the HTTP round trips.
pub async fn commit_as_batch(
    store: &crate::store::Store,
    elements: &[String],
    fetched_at: crate::store::Millis,
) -> Result<crate::store::Committed, crate::store::StoreError> {
    let body = format!(
        r#"{{"data":{{"messages":[{}],"ok":true}},"errors":[]}}"#,
        elements.join(",")
    );
    let answer =
        crate::channel::booking::wire::parse_latest(body.as_bytes()).expect("sample elements form a valid answer");
    store
        .commit_batch(crate::store::IncomingBatch {
            provider: crate::channel::booking::wire::PROVIDER,
            fetched_at,
            ruid: None,
            elements: answer.elements,
            origin: crate::store::BatchOrigin::Queue,
        })
        .await
}
