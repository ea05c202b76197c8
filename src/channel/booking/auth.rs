//! Machine-account authentication: HTTP Basic, or token exchange (Booking.com is retiring Basic for machine
//! accounts).
//!
//! Token exchange: `POST token_url {"client_id","client_secret"}` answers `{"jwt","ruid"}`; the jwt is sent as a
//! Bearer token. It is opaque to us (never decoded): it is assumed to live one hour unless the answer says
//! otherwise (an `expires_in` in seconds, not documented but honoured), renewed shortly before that, and at once
//! when the API rejects a token it accepted before. An account may create at most 30 tokens per rolling hour; the
//! store keeps the time of every exchange so that no restart or crash loop exceeds that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::config::Secret;
use crate::http_client;
use crate::metrics::Metrics;
use crate::store::{Millis, Reservation, Store, StoreError, now_ms};

pub const TOKENS_PER_HOUR: usize = 30;
const HOUR: Duration = Duration::from_secs(3600);
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);
/// A token refused within this time of its exchange, before any request got through, was never valid.
const JUST_ISSUED: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "token exchange quota reached ({used} tokens in the last hour, the account's limit is {TOKENS_PER_HOUR}); \
         waiting until {} before exchanging again", until.rfc3339()
    )]
    QuotaExhausted { until: Millis, used: usize },
    #[error(
        "token exchange rejected the credentials (HTTP {status}): check booking.client_id and booking.client_secret"
    )]
    Rejected { status: u16 },
    #[error("token exchange failed: {0}")]
    Exchange(String),
    #[error("token exchange: {0}")]
    Store(#[from] StoreError),
}

impl AuthError {
    pub fn is_credentials(&self) -> bool {
        matches!(self, AuthError::Rejected { .. })
    }
}

/// What to do after the API answered 401 to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The token had worked before, so it expired early: it was dropped; retry at once with a new one.
    Renew,
    /// The credentials themselves are refused; retrying soon will not help.
    Credentials,
}

/// An `Authorization` header value, and for tokens, the token it came from.
pub struct Credential {
    pub header: HeaderValue,
    token: Option<Arc<IssuedToken>>,
}

impl Credential {
    /// The API accepted this credential (so a later 401 means expiry, not bad credentials).
    pub fn accepted(&self) {
        if let Some(token) = &self.token {
            token.accepted.store(true, Ordering::Relaxed);
        }
    }
}

struct IssuedToken {
    header: HeaderValue,
    issued_at: Instant,
    renew_at: Instant,
    accepted: AtomicBool,
}

pub enum Auth {
    Basic(HeaderValue),
    Token(TokenAuth),
}

pub struct TokenAuth {
    client_id: String,
    client_secret: Secret,
    token_url: Url,
    http: reqwest::Client,
    store: Store,
    current: tokio::sync::Mutex<Option<Arc<IssuedToken>>>,
    metrics: Metrics,
}

impl Auth {
    pub fn basic(username: &str, password: &Secret) -> Auth {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()));
        // base64 is always a valid header value.
        Auth::Basic(sensitive(&format!("Basic {encoded}")).expect("base64 is ASCII"))
    }

    /// Exchanges are timed into `metrics` (`operation="token"`).
    pub fn token(
        client_id: &str,
        client_secret: &Secret,
        token_url: Url,
        http: reqwest::Client,
        store: Store,
        metrics: Metrics,
    ) -> Auth {
        Auth::Token(TokenAuth {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            token_url,
            http,
            store,
            current: tokio::sync::Mutex::new(None),
            metrics,
        })
    }

    pub async fn credential(&self) -> Result<Credential, AuthError> {
        match self {
            Auth::Basic(header) => Ok(Credential {
                header: header.clone(),
                token: None,
            }),
            Auth::Token(t) => t.credential().await,
        }
    }

    /// Called when the API answered 401 to `credential`. The token is dropped either way: the next request
    /// exchanges again (within the hourly quota) rather than presenting a refused token once more.
    pub async fn rejected(&self, credential: &Credential) -> Rejection {
        let (Auth::Token(t), Some(token)) = (self, &credential.token) else {
            return Rejection::Credentials;
        };
        {
            let mut current = t.current.lock().await;
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
                *current = None;
            }
        }
        // Refused right after its exchange, before any request got through: the account, not the token's age,
        // is the problem. Any other 401 (a token accepted before, or one that waited through an outage unused)
        // is an expired token: renew at once.
        let just_issued = token.issued_at.elapsed() < JUST_ISSUED;
        if just_issued && !token.accepted.load(Ordering::Relaxed) {
            Rejection::Credentials
        } else {
            Rejection::Renew
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    jwt: String,
    expires_in: Option<u64>,
}

impl TokenAuth {
    async fn credential(&self) -> Result<Credential, AuthError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(Credential {
                header: token.header.clone(),
                token: Some(token.clone()),
            });
        }
        *current = None;
        match self
            .store
            .reserve_token_exchange(now_ms(), HOUR, TOKENS_PER_HOUR)
            .await?
        {
            Reservation::Granted => {}
            Reservation::Exhausted { until, used } => {
                return Err(AuthError::QuotaExhausted { until, used });
            }
        }
        let started = Instant::now();
        let body = serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
        });
        let response = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        self.metrics.request("booking", "token", started.elapsed());
        let response = response.map_err(|e| AuthError::Exchange(http_client::chain(&e)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST {
            return Err(AuthError::Rejected {
                status: status.as_u16(),
            });
        }
        let bytes = http_client::read_limited(response, 64 * 1024)
            .await
            .map_err(|e| AuthError::Exchange(e.to_string()))?;
        if !status.is_success() {
            let ruid = crate::channel::booking::wire::ruid_of(&bytes);
            return Err(AuthError::Exchange(format!(
                "HTTP {}{}",
                status.as_u16(),
                ruid.map(|r| format!(" (ruid {r})")).unwrap_or_default()
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Exchange(format!("unexpected answer (no jwt?): {e}")))?;
        if answer.jwt.is_empty() {
            return Err(AuthError::Exchange("the answer's jwt is empty".into()));
        }
        let lifetime = answer.expires_in.map(Duration::from_secs).unwrap_or(ASSUMED_LIFETIME);
        let header = sensitive(&format!("Bearer {}", answer.jwt))
            .ok_or_else(|| AuthError::Exchange("the answer's jwt is not a valid header value".into()))?;
        let token = Arc::new(IssuedToken {
            header,
            issued_at: Instant::now(),
            renew_at: started + lifetime.saturating_sub(renewal_margin(lifetime)),
            accepted: AtomicBool::new(false),
        });
        tracing::info!(lifetime_s = lifetime.as_secs(), "obtained a new Booking.com token");
        *current = Some(token.clone());
        Ok(Credential {
            header: token.header.clone(),
            token: Some(token),
        })
    }
}

/// Renew a tenth of the lifetime early, at most five minutes: clocks drift and requests take time.
pub fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}
