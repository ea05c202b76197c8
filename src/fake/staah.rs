//! A fake of STAAH's reply endpoint (`POST /SUAPI/jservice/messagingAB`, as its documentation names it) over real
//! HTTP on 127.0.0.1: records each reply's body and its Basic credentials, and answers as STAAH does
//! (`{"status": "Success", ...}`), or as scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::observed::Observed;

/// What the next reply meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaahAnswer {
    /// `{"status": "Fail", "response": text}` with 200, as STAAH answers a refused reply.
    Fail(String),
    /// This status, bare.
    Status(u16),
}

#[derive(Debug, Default)]
pub struct StaahState {
    /// Each reply's body (parsed) and its Authorization header, in order.
    pub replies: Vec<(serde_json::Value, Option<String>)>,
    /// Replies answered Success.
    pub accepted: u64,
    pub scripted: VecDeque<StaahAnswer>,
}

pub struct FakeStaah {
    state: Arc<Observed<StaahState>>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl FakeStaah {
    pub async fn start() -> std::io::Result<FakeStaah> {
        let state = Arc::new(Observed::new(StaahState::default()));
        let app = Router::new()
            .route("/SUAPI/jservice/messagingAB", axum::routing::post(reply))
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let addr = crate::web::serve_on_loopback(app, stop.clone()).await?;
        Ok(FakeStaah { state, addr, stop })
    }

    pub fn reply_url(&self) -> String {
        format!("http://{}/SUAPI/jservice/messagingAB", self.addr)
    }

    pub fn answer_next(&self, answer: StaahAnswer) {
        self.state.mutate(|s| s.scripted.push_back(answer));
    }

    pub fn read<R>(&self, f: impl FnOnce(&StaahState) -> R) -> R {
        self.state.read(f)
    }

    pub async fn wait_for(&self, predicate: impl FnMut(&StaahState) -> bool) {
        self.state.wait_for(predicate).await
    }
}

impl Drop for FakeStaah {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn reply(
    State(state): State<Arc<Observed<StaahState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let scripted = state.mutate(|s| {
        s.replies.push((value, authorization));
        let next = s.scripted.pop_front();
        if next.is_none() {
            s.accepted += 1;
        }
        next
    });
    match scripted {
        None => axum::Json(json!({
            "status": "Success",
            "response": "Successfully posted",
            "ota_tracking_id": uuid::Uuid::new_v4().to_string()
        }))
        .into_response(),
        Some(StaahAnswer::Fail(text)) => axum::Json(json!({ "status": "Fail", "response": text })).into_response(),
        Some(StaahAnswer::Status(status)) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}
