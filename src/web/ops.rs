//! The operations surface on `[http] listen`: `GET /healthz` and `GET /metrics`. Both read the store on a connection of their own (as
//! `ota-relay status` does), so a scrape never queues behind the drain loop's commits or a housekeeping job.

use std::path::PathBuf;

use crate::metrics::{self, Metrics};
use crate::ops::status::{self, Thresholds};
use crate::store::{self, StoreError, now_ms};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

#[derive(Clone)]
struct Shared {
    store_path: PathBuf,
    metrics: Metrics,
    thresholds: Thresholds,
}

pub fn router(store_path: PathBuf, metrics: Metrics, thresholds: Thresholds) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape))
        .with_state(Shared {
            store_path,
            metrics,
            thresholds,
        })
}

/// 200 when `ota-relay status` would say healthy; 503 with its problems otherwise (same default thresholds).
async fn healthz(State(shared): State<Shared>) -> Response {
    let path = shared.store_path.clone();
    let read = tokio::task::spawn_blocking(move || status::problems_now(&path, shared.thresholds)).await;
    match read {
        Ok(Ok((problems, pushes))) => {
            let (code, mut body) = if problems.is_empty() {
                (StatusCode::OK, json!({ "status": "healthy" }))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "status": "degraded", "problems": problems }),
                )
            };
            // Only where something pushes: a pull-only relay answers as it always has.
            if !pushes.is_empty() {
                body["pushes"] = json!(pushes);
            }
            (code, axum::Json(body)).into_response()
        }
        Ok(Err(e)) => unreadable(&crate::http_client::chain(&e)),
        Err(e) => unreadable(&e.to_string()),
    }
}

fn unreadable(error: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "unreadable", "problems": [format!("the store cannot be read: {error}")] })),
    )
        .into_response()
}

async fn scrape(State(shared): State<Shared>) -> Response {
    let path = shared.store_path.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let conn = store::open_for_tools(&path)?;
        Ok((
            crate::store::deliveries::summary(&conn)?,
            crate::store::push_stats::all(&conn)?,
            crate::store::replies::counts(&conn)?.by_state,
        ))
    })
    .await;
    match read {
        Ok(Ok((outbox, pushes, replies))) => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            shared.metrics.encode_with(&outbox, &pushes, &replies, now_ms()),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be read: {}\n", crate::http_client::chain(&e)),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
