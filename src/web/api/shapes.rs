//! Channex's JSON shapes: `data` items with `id`, `type`, `attributes` and `relationships`; `meta` for pages;
//! timestamps like `2021-07-28T04:25:15.000000` (UTC); providers as Channex writes them. Every attribute is
//! present, `null` when unknown.

use serde_json::{Value, json};

use crate::store::Millis;
use crate::store::replies::{Reply, ReplyState};
use crate::store::threads::{Entry, ReceivedEntry, Thread};

/// Channex's timestamp: UTC, microseconds, no zone suffix.
pub fn timestamp(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at.unix_ms())
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// The OTA as Channex's API names it.
pub fn provider(ota: Option<&str>) -> Value {
    match ota {
        Some("booking.com") => json!("BookingCom"),
        Some("airbnb") => json!("AirBNB"),
        Some("expedia") => json!("Expedia"),
        Some(other) => json!(other),
        None => Value::Null,
    }
}

/// A `filter[provider]` value as stored.
pub fn ota_of(provider: &str) -> Option<&'static str> {
    match provider.to_ascii_lowercase().as_str() {
        "bookingcom" | "booking.com" | "booking" => Some("booking.com"),
        "airbnb" => Some("airbnb"),
        "expedia" => Some("expedia"),
        _ => None,
    }
}

fn related(kind: &str, id: Option<&str>) -> Value {
    match id {
        Some(id) => json!({ "data": { "id": id, "type": kind } }),
        None => json!({ "data": null }),
    }
}

/// A thread item; `last` is its newest entry.
pub fn thread(t: &Thread, last: Option<&Entry>) -> Value {
    json!({
        "id": t.id,
        "type": "message_thread",
        "attributes": {
            "title": t.title,
            "is_closed": t.is_closed,
            "provider": provider(t.ota.as_deref()),
            "message_count": t.message_count,
            "last_message": last.map(|e| entry(e, &t.id)["attributes"].clone()),
            "last_message_received_at": timestamp(t.last_message_at),
            "inserted_at": timestamp(t.inserted_at),
            "updated_at": timestamp(t.updated_at),
        },
        "relationships": {
            "booking": related("booking", t.booking_reference.as_deref()),
            "channel": related("channel", Some(&t.provider)),
            "property": related("property", t.property_id.as_deref()),
        },
    })
}

/// A message item: one a channel brought, or a reply (with its `state` and, once known, the channel's id).
pub fn entry(e: &Entry, thread_id: &str) -> Value {
    let (id, attributes) = match e {
        Entry::Message(m) => (m.uuid.clone(), received(m)),
        Entry::Reply(r) => (r.uuid.clone(), reply(r)),
    };
    json!({
        "id": id,
        "type": "message",
        "attributes": attributes,
        "relationships": { "message_thread": { "data": { "id": thread_id, "type": "message_thread" } } },
    })
}

fn received(m: &ReceivedEntry) -> Value {
    let sender = match m.sender_role.as_deref() {
        Some("guest") => "guest",
        Some("property") => "property",
        _ => "system",
    };
    json!({
        "message": m.content,
        "attachments": m.attachment_ids,
        "sender": sender,
        "inserted_at": timestamp(m.received_at),
        "updated_at": timestamp(m.received_at),
        "state": null,
        "ota_message_id": m.message_id,
    })
}

fn reply(r: &Reply) -> Value {
    // `sending` is a detail of the worker: to the PMS the reply is still pending.
    let state = match r.state {
        ReplyState::Sending => ReplyState::Pending,
        other => other,
    };
    json!({
        "message": r.content,
        "attachments": r.attachments,
        "sender": "property",
        "inserted_at": timestamp(r.created_at),
        "updated_at": timestamp(r.updated_at),
        "state": state.name(),
        "ota_message_id": r.channel_message_id,
    })
}

/// `meta` of a page.
pub fn meta(page: usize, limit: usize, total: i64, order_by: &str, descending: bool) -> Value {
    json!({
        "page": page,
        "limit": limit,
        "total": total,
        "order_by": order_by,
        "order_direction": if descending { "desc" } else { "asc" },
    })
}
