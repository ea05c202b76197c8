//! The webhook payload: a contract with the PMS (and outside checks).
//!
//! `sequence` is the store's `seq` (grows with arrival, so gaps are visible); ids are strings; `role` is lower
//! case; `sent_at` is the OTA's timestamp as sent; `raw` embeds the stored bytes verbatim.

use serde::Serialize;
use serde_json::value::RawValue;

/// A stored message as the outbox reads it.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub seq: i64,
    pub provider: String,
    pub message_id: String,
    pub conversation_id: Option<String>,
    pub conversation_type: Option<String>,
    pub conversation_reference: Option<String>,
    pub property_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_role: Option<String>,
    pub sender_name: Option<String>,
    pub content: Option<String>,
    /// JSON array of strings, as stored.
    pub attachment_ids: String,
    pub sent_at: Option<String>,
    pub first_seen_at: i64,
    pub raw: Option<String>,
}

impl OutboxMessage {
    /// The `webhook-id`: the same across retries and replays, so the PMS can deduplicate on it.
    pub fn webhook_id(&self) -> String {
        format!("{}:{}", self.provider, self.message_id)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    provider: &'a str,
    message_id: &'a str,
    sequence: i64,
    conversation: Conversation<'a>,
    sender: Sender<'a>,
    content: Option<&'a str>,
    attachment_ids: Vec<String>,
    sent_at: Option<&'a str>,
    received_at: String,
    raw: Option<&'a RawValue>,
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

/// Serialises the payload for one attempt made at `attempt_ms`.
pub fn render(m: &OutboxMessage, attempt_ms: i64) -> Result<Vec<u8>, serde_json::Error> {
    let raw: Option<&RawValue> = m.raw.as_deref().map(serde_json::from_str).transpose()?;
    let payload = Payload {
        kind: "message.received",
        timestamp: crate::store::format_ms(attempt_ms),
        data: Data {
            provider: &m.provider,
            message_id: &m.message_id,
            sequence: m.seq,
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
            attachment_ids: serde_json::from_str(&m.attachment_ids).unwrap_or_default(),
            sent_at: m.sent_at.as_deref(),
            received_at: crate::store::format_ms(m.first_seen_at),
            raw,
        },
    };
    serde_json::to_vec(&payload)
}
