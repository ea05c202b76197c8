//! `GET /inbox/events`: Server-Sent Events of the changes a page should show, from the change after the one the
//! page reflects (`after`, or `Last-Event-ID` when the browser reconnects), so nothing between the page's render
//! and the stream, or during a reconnect, is missed. Each event is `change` with the thread and the kind; the
//! page re-reads itself. Streams end when the daemon stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;

use super::Staff;
use crate::store::changes;
use crate::web::api::Api;

/// How often the store is looked at for new changes: what "within a second" rests on.
const LOOK_EVERY: Duration = Duration::from_millis(250);

pub async fn events(State(api): State<Api>, staff: Staff, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = resumed
        .or_else(|| get("after").and_then(|a| a.parse().ok()))
        .unwrap_or(0);
    let thread = get("thread");
    Sse::new(stream(api, staff.scope, after, thread))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(
    api: Api,
    scope: Option<Vec<String>>,
    after: i64,
    thread: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (after, Vec::<changes::Change>::new()),
        move |(mut after, mut queued)| {
            let (api, scope, thread) = (api.clone(), scope.clone(), thread.clone());
            async move {
                loop {
                    if let Some(change) = queued.pop() {
                        after = after.max(change.id);
                        let data = serde_json::json!({ "thread": change.thread_id, "kind": change.kind }).to_string();
                        let event = Event::default().event("change").id(change.id.to_string()).data(data);
                        return Some((Ok(event), (after, queued)));
                    }
                    let (scope, since) = (scope.clone(), after);
                    let found = api
                        .readers()
                        .read(move |conn| Ok(changes::since(conn, since, scope.as_deref(), 100)?))
                        .await
                        .unwrap_or_default();
                    let highest = found.last().map(|c| c.id);
                    let mut wanted: Vec<changes::Change> = found
                        .into_iter()
                        .filter(|c| thread.as_ref().is_none_or(|t| *t == c.thread_id))
                        .collect();
                    if wanted.is_empty() {
                        // Changes of other threads move the cursor on without an event.
                        after = highest.unwrap_or(after).max(after);
                        tokio::select! {
                            _ = tokio::time::sleep(LOOK_EVERY) => continue,
                            _ = api.stopping() => return None,
                        }
                    }
                    wanted.reverse();
                    queued = wanted;
                }
            }
        },
    )
}
