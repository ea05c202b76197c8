//! Replies through STAAH, at the reply endpoint of STAAH's documentation (`[staah] reply_url`): a JSON body of
//! `hotelid, channelid, message, threadid, guestid, bookingid, listingid`, taken from the thread's last pushed
//! guest message; `{"status": "Success"}` (with `ota_tracking_id` when given) is sent, `{"status": "Fail",
//! "response": ...}` refused with the `response` text as the reason.

use serde_json::{Value, json};

use crate::channel::fields::id_of_value;
use crate::channel::reply::{self, SendResult};
use crate::config::StaahSettings;

/// Where a reply goes: what the thread's pushed messages said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub hotelid: Option<String>,
    pub channelid: String,
    pub threadid: String,
    pub guestid: Option<String>,
    pub bookingid: Option<String>,
    pub listingid: Option<String>,
}

impl Coordinates {
    /// From a pushed STAAH body (`raw`) of the thread, in namespace `staah:<channel>`.
    pub fn from_push(namespace: &str, thread: &str, raw: Option<&str>) -> Coordinates {
        let value: Value = raw.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        let id = |name: &str| id_of_value(&value[name]);
        Coordinates {
            hotelid: id("hotelid"),
            channelid: namespace.strip_prefix("staah:").unwrap_or(namespace).to_owned(),
            threadid: thread.to_owned(),
            guestid: id("guestid"),
            bookingid: id("bookingid"),
            listingid: id("listingid"),
        }
    }
}

pub struct StaahReplies {
    client: reqwest::Client,
    settings: StaahSettings,
}

impl StaahReplies {
    /// None without `[staah] reply_url`.
    pub fn new(settings: &StaahSettings, timeout: std::time::Duration) -> Result<Option<StaahReplies>, reqwest::Error> {
        if settings.reply_url.is_none() {
            return Ok(None);
        }
        Ok(Some(StaahReplies {
            client: crate::http_client::client(timeout)?,
            settings: settings.clone(),
        }))
    }

    pub async fn send(&self, to: &Coordinates, message: &str) -> SendResult {
        let url = self.settings.reply_url.clone().expect("checked by new");
        let body = json!({
            "hotelid": to.hotelid,
            "channelid": to.channelid,
            "message": message,
            "threadid": to.threadid,
            "guestid": to.guestid,
            "bookingid": to.bookingid,
            "listingid": to.listingid,
        });
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let (Some(user), Some(password)) = (&self.settings.reply_username, &self.settings.reply_password) {
            request = request.basic_auth(user, Some(password.expose()));
        }
        match reply::classify(request.send().await, "STAAH").await {
            Err(result) => result,
            Ok(answer) => judge(&answer.body),
        }
    }
}

/// A 2xx answer's body: STAAH says in it whether the message was posted.
fn judge(body: &[u8]) -> SendResult {
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    match value["status"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("success") => SendResult::Sent {
            channel_message_id: id_of_value(&value["ota_tracking_id"]),
        },
        Some("fail") => SendResult::Refused {
            reason: format!(
                "STAAH: {}",
                reply::reason_in(body).unwrap_or_else(|| "Fail, without a reason".into())
            ),
        },
        // A 2xx that says neither: it may have been posted.
        _ => SendResult::Unknown {
            reason: "STAAH answered 2xx without a status of Success or Fail".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staah_answers_are_judged_by_their_status() {
        assert_eq!(
            judge(br#"{"status": "Success", "response": "Successfully posted", "ota_tracking_id": "44a1"}"#),
            SendResult::Sent {
                channel_message_id: Some("44a1".into())
            }
        );
        assert_eq!(
            judge(br#"{"status":"Fail","response":"No property found for given property id"}"#),
            SendResult::Refused {
                reason: "STAAH: No property found for given property id".into()
            }
        );
        assert_eq!(
            judge(br#"{"status": "Fail", "response": [{"message": "Authentication failed"}], "ota_tracking_id": ""}"#),
            SendResult::Refused {
                reason: "STAAH: Authentication failed".into()
            }
        );
        assert!(matches!(judge(b"<html>ok</html>"), SendResult::Unknown { .. }));
    }
}
