//! The fake queue's endpoints: `GET /messaging/messages/latest`, `PUT /messaging/messages` and the token
//! exchange, with authentication, held requests and faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;

use super::{Endpoint, FakeAuth, Fault, Hold, HoldPoint, Queued, Shared};

pub(super) fn take_hold(shared: &Shared, endpoint: Endpoint, point: HoldPoint) -> Option<Hold> {
    shared.mutate(|s| {
        let index = s
            .holds
            .iter()
            .position(|h| h.endpoint == endpoint && h.point == point)?;
        Some(s.holds.remove(index))
    })
}

pub(super) async fn wait_hold(hold: Option<Hold>) {
    if let Some(hold) = hold {
        let _ = hold.arrived.send(true);
        let mut released = hold.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
}

fn next_fault(shared: &Shared, endpoint: Endpoint) -> Option<Fault> {
    let scripted = shared.mutate(|s| {
        let index = s.scripted.iter().position(|(e, _)| *e == endpoint)?;
        s.scripted.remove(index).map(|(_, f)| f)
    });
    scripted.or_else(|| shared.random_fault(endpoint))
}

/// Checks the Authorization header; Some(response) when the request must be refused.
pub(super) fn authorize(shared: &Shared, headers: &HeaderMap, endpoint: Endpoint) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = match &shared.options.auth {
        FakeAuth::Any => true,
        FakeAuth::Basic { username, password } => {
            let expected = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            given == format!("Basic {expected}")
        }
        FakeAuth::Token { .. } => {
            let max_uses = shared.options.token_max_uses;
            shared.mutate(|s| {
                let revoked = s.revoked;
                let token = given.strip_prefix("Bearer ").unwrap_or_default();
                let expired = s.expired_tokens.contains(token);
                match s.tokens.get_mut(token) {
                    Some(uses) if !revoked && !expired && max_uses.is_none_or(|m| *uses < m) => {
                        *uses += 1;
                        true
                    }
                    _ => false,
                }
            })
        }
    };
    if ok {
        return None;
    }
    let ruid = shared.next_ruid();
    shared.mutate(|s| {
        s.unauthorized += 1;
        s.log(endpoint, 401);
        if endpoint == Endpoint::Latest {
            s.last_served = None;
        }
    });
    Some(json_response(
        StatusCode::UNAUTHORIZED,
        format!(
            r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{}},"errors":[{{"code":401,"message":"Unauthorized"}}],"warnings":[]}}"#
        ),
    ))
}

pub(super) async fn latest(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    wait_hold(take_hold(&shared, Endpoint::Latest, HoldPoint::Before)).await;
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Latest) {
        return refused;
    }
    let fault = next_fault(&shared, Endpoint::Latest);
    let ruid = shared.next_ruid();
    let limit = shared.options.batch_limit;
    let (body, count) = shared.mutate(|s| {
        s.gets += 1;
        let batch: Vec<Arc<[u8]>> = s.queue.iter().take(limit).map(|q| q.json.clone()).collect();
        let declared = batch.len() + usize::from(fault == Some(Fault::WrongCount));
        let mut body: Vec<u8> = Vec::with_capacity(batch.iter().map(|m| m.len() + 1).sum::<usize>() + 256);
        body.extend_from_slice(br#"{"meta":{"ruid":""#);
        body.extend_from_slice(ruid.as_bytes());
        body.extend_from_slice(br#""},"warnings":[],"data":{"messages":["#);
        for (i, m) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(m);
        }
        body.extend_from_slice(
            format!(
                r#"],"ok":true,"number_of_messages":{declared},"timestamp":"2026-11-24T12:00:00.000"}},"errors":[]}}"#
            )
            .as_bytes(),
        );
        (body, batch.len())
    });
    match fault {
        None | Some(Fault::WrongCount) => {
            shared.mutate(|s| {
                s.last_served = Some(count);
                s.log(Endpoint::Latest, 200);
                if fault.is_some() {
                    s.faults_injected += 1;
                }
            });
            json_response(StatusCode::OK, body)
        }
        Some(fault) => {
            shared.mutate(|s| {
                s.last_served = None;
                s.faults_injected += 1;
            });
            faulty(&shared, Endpoint::Latest, fault, body, &ruid).await
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ConfirmQuery {
    number_of_messages: Option<String>,
}

pub(super) async fn confirm(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    wait_hold(take_hold(&shared, Endpoint::Confirm, HoldPoint::Before)).await;
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Confirm) {
        return refused;
    }
    let ruid = shared.next_ruid();
    let Some(n) = q.number_of_messages.and_then(|n| n.parse::<usize>().ok()) else {
        shared.mutate(|s| {
            s.violations.push("PUT without a valid number_of_messages".into());
            s.log(Endpoint::Confirm, 400);
        });
        return json_response(
            StatusCode::BAD_REQUEST,
            error_body(&ruid, 400, "number_of_messages is required"),
        );
    };
    let fault = next_fault(&shared, Endpoint::Confirm);
    let applies = matches!(
        fault,
        None | Some(Fault::AppliedThenLost) | Some(Fault::AppliedThenStatus(_))
    );
    let redelivery_rate = shared.options.redelivery_rate;
    shared.mutate(|s| {
        s.puts += 1;
        match s.last_served.take() {
            Some(served) if n <= served => {}
            Some(served) => s
                .violations
                .push(format!("PUT confirmed {n} but the preceding GET served {served}")),
            None => s
                .violations
                .push(format!("PUT of {n} without a GET answered since the previous PUT")),
        }
        if fault.is_some() {
            s.faults_injected += 1;
        }
        if applies {
            let n = n.min(s.queue.len());
            let mut rng = shared.rng.lock().expect("fake rng");
            for q in s.queue.drain(..n).collect::<Vec<_>>() {
                s.confirmed_ids.insert(q.id.clone());
                if !q.redelivered && redelivery_rate > 0.0 && rng.f64() < redelivery_rate {
                    s.redeliveries += 1;
                    s.queue.push_back(Queued { redelivered: true, ..q });
                }
            }
            s.confirmed += n as u64;
        }
    });
    wait_hold(take_hold(&shared, Endpoint::Confirm, HoldPoint::AfterApply)).await;
    let body = format!(r#"{{"data":{{"ok":true}},"warnings":[],"meta":{{"ruid":"{ruid}"}},"errors":[]}}"#).into_bytes();
    match fault {
        None => {
            shared.mutate(|s| s.log(Endpoint::Confirm, 200));
            json_response(StatusCode::OK, body)
        }
        Some(Fault::AppliedThenLost) => faulty(&shared, Endpoint::Confirm, Fault::Reset, body, &ruid).await,
        Some(Fault::AppliedThenStatus(code)) => {
            faulty(&shared, Endpoint::Confirm, Fault::Status(code), body, &ruid).await
        }
        Some(fault) => faulty(&shared, Endpoint::Confirm, fault, body, &ruid).await,
    }
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    client_id: String,
    client_secret: String,
}

pub(super) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let ruid = shared.next_ruid();
    let request: Option<TokenRequest> = serde_json::from_slice(&body).ok();
    let valid = match (&shared.options.auth, &request) {
        (
            FakeAuth::Token {
                client_id,
                client_secret,
            },
            Some(r),
        ) => r.client_id == *client_id && r.client_secret == *client_secret,
        _ => false,
    };
    if !valid {
        shared.mutate(|s| s.log(Endpoint::Token, 401));
        return json_response(
            StatusCode::UNAUTHORIZED,
            error_body(&ruid, 401, "invalid client credentials"),
        );
    }
    let jwt = format!("fake-jwt-{}-{}", ruid, fastrand::u64(..));
    shared.mutate(|s| {
        let now = Instant::now();
        s.token_exchanges.push(now);
        let window = s
            .token_exchanges
            .iter()
            .filter(|t| now.duration_since(**t) < Duration::from_secs(3600))
            .count();
        if window > 30 {
            s.violations.push(format!("{window} token exchanges within one hour"));
        }
        s.tokens.insert(jwt.clone(), 0);
        s.log(Endpoint::Token, 200);
    });
    let expires = shared
        .options
        .token_expires_in
        .map(|e| format!(r#","expires_in":{e}"#))
        .unwrap_or_default();
    json_response(StatusCode::OK, format!(r#"{{"jwt":"{jwt}","ruid":"{ruid}"{expires}}}"#))
}

// ---- fault rendering ------------------------------------------------------------------------------

fn error_body(ruid: &str, code: u16, message: &str) -> String {
    format!(
        r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{}},"warnings":[],"errors":[{{"code":{code},"message":"{message}"}}]}}"#
    )
}

pub(super) fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn failing_stream(first: Option<Bytes>) -> Body {
    let items: Vec<Result<Bytes, std::io::Error>> = first
        .into_iter()
        .map(Ok)
        .chain(std::iter::once(Err(std::io::Error::other("fake: connection dropped"))))
        .collect();
    Body::from_stream(futures_util::stream::iter(items))
}

async fn faulty(shared: &Shared, endpoint: Endpoint, fault: Fault, body: Vec<u8>, ruid: &str) -> Response {
    let (status, response) = match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, json_response(status, error_body(ruid, code, "fake failure")))
        }
        Fault::RetryAfter { status: code, seconds } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut r = json_response(status, error_body(ruid, code, "slow down"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            (code, r)
        }
        Fault::Html => {
            let mut r = Response::new(Body::from(
                "<html><body><h1>Service temporarily unavailable</h1></body></html>",
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            (200, r)
        }
        Fault::Garbage => (200, json_response(StatusCode::OK, "this is not json {")),
        Fault::ApiError => (
            200,
            json_response(
                StatusCode::OK,
                format!(
                    r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{"ok":false}},"warnings":[],"errors":[{{"code":"E500","message":"internal error"}}]}}"#
                ),
            ),
        ),
        Fault::Truncated => {
            let full = Bytes::from(body);
            let mut r = Response::new(failing_stream(Some(full.slice(..full.len() / 2))));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (0, r)
        }
        Fault::Reset | Fault::AppliedThenLost => (0, Response::new(failing_stream(None))),
        Fault::Stall => {
            tokio::time::sleep(shared.options.stall).await;
            (
                503,
                json_response(StatusCode::SERVICE_UNAVAILABLE, error_body(ruid, 503, "stalled")),
            )
        }
        Fault::Oversized => {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let head = Bytes::from_static(br#"{"data":{"messages":["#);
            let chunks = std::iter::once(head)
                .chain(std::iter::repeat_n(chunk, 40))
                .map(Ok::<_, std::io::Error>);
            let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (200, r)
        }
        Fault::WrongCount | Fault::AppliedThenStatus(_) => unreachable!("handled by the caller"),
    };
    shared.mutate(|s| s.log(endpoint, status));
    response
}
