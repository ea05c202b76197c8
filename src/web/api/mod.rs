//! The PMS-facing API on `[api] listen`, speaking Channex's Messages API (`/api/v1/message_threads`, ...): a PMS
//! integrated with Channex points its base URL and key here and works unchanged.
//!
//! One state for every handler ([`Api`]), one extractor that authenticates the caller ([`Caller`]), one error
//! type rendered in Channex's shape ([`ApiError`]); a `router()` per resource. Reads run on reader connections
//! beside the store thread; a reply is committed on the store thread (synchronous=FULL) before it is answered.

mod auth;
mod messages;
mod query;
mod shapes;
mod threads;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::{ApiToken, Settings};
use crate::store::readers::Readers;
use crate::store::threads::Thread;
use crate::store::{Store, StoreError};

/// What replies can go through, by channel: the configuration a send needs.
#[derive(Debug, Clone, Default)]
pub struct ReplyRoutes {
    pub booking: Option<Arc<crate::channel::booking::client::BookingClient>>,
    pub staah: bool,
    pub channex: bool,
}

/// The inbox's settings, from `[api]`.
#[derive(Debug, Clone, Default)]
pub struct InboxSettings {
    pub frame_ancestors: Vec<String>,
    pub session_idle: std::time::Duration,
    pub secure_cookies: bool,
    /// Where staff reach it (links are built from it).
    pub base_url: String,
}

impl InboxSettings {
    fn of(settings: &Settings) -> InboxSettings {
        match &settings.api {
            Some(api) => InboxSettings {
                frame_ancestors: api.frame_ancestors.clone(),
                session_idle: api.session_idle,
                secure_cookies: api.secure_cookies(),
                base_url: api.base_url(),
            },
            None => InboxSettings::default(),
        }
    }
}

/// What a reload may change.
struct Current {
    tokens: Vec<ApiToken>,
    routes: ReplyRoutes,
    inbox: InboxSettings,
}

/// The state every handler is given. Cheap to clone.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    store: Store,
    readers: Readers,
    current: RwLock<Arc<Current>>,
    /// Wakes the reply worker when a reply is committed.
    replies: Arc<Notify>,
    /// The daemon is stopping: live streams end.
    cancel: tokio_util::sync::CancellationToken,
}

impl Api {
    pub fn new(
        settings: &Settings,
        store: Store,
        routes: ReplyRoutes,
        replies: Arc<Notify>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Api {
        let tokens = settings.api.as_ref().map(|a| a.tokens.clone()).unwrap_or_default();
        let inbox = InboxSettings::of(settings);
        Api(Arc::new(Inner {
            readers: Readers::new(store.path()),
            store,
            current: RwLock::new(Arc::new(Current { tokens, routes, inbox })),
            replies,
            cancel,
        }))
    }

    /// SIGHUP: the tokens, the inbox's settings and what replies can go through, as configured now.
    pub fn reload(&self, settings: &Settings, routes: ReplyRoutes) {
        let tokens = settings.api.as_ref().map(|a| a.tokens.clone()).unwrap_or_default();
        let inbox = InboxSettings::of(settings);
        *self.0.current.write().expect("api lock") = Arc::new(Current { tokens, routes, inbox });
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn readers(&self) -> &Readers {
        &self.0.readers
    }

    pub fn inbox(&self) -> InboxSettings {
        self.current().inbox.clone()
    }

    pub fn wake_replies(&self) {
        self.0.replies.notify_one();
    }

    pub async fn stopping(&self) {
        self.0.cancel.cancelled().await
    }

    /// The configured token of this name.
    pub fn token_named(&self, name: &str) -> Option<ApiToken> {
        self.current().tokens.iter().find(|t| t.name == name).cloned()
    }

    /// The token `presented` is, compared in constant time against every one.
    pub fn token_matching(&self, presented: &str) -> Option<ApiToken> {
        let mut found = None;
        for token in &self.current().tokens {
            if crate::web::same_secret(presented, token.token.expose()) && !presented.is_empty() {
                found = Some(token.clone());
            }
        }
        found
    }

    /// Why a reply to `thread` cannot be sent now (its channel is not configured to), if it cannot.
    pub fn reply_route_problem(&self, thread: &Thread) -> Option<String> {
        messages::check_route(self, thread).err().map(|e| e.title)
    }

    /// Booking.com's "no reply needed" for `thread`; the reason when it cannot be done.
    pub async fn tag_no_reply_needed(&self, thread: &Thread) -> Result<(), String> {
        threads::tag(self, thread).await.map_err(|e| e.title)
    }

    fn current(&self) -> Arc<Current> {
        self.0.current.read().expect("api lock").clone()
    }

    /// The thread `id` as `caller` may see it: another property's thread does not exist for a limited token.
    async fn visible_thread(&self, caller: &Caller, id: &str) -> Result<Thread, ApiError> {
        let id = id.to_owned();
        let thread = self
            .0
            .readers
            .read(move |conn| Ok(crate::store::threads::get(conn, &id)?))
            .await?;
        match thread {
            Some(t) if caller.token.sees(t.property_id.as_deref()) => Ok(t),
            _ => Err(ApiError::not_found()),
        }
    }
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .merge(threads::router())
        .merge(messages::router())
        .merge(auth::router())
        .merge(super::inbox::router(api.clone()))
        .fallback(|| async { ApiError::not_found() })
        .with_state(api)
}

/// An authenticated caller: the token it presented (as `user-api-key`, or `Authorization: Bearer`).
pub struct Caller {
    pub token: ApiToken,
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Caller, ApiError> {
        let presented = parts
            .headers
            .get("user-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .or_else(|| crate::web::receive::bearer_token(&parts.headers));
        // Every token is compared, whatever matched: the time taken tells nothing about which came close.
        let found = presented.and_then(|p| api.token_matching(p));
        match found {
            Some(token) => Ok(Caller { token }),
            None => {
                let peer = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
                    .unwrap_or_default();
                tracing::warn!(%peer, "API request refused: no valid key");
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"))
            }
        }
    }
}

/// Channex's error shape: `{"errors": {"code", "title", "details"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            title: title.into(),
            details: None,
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Resource Not Found")
    }

    /// 422 naming the field and what is wrong with it, as Channex does (`{"field": ["problem"]}`).
    fn validation(field: &str, problem: &str) -> ApiError {
        ApiError {
            details: Some(json!({ field: [problem] })),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", "Validation Error")
        }
    }

    /// 422: the thread's channel cannot do this (or is not configured to).
    fn not_supported(title: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_supported", title)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "API request failed in the store");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            title: "The store cannot answer now; retry later".into(),
            details: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut errors = json!({ "code": self.code, "title": self.title });
        if let Some(details) = self.details {
            errors["details"] = details;
        }
        let mut response = (self.status, axum::Json(json!({ "errors": errors }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "5".parse().expect("a valid header"));
        }
        response
    }
}
