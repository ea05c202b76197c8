//! Booking.com's Connectivity Notification Service (CNS): `POST /booking/notifications`, authenticated with a
//! bearer token from our own token endpoint ([`super::oauth`]).
//!
//! A notification is `{"metadata": {"uuid", "type", "payloadVersion"}, "payload": {...}}`. For
//! `MESSAGING_API_NEW_MESSAGE` the payload is a message shaped as the queue serves them (public integrations show
//! this; Booking.com's own table was not at hand, so it is read tolerantly: ids as strings or numbers, the
//! participant type in any case, "hotel" for the property). It shares the pull's dedup namespace, so a message
//! that arrives by both is stored and forwarded once.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::envelope;
use super::wire::{self, PROVIDER};
use crate::channel::Source;
use crate::store::{Element, Poison, Push, PushContent};

pub const NEW_MESSAGE: &str = "MESSAGING_API_NEW_MESSAGE";

/// What a notification body holds.
#[derive(Debug)]
pub enum Parsed {
    /// A message to store, or what could not be understood (with the problem, for the 400 answer).
    Push(Push, Option<String>),
    /// Another notification type: acknowledged, not forwarded.
    Other { kind: String },
}

#[derive(Deserialize)]
struct Notification<'a> {
    metadata: Option<Metadata>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata {
    uuid: Option<wire::Id>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Parses a notification's body (its exact bytes are the message's `raw`).
pub fn parse(body: &[u8]) -> Parsed {
    let text = envelope::repair(body);
    let raw_exact = (text.as_bytes() != body).then(|| body.to_vec());
    let malformed = |reason: String| {
        let poison = Poison {
            raw: text.to_string(),
            raw_exact: raw_exact.clone(),
            reason: reason.clone(),
        };
        Parsed::Push(push(PushContent::Quarantine(poison)), Some(reason))
    };
    let notification: Notification = match serde_json::from_str(&text) {
        Ok(n) => n,
        Err(e) => return malformed(format!("not a notification: {}", wire::without_values(&e.to_string()))),
    };
    let Some(metadata) = notification.metadata else {
        return malformed("no metadata object".into());
    };
    let Some(kind) = metadata.kind else {
        return malformed("no metadata.type".into());
    };
    if kind != NEW_MESSAGE {
        return Parsed::Other { kind };
    }
    let Some(payload) = notification.payload else {
        return malformed("a MESSAGING_API_NEW_MESSAGE notification without a payload".into());
    };
    match wire::parse_element(payload.get(), &text, raw_exact.clone()) {
        Element::Message(message) => Parsed::Push(
            push(PushContent::Message {
                namespace: PROVIDER.to_owned(),
                ota: Some(PROVIDER.to_owned()),
                push_id: metadata.uuid.map(|id| id.0),
                message,
            }),
            None,
        ),
        Element::Poison(poison) => {
            let reason = format!("payload: {}", poison.reason);
            let poison = Poison {
                reason: reason.clone(),
                ..poison
            };
            Parsed::Push(push(PushContent::Quarantine(poison)), Some(reason))
        }
    }
}

fn push(content: PushContent) -> Push {
    Push {
        source: Source::BookingNotification.name(),
        content,
    }
}
