//! HTTP client for the Booking.com Messaging API queue.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::auth::{Auth, AuthError, Rejection};
use super::search_wire::{self, SearchJob, SearchResult};
use super::wire::{self, LatestAnswer, WireError};
use crate::config::{BookingAuth, BookingSettings};
use crate::http_client::{self, BodyError, MAX_ANSWER_BYTES};
use crate::metrics::Metrics;
use crate::store::{ConfirmCount, Store};

pub const OP_FETCH: &str = "GET /messaging/messages/latest";
pub const OP_CONFIRM: &str = "PUT /messaging/messages";
pub const OP_SEARCH: &str = "GET /messaging/messages/search";
pub const OP_SEARCH_RESULT: &str = "GET /messaging/messages/search/result";
/// The Messaging API version these wire types follow.
const ACCEPT_VERSION: &str = "1.2";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{op}: {detail}")]
    Transport {
        op: &'static str,
        detail: String,
        timeout: bool,
    },
    #[error("{op}: HTTP {status}{}", ruid_suffix(.ruid))]
    Status {
        op: &'static str,
        status: u16,
        retry_after: Option<Duration>,
        ruid: Option<String>,
    },
    #[error(
        "{op}: HTTP {status}: Booking.com refused the machine account's credentials or rights{}; \
         check the booking.* credential keys and the account's Messaging API access", ruid_suffix(.ruid)
    )]
    Unauthorized {
        op: &'static str,
        status: u16,
        ruid: Option<String>,
    },
    #[error("{op}: unusable answer (HTTP {status}): {reason}{}", ruid_suffix(.ruid))]
    Malformed {
        op: &'static str,
        status: u16,
        reason: String,
        ruid: Option<String>,
    },
    #[error("{op}: Booking.com reported a failure: {summary}{}", ruid_suffix(.ruid))]
    Api {
        op: &'static str,
        summary: String,
        ruid: Option<String>,
    },
    #[error("{op}: {source}")]
    Body { op: &'static str, source: BodyError },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

fn ruid_suffix(ruid: &Option<String>) -> String {
    ruid.as_ref().map(|r| format!(" (ruid {r})")).unwrap_or_default()
}

impl FetchError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A failure that waiting briefly will not fix: retry only at the backoff cap.
    pub fn is_credentials(&self) -> bool {
        match self {
            FetchError::Unauthorized { .. } => true,
            FetchError::Auth(e) => e.is_credentials(),
            _ => false,
        }
    }

    /// A short, stable name for "the same failure again" (persisting-failure detection, logs, systemd status).
    pub fn kind(&self) -> FailureKind {
        let (what, status) = match self {
            FetchError::Transport { timeout: true, .. } => ("timeout", None),
            FetchError::Transport { .. } => ("connection", None),
            FetchError::Status { status, .. } => ("http", Some(*status)),
            FetchError::Unauthorized { .. } => ("unauthorized", None),
            FetchError::Malformed { .. } => ("malformed", None),
            FetchError::Api { .. } => ("api_error", None),
            FetchError::Body {
                source: BodyError::TooLarge { .. },
                ..
            } => ("too_large", None),
            FetchError::Body { .. } => ("connection", None),
            FetchError::Auth(AuthError::QuotaExhausted { .. }) => ("token_quota", None),
            FetchError::Auth(_) => ("token_exchange", None),
        };
        FailureKind {
            confirm: false,
            what,
            status,
        }
    }
}

/// What kind of failure a drain attempt met, without allocating: `http_503`, `confirm_timeout`, `store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureKind {
    /// The batch was stored, and its confirm failed.
    pub confirm: bool,
    pub what: &'static str,
    pub status: Option<u16>,
}

impl FailureKind {
    pub const fn named(what: &'static str) -> FailureKind {
        FailureKind {
            confirm: false,
            what,
            status: None,
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.confirm {
            f.write_str("confirm_")?;
        }
        f.write_str(self.what)?;
        match self.status {
            Some(status) => write!(f, "_{status}"),
            None => Ok(()),
        }
    }
}

/// Why a Booking.com client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the Booking.com HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    NoCredentials(#[from] crate::config::NoCredentials),
}

pub struct BookingClient {
    pub(super) http: reqwest::Client,
    /// `base_url` without its trailing slash.
    pub(super) base: String,
    latest_url: Url,
    confirm_url: Url,
    search_url: Url,
    pub(super) auth: Auth,
}

impl std::fmt::Debug for BookingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookingClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What `GET /messaging/messages/search` looks for. Times are ISO 8601 UTC with milliseconds, both inclusive.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub after: String,
    pub before: String,
    pub property_id: Option<String>,
    pub order_by: Option<String>,
}

impl BookingClient {
    /// Token exchanges are timed into `metrics` (the other requests are timed by the drain loop).
    pub fn new(settings: &BookingSettings, store: Store, metrics: Metrics) -> Result<BookingClient, ClientError> {
        let http = http_client::client(settings.request_timeout)?;
        let base = settings.base_url.as_str().trim_end_matches('/');
        let endpoint = |path: &str| Url::parse(&format!("{base}{path}")).expect("base_url was validated as a URL");
        let auth = match settings.credentials()? {
            BookingAuth::Basic { username, password } => Auth::basic(username, password),
            BookingAuth::Token {
                client_id,
                client_secret,
                token_url,
            } => Auth::token(
                client_id,
                client_secret,
                token_url.clone(),
                http.clone(),
                store,
                metrics,
            ),
        };
        Ok(BookingClient {
            base: base.to_owned(),
            latest_url: endpoint("/messaging/messages/latest"),
            confirm_url: endpoint("/messaging/messages"),
            search_url: endpoint("/messaging/messages/search"),
            http,
            auth,
        })
    }

    /// `GET /messaging/messages/latest`: up to 100 messages from the head of the queue.
    pub async fn fetch_latest(&self) -> Result<LatestAnswer, FetchError> {
        let (status, body) = self.get(OP_FETCH, self.latest_url.clone()).await?;
        wire::parse_latest(&body).map_err(|e| wire_error(OP_FETCH, status, e))
    }

    /// `GET /messaging/messages/search`: starts a search job (the results come from [`Self::search_result`]).
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchJob, FetchError> {
        let mut url = self.search_url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("after", &query.after)
                .append_pair("before", &query.before);
            if let Some(p) = &query.property_id {
                pairs.append_pair("property_id", p);
            }
            if let Some(o) = &query.order_by {
                pairs.append_pair("order_by", o);
            }
        }
        let (status, body) = self.get(OP_SEARCH, url).await?;
        search_wire::parse_search_job(&body).map_err(|e| wire_error(OP_SEARCH, status, e))
    }

    /// `GET /messaging/messages/search/result/{job_id}[?page_id=…]`. An expired job (48 hours) is HTTP 410.
    pub async fn search_result(&self, job_id: &str, page_id: Option<&str>) -> Result<SearchResult, FetchError> {
        let mut url = self.search_url.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has path segments")
            .push("result")
            .push(job_id);
        if let Some(page) = page_id {
            url.query_pairs_mut().append_pair("page_id", page);
        }
        let (status, body) = self.get(OP_SEARCH_RESULT, url).await?;
        search_wire::parse_search_result(&body).map_err(|e| wire_error(OP_SEARCH_RESULT, status, e))
    }

    /// An idempotent GET: a 401 on an expired token is retried once with a fresh token.
    pub(super) async fn get(&self, op: &'static str, url: Url) -> Result<(StatusCode, Vec<u8>), FetchError> {
        let mut renewed = false;
        loop {
            let credential = self.auth.credential().await?;
            let request = self.http.get(url.clone());
            let response = self.send(op, request, &credential.header).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && self.auth.rejected(&credential).await == Rejection::Renew
                && !renewed
            {
                renewed = true;
                tracing::info!("Booking.com refused an expired token; renewing it");
                continue;
            }
            let body = self.checked_body(op, response).await?;
            credential.accepted();
            return Ok((status, body));
        }
    }

    /// `PUT /messaging/messages?number_of_messages=N`: removes N messages from the head of the queue, for good.
    ///
    /// Sent at most once per fetched answer: any failure here leaves the outcome unknown to the caller, who must
    /// fetch again rather than repeat it (see [`crate::drain`]). A 401 is not retried here either.
    pub async fn confirm(&self, count: ConfirmCount) -> Result<Option<String>, FetchError> {
        let credential = self.auth.credential().await?;
        let mut url = self.confirm_url.clone();
        url.query_pairs_mut()
            .append_pair("number_of_messages", &count.get().to_string());
        let request = self.http.put(url);
        let response = self.send(OP_CONFIRM, request, &credential.header).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let _ = self.auth.rejected(&credential).await;
        }
        let status = response.status();
        let body = self.checked_body(OP_CONFIRM, response).await?;
        credential.accepted();
        wire::parse_confirm(&body).map_err(|e| wire_error(OP_CONFIRM, status, e))
    }

    pub(super) async fn send(
        &self,
        op: &'static str,
        request: reqwest::RequestBuilder,
        authorization: &reqwest::header::HeaderValue,
    ) -> Result<reqwest::Response, FetchError> {
        request
            .header(AUTHORIZATION, authorization.clone())
            .header(ACCEPT, "application/json")
            .header("Accept-version", ACCEPT_VERSION)
            .send()
            .await
            .map_err(|e| FetchError::Transport {
                op,
                timeout: e.is_timeout(),
                detail: http_client::chain(&e),
            })
    }

    /// The body of a 2xx JSON answer; every other answer becomes the matching error.
    pub(super) async fn checked_body(
        &self,
        op: &'static str,
        response: reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        let status = response.status();
        let retry_after = http_client::retry_after(response.headers());
        let is_html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/html"));
        let body = http_client::read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|source| match source {
                BodyError::Read(ref e) => FetchError::Transport {
                    op,
                    timeout: e.is_timeout(),
                    detail: source.to_string(),
                },
                source => FetchError::Body { op, source },
            })?;
        let ruid = || wire::ruid_of(&body);
        let code = status.as_u16();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FetchError::Unauthorized {
                op,
                status: code,
                ruid: ruid(),
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                op,
                status: code,
                retry_after,
                ruid: ruid(),
            });
        }
        if is_html {
            return Err(FetchError::Malformed {
                op,
                status: code,
                reason: "an HTML page instead of JSON (a proxy or maintenance page?)".into(),
                ruid: None,
            });
        }
        Ok(body)
    }
}

fn wire_error(op: &'static str, status: StatusCode, e: WireError) -> FetchError {
    match e {
        WireError::Api { summary, ruid } => FetchError::Api { op, summary, ruid },
        other => FetchError::Malformed {
            op,
            status: status.as_u16(),
            reason: other.to_string(),
            ruid: None,
        },
    }
}
