//! HTTP client plumbing shared by every outbound peer (OTAs, the PMS webhook).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

pub const USER_AGENT: &str = concat!("ota-relay/", env!("CARGO_PKG_VERSION"));

/// Answers above this are refused while reading, never buffered whole (100 messages of 20 KB are ~2 MB).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Longest `Retry-After` honoured; a peer asking for more is retried after this (and the log says so).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A client with connection reuse, gzip, the environment's proxy variables (reqwest's default), no redirects
/// (a redirect from an API is an error to report, not to follow) and an overall per-request timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("answer exceeds {limit} bytes; refused")]
    TooLarge { limit: usize },
    #[error("answer body could not be read: {}", chain(.0))]
    Read(#[source] reqwest::Error),
}

/// Reads a body chunk by chunk, refusing it as soon as it grows past `limit` (decompressed size counts).
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(16 * 1024).min(1 << 20) as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let delta = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(delta.max(0) as u64)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The webhook URL without userinfo or query (either may carry a token).
pub fn redacted(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.path()
    )
}
