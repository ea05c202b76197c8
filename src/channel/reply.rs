//! What a reply's send proved, for every channel alike. None of the channels' send endpoints is idempotent, so
//! only an answer that shows the request was not processed allows sending again; an answer that was lost leaves
//! the outcome unknown, to be reconciled (the channel's echo, or a read of the conversation), never repeated.

use std::time::Duration;

use reqwest::StatusCode;

use crate::http_client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted; the channel's id for the message when it said.
    Sent { channel_message_id: Option<String> },
    /// Not processed (a refused connection, 429, 503 with Retry-After, 408): may be sent again, not sooner than
    /// `retry_after`.
    NotProcessed {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Refused for a reason the channel gave (a 4xx, STAAH's `Fail`): sending it again would fail again.
    Refused { reason: String },
    /// The answer was lost (timeout, reset, 5xx): it may have arrived.
    Unknown { reason: String },
}

/// An answer read whole, for the channel to judge its body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// What the transport and the status alone prove; a 2xx answer is left to the channel (`Ok`).
pub async fn classify(sent: Result<reqwest::Response, reqwest::Error>, channel: &str) -> Result<Answer, SendResult> {
    let response = match sent {
        Ok(response) => response,
        // No connection was made: nothing reached the channel.
        Err(e) if e.is_connect() => {
            return Err(SendResult::NotProcessed {
                retry_after: None,
                reason: format!(
                    "{channel} could not be reached: {}",
                    http_client::chain(&e.without_url())
                ),
            });
        }
        Err(e) => {
            let what = if e.is_timeout() { "timed out" } else { "was cut off" };
            return Err(SendResult::Unknown {
                reason: format!("the send to {channel} {what}: {}", http_client::chain(&e.without_url())),
            });
        }
    };
    let status = response.status();
    let retry_after = http_client::retry_after(response.headers());
    let body = match http_client::read_limited(response, 256 * 1024).await {
        Ok(body) => body,
        Err(e) => {
            return Err(SendResult::Unknown {
                reason: format!("{channel}'s answer (HTTP {}) could not be read: {e}", status.as_u16()),
            });
        }
    };
    let code = status.as_u16();
    let said = || reason_in(&body).map(|r| format!(": {r}")).unwrap_or_default();
    match code {
        200..=299 => Ok(Answer { status, body }),
        429 | 408 => Err(SendResult::NotProcessed {
            retry_after,
            reason: format!("{channel} answered HTTP {code}{}", said()),
        }),
        503 if retry_after.is_some() => Err(SendResult::NotProcessed {
            retry_after,
            reason: format!("{channel} answered HTTP 503 with Retry-After{}", said()),
        }),
        400..=499 => Err(SendResult::Refused {
            reason: format!("{channel} refused it (HTTP {code}){}", said()),
        }),
        _ => Err(SendResult::Unknown {
            reason: format!("{channel} answered HTTP {code}{}; it may have been processed", said()),
        }),
    }
}

/// The words a channel's error body gives: Channex's `errors.title`, STAAH's `response`, Booking.com's
/// `errors[].message`, or a `message`.
pub fn reason_in(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let candidates = [
        &value["errors"]["title"],
        &value["errors"][0]["message"],
        &value["response"],
        &value["response"][0]["message"],
        &value["message"],
        &value["error_description"],
    ];
    candidates
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.trim().is_empty()))
        .map(|s| s.chars().take(300).collect())
}
