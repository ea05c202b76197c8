//! `/api/v1/message_threads`: list (newest activity first), one thread, close, and Booking.com's "no reply
//! needed".

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::query::Params;
use super::{Api, ApiError, Caller, shapes};
use crate::store::threads::{self, Thread, ThreadFilter, ThreadOrder};

pub(super) fn router() -> Router<Api> {
    Router::new()
        .route("/api/v1/message_threads", get(list))
        .route("/api/v1/message_threads/{id}", get(one))
        .route("/api/v1/message_threads/{id}/close", post(close))
        .route("/api/v1/message_threads/{id}/no_reply_needed", post(no_reply_needed))
}

/// The query's pairs; a query that is not a form is a 422.
pub(super) fn params(raw: Option<String>) -> Result<Params, ApiError> {
    let raw = raw.unwrap_or_default();
    serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
        .map(Params)
        .map_err(|_| ApiError::validation("query", "is not a valid query string"))
}

async fn list(State(api): State<Api>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let page = params.page()?;
    let order = params.order(&["last_message_received_at", "inserted_at", "updated_at"], true)?;
    let ota = match params.filter("provider") {
        Some(p) => Some(
            shapes::ota_of(p)
                .ok_or_else(|| ApiError::validation("filter[provider]", "must be BookingCom, AirBNB or Expedia"))?
                .to_owned(),
        ),
        None => None,
    };
    let filter = ThreadFilter {
        scope: caller.token.property_ids.clone(),
        property_id: params.filter("property_id").map(str::to_owned),
        is_closed: params.bool_filter("is_closed")?,
        ota,
        ..ThreadFilter::default()
    };
    let by = match order.field {
        "inserted_at" => ThreadOrder::Inserted,
        "updated_at" => ThreadOrder::Updated,
        _ => ThreadOrder::LastMessage,
    };
    let (descending, limit, offset) = (order.descending, page.limit, page.offset());
    let (items, total) = api
        .0
        .readers
        .read(move |conn| {
            let (threads, total) = threads::list(conn, &filter, by, descending, limit, offset)?;
            let mut items = Vec::with_capacity(threads.len());
            for t in &threads {
                items.push(with_last(conn, t)?);
            }
            Ok((items, total))
        })
        .await?;
    Ok(axum::Json(json!({
        "data": items,
        "meta": shapes::meta(page.page, page.limit, total, order.field, order.descending),
    }))
    .into_response())
}

/// A thread item with its newest entry.
pub(super) fn with_last(
    conn: &rusqlite::Connection,
    t: &Thread,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let last = threads::entries(conn, t, true, 1, 0)?;
    Ok(shapes::thread(t, last.first()))
}

pub(super) async fn answer_thread(api: &Api, t: Thread) -> Result<Response, ApiError> {
    let item = api.0.readers.read(move |conn| with_last(conn, &t)).await?;
    Ok(axum::Json(json!({ "data": item })).into_response())
}

async fn one(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = api.visible_thread(&caller, &id).await?;
    answer_thread(&api, thread).await
}

/// Closes the thread (a new guest message, or a reply, opens it again) and answers it.
async fn close(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = api.visible_thread(&caller, &id).await?;
    let thread_id = thread.id.clone();
    let now = crate::store::now_ms();
    api.0
        .store
        .call(move |conn| Ok(threads::set_closed(conn, &thread_id, true, now)?))
        .await?;
    let thread = api.visible_thread(&caller, &id).await?;
    answer_thread(&api, thread).await
}

/// Booking.com threads only: tags the conversation upstream (`.../tags/no_reply_needed`), then answers the thread.
async fn no_reply_needed(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = api.visible_thread(&caller, &id).await?;
    tag(&api, &thread).await?;
    answer_thread(&api, thread).await
}

pub(super) async fn tag(api: &Api, thread: &Thread) -> Result<(), ApiError> {
    if thread.provider != crate::channel::booking::wire::PROVIDER {
        return Err(ApiError::not_supported(
            "no_reply_needed exists for Booking.com threads only",
        ));
    }
    let Some(client) = api.current().routes.booking.clone() else {
        return Err(ApiError::not_supported(
            "Booking.com is not configured with credentials ([booking] username/password or client_id/client_secret)",
        ));
    };
    let Some(property) = thread.property_id.clone() else {
        return Err(ApiError::not_supported("this thread's property is not known"));
    };
    if let Err(e) = client.tag_no_reply_needed(&property, &thread.conversation_id).await {
        tracing::warn!(thread = %thread.id, error = %e, "Booking.com refused the no_reply_needed tag");
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("Booking.com did not take the tag: {e}"),
        ));
    }
    let (id, now) = (thread.id.clone(), crate::store::now_ms());
    let _ = api
        .0
        .store
        .call(move |conn| Ok(crate::store::threads::set_closed(conn, &id, true, now)?))
        .await;
    Ok(())
}
