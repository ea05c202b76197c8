//! The fake's conversation endpoints, for replies: `POST /messaging/properties/{p}/conversations/{c}` (a
//! property message: recorded, answered with its `message_id`, and, as Booking.com does, queued as a property
//! message so the drain sees its echo), `GET` of the same path (the conversation's messages) and `PUT
//! .../tags/no_reply_needed`. Scripted [`ReplyFault`]s lose or refuse answers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use super::handlers::{authorize, json_response, take_hold, wait_hold};
use super::{Endpoint, HoldPoint, Queued, Shared};

/// What the next reply POST meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyFault {
    /// Applied and queued, then no answer for `stall` (longer than the client's timeout).
    AppliedThenLost,
    /// Applied and queued, then this status (a 5xx whose outcome the client cannot know).
    AppliedThenStatus(u16),
    /// Applied, its echo queued, and the answer held until the queue has served that echo.
    EchoBeforeAnswer,
    /// Applied without an echo (none queued), then lost: only the conversation read can tell.
    AppliedSilentlyThenLost,
    /// Not applied: this status, with `Retry-After: 1` for 429 and 503.
    Refused(u16),
    /// Not applied, then lost: the conversation read shows nothing.
    LostUnapplied,
}

/// A reply the fake accepted (applied), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub property_id: String,
    pub conversation_id: String,
    pub content: String,
    pub message_id: String,
    pub authorization: String,
}

pub(super) async fn post(
    State(shared): State<Arc<Shared>>,
    Path((property, conversation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Reply) {
        return refused;
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(content) = value["message"]["content"].as_str().map(str::to_owned) else {
        shared.mutate(|s| s.reply_attempts += 1);
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"data":{},"errors":[{"code":400,"message":"message.content is required"}],"warnings":[]}"#,
        );
    };
    let fault = shared.mutate(|s| {
        s.reply_attempts += 1;
        s.reply_faults.pop_front()
    });
    let apply = |echo: bool| {
        let message_id = uuid::Uuid::new_v4().to_string();
        shared.mutate(|s| {
            s.posted.push(Posted {
                property_id: property.clone(),
                conversation_id: conversation.clone(),
                content: content.clone(),
                message_id: message_id.clone(),
                authorization: headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            });
            if echo && shared.options.echo_replies {
                let echo = json!({
                    "message_id": message_id,
                    "content": content,
                    "timestamp": "2026-11-30T12:00:00.000Z",
                    "attachment_ids": [],
                    "sender": {"participant_id": format!("prop-{property}"), "metadata": {"participant_type": "property"}},
                    "conversation": {"conversation_id": conversation, "conversation_type": "reservation", "property_id": property.parse::<u64>().ok()}
                });
                s.queue.push_back(Queued {
                    id: message_id.clone(),
                    json: Arc::from(echo.to_string().into_bytes()),
                    redelivered: false,
                });
            }
        });
        message_id
    };
    let ok = |message_id: &str| {
        json_response(
            StatusCode::OK,
            json!({"meta": {"ruid": "fake"}, "data": {"message_id": message_id, "ok": true}, "errors": []}).to_string(),
        )
    };
    let stall = || tokio::time::sleep(shared.options.stall + Duration::from_secs(1));
    match fault {
        None => ok(&apply(true)),
        Some(ReplyFault::AppliedThenLost) => {
            apply(true);
            stall().await;
            ok("too-late")
        }
        Some(ReplyFault::AppliedSilentlyThenLost) => {
            apply(false);
            stall().await;
            ok("too-late")
        }
        Some(ReplyFault::AppliedThenStatus(status)) => {
            apply(true);
            json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                r#"{"data":{},"errors":[{"code":500,"message":"Internal error"}],"warnings":[]}"#,
            )
        }
        Some(ReplyFault::EchoBeforeAnswer) => {
            let message_id = apply(true);
            let served = message_id.clone();
            shared.state.wait_for(|s| !s.queue.iter().any(|q| q.id == served)).await;
            ok(&message_id)
        }
        Some(ReplyFault::LostUnapplied) => {
            stall().await;
            ok("too-late")
        }
        Some(ReplyFault::Refused(status)) => {
            let mut response = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                format!(
                    r#"{{"data":{{}},"errors":[{{"code":{status},"message":"Refused by the fake"}}],"warnings":[]}}"#
                ),
            );
            if status == 429 || status == 503 {
                response
                    .headers_mut()
                    .insert("retry-after", "1".parse().expect("a header"));
            }
            response
        }
    }
}

pub(super) async fn get(
    State(shared): State<Arc<Shared>>,
    Path((property, conversation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Reply) {
        return refused;
    }
    wait_hold(take_hold(&shared, Endpoint::Reply, HoldPoint::Before)).await;
    let messages: Vec<serde_json::Value> = shared.mutate(|s| {
        s.conversation_reads += 1;
        s.posted
            .iter()
            .filter(|p| p.property_id == property && p.conversation_id == conversation)
            .map(|p| {
                json!({
                    "message_id": p.message_id,
                    "content": p.content,
                    "sender": {"participant_id": format!("prop-{property}"), "metadata": {"participant_type": "property"}},
                    "attachment_ids": []
                })
            })
            .collect()
    });
    json_response(
        StatusCode::OK,
        json!({"meta": {"ruid": "fake"}, "data": {"ok": true, "conversation": {"conversation_id": conversation, "messages": messages}}, "errors": []})
            .to_string(),
    )
}

pub(super) async fn tag(
    State(shared): State<Arc<Shared>>,
    Path((property, conversation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Reply) {
        return refused;
    }
    shared.mutate(|s| s.tags.push((property, conversation, "no_reply_needed".into())));
    json_response(
        StatusCode::OK,
        r#"{"meta":{"ruid":"fake"},"data":{"ok":true},"errors":[]}"#,
    )
}
