//! STAAH pushes each guest message to one endpoint (`POST /staah/messages`) with HTTP Basic credentials that we
//! issue (`[staah]`), and expects `{"status": "Success"}` back.
//!
//! The seed documents every field as a required string, but its own sample sends numbers (`user_ids`, `id`,
//! counts) and `null`s, and a thread without a booking has no `booking_details`: only what a message cannot be
//! stored without is required (`message`, `messageid`, `channel_id`, `threadid`); the rest is read when it is
//! there and kept in `raw` whatever it is.

pub mod push;
pub mod reply;

use crate::channel::booking::envelope;
use crate::channel::fields::Fields;
use crate::channel::{Source, ota_name};
use crate::store::{NewMessage, Poison, Push, PushContent};

/// A STAAH body as it will be stored, and the problem when it cannot be understood (for the 400 answer).
pub fn parse(body: &[u8]) -> (Push, Option<String>) {
    let text = envelope::repair(body);
    let raw_exact = (text.as_bytes() != body).then(|| body.to_vec());
    match message(&text) {
        Ok((channel, message)) => {
            let message = NewMessage {
                raw: text.to_string(),
                raw_exact,
                ..message
            };
            let content = PushContent::Message {
                namespace: namespace(&channel),
                ota: ota_name(&channel).map(str::to_owned),
                push_id: None,
                message: Box::new(message),
            };
            (push(content), None)
        }
        Err(reason) => {
            let poison = Poison {
                raw: text.to_string(),
                raw_exact,
                reason: reason.clone(),
            };
            (push(PushContent::Quarantine(poison)), Some(reason))
        }
    }
}

/// Messages are deduplicated per channel: STAAH's message ids come from each OTA.
pub fn namespace(channel_id: &str) -> String {
    format!("staah:{channel_id}")
}

fn push(content: PushContent) -> Push {
    Push {
        source: Source::Staah.name(),
        content,
    }
}

fn message(text: &str) -> Result<(String, NewMessage), String> {
    let fields = Fields::of(text)?;
    let content = match fields.present("message") {
        None => return Err("missing field `message`".into()),
        Some(_) => fields.text("message").ok_or("message: must be a string")?,
    };
    let message_id = fields.required_id("messageid", "messageid")?;
    let channel = fields.required_id("channel_id", "channel_id")?;
    let thread = fields.required_id("threadid", "threadid")?;
    let guest = fields.id("guestid");
    let sender_name = fields
        .object("user_details")
        .and_then(|details| guest_name(&details, guest.as_deref()));
    let conversation_type = fields.text("bookingflag").map(|flag| match flag.trim() {
        "B" | "b" => "reservation".to_owned(),
        "T" | "t" => "inquiry".to_owned(),
        other => other.to_lowercase(),
    });
    let message = NewMessage {
        message_id,
        conversation_id: Some(thread),
        conversation_type,
        conversation_reference: fields.id("bookingid"),
        // `hotelid` is the property's id at STAAH, which partners route on; `listingid` the OTA's.
        property_id: fields.id("hotelid").or_else(|| fields.id("listingid")),
        sender_id: guest,
        // STAAH pushes what the OTA received from the guest; the property's own replies go the other way.
        sender_role: Some("guest".into()),
        sender_name,
        content: Some(content),
        attachment_ids: attachments(&fields),
        sent_at: None,
        raw: String::new(),
        raw_exact: None,
    };
    Ok((channel, message))
}

/// The first name of the user whose id is the guest's; without a guest id found there, of the one user listed
/// under the role `guest` (the seed's sample names the guest only that way).
fn guest_name(details: &Fields<'_>, guest: Option<&str>) -> Option<String> {
    let users = details.objects("users");
    let name_of = |id: &str| {
        users
            .iter()
            .find(|u| u.id("id").as_deref() == Some(id))
            .and_then(|u| u.text("first_name"))
            .filter(|name| !name.trim().is_empty())
    };
    if let Some(name) = guest.and_then(name_of) {
        return Some(name);
    }
    let guests: Vec<String> = details
        .objects("roles")
        .iter()
        .filter(|r| r.text("role").is_some_and(|role| role.eq_ignore_ascii_case("guest")))
        .flat_map(|r| r.ids("user_ids"))
        .collect();
    match guests.as_slice() {
        [only] => name_of(only),
        _ => None,
    }
}

/// Attachments given as links or ids; objects stay in `raw`, for the PMS to read there.
fn attachments(fields: &Fields<'_>) -> Vec<String> {
    let mut ids = fields.ids("attachment");
    for object in fields.objects("attachment") {
        if let Some(link) = object.text("url").or_else(|| object.id("id")) {
            ids.push(link);
        }
    }
    ids
}
