//! The properties every parser of outside data must keep on hostile input: never panic, never allocate beyond
//! the input's size class, and either produce something usable or a clear error. The cargo-fuzz targets in
//! `fuzz/` call these, and the test suite replays the fuzz corpus and random inputs through them.

use std::path::Path;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use crate::channel::booking::wire;
use crate::store::Element;

/// A `GET /messaging/messages/latest` answer.
pub fn check_latest_answer(data: &[u8]) {
    match wire::parse_latest(data) {
        Ok(answer) => {
            for element in answer.elements {
                match element {
                    Element::Message(m) => {
                        assert!(!m.message_id.trim().is_empty(), "a message without an id was accepted");
                        let raw: Result<serde::de::IgnoredAny, _> = serde_json::from_str(&m.raw);
                        assert!(raw.is_ok(), "raw is not the JSON it was parsed from");
                        // The exact bytes are kept: in raw itself, or beside its repair.
                        let exact = m.raw_exact.as_deref().unwrap_or(m.raw.as_bytes());
                        assert!(m.raw_exact.is_none() || m.raw_exact.as_deref() != Some(m.raw.as_bytes()));
                        assert!(data.windows(exact.len()).any(|w| w == exact), "raw was re-serialised");
                    }
                    Element::Poison(p) => {
                        assert!(!p.reason.is_empty(), "a quarantine reason is empty");
                        let exact = p.raw_exact.as_deref().unwrap_or(p.raw.as_bytes());
                        assert!(
                            data.windows(exact.len()).any(|w| w == exact),
                            "poison was not kept exactly"
                        );
                    }
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an empty error"),
    }
}

/// A `PUT /messaging/messages` answer.
pub fn check_confirm_answer(data: &[u8]) {
    if let Err(e) = wire::parse_confirm(data) {
        assert!(!e.to_string().is_empty(), "an empty error");
    }
}

/// A configuration file (secrets are not resolved: no file or environment is read).
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = crate::config::parse_for_tools(Path::new("fuzz.toml"), text) {
        let message = e.to_string();
        assert!(
            message.starts_with("fuzz.toml"),
            "a configuration error does not name the file: {message}"
        );
    }
}

/// A `Retry-After` header value.
pub fn check_retry_after(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, value);
    if let Some(delay) = crate::http_client::retry_after(&headers) {
        assert!(
            delay <= crate::http_client::MAX_RETRY_AFTER,
            "an unbounded Retry-After: {delay:?}"
        );
    }
}

/// What every push parser must do with whatever it is sent: a message keeps the body's exact bytes (as `raw`, or
/// beside its repair), and so does anything quarantined; nothing is dropped without a reason.
fn check_push(data: &[u8], push: &crate::store::Push, problem: Option<&str>) {
    use crate::store::PushContent;
    match &push.content {
        PushContent::Message { namespace, message, .. } => {
            assert!(problem.is_none(), "a message with a problem");
            assert!(!namespace.is_empty());
            assert!(
                !message.message_id.trim().is_empty(),
                "a message without an id was accepted"
            );
            let raw: Result<serde::de::IgnoredAny, _> = serde_json::from_str(&message.raw);
            assert!(raw.is_ok(), "raw is not JSON");
            let exact = message.raw_exact.as_deref().unwrap_or(message.raw.as_bytes());
            assert_eq!(exact, data, "the body was not kept exactly");
        }
        PushContent::Quarantine(p) => {
            assert!(!p.reason.is_empty(), "a quarantine reason is empty");
            let exact = p.raw_exact.as_deref().unwrap_or(p.raw.as_bytes());
            assert_eq!(exact, data, "a quarantined body was not kept exactly");
        }
    }
}

/// A Booking.com notification body.
pub fn check_booking_notification(data: &[u8]) {
    if let crate::channel::booking::notification::Parsed::Push(push, problem) =
        crate::channel::booking::notification::parse(data)
    {
        check_push(data, &push, problem.as_deref());
    }
}

/// A STAAH message body.
pub fn check_staah_message(data: &[u8]) {
    let (push, problem) = crate::channel::staah::parse(data);
    check_push(data, &push, problem.as_deref());
}

/// A Channex webhook body.
pub fn check_channex_webhook(data: &[u8]) {
    use crate::channel::channex::Parsed;
    match crate::channel::channex::parse(data) {
        Parsed::Message { push, .. } => check_push(data, &push, None),
        Parsed::Quarantine { push, problem, .. } => check_push(data, &push, Some(&problem)),
        Parsed::Other { event } => assert_ne!(event, crate::channel::channex::MESSAGE_EVENT),
    }
}

/// A token request: its first line is taken as the `Authorization` header (when there is a line break), the rest
/// as the form body.
pub fn check_token_request(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    match crate::channel::booking::oauth::parse_request(header, body) {
        Ok(_) => {
            let form: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).expect("a token was granted on a form");
            let grants: Vec<&str> = form
                .iter()
                .filter(|(k, _)| k == "grant_type")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(
                grants.last(),
                Some(&"client_credentials"),
                "a token granted for another grant type"
            );
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
}
