//! A thread's provider and title, read once from Channex (`GET {base_url}/api/v1/message_threads/:id`, header
//! `user-api-key`) and then kept: a thread's OTA never changes, and a push should not wait on Channex twice.
//!
//! A failed lookup never costs the message: it is stored with `provider` null (and the lookup tried again for
//! the thread's next message), because an answer 5xx would only make Channex resend into the same failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::config::Secret;

/// Threads remembered at most; past it the cache starts over (a lookup per thread again, nothing lost).
const REMEMBERED: usize = 10_000;
/// A push waits this long for the thread at most.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Thread {
    pub provider: Option<String>,
    pub title: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    attributes: Thread,
}

pub struct Threads {
    client: reqwest::Client,
    base_url: Url,
    api_key: Secret,
    known: Mutex<HashMap<String, Thread>>,
}

impl Threads {
    pub fn new(base_url: Url, api_key: Secret) -> Result<Threads, reqwest::Error> {
        Ok(Threads {
            client: crate::http_client::client(LOOKUP_TIMEOUT)?,
            base_url,
            api_key,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The thread, or `None` when Channex cannot tell now (logged, with why).
    pub async fn lookup(&self, id: &str) -> Option<Thread> {
        if let Some(thread) = self.known.lock().expect("threads lock").get(id) {
            return Some(thread.clone());
        }
        match self.fetch(id).await {
            Ok(thread) => {
                let mut known = self.known.lock().expect("threads lock");
                if known.len() >= REMEMBERED {
                    known.clear();
                }
                known.insert(id.to_owned(), thread.clone());
                Some(thread)
            }
            Err(problem) => {
                tracing::warn!(
                    thread = id,
                    problem,
                    "cannot read a Channex thread; its message is stored without its provider"
                );
                None
            }
        }
    }

    async fn fetch(&self, id: &str) -> Result<Thread, String> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| "channex.base_url cannot take a path".to_owned())?
            .pop_if_empty()
            .extend(["api", "v1", "message_threads", id]);
        let response = self
            .client
            .get(url)
            .header("user-api-key", self.api_key.expose())
            .send()
            .await
            .map_err(|e| crate::http_client::chain(&e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "Channex answered {status} (check channex.api_key and that the property has the messages app)"
            ));
        }
        let body = crate::http_client::read_limited(response, MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.data.attributes)
            .map_err(|e| {
                format!(
                    "an unreadable thread: {}",
                    crate::channel::booking::wire::without_values(&e.to_string())
                )
            })
    }
}
