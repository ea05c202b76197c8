//! Booking.com Messaging API wire types (`GET /messaging/messages/latest`, `PUT /messaging/messages`).
//!
//! The envelope's structure is scanned first ([`super::envelope`]) and each message is parsed separately from its
//! own bytes, so one element that cannot be understood is quarantined instead of failing the batch, and a
//! byte-level defect in one guest's text (invalid UTF-8, a raw control character, half a surrogate pair) stays in
//! that element. Unknown fields are tolerated (and kept in `raw`).

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

use super::envelope;
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
struct Envelope {
    meta: Option<Meta>,
    errors: Option<serde_json::Value>,
    data: Option<LatestData>,
}

#[derive(Deserialize)]
pub(crate) struct Meta {
    pub ruid: Option<String>,
}

#[derive(Deserialize)]
struct LatestData {
    ok: Option<bool>,
    number_of_messages: Option<serde_json::Value>,
    messages: Option<serde::de::IgnoredAny>,
}

/// Parses a `/messages/latest` body. Errors here mean the whole answer is unusable: nothing is stored or confirmed.
/// Only an answer whose element boundaries cannot be found is that; a defect inside an element is the element's.
pub fn parse_latest(body: &[u8]) -> Result<LatestAnswer, WireError> {
    let layout = envelope::scan(body).map_err(|e| WireError::NotJson(e.to_string()))?;
    // The envelope's own fields, read with its elements taken out: whatever they hold cannot spoil them.
    let outer = match &layout {
        Some(l) => [&body[..l.array.start], &body[l.array.end..]].concat(),
        None => body.to_vec(),
    };
    let envelope: Envelope =
        serde_json::from_str(&envelope::repair(&outer)).map_err(|e| WireError::NotJson(e.to_string()))?;
    let ruid = envelope.meta.and_then(|m| m.ruid);
    check_failure(
        envelope.errors.as_ref(),
        envelope.data.as_ref().and_then(|d| d.ok),
        &ruid,
    )?;
    let data = envelope
        .data
        .ok_or_else(|| WireError::Shape("no `data` object".into()))?;
    let layout = layout
        .filter(|_| data.messages.is_some())
        .ok_or_else(|| WireError::Shape("no `data.messages` array".into()))?;
    let elements = layout
        .elements
        .iter()
        .map(|span| element_from_bytes(&body[span.clone()]))
        .collect();
    Ok(LatestAnswer {
        ruid,
        declared_count: data.number_of_messages.as_ref().and_then(|v| v.as_u64()),
        elements,
    })
}

/// One element from its exact bytes, parsed from their repair where they need one. `raw` keeps the exact text
/// when it is valid JSON as received (an escaped half of a surrogate pair is); otherwise it is the repair, and the
/// exact bytes are kept beside it.
pub(crate) fn element_from_bytes(exact: &[u8]) -> Element {
    let repaired = envelope::repair(exact);
    if repaired.as_bytes() == exact {
        return parse_element(&repaired, &repaired, None);
    }
    if let Ok(text) = std::str::from_utf8(exact)
        && serde_json::from_str::<&RawValue>(text).is_ok()
    {
        return parse_element(&repaired, text, None);
    }
    parse_element(&repaired, &repaired, Some(exact.to_vec()))
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
    // Documented as an integer; strings are accepted too. Kept as the text of the number.
    property_id: Option<Id>,
}

/// One message parsed from `text` (valid JSON, repaired if it had to be); `raw` is what is kept as its JSON text,
/// and `raw_exact` the bytes as received when `raw` is not them.
pub(crate) fn parse_element(text: &str, raw: &str, raw_exact: Option<Vec<u8>>) -> Element {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, WireMessage>(&mut de) {
        Ok(m) if m.message_id.0.trim().is_empty() => Element::Poison(Poison {
            raw: raw.to_owned(),
            raw_exact,
            reason: "message_id is empty".into(),
        }),
        Ok(m) => {
            let mut message = into_new_message(m, raw);
            message.raw_exact = raw_exact;
            Element::Message(Box::new(message))
        }
        Err(e) => Element::Poison(Poison {
            raw: raw.to_owned(),
            raw_exact,
            reason: reason(&e),
        }),
    }
}

/// Why an element was refused: the field and the problem, never the value (it is guest data).
fn reason(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let problem = without_values(&e.inner().to_string());
    if path == "." || path.is_empty() {
        problem
    } else {
        format!("{path}: {problem}")
    }
}

/// serde's message with every value cut out: `invalid type: string "Erika …", expected u64` becomes
/// `invalid type: string, expected u64`; field names (`missing field `message_id``) stay.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                if out.ends_with(' ') {
                    out.pop();
                }
            }
            // A backquoted value follows the kind of an unexpected value; field names are backquoted too, and kept.
            '`' if ["integer ", "point ", "boolean ", "character "]
                .iter()
                .any(|k| out.ends_with(k)) =>
            {
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn role_name(participant_type: &str) -> String {
    match participant_type.to_lowercase().as_str() {
        "hotel" => "property".to_owned(),
        other => other.to_owned(),
    }
}

fn into_new_message(m: WireMessage, raw: &str) -> NewMessage {
    let (sender_id, sender_role, sender_name) = match m.sender {
        Some(s) => {
            let (role, name) = match s.metadata {
                // The docs list "property" and "GUEST": roles are compared and stored lower-case. Notifications in
                // public integrations say "hotel" for the property.
                Some(md) => (md.participant_type.map(|t| role_name(&t)), md.name),
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
        raw_exact: None,
    }
}

/// An identifier the OTA may send as a string or a number. A number is kept as the exact text it was written
/// with (`1234567.0`, a 24-digit reference): converting it would round or reformat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            return serde_json::from_str::<String>(text).map(Id).map_err(de::Error::custom);
        }
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Ok(Id(text.to_owned()));
        }
        Err(de::Error::custom("an id must be a string or a number"))
    }
}
