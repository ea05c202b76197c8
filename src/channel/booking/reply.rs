//! Replies through Booking.com: `POST {base_url}/messaging/properties/{property_id}/conversations/
//! {conversation_id}` with `{"message": {"content", "attachment_ids"}}` (the answer's `data.message_id` is the
//! channel's id); the conversation read that settles a send whose answer was lost; and the `no_reply_needed`
//! tag. The conversation read and the tag follow the paths public integrations use (Booking.com's reference was
//! not at hand): confirm them in the sandbox.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;

use super::client::{BookingClient, FetchError};
use crate::channel::fields::id_of_value;
use crate::channel::reply::{self, SendResult};

pub const OP_REPLY: &str = "POST /messaging/properties/{property_id}/conversations/{conversation_id}";
pub const OP_CONVERSATION: &str = "GET /messaging/properties/{property_id}/conversations/{conversation_id}";
pub const OP_TAG: &str = "PUT .../conversations/{conversation_id}/tags/no_reply_needed";

/// A message of a conversation, as the conversation read shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationMessage {
    pub message_id: String,
    pub content: Option<String>,
    pub from_property: bool,
}

impl BookingClient {
    fn conversation_url(&self, property: &str, conversation: &str, tail: &[&str]) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.base).expect("base_url was validated as a URL");
        url.path_segments_mut()
            .expect("an http(s) URL has path segments")
            .pop_if_empty()
            .extend(["messaging", "properties", property, "conversations", conversation])
            .extend(tail);
        url
    }

    /// Sends one reply, once: whatever happens, the caller decides from the result, never by repeating blindly.
    pub async fn post_reply(
        &self,
        property: &str,
        conversation: &str,
        content: &str,
        attachments: &[String],
    ) -> SendResult {
        let credential = match self.auth.credential().await {
            Ok(c) => c,
            Err(e) => {
                return SendResult::NotProcessed {
                    retry_after: None,
                    reason: format!("no Booking.com token: {e}"),
                };
            }
        };
        let sent = self
            .http
            .post(self.conversation_url(property, conversation, &[]))
            .header(AUTHORIZATION, credential.header.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(json!({ "message": { "content": content, "attachment_ids": attachments } }).to_string())
            .send()
            .await;
        if let Ok(r) = &sent
            && r.status() == reqwest::StatusCode::UNAUTHORIZED
        {
            // Refused before it was processed: the next attempt presents a fresh token.
            let _ = self.auth.rejected(&credential).await;
            return SendResult::NotProcessed {
                retry_after: None,
                reason: "Booking.com refused the token (HTTP 401)".into(),
            };
        }
        match reply::classify(sent, "Booking.com").await {
            Err(result) => result,
            Ok(answer) => {
                credential.accepted();
                let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                SendResult::Sent {
                    channel_message_id: id_of_value(&value["data"]["message_id"]),
                }
            }
        }
    }

    /// The conversation's messages, to find a reply whose send's answer was lost. Read tolerantly:
    /// `data.conversation.messages` or `data.messages`.
    pub async fn conversation(
        &self,
        property: &str,
        conversation: &str,
    ) -> Result<Vec<ConversationMessage>, FetchError> {
        let (_, body) = self
            .get(OP_CONVERSATION, self.conversation_url(property, conversation, &[]))
            .await?;
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| FetchError::Malformed {
            op: OP_CONVERSATION,
            status: 200,
            reason: crate::channel::booking::wire::without_values(&e.to_string()),
            ruid: None,
        })?;
        let list = value["data"]["conversation"]["messages"]
            .as_array()
            .or_else(|| value["data"]["messages"].as_array())
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|m| {
                let role = m["sender"]["metadata"]["participant_type"].as_str().unwrap_or_default();
                Some(ConversationMessage {
                    message_id: id_of_value(&m["message_id"])?,
                    content: m["content"].as_str().map(str::to_owned),
                    from_property: matches!(role.to_ascii_lowercase().as_str(), "property" | "hotel"),
                })
            })
            .collect())
    }

    /// Tags the conversation as needing no reply.
    pub async fn tag_no_reply_needed(&self, property: &str, conversation: &str) -> Result<(), FetchError> {
        let credential = self.auth.credential().await?;
        let url = self.conversation_url(property, conversation, &["tags", "no_reply_needed"]);
        let response = self.send(OP_TAG, self.http.put(url), &credential.header).await?;
        self.checked_body(OP_TAG, response).await?;
        credential.accepted();
        Ok(())
    }
}
