//! The receiver on `[receive] listen`: every push source's endpoint, with what they share — who the caller is
//! (behind trusted proxies), authentication failures counted and limited, the body read within its limit and
//! its time, and the store's answer turned into the sender's.
//!
//! Invariant: a push is answered 2xx only after [`Ingest::submit`] returned, i.e. after its commit; every other
//! answer means nothing of it was stored except, for an authenticated body that cannot be understood, its
//! bytes in quarantine (answered 400 only once they are committed too).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::mpsc;

use crate::channel::booking::oauth::TokenIssuer;
use crate::channel::channex::threads::Threads;
use crate::channel::{self, Source};
use crate::config::{Secret, Settings, StaahSettings};
use crate::daemon::Fatal;
use crate::metrics::Metrics;
use crate::store::{Ingest, Push, PushOutcome, StoreError};

/// A whole request body must arrive within this (a slow sender holds a connection slot meanwhile).
const BODY_READ: Duration = Duration::from_secs(30);
/// Failed authentications a peer may make within [`FAILURE_WINDOW`] before it is refused for [`BLOCKED_FOR`].
const MAX_FAILURES: u32 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const BLOCKED_FOR: Duration = Duration::from_secs(60);
/// Peers the limiter remembers; past it, those whose window has ended are forgotten.
const REMEMBERED_PEERS: usize = 10_000;
/// What a sender is told to wait when the store cannot commit.
const STORE_RETRY_AFTER: u64 = 30;

/// Every push source's credentials, re-read on SIGHUP.
pub struct Sources {
    pub booking: Option<TokenIssuer>,
    pub staah: Option<StaahSettings>,
    pub channex: Option<ChannexHook>,
}

pub struct ChannexHook {
    pub header: HeaderName,
    pub secret: Secret,
    pub threads: Option<Threads>,
}

impl Sources {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Sources> {
        let channex = match &settings.channex {
            Some(c) => Some(ChannexHook {
                header: HeaderName::from_bytes(c.webhook_header.as_bytes())?,
                secret: c.webhook_secret.clone(),
                threads: match &c.api_key {
                    Some(key) => Some(Threads::new(c.base_url.clone(), key.clone())?),
                    None => None,
                },
            }),
            None => None,
        };
        Ok(Sources {
            booking: settings.notifications().map(TokenIssuer::new),
            staah: settings.staah.clone(),
            channex,
        })
    }
}

/// What a reload may change without closing the socket.
struct Policy {
    sources: Arc<Sources>,
    trusted_proxies: Vec<IpAddr>,
    max_body: usize,
}

/// The state every handler is given. Cheap to clone.
#[derive(Clone)]
pub struct Receiver(Arc<Inner>);

struct Inner {
    ingest: Ingest,
    policy: RwLock<Policy>,
    limiter: Limiter,
    metrics: Metrics,
    fatal: mpsc::UnboundedSender<Fatal>,
}

impl Receiver {
    pub fn new(
        settings: &Settings,
        ingest: Ingest,
        metrics: Metrics,
        fatal: mpsc::UnboundedSender<Fatal>,
    ) -> anyhow::Result<Receiver> {
        let policy = Receiver::policy(settings)?;
        Ok(Receiver(Arc::new(Inner {
            ingest,
            policy: RwLock::new(policy),
            limiter: Limiter::default(),
            metrics,
            fatal,
        })))
    }

    fn policy(settings: &Settings) -> anyhow::Result<Policy> {
        let receive = settings.receive.as_ref();
        Ok(Policy {
            sources: Arc::new(Sources::from_settings(settings)?),
            trusted_proxies: receive.map(|r| r.trusted_proxies.clone()).unwrap_or_default(),
            max_body: receive.map_or(1024 * 1024, |r| r.max_body_bytes),
        })
    }

    /// SIGHUP: new credentials apply to the next request; requests being read finish with the old ones.
    pub fn reload(&self, settings: &Settings) -> anyhow::Result<()> {
        let policy = Receiver::policy(settings)?;
        *self.0.policy.write().expect("policy lock") = policy;
        Ok(())
    }

    pub fn ingest(&self) -> &Ingest {
        &self.0.ingest
    }

    /// Checks the caller and reads the body of a request for `source`. `authenticate` sees the current
    /// credentials and the request's headers, and compares in constant time.
    pub async fn admit(
        &self,
        source: Source,
        request: Request,
        authenticate: impl FnOnce(&Sources, &HeaderMap) -> Auth,
    ) -> Result<Admitted, Rejection> {
        self.read(source, request, authenticate, usize::MAX).await
    }

    /// As [`Receiver::admit`] for a request whose credentials are in its body (at most `limit` bytes): the
    /// handler authenticates, and calls [`Receiver::refuse`] on failure.
    pub async fn open(
        &self,
        source: Source,
        request: Request,
        configured: impl FnOnce(&Sources) -> bool,
        limit: usize,
    ) -> Result<Admitted, Rejection> {
        let check = |sources: &Sources, _: &HeaderMap| {
            if configured(sources) {
                Auth::Passed
            } else {
                Auth::NotConfigured
            }
        };
        self.read(source, request, check, limit).await
    }

    async fn read(
        &self,
        source: Source,
        request: Request,
        authenticate: impl FnOnce(&Sources, &HeaderMap) -> Auth,
        limit: usize,
    ) -> Result<Admitted, Rejection> {
        let (parts, body) = request.into_parts();
        let (sources, max_body, peer) = {
            let policy = self.0.policy.read().expect("policy lock");
            let peer = caller(&parts.headers, parts.extensions.get(), &policy.trusted_proxies);
            (policy.sources.clone(), policy.max_body.min(limit), peer)
        };
        if let Some(wait) = self.0.limiter.blocked(peer, Instant::now()) {
            self.0.metrics.push(source.name(), "limited");
            return Err(Rejection::too_many(wait));
        }
        match authenticate(&sources, &parts.headers) {
            Auth::Passed => {}
            Auth::NotConfigured => return Err(Rejection::not_found()),
            Auth::Failed(challenge) => return Err(self.refuse(source, peer, challenge)),
        }
        let body = read_body(body, &parts.headers, max_body).await?;
        Ok(Admitted {
            sources,
            peer,
            headers: parts.headers,
            body,
        })
    }

    /// A failed authentication: counted (for status and for the peer's limit), logged without what was
    /// presented, answered without saying what was wrong.
    pub fn refuse(&self, source: Source, peer: IpAddr, challenge: &'static str) -> Rejection {
        self.0.limiter.failed(peer, Instant::now());
        self.0.ingest.count(source.name(), |t| t.refused += 1);
        self.0.metrics.push(source.name(), "refused");
        tracing::warn!(source = source.name(), %peer, "push refused: authentication failed");
        Rejection::unauthorized(challenge)
    }

    /// Commits `push` (sharing the commit with concurrent pushes); `Ok` only once it is durable.
    pub async fn store(&self, push: Push) -> Result<PushOutcome, Rejection> {
        let source = push.source;
        match self.0.ingest.submit(push).await {
            Ok(outcome) => {
                self.0.metrics.push(source, outcome.name());
                Ok(outcome)
            }
            Err(e) => {
                self.0.metrics.push(source, "unavailable");
                if let StoreError::Replaced(_) = e {
                    tracing::error!(error = %e, "stopping: the store must be opened again");
                    let _ = self.0.fatal.send(Fatal::StoreReplaced(e.for_each_caller()));
                } else {
                    tracing::error!(source, error = %e, "cannot store a push; the sender is told to retry");
                }
                Err(Rejection::unavailable())
            }
        }
    }

    /// An event acknowledged and not forwarded (another type than a message).
    pub fn ignored(&self, source: Source, kind: &str) {
        self.0.ingest.count(source.name(), |t| t.ignored += 1);
        self.0.metrics.push(source.name(), "ignored");
        tracing::info!(
            source = source.name(),
            kind,
            "push acknowledged and not forwarded: not a message"
        );
    }
}

/// An authenticated request, its body read.
pub struct Admitted {
    pub sources: Arc<Sources>,
    pub peer: IpAddr,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub enum Auth {
    Passed,
    /// The scheme to name in `WWW-Authenticate`.
    Failed(&'static str),
    /// The source is not configured: its endpoint does not exist.
    NotConfigured,
}

impl Auth {
    pub fn check(passed: bool, challenge: &'static str) -> Auth {
        if passed { Auth::Passed } else { Auth::Failed(challenge) }
    }
}

/// An answer other than success, in the shape its sender reads.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// How a sender reads an answer's body.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `{"error": code, "message": ...}`
    Json,
    /// `{"status": "Fail", "response": ...}`, as STAAH answers itself.
    Staah,
    /// `{"error": code, "error_description": ...}` (RFC 6749 §5.2).
    OAuth,
}

impl Rejection {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: HeaderName, value: String) -> Rejection {
        if let Ok(value) = HeaderValue::try_from(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// Reveals nothing of what was wrong.
    pub fn unauthorized(challenge: &'static str) -> Rejection {
        Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", "authentication failed")
            .with(header::WWW_AUTHENTICATE, format!("{challenge} realm=\"ota-relay\""))
    }

    fn too_many(wait: Duration) -> Rejection {
        Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            "too many failed authentications from this address; retry later",
        )
        .with(header::RETRY_AFTER, wait.as_secs().max(1).to_string())
    }

    fn not_found() -> Rejection {
        Rejection::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// An authenticated body that cannot be understood (its bytes are in quarantine).
    pub fn malformed(problem: &str) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, "malformed", problem)
    }

    fn unavailable() -> Rejection {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the message could not be stored now and was not accepted; retry later",
        )
        .with(header::RETRY_AFTER, STORE_RETRY_AFTER.to_string())
    }

    pub fn render(self, shape: Shape) -> Response {
        let body = match shape {
            Shape::Json => json!({ "error": self.code, "message": self.message }),
            Shape::Staah => json!({ "status": "Fail", "response": self.message }),
            Shape::OAuth => json!({ "error": self.code, "error_description": self.message }),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

impl PushOutcome {
    pub fn name(self) -> &'static str {
        match self {
            PushOutcome::Stored => "stored",
            PushOutcome::Duplicate => "duplicate",
            PushOutcome::Quarantined => "quarantined",
        }
    }
}

/// The routes of every push source (a source that is not configured answers 404, so a reload can add one).
pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .route("/oauth/token", post(channel::booking::push::token))
        .route("/booking/notifications", post(channel::booking::push::notification))
        .route("/staah/messages", post(channel::staah::push::message))
        .route("/channex/webhook", post(channel::channex::push::webhook))
        .fallback(|| async { Rejection::not_found().render(Shape::Json) })
        .with_state(receiver)
}

/// The caller: the connection's peer, or, when that peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not one (the ones before it could be written by the caller itself).
fn caller(headers: &HeaderMap, connected: Option<&ConnectInfo<SocketAddr>>, trusted: &[IpAddr]) -> IpAddr {
    let peer = connected.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

/// Reads the body up to `limit`: a declared length above it is refused before reading, a body that grows past
/// it is refused as soon as it does.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes (receive.max_body_bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::with_capacity(declared.map_or(8 * 1024, |l| l as usize));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|_| Rejection::new(StatusCode::BAD_REQUEST, "unreadable", "the body could not be read"))?;
            if out.len() + chunk.len() > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(BODY_READ, read).await {
        Ok(read) => read,
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the body did not arrive within {}s", BODY_READ.as_secs()),
        )),
    }
}

/// Failed authentications per peer.
#[derive(Default)]
struct Limiter {
    peers: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Limiter {
    /// How long `peer` is still refused, if it is.
    fn blocked(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let peers = self.peers.lock().expect("limiter lock");
        let until = peers.get(&peer)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    fn failed(&self, peer: IpAddr, now: Instant) {
        let mut peers = self.peers.lock().expect("limiter lock");
        if peers.len() >= REMEMBERED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, f| {
                now.duration_since(f.since) < FAILURE_WINDOW || f.blocked_until.is_some_and(|u| u > now)
            });
        }
        let entry = peers.entry(peer).or_insert(Failures {
            since: now,
            count: 0,
            blocked_until: None,
        });
        if now.duration_since(entry.since) >= FAILURE_WINDOW {
            *entry = Failures {
                since: now,
                count: 0,
                blocked_until: None,
            };
        }
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            entry.blocked_until = Some(now + BLOCKED_FOR);
            if entry.count == MAX_FAILURES {
                tracing::warn!(%peer, "{MAX_FAILURES} failed authentications within a minute; refusing this address for a minute");
            }
        }
    }
}

/// The credentials of an `Authorization: Basic` header, if it holds any.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The token of an `Authorization: Bearer` header, if it holds one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_after_twenty_failures_within_a_minute_and_again_admitted_after() {
        let limiter = Limiter::default();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let start = Instant::now();
        for i in 0..MAX_FAILURES - 1 {
            limiter.failed(peer, start + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(limiter.blocked(peer, start + Duration::from_secs(20)), None);
        limiter.failed(peer, start + Duration::from_secs(20));
        assert!(limiter.blocked(peer, start + Duration::from_secs(21)).is_some());
        assert!(limiter.blocked("192.0.2.8".parse().unwrap(), start).is_none());
        assert_eq!(limiter.blocked(peer, start + Duration::from_secs(81)), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_never_block() {
        let limiter = Limiter::default();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let start = Instant::now();
        for i in 0..100 {
            limiter.failed(peer, start + Duration::from_secs(4 * i));
            assert_eq!(
                limiter.blocked(peer, start + Duration::from_secs(4 * i)),
                None,
                "failure {i}"
            );
        }
    }

    #[test]
    fn the_caller_behind_a_trusted_proxy_is_the_last_untrusted_hop() {
        let proxy: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.4, 10.0.0.2".parse().unwrap(),
        );
        let connected = ConnectInfo(proxy);
        assert_eq!(
            caller(&headers, Some(&connected), &trusted),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        let stranger = ConnectInfo("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            caller(&headers, Some(&stranger), &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(
            caller(&headers, Some(&connected), &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
