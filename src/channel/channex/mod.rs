//! Channex pushes events to a webhook (`POST /channex/webhook`) carrying the header set on it (`[channex]
//! webhook_header`, `webhook_secret`). Event `message` is a guest's (or the property's) message:
//! `{"event", "property_id", "user_id", "timestamp", "payload": {"id", "message", "message_thread_id",
//! "booking_id", "ota_message_id", "sender", "attachments", "have_attachment"}}`.
//!
//! The webhook does not name the OTA; the thread does (`provider`, and `title`, usually the guest's name), which
//! [`threads`] reads from Channex's API when `[channex] api_key` is set.

pub mod backfill;
pub mod push;
pub mod reply;
pub mod threads;

use crate::channel::booking::envelope;
use crate::channel::fields::Fields;
use crate::channel::{Source, ota_name};
use crate::store::{NewMessage, Poison, Push, PushContent};

pub const NAMESPACE: &str = "channex";
pub const MESSAGE_EVENT: &str = "message";

#[derive(Debug)]
pub enum Parsed {
    /// A message, and its thread (to learn the OTA from).
    Message { push: Push, thread: Option<String> },
    /// What could not be stored as a message, kept in quarantine; the problem, and whether the sender erred
    /// (400) or the webhook was only created without its data (2xx: Channex would resend the same).
    Quarantine {
        push: Push,
        problem: String,
        sender_error: bool,
    },
    /// Another event: acknowledged, not forwarded.
    Other { event: String },
}

pub fn parse(body: &[u8]) -> Parsed {
    let text = envelope::repair(body);
    let raw_exact = (text.as_bytes() != body).then(|| body.to_vec());
    let quarantine = |problem: String, sender_error: bool| Parsed::Quarantine {
        push: push(PushContent::Quarantine(Poison {
            raw: text.to_string(),
            raw_exact: raw_exact.clone(),
            reason: problem.clone(),
        })),
        problem,
        sender_error,
    };
    let fields = match Fields::of(&text) {
        Ok(fields) => fields,
        Err(problem) => return quarantine(problem, true),
    };
    let Some(event) = fields.text("event") else {
        return quarantine("missing field `event`".into(), true);
    };
    if event != MESSAGE_EVENT {
        return Parsed::Other { event };
    }
    let Some(payload) = fields.object("payload") else {
        if fields.present("payload").is_some() {
            return quarantine("payload: must be an object".into(), true);
        }
        return quarantine(
            "a message event without its payload: the webhook was created with send_data: false".into(),
            false,
        );
    };
    let message_id = match payload.required_id("id", "payload.id") {
        Ok(id) => id,
        Err(problem) => return quarantine(problem, true),
    };
    let content = payload.text("message");
    let attachment_ids = payload.ids("attachments");
    if content.is_none() && attachment_ids.is_empty() && payload.present("message").is_some() {
        return quarantine("payload.message: must be a string".into(), true);
    }
    let thread = payload.id("message_thread_id");
    let message = NewMessage {
        message_id,
        conversation_id: thread.clone(),
        conversation_type: None,
        conversation_reference: payload.id("booking_id"),
        property_id: fields.id("property_id").or_else(|| payload.id("property_id")),
        sender_id: None,
        sender_role: payload.text("sender").map(|s| s.to_lowercase()),
        sender_name: None,
        content,
        attachment_ids,
        sent_at: fields.text("timestamp").or_else(|| payload.text("inserted_at")),
        raw: text.to_string(),
        raw_exact,
    };
    let content = PushContent::Message {
        namespace: NAMESPACE.to_owned(),
        ota: None,
        push_id: payload.id("ota_message_id"),
        message: Box::new(message),
    };
    Parsed::Message {
        push: push(content),
        thread,
    }
}

/// What a thread tells about its messages: the OTA, and (for the guest's messages) the guest's name.
pub fn apply(push: &mut Push, thread: &threads::Thread) {
    if let PushContent::Message { ota, message, .. } = &mut push.content {
        *ota = thread.provider.as_deref().and_then(ota_name).map(str::to_owned);
        if message.sender_role.as_deref() == Some("guest") {
            message.sender_name = thread.title.clone();
        }
    }
}

fn push(content: PushContent) -> Push {
    Push {
        source: Source::Channex.name(),
        content,
    }
}
