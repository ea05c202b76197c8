//! The receiver's Booking.com endpoints: our token endpoint for CNS (`POST /oauth/token`) and the notifications
//! it sends with the token (`POST /booking/notifications`).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::notification::{self, Parsed};
use super::oauth::{self, TokenError};
use crate::channel::Source;
use crate::web::receive::{Auth, Receiver, Rejection, Shape, bearer_token};

/// A token request is a short form; anything longer is not one.
const MAX_TOKEN_REQUEST: usize = 16 * 1024;

/// RFC 6749 §4.4.2–§4.4.3 and §5.
pub async fn token(State(receiver): State<Receiver>, request: Request) -> Response {
    let source = Source::BookingNotification;
    let admitted = match receiver
        .open(source, request, |s| s.booking.is_some(), MAX_TOKEN_REQUEST)
        .await
    {
        Ok(admitted) => admitted,
        Err(rejection) => return no_store(rejection.render(Shape::OAuth)),
    };
    let issuer = admitted.sources.booking.as_ref().expect("checked by open");
    let authorization = admitted.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let answer = oauth::parse_request(authorization, &admitted.body).and_then(|client| {
        if issuer.authenticates(&client) {
            Ok(())
        } else {
            Err(TokenError::InvalidClient)
        }
    });
    let response = match answer {
        Ok(()) => {
            let (access_token, expires_in) = issuer.issue(oauth::now_secs());
            tracing::info!(peer = %admitted.peer, expires_in, "token issued to Booking.com's notification service");
            (
                StatusCode::OK,
                axum::Json(json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": expires_in })),
            )
                .into_response()
        }
        Err(TokenError::InvalidClient) => {
            let mut rejection = receiver.refuse(source, admitted.peer, "Basic");
            rejection.code = "invalid_client";
            rejection.message = "client authentication failed".into();
            rejection.render(Shape::OAuth)
        }
        Err(e) => {
            let description = match &e {
                TokenError::InvalidRequest(what) => what.to_string(),
                _ => "only grant_type=client_credentials is supported".to_owned(),
            };
            Rejection::new(StatusCode::BAD_REQUEST, e.code(), description).render(Shape::OAuth)
        }
    };
    no_store(response)
}

/// Tokens and their errors are never cached (§5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("a valid header"));
    headers.insert(header::PRAGMA, "no-cache".parse().expect("a valid header"));
    response
}

pub async fn notification(State(receiver): State<Receiver>, request: Request) -> Response {
    let source = Source::BookingNotification;
    let authenticate = |sources: &crate::web::receive::Sources, headers: &axum::http::HeaderMap| match &sources.booking
    {
        None => Auth::NotConfigured,
        Some(issuer) => Auth::check(
            bearer_token(headers).is_some_and(|t| issuer.verifies(t, oauth::now_secs())),
            "Bearer",
        ),
    };
    let admitted = match receiver.admit(source, request, authenticate).await {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.render(Shape::Json),
    };
    match notification::parse(&admitted.body) {
        Parsed::Other { kind } => {
            receiver.ignored(source, &kind);
            (StatusCode::OK, axum::Json(json!({ "status": "ignored" }))).into_response()
        }
        Parsed::Push(push, problem) => match (receiver.store(push).await, problem) {
            (Ok(outcome), None) => (StatusCode::OK, axum::Json(json!({ "status": outcome.name() }))).into_response(),
            (Ok(_), Some(problem)) => {
                tracing::warn!(
                    source = source.name(),
                    problem,
                    "notification quarantined: it cannot be understood"
                );
                Rejection::malformed(&problem).render(Shape::Json)
            }
            (Err(rejection), _) => rejection.render(Shape::Json),
        },
    }
}
