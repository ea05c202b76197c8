//! Replies through Channex: `POST {base_url}/api/v1/message_threads/{thread}/messages` with
//! `{"message": {"message": ...}}` and the `user-api-key` header; the answer's `data.id` is the channel's id, and
//! 403 and 422 are refusals with Channex's titles.

use serde_json::json;

use crate::channel::fields::id_of_value;
use crate::channel::reply::{self, SendResult};
use crate::config::{ChannexSettings, Secret};

pub struct ChannexReplies {
    client: reqwest::Client,
    base_url: reqwest::Url,
    api_key: Secret,
}

impl ChannexReplies {
    /// None without `[channex] api_key`.
    pub fn new(
        settings: &ChannexSettings,
        timeout: std::time::Duration,
    ) -> Result<Option<ChannexReplies>, reqwest::Error> {
        let Some(api_key) = settings.api_key.clone() else {
            return Ok(None);
        };
        Ok(Some(ChannexReplies {
            client: crate::http_client::client(timeout)?,
            base_url: settings.base_url.clone(),
            api_key,
        }))
    }

    pub async fn send(&self, thread: &str, message: &str, attachments: &[String]) -> SendResult {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("base_url was validated as an http(s) URL")
            .pop_if_empty()
            .extend(["api", "v1", "message_threads", thread, "messages"]);
        let mut body = json!({ "message": { "message": message } });
        if !attachments.is_empty() {
            body["message"]["attachments"] = json!(attachments);
        }
        let sent = self
            .client
            .post(url)
            .header("user-api-key", self.api_key.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match reply::classify(sent, "Channex").await {
            Err(result) => result,
            Ok(answer) => {
                let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                SendResult::Sent {
                    channel_message_id: id_of_value(&value["data"]["id"]),
                }
            }
        }
    }
}
