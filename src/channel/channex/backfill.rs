//! `ota-relay backfill --source channex`: recovery after an outage longer than Channex's webhook retries.
//! Threads active since `--after` are read through Channex's API (`GET /api/v1/message_threads`, newest activity
//! first) with their messages (`GET /api/v1/message_threads/:id/messages`, newest first), and every message in
//! the range is stored as its webhook would have stored it: same namespace and id, so a message already pushed is
//! not stored or forwarded twice, and running it again changes nothing.

use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{NAMESPACE, threads::Thread};
use crate::channel::Source;
use crate::channel::fields::id_of_value;
use crate::config::ChannexSettings;
use crate::store::{NewMessage, Push, PushContent, PushOutcome, Store, StoreError};

const PAGE: usize = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub threads: usize,
    pub pages: usize,
    pub found: usize,
    pub new: usize,
    pub already_stored: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backfill from Channex: {} thread(s), {} page(s), {} message(s) in range: {} new (stored and queued for the PMS), {} already stored",
            self.threads, self.pages, self.found, self.new, self.already_stored
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("backfill --source channex needs [channex] api_key (Channex's API key)")]
    NoApiKey,
    #[error("Channex's API: {0}")]
    Api(String),
    #[error("cannot store the found messages: {0}")]
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// Channex's timestamps are UTC without a zone (`2021-07-28T04:25:15.000000`).
fn channex_time(text: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

pub async fn run(
    settings: &ChannexSettings,
    store: &Store,
    after_ms: i64,
    before_ms: i64,
    mut progress: impl FnMut(&str),
) -> Result<Report, BackfillError> {
    let key = settings.api_key.as_ref().ok_or(BackfillError::NoApiKey)?;
    let client = crate::http_client::client(std::time::Duration::from_secs(30))
        .map_err(|e| BackfillError::Api(e.to_string()))?;
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", settings.base_url.as_str().trim_end_matches('/'));
        async move {
            let response = client
                .get(url)
                .header("user-api-key", key.expose())
                .send()
                .await
                .map_err(|e| BackfillError::Api(crate::http_client::chain(&e.without_url())))?;
            let status = response.status();
            let body = crate::http_client::read_limited(response, crate::http_client::MAX_ANSWER_BYTES)
                .await
                .map_err(|e| BackfillError::Api(e.to_string()))?;
            if !status.is_success() {
                let said = crate::channel::reply::reason_in(&body).unwrap_or_default();
                return Err(BackfillError::Api(format!("HTTP {} {said}", status.as_u16())));
            }
            Ok(body)
        }
    };
    let mut report = Report::default();
    for page in 1.. {
        let body = get(format!(
            "/api/v1/message_threads?pagination[page]={page}&pagination[limit]={PAGE}&order[last_message_received_at]=desc"
        ))
        .await?;
        report.pages += 1;
        let threads: Page<'_> =
            serde_json::from_slice(&body).map_err(|e| BackfillError::Api(format!("an unreadable thread list: {e}")))?;
        let mut older_than_range = false;
        for item in &threads.data {
            let value: serde_json::Value = serde_json::from_str(item.get()).unwrap_or_default();
            let Some(id) = id_of_value(&value["id"]) else { continue };
            let last = value["attributes"]["last_message_received_at"]
                .as_str()
                .and_then(channex_time);
            if last.is_some_and(|at| at < after_ms) {
                older_than_range = true;
                break;
            }
            report.threads += 1;
            let thread = Thread {
                provider: value["attributes"]["provider"].as_str().map(str::to_owned),
                title: value["attributes"]["title"].as_str().map(str::to_owned),
            };
            let booking = id_of_value(&value["relationships"]["booking"]["data"]["id"]);
            let property = id_of_value(&value["relationships"]["property"]["data"]["id"]);
            let pushes = messages_of(&get, &id, &thread, booking, property, after_ms, before_ms, &mut report).await?;
            report.found += pushes.len();
            if pushes.is_empty() {
                continue;
            }
            for outcome in store.commit_pushes_now(pushes).await? {
                match outcome {
                    PushOutcome::Stored => report.new += 1,
                    _ => report.already_stored += 1,
                }
            }
            progress(&format!("thread {id}: {} message(s) so far", report.found));
        }
        if older_than_range || threads.data.len() < PAGE {
            break;
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn messages_of<F, Fut>(
    get: &F,
    thread_id: &str,
    thread: &Thread,
    booking: Option<String>,
    property: Option<String>,
    after_ms: i64,
    before_ms: i64,
    report: &mut Report,
) -> Result<Vec<Push>, BackfillError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, BackfillError>>,
{
    let mut pushes = Vec::new();
    for page in 1.. {
        let body = get(format!(
            "/api/v1/message_threads/{thread_id}/messages?pagination[page]={page}&pagination[limit]={PAGE}"
        ))
        .await?;
        report.pages += 1;
        let messages: Page<'_> = serde_json::from_slice(&body)
            .map_err(|e| BackfillError::Api(format!("an unreadable message list: {e}")))?;
        let mut done = messages.data.len() < PAGE;
        for item in &messages.data {
            let value: serde_json::Value = serde_json::from_str(item.get()).unwrap_or_default();
            let a = &value["attributes"];
            let Some(at) = a["inserted_at"].as_str().and_then(channex_time) else {
                continue;
            };
            if at < after_ms {
                done = true;
                break;
            }
            let Some(id) = id_of_value(&value["id"]) else { continue };
            if at > before_ms {
                continue;
            }
            let sender = a["sender"].as_str().map(str::to_lowercase);
            let message = NewMessage {
                message_id: id,
                conversation_id: Some(thread_id.to_owned()),
                conversation_type: None,
                conversation_reference: booking.clone(),
                property_id: property.clone(),
                sender_id: None,
                sender_name: thread.title.clone().filter(|_| sender.as_deref() == Some("guest")),
                sender_role: sender,
                content: a["message"].as_str().map(str::to_owned),
                attachment_ids: a["attachments"]
                    .as_array()
                    .map(|list| list.iter().filter_map(id_of_value).collect())
                    .unwrap_or_default(),
                sent_at: a["inserted_at"].as_str().map(str::to_owned),
                raw: item.get().to_owned(),
                raw_exact: None,
            };
            pushes.push(Push {
                source: Source::Channex.name(),
                content: PushContent::Message {
                    namespace: NAMESPACE.to_owned(),
                    ota: thread
                        .provider
                        .as_deref()
                        .and_then(crate::channel::ota_name)
                        .map(str::to_owned),
                    push_id: None,
                    message: Box::new(message),
                },
            });
        }
        if done {
            break;
        }
    }
    Ok(pushes)
}
