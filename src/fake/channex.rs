//! A fake Channex API over real HTTP on 127.0.0.1, with the `user-api-key` header: `GET
//! /api/v1/message_threads/:id` (the thread in Channex's shape, counting the lookups) and `POST
//! /api/v1/message_threads/:id/messages` (a property message: recorded and answered with its id, or a scripted
//! status).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::observed::Observed;

#[derive(Debug, Default)]
pub struct ChannexState {
    /// Thread id → (provider, title) as Channex would answer; unknown threads are 404.
    pub threads: HashMap<String, (String, String)>,
    /// Lookups per thread id, answered or not.
    pub lookups: HashMap<String, u32>,
    /// While set, every lookup gets 500.
    pub down: bool,
    /// Messages posted to threads: (thread, message, the id answered).
    pub posted: Vec<(String, String, String)>,
    /// Message POSTs received, answered or not.
    pub post_attempts: u64,
    /// Statuses the next message POSTs get instead of being taken (with Channex's error body).
    pub post_faults: std::collections::VecDeque<u16>,
}

pub struct FakeChannex {
    state: Arc<Observed<ChannexState>>,
    api_key: String,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl FakeChannex {
    pub async fn start(api_key: &str) -> std::io::Result<FakeChannex> {
        let state = Arc::new(Observed::new(ChannexState::default()));
        let app = Router::new()
            .route("/api/v1/message_threads/{id}", get(thread))
            .route(
                "/api/v1/message_threads/{id}/messages",
                axum::routing::post(post_message),
            )
            .with_state((state.clone(), Arc::<str>::from(api_key)));
        let stop = CancellationToken::new();
        let addr = crate::web::serve_on_loopback(app, stop.clone()).await?;
        Ok(FakeChannex {
            state,
            api_key: api_key.to_owned(),
            addr,
            stop,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// A thread as Channex knows it (`provider` as Channex spells it: `BookingCom`, `AirBNB`, ...).
    pub fn add_thread(&self, id: &str, provider: &str, title: &str) {
        self.state
            .mutate(|s| s.threads.insert(id.to_owned(), (provider.to_owned(), title.to_owned())));
    }

    pub fn set_down(&self, down: bool) {
        self.state.mutate(|s| s.down = down);
    }

    /// The next message POST gets `status` (403 and 422 with Channex's titles; others bare).
    pub fn fail_next_post(&self, status: u16) {
        self.state.mutate(|s| s.post_faults.push_back(status));
    }

    pub fn read<R>(&self, f: impl FnOnce(&ChannexState) -> R) -> R {
        self.state.read(f)
    }

    pub async fn wait_for(&self, predicate: impl FnMut(&ChannexState) -> bool) {
        self.state.wait_for(predicate).await
    }

    pub fn lookups(&self, thread: &str) -> u32 {
        self.state.read(|s| s.lookups.get(thread).copied().unwrap_or(0))
    }
}

impl Drop for FakeChannex {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Shared = (Arc<Observed<ChannexState>>, Arc<str>);

async fn thread(State((state, key)): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let (known, down) = state.mutate(|s| {
        *s.lookups.entry(id.clone()).or_default() += 1;
        (s.threads.get(&id).cloned(), s.down)
    });
    let authorized = headers
        .get("user-api-key")
        .is_some_and(|v| v.as_bytes() == key.as_bytes());
    if !authorized {
        let body = json!({"errors": {"code": "unauthorized", "title": "Unauthorized"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    if down {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let Some((provider, title)) = known else {
        let body = json!({"errors": {"code": "resource_not_found", "title": "Resouce Not Found"}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let body = json!({
        "data": {
            "attributes": {
                "title": title,
                "is_closed": false,
                "provider": provider,
                "message_count": 1,
                "last_message": null,
                "inserted_at": "2026-11-30T09:32:14.281622",
                "updated_at": "2026-11-30T09:43:05.868034"
            },
            "id": id,
            "relationships": {},
            "type": "message_thread"
        }
    });
    axum::Json(body).into_response()
}

async fn post_message(
    State((state, key)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorized = headers
        .get("user-api-key")
        .is_some_and(|v| v.as_bytes() == key.as_bytes());
    if !authorized {
        let body = json!({"errors": {"code": "unauthorized", "title": "Unauthorized"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = value["message"]["message"].as_str().unwrap_or_default().to_owned();
    let fault = state.mutate(|s| {
        s.post_attempts += 1;
        s.post_faults.pop_front()
    });
    match fault {
        Some(403) => {
            let body = json!({"errors": {"code": "forbidden", "title": "Forbidden"}});
            (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
        }
        Some(422) => {
            let body = json!({"errors": {"code": "validation_error", "title": "Message thread is closed by OTA"}});
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
        }
        Some(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        None => {
            let answered = uuid::Uuid::new_v4().to_string();
            state.mutate(|s| s.posted.push((id.clone(), message.clone(), answered.clone())));
            let body = json!({
                "data": {
                    "attributes": {"message": message, "attachments": [], "sender": "property",
                                   "inserted_at": "2026-11-30T10:00:00.000000", "updated_at": "2026-11-30T10:00:00.000000"},
                    "id": answered,
                    "relationships": {"message_thread": {"data": {"id": id, "type": "message_thread"}}},
                    "type": "message"
                }
            });
            axum::Json(body).into_response()
        }
    }
}
