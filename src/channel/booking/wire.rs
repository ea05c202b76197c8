//! Booking.com Messaging API wire types (`GET /messaging/messages/latest`, `PUT /messaging/messages`).
//!
//! The envelope is parsed first and each message separately, from its raw bytes, so one element that cannot be
//! understood is quarantined instead of failing the batch. Unknown fields are tolerated (and kept in `raw`).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use crate::store::{Element, NewMessage, Poison};

pub const PROVIDER: &str = "booking.com";

/// One parsed answer of `GET /messaging/messages/latest`.
#[derive(Debug)]
pub struct LatestAnswer {
    pub ruid: Option<String>,
    /// `data.number_of_messages` as declared; the array's length is what counts.
    pub declared_count: Option<u64>,
    pub elements: Vec<Element>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("answer is not valid JSON: {0}")]
    NotJson(String),
    #[error("answer has an unexpected shape: {0}")]
    Shape(String),
    #[error("Booking.com reported a failure: {summary}")]
    Api { summary: String, ruid: Option<String> },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    meta: Option<Meta>,
    errors: Option<serde_json::Value>,
    #[serde(borrow)]
    data: Option<LatestData<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct Meta {
    pub ruid: Option<String>,
}

#[derive(Deserialize)]
struct LatestData<'a> {
    ok: Option<bool>,
    number_of_messages: Option<serde_json::Value>,
    #[serde(borrow)]
    messages: Option<Vec<&'a RawValue>>,
}

/// Parses a `/messages/latest` body. Errors here mean the whole answer is unusable: nothing is stored or confirmed.
pub fn parse_latest(body: &[u8]) -> Result<LatestAnswer, WireError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| WireError::NotJson(e.to_string()))?;
    let ruid = envelope.meta.and_then(|m| m.ruid);
    check_failure(
        envelope.errors.as_ref(),
        envelope.data.as_ref().and_then(|d| d.ok),
        &ruid,
    )?;
    let data = envelope
        .data
        .ok_or_else(|| WireError::Shape("no `data` object".into()))?;
    let messages = data
        .messages
        .ok_or_else(|| WireError::Shape("no `data.messages` array".into()))?;
    let elements = messages.into_iter().map(parse_element).collect();
    Ok(LatestAnswer {
        ruid,
        declared_count: data.number_of_messages.as_ref().and_then(|v| v.as_u64()),
        elements,
    })
}

#[derive(Deserialize)]
struct ConfirmEnvelope {
    meta: Option<Meta>,
    errors: Option<serde_json::Value>,
    data: Option<ConfirmData>,
}

#[derive(Deserialize)]
struct ConfirmData {
    ok: Option<bool>,
}

/// Parses a `PUT /messaging/messages` body; `Ok` carries the ruid.
pub fn parse_confirm(body: &[u8]) -> Result<Option<String>, WireError> {
    let envelope: ConfirmEnvelope = serde_json::from_slice(body).map_err(|e| WireError::NotJson(e.to_string()))?;
    let ruid = envelope.meta.and_then(|m| m.ruid);
    let ok = envelope.data.as_ref().and_then(|d| d.ok);
    check_failure(envelope.errors.as_ref(), ok, &ruid)?;
    if ok != Some(true) {
        return Err(WireError::Shape("no `data.ok: true`".into()));
    }
    Ok(ruid)
}

/// Best effort: the ruid of an error answer, for the log line that reports it.
pub(crate) fn ruid_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Only {
        meta: Option<Meta>,
    }
    serde_json::from_slice::<Only>(body).ok()?.meta?.ruid
}

pub(crate) fn check_failure(
    errors: Option<&serde_json::Value>,
    ok: Option<bool>,
    ruid: &Option<String>,
) -> Result<(), WireError> {
    let errors = match errors {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(a)) if a.is_empty() => None,
        Some(other) => Some(other),
    };
    if errors.is_none() && ok != Some(false) {
        return Ok(());
    }
    let summary = match errors {
        Some(e) => summarize_errors(e),
        None => "data.ok is false".into(),
    };
    Err(WireError::Api {
        summary,
        ruid: ruid.clone(),
    })
}

/// Error codes and messages only, bounded: error entries are about the request, never guest content.
fn summarize_errors(errors: &serde_json::Value) -> String {
    let items: Vec<&serde_json::Value> = match errors {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut parts = Vec::new();
    for item in items.iter().take(3) {
        let field = |k: &str| {
            item.get(k)
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
        };
        let text = match (field("code"), field("message")) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c,
            (None, Some(m)) => m,
            (None, None) => "(error without code or message)".into(),
        };
        parts.push(truncate(&text, 200));
    }
    if items.len() > 3 {
        parts.push(format!("and {} more", items.len() - 3));
    }
    parts.join("; ")
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

// ---- one message ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireMessage {
    message_id: Id,
    content: Option<String>,
    timestamp: Option<String>,
    attachment_ids: Option<Vec<Id>>,
    sender: Option<WireSender>,
    conversation: Option<WireConversation>,
}

#[derive(Deserialize)]
struct WireSender {
    participant_id: Option<Id>,
    metadata: Option<WireSenderMetadata>,
}

#[derive(Deserialize)]
struct WireSenderMetadata {
    name: Option<String>,
    participant_type: Option<String>,
}

#[derive(Deserialize)]
struct WireConversation {
    conversation_id: Option<Id>,
    conversation_type: Option<String>,
    conversation_reference: Option<Id>,
    // Documented as an integer; strings are accepted too. Kept as its decimal string.
    property_id: Option<Id>,
}

pub(crate) fn parse_element(raw: &RawValue) -> Element {
    match serde_json::from_str::<WireMessage>(raw.get()) {
        Ok(m) if m.message_id.0.trim().is_empty() => Element::Poison(Poison {
            raw: raw.get().to_owned(),
            reason: "message_id is empty".into(),
        }),
        Ok(m) => Element::Message(Box::new(into_new_message(m, raw.get()))),
        Err(e) => Element::Poison(Poison {
            raw: raw.get().to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn into_new_message(m: WireMessage, raw: &str) -> NewMessage {
    let (sender_id, sender_role, sender_name) = match m.sender {
        Some(s) => {
            let (role, name) = match s.metadata {
                // The docs list "property" and "GUEST": roles are compared and stored lower-case.
                Some(md) => (md.participant_type.map(|t| t.to_lowercase()), md.name),
                None => (None, None),
            };
            (s.participant_id.map(|i| i.0), role, name)
        }
        None => (None, None, None),
    };
    let (conversation_id, conversation_type, conversation_reference, property_id) = match m.conversation {
        Some(c) => (
            c.conversation_id.map(|i| i.0),
            c.conversation_type,
            c.conversation_reference.map(|i| i.0),
            c.property_id.map(|i| i.0),
        ),
        None => (None, None, None, None),
    };
    NewMessage {
        message_id: m.message_id.0,
        conversation_id,
        conversation_type,
        conversation_reference,
        property_id,
        sender_id,
        sender_role,
        sender_name,
        content: m.content,
        attachment_ids: m.attachment_ids.unwrap_or_default().into_iter().map(|i| i.0).collect(),
        sent_at: m.timestamp,
        raw: raw.to_owned(),
    }
}

/// An identifier the OTA may send as a string or an integer; integers become their decimal string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}
