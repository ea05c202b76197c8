//! A thread's messages (newest first) and the property's replies: `/api/v1/message_threads/:id/messages` and
//! `/api/v1/bookings/:booking_id/messages` (the thread whose booking reference it is).
//!
//! A reply is committed (pending, with its author) before it is answered 200, as Channex answers; the reply
//! worker sends it. An `Idempotency-Key` makes a retried POST the same reply (per key and token, for 24 hours).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::threads::params;
use super::{Api, ApiError, Caller, shapes};
use crate::channel::ThreadChannel;
use crate::store::replies::{self, NewReply};
use crate::store::threads::{self, Entry, Thread, ThreadFilter, ThreadOrder};

/// Longer texts are refused rather than cut by a channel.
const MAX_MESSAGE_CHARS: usize = 20_000;
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(super) fn router() -> Router<Api> {
    Router::new()
        .route("/api/v1/message_threads/{id}/messages", get(list).post(send))
        .route(
            "/api/v1/bookings/{booking_id}/messages",
            get(list_booking).post(send_booking),
        )
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let thread = api.visible_thread(&caller, &id).await?;
    page_of(&api, thread, raw).await
}

async fn list_booking(
    State(api): State<Api>,
    caller: Caller,
    Path(booking): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let thread = booking_thread(&api, &caller, booking).await?;
    page_of(&api, thread, raw).await
}

async fn page_of(api: &Api, thread: Thread, raw: Option<String>) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let page = params.page()?;
    let order = params.order(&["inserted_at"], true)?;
    let (descending, limit, offset) = (order.descending, page.limit, page.offset());
    let (items, total) = api
        .0
        .readers
        .read(move |conn| {
            let entries = threads::entries(conn, &thread, descending, limit, offset)?;
            let total = threads::entry_count(conn, &thread)?;
            let items: Vec<Value> = entries.iter().map(|e| shapes::entry(e, &thread.id)).collect();
            Ok((items, total))
        })
        .await?;
    Ok(axum::Json(json!({
        "data": items,
        "meta": shapes::meta(page.page, page.limit, total, order.field, order.descending),
    }))
    .into_response())
}

/// The caller's thread of this booking (the most recently active one, should several channels carry it).
async fn booking_thread(api: &Api, caller: &Caller, booking: String) -> Result<Thread, ApiError> {
    let filter = ThreadFilter {
        scope: caller.token.property_ids.clone(),
        booking_reference: Some(booking),
        ..ThreadFilter::default()
    };
    let (mut found, _) = api
        .0
        .readers
        .read(move |conn| Ok(threads::list(conn, &filter, ThreadOrder::LastMessage, true, 1, 0)?))
        .await?;
    found.pop().ok_or_else(ApiError::not_found)
}

async fn send(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let thread = api.visible_thread(&caller, &id).await?;
    reply(&api, caller, thread, &headers, &body).await
}

async fn send_booking(
    State(api): State<Api>,
    caller: Caller,
    Path(booking): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let thread = booking_thread(&api, &caller, booking).await?;
    reply(&api, caller, thread, &headers, &body).await
}

#[derive(serde::Deserialize)]
struct SendBody {
    message: SendMessage,
}

#[derive(serde::Deserialize)]
struct SendMessage {
    message: Option<String>,
    #[serde(default)]
    attachments: Vec<String>,
}

async fn reply(
    api: &Api,
    caller: Caller,
    thread: Thread,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return Err(ApiError::validation("content-type", "must be application/json"));
    }
    let parsed: SendBody = serde_json::from_slice(body).map_err(|e| {
        let problem = crate::channel::booking::wire::without_values(&e.to_string());
        ApiError::validation(
            "message",
            &format!("expected {{\"message\": {{\"message\": \"...\"}}}}: {problem}"),
        )
    })?;
    let content = parsed.message.message.unwrap_or_default();
    if content.trim().is_empty() {
        return Err(ApiError::validation("message", "can't be blank"));
    }
    if content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::validation(
            "message",
            &format!("is too long (at most {MAX_MESSAGE_CHARS} characters)"),
        ));
    }
    let idempotency = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => {
            Some((caller.token.name.clone(), key.trim().to_owned()))
        }
        Some(_) => {
            return Err(ApiError::validation(
                "idempotency-key",
                &format!("must be visible text of 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            ));
        }
    };
    check_route(api, &thread)?;
    let new = NewReply {
        thread_id: thread.id.clone(),
        author: caller.token.name.clone(),
        content,
        attachments: parsed.message.attachments,
        idempotency,
    };
    let now = crate::store::now_ms();
    let (stored, created) = api
        .0
        .store
        .call(move |conn| Ok(replies::create(conn, &new, now)?))
        .await?;
    if created {
        tracing::info!(reply = %stored.uuid, thread = %thread.id, author = %stored.author, "reply stored; sending");
        api.0.replies.notify_one();
    }
    Ok(axum::Json(json!({ "data": shapes::entry(&Entry::Reply(stored), &thread.id) })).into_response())
}

/// A reply is refused at once when its channel is not configured to send (the key to set is named).
pub(super) fn check_route(api: &Api, thread: &Thread) -> Result<(), ApiError> {
    let routes = &api.current().routes;
    match ThreadChannel::of(&thread.provider) {
        Some(ThreadChannel::Booking) if routes.booking.is_some() => Ok(()),
        Some(ThreadChannel::Booking) => Err(ApiError::not_supported(
            "replies to Booking.com need [booking] credentials (username/password, or client_id/client_secret)",
        )),
        Some(ThreadChannel::Staah) if routes.staah => Ok(()),
        Some(ThreadChannel::Staah) => Err(ApiError::not_supported(
            "replies to STAAH threads need [staah] reply_url (STAAH's reply endpoint)",
        )),
        Some(ThreadChannel::Channex) if routes.channex => Ok(()),
        Some(ThreadChannel::Channex) => Err(ApiError::not_supported(
            "replies to Channex threads need [channex] api_key",
        )),
        None => Err(ApiError::not_supported("this thread's channel cannot take replies")),
    }
}
