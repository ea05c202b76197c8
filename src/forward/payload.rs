//! The webhook payloads: a contract with the PMS (and outside checks). `message.received` for a stored message;
//! `reply.sent`, `reply.failed`, `reply.unknown` for each state a reply reaches.
//!
//! `sequence` is the store's `seq` (grows with arrival, so gaps are visible); ids are strings; `role` is lower
//! case; `sent_at` is the OTA's timestamp as sent; `raw` embeds the stored bytes verbatim (for a push, the whole
//! request body).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::deliveries::{Event, ReplyEvent};
use crate::store::{Millis, StoredMessage};

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    /// The OTA (`booking.com`, `airbnb`, `expedia`); null when a channel manager did not say.
    provider: Option<&'a str>,
    /// The path it came by (`booking_pull`, `booking_notification`, `staah`, `channex`).
    source: &'a str,
    message_id: &'a str,
    sequence: i64,
    conversation: Conversation<'a>,
    sender: Sender<'a>,
    content: Option<&'a str>,
    attachment_ids: &'a [String],
    sent_at: Option<&'a str>,
    received_at: String,
    raw: Option<&'a RawValue>,
    /// The exact bytes received, base64, when they were not valid JSON and `raw` is their repair.
    raw_exact_base64: Option<String>,
}

#[derive(Serialize)]
struct Conversation<'a> {
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    reference: Option<&'a str>,
    property_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Sender<'a> {
    id: Option<&'a str>,
    role: Option<&'a str>,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct ReplyPayload<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    data: ReplyData<'a>,
}

#[derive(Serialize)]
struct ReplyData<'a> {
    reply_id: &'a str,
    thread_id: &'a str,
    state: &'a str,
    /// Why it reached this state (the channel's words for a failure, how a sent reply was proven).
    reason: Option<&'a str>,
    channel_message_id: Option<&'a str>,
    author: &'a str,
    message: Option<&'a str>,
    created_at: String,
    changed_at: String,
}

/// Serialises the payload of one outbox event for an attempt made at `attempt`.
pub fn render(event: &Event, attempt: Millis) -> Result<Vec<u8>, serde_json::Error> {
    match event {
        Event::Message(stored) => render_message(stored, attempt),
        Event::Reply(reply) => render_reply(reply, attempt),
    }
}

fn render_reply(event: &ReplyEvent, attempt: Millis) -> Result<Vec<u8>, serde_json::Error> {
    let r = &event.reply;
    serde_json::to_vec(&ReplyPayload {
        kind: format!("reply.{}", event.state),
        timestamp: attempt.rfc3339(),
        data: ReplyData {
            reply_id: &r.uuid,
            thread_id: &r.thread_id,
            state: &event.state,
            reason: event.reason.as_deref(),
            channel_message_id: r.channel_message_id.as_deref(),
            author: &r.author,
            message: r.content.as_deref(),
            created_at: r.created_at.rfc3339(),
            changed_at: event.at.rfc3339(),
        },
    })
}

fn render_message(stored: &StoredMessage, attempt: Millis) -> Result<Vec<u8>, serde_json::Error> {
    let m = &stored.message;
    let raw: Option<&RawValue> = (!m.raw.is_empty()).then(|| serde_json::from_str(&m.raw)).transpose()?;
    let payload = Payload {
        kind: "message.received",
        timestamp: attempt.rfc3339(),
        data: Data {
            provider: stored.ota.as_deref(),
            source: &stored.source,
            message_id: &m.message_id,
            sequence: stored.seq,
            conversation: Conversation {
                id: m.conversation_id.as_deref(),
                kind: m.conversation_type.as_deref(),
                reference: m.conversation_reference.as_deref(),
                property_id: m.property_id.as_deref(),
            },
            sender: Sender {
                id: m.sender_id.as_deref(),
                role: m.sender_role.as_deref(),
                name: m.sender_name.as_deref(),
            },
            content: m.content.as_deref(),
            attachment_ids: &m.attachment_ids,
            sent_at: m.sent_at.as_deref(),
            received_at: stored.first_seen_at.rfc3339(),
            raw,
            raw_exact_base64: m.raw_exact.as_ref().map(|bytes| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }),
        },
    };
    serde_json::to_vec(&payload)
}
