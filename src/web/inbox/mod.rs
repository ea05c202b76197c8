//! The staff inbox under `/inbox/` on the API listener: server-rendered pages (askama templates compiled in and
//! auto-escaped), a little plain JavaScript for live updates, and the same store and reply outbox as the API.
//!
//! Signing in makes a session (an HttpOnly cookie; only its hash is stored) that never sees more properties
//! than the token it came from, or the one property of its link. Every form POST carries the session's CSRF
//! token; every answer carries a Content-Security-Policy without inline scripts ([`security_headers`]).

mod actions;
mod live;
mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::api::Api;
use crate::store::sessions::Session;

pub const COOKIE: &str = "ota_relay_session";

/// The inbox's paths.
pub enum Urls {
    Login,
    Threads,
    Thread(String),
}

impl Urls {
    pub fn path(&self) -> String {
        match self {
            Urls::Login => "/inbox/login".into(),
            Urls::Threads => "/inbox/threads".into(),
            Urls::Thread(id) => format!("/inbox/threads/{id}"),
        }
    }
}

pub(super) fn router(api: Api) -> Router<Api> {
    Router::new()
        .route("/inbox", get(|| async { Redirect::to("/inbox/threads") }))
        .route("/inbox/", get(|| async { Redirect::to("/inbox/threads") }))
        .route("/inbox/login", get(pages::login).post(actions::login))
        .route("/inbox/logout", post(actions::logout))
        .route("/inbox/auth/exchange", get(actions::exchange))
        .route("/inbox/threads", get(pages::list))
        .route("/inbox/threads/{id}", get(pages::thread))
        .route("/inbox/threads/{id}/reply", post(actions::reply))
        .route("/inbox/threads/{id}/close", post(actions::close))
        .route("/inbox/threads/{id}/reopen", post(actions::reopen))
        .route("/inbox/threads/{id}/no_reply_needed", post(actions::no_reply_needed))
        .route("/inbox/events", get(live::events))
        .route(
            "/inbox/static/inbox.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("static/inbox.css")) }),
        )
        .route(
            "/inbox/static/inbox.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("static/inbox.js")) }),
        )
        .layer(axum::middleware::from_fn_with_state(api, security_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Scripts and styles only from the inbox itself; framing only by the configured PMS origins.
async fn security_headers(State(api): State<Api>, request: Request, next: Next) -> Response {
    let ancestors = api.inbox().frame_ancestors;
    let mut response = next.run(request).await;
    let frame = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        ancestors.join(" ")
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors {frame}"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A signed-in member of staff: their session, and the properties it may see.
pub struct Staff {
    pub session_id: String,
    pub session: Session,
    /// `None`: every property.
    pub scope: Option<Vec<String>>,
}

impl Staff {
    pub fn sees(&self, property_id: Option<&str>) -> bool {
        match (&self.scope, property_id) {
            (None, _) => true,
            (Some(ids), Some(p)) => ids.iter().any(|id| id == p),
            (Some(_), None) => false,
        }
    }

    /// The form's CSRF token is the session's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), CsrfRefused> {
        match presented {
            Some(token) if crate::web::same_secret(token, &self.session.csrf) => Ok(()),
            _ => Err(CsrfRefused),
        }
    }
}

/// A form POST without the session's CSRF token: refused, nothing done.
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        tracing::warn!("an inbox form was refused: its CSRF token is missing or wrong");
        (
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the inbox; reload the page and try again.",
        )
            .into_response()
    }
}

/// Without a session (or with an expired one): pages go to the sign-in page, everything else is 401.
pub struct SignIn(bool);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        if self.0 {
            Redirect::to(&Urls::Login.path()).into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "Sign in again.").into_response()
        }
    }
}

pub fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<Api> for Staff {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Staff, SignIn> {
        let page = parts.method == axum::http::Method::GET && parts.uri.path() != "/inbox/events";
        let Some(id) = cookie_value(parts, COOKIE) else {
            return Err(SignIn(page));
        };
        let settings = api.inbox();
        let idle = settings.session_idle.as_millis() as i64;
        let now = crate::store::now_ms();
        let looked_up = id.clone();
        let found = api
            .store()
            .call(move |conn| {
                let found = crate::store::sessions::session(conn, &looked_up, idle, now)?;
                if found.is_some() {
                    crate::store::sessions::touch(conn, &looked_up, now)?;
                }
                Ok(found)
            })
            .await
            .ok()
            .flatten();
        let Some(session) = found else {
            return Err(SignIn(page));
        };
        // A token removed from the configuration signs out the sessions it made.
        let Some(token) = api.token_named(&session.token_name) else {
            return Err(SignIn(page));
        };
        let scope = match (&session.property_id, &token.property_ids) {
            (Some(p), _) => Some(vec![p.clone()]),
            (None, ids) => ids.clone(),
        };
        Ok(Staff {
            session_id: id,
            session,
            scope,
        })
    }
}

/// The `Set-Cookie` of a new session: HttpOnly, scoped to the inbox; `SameSite=None; Secure` over https (so a PMS
/// may embed it in an iframe), `SameSite=Lax` otherwise.
pub fn session_cookie(id: &str, secure: bool) -> String {
    if secure {
        format!("{COOKIE}={id}; Path=/inbox; HttpOnly; Secure; SameSite=None")
    } else {
        format!("{COOKIE}={id}; Path=/inbox; HttpOnly; SameSite=Lax")
    }
}

pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/inbox; HttpOnly; Max-Age=0; SameSite=Lax")
}
