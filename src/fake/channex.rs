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
    /// Messages each thread holds, as its messages endpoint lists them: (id, text, sender, inserted_at).
    pub messages: HashMap<String, Vec<(String, String, String, String)>>,
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
            .route("/api/v1/message_threads", get(list_threads))
            .route("/api/v1/message_threads/{id}", get(thread))
            .route(
                "/api/v1/message_threads/{id}/messages",
                get(list_messages).post(post_message),
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

    /// A message Channex holds in `thread` (Channex's timestamp form: `2026-11-30T10:15:00.000000`).
    pub fn add_message(&self, thread: &str, id: &str, text: &str, sender: &str, inserted_at: &str) {
        self.state.mutate(|s| {
            s.messages.entry(thread.to_owned()).or_default().push((
                id.to_owned(),
                text.to_owned(),
                sender.to_owned(),
                inserted_at.to_owned(),
            ))
        });
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
    if !authorized(&headers, &key) {
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
    if !authorized(&headers, &key) {
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

fn page_of(query: &HashMap<String, String>) -> (usize, usize) {
    let page = query
        .get("pagination[page]")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let limit = query
        .get("pagination[limit]")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10usize)
        .clamp(1, 100);
    (page, limit)
}

async fn list_threads(
    State((state, key)): State<Shared>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers, &key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (page, limit) = page_of(&query);
    let mut threads: Vec<serde_json::Value> = state.read(|s| {
        s.threads
            .iter()
            .map(|(id, (provider, title))| {
                let last = s.messages.get(id).and_then(|m| m.iter().map(|m| m.3.clone()).max()).unwrap_or_default();
                json!({
                    "id": id, "type": "message_thread",
                    "attributes": {"title": title, "provider": provider, "is_closed": false, "last_message_received_at": last},
                    "relationships": {"booking": {"data": {"id": format!("booking-of-{id}"), "type": "booking"}},
                                      "property": {"data": {"id": "71d34923-a8be-4682-9625-e4a2f080df92", "type": "property"}}}
                })
            })
            .collect()
    });
    threads.sort_by(|a, b| {
        b["attributes"]["last_message_received_at"]
            .as_str()
            .cmp(&a["attributes"]["last_message_received_at"].as_str())
    });
    let total = threads.len();
    let data: Vec<_> = threads.into_iter().skip((page - 1) * limit).take(limit).collect();
    axum::Json(json!({"data": data, "meta": {"page": page, "limit": limit, "total": total}})).into_response()
}

async fn list_messages(
    State((state, key)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers, &key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (page, limit) = page_of(&query);
    let mut messages = state.read(|s| s.messages.get(&id).cloned().unwrap_or_default());
    messages.sort_by(|a, b| b.3.cmp(&a.3));
    let total = messages.len();
    let data: Vec<_> = messages
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|(mid, text, sender, at)| {
            json!({"id": mid, "type": "message",
                   "attributes": {"message": text, "attachments": [], "sender": sender, "inserted_at": at, "updated_at": at},
                   "relationships": {"message_thread": {"data": {"id": id, "type": "message_thread"}}}})
        })
        .collect();
    axum::Json(json!({"data": data, "meta": {"page": page, "limit": limit, "total": total}})).into_response()
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get("user-api-key")
        .is_some_and(|v| v.as_bytes() == key.as_bytes())
}
