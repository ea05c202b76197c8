//! `POST /api/v1/auth/one_time_token`, in Channex's shape: `{"one_time_token": {"property_id", "username"}}` →
//! `{"data": {"token"}}`, a single-use key (15 minutes) that signs `username` in to the inbox at
//! `/inbox/auth/exchange?oauth_session_key=<token>`, limited to the property when one is given.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::{Api, ApiError, Caller};
use crate::store::sessions::{self, Grant};

pub(super) fn router() -> Router<Api> {
    Router::new().route("/api/v1/auth/one_time_token", post(one_time_token))
}

#[derive(serde::Deserialize)]
struct Body {
    one_time_token: Request,
}

#[derive(serde::Deserialize)]
struct Request {
    property_id: Option<String>,
    username: Option<String>,
    /// Where the link lands (ours; not in Channex's shape): one thread.
    thread_id: Option<String>,
}

async fn one_time_token(State(api): State<Api>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    let request: Body = serde_json::from_slice(&body).map_err(|_| {
        ApiError::validation(
            "one_time_token",
            "expected {\"one_time_token\": {\"property_id\", \"username\"}}",
        )
    })?;
    let request = request.one_time_token;
    let user = request.username.unwrap_or_default();
    if user.trim().is_empty() || user.chars().count() > 80 {
        return Err(ApiError::validation(
            "username",
            "can't be blank (and at most 80 characters)",
        ));
    }
    if let Some(property) = &request.property_id
        && !caller.token.sees(Some(property))
    {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "this key has no access to that property",
        ));
    }
    if request.property_id.is_none() && caller.token.property_ids.is_some() {
        return Err(ApiError::validation(
            "property_id",
            "is required: this key is limited to some properties",
        ));
    }
    if let Some(thread) = &request.thread_id {
        let found = api.visible_thread(&caller, thread).await?;
        if request
            .property_id
            .as_deref()
            .is_some_and(|p| found.property_id.as_deref() != Some(p))
        {
            return Err(ApiError::not_found());
        }
    }
    let token = crate::web::random_key();
    let grant = Grant {
        token_name: caller.token.name.clone(),
        user: user.trim().to_owned(),
        property_id: request.property_id,
        thread_id: request.thread_id,
    };
    let (stored, now) = (token.clone(), crate::store::now_ms());
    api.0
        .store
        .call(move |conn| Ok(sessions::create_one_time(conn, &stored, &grant, now)?))
        .await?;
    Ok(axum::Json(json!({ "data": { "token": token } })).into_response())
}
