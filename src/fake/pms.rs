//! A fake PMS webhook receiver over real HTTP on 127.0.0.1: verifies Standard Webhooks signatures, can be told
//! to fail (a seeded failure rate, scripted answers, a whole outage), and records what it accepted, how often,
//! and how many requests were in flight at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use super::observed::Observed;
use crate::forward::signing;

#[derive(Debug, Clone)]
pub struct FakePmsOptions {
    /// The `whsec_...` secret signatures are checked against.
    pub secret: String,
    /// Probability of a 500 for a request that would otherwise be accepted.
    pub failure_rate: f64,
    pub seed: u64,
    /// Time taken to answer each request, after it was processed (accepted or not).
    pub latency: Duration,
    /// Keep the body of every accepted request (tests read payloads; benchmarks do not).
    pub capture: bool,
    /// Refuse requests whose webhook-timestamp is further than this from now (Standard Webhooks' replay guard).
    pub tolerance: Duration,
}

impl Default for FakePmsOptions {
    fn default() -> Self {
        FakePmsOptions {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            failure_rate: 0.0,
            seed: 1,
            latency: Duration::ZERO,
            capture: true,
            tolerance: Duration::from_secs(300),
        }
    }
}

/// A scripted answer for the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PmsReply {
    Status(u16),
    RetryAfter {
        status: u16,
        seconds: u64,
    },
    /// A redirect, which must not be followed.
    Redirect,
    /// `status`, but only after `after`: longer than the client's timeout, a request that hangs.
    Late {
        status: u16,
        after: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Bytes,
}

#[derive(Debug, Default)]
pub struct PmsState {
    pub requests: u64,
    /// Accepted (2xx) requests per webhook-id: more than 1 is a duplicate delivery.
    pub accepted: HashMap<String, u32>,
    /// webhook-ids in the order they were first accepted.
    pub accepted_order: Vec<String>,
    pub captured: Vec<Accepted>,
    pub bad_signatures: u64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub first_request: Option<Instant>,
    /// (when, webhook-id, status) of every request (kept with `capture`).
    pub log: Vec<(Instant, String, u16)>,
    down: bool,
    scripted: VecDeque<PmsReply>,
    per_id: HashMap<String, u16>,
}

impl PmsState {
    pub fn accepted_count(&self) -> usize {
        self.accepted.len()
    }

    /// Accepted requests beyond the first per webhook-id.
    pub fn duplicates(&self) -> u64 {
        self.accepted.values().map(|n| u64::from(n.saturating_sub(1))).sum()
    }
}

struct Shared {
    state: Observed<PmsState>,
    options: FakePmsOptions,
    rng: Mutex<fastrand::Rng>,
}

impl Shared {
    fn mutate<R>(&self, f: impl FnOnce(&mut PmsState) -> R) -> R {
        self.state.mutate(f)
    }
}

pub struct FakePms {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for FakePms {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakePms {
    pub async fn start(options: FakePmsOptions) -> std::io::Result<FakePms> {
        let shared = Arc::new(Shared {
            state: Observed::new(PmsState::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options,
        });
        let app = Router::new()
            .route("/hooks/guest-messages", post(receive))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let addr = crate::web::serve_on_loopback(app, stop.clone()).await?;
        Ok(FakePms { shared, addr, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/guest-messages", self.addr)
    }

    pub fn secret(&self) -> &str {
        &self.shared.options.secret
    }

    /// While down, every request gets 503 (an outage).
    pub fn set_down(&self, down: bool) {
        self.shared.mutate(|s| s.down = down);
    }

    pub fn reply_next(&self, reply: PmsReply) {
        self.shared.mutate(|s| s.scripted.push_back(reply));
    }

    /// Every request for this webhook-id gets `status` (e.g. 410, or a permanent 500; 3xx sends a redirect).
    pub fn always(&self, webhook_id: &str, status: u16) {
        self.shared.mutate(|s| s.per_id.insert(webhook_id.to_owned(), status));
    }

    pub fn clear_always(&self) {
        self.shared.mutate(|s| s.per_id.clear());
    }

    pub fn reset_max_in_flight(&self) {
        self.shared.mutate(|s| s.max_in_flight = s.in_flight);
    }

    pub fn read<R>(&self, f: impl FnOnce(&PmsState) -> R) -> R {
        self.shared.state.read(f)
    }

    /// Waits until `predicate` holds; re-checked after every change of state.
    pub async fn wait_for(&self, predicate: impl FnMut(&PmsState) -> bool) {
        self.shared.state.wait_for(predicate).await
    }
}

/// Decrements the in-flight gauge however the request ends (answered, or dropped by a client that went away).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.mutate(|s| s.in_flight -= 1);
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.mutate(|s| {
        s.requests += 1;
        s.first_request.get_or_insert_with(Instant::now);
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
    });
    let _guard = InFlight(shared.clone());
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (id, signature) = (text("webhook-id"), text("webhook-signature"));
    let timestamp: i64 = text("webhook-timestamp").parse().unwrap_or(0);
    let fresh = (chrono::Utc::now().timestamp() - timestamp).unsigned_abs() <= shared.options.tolerance.as_secs();
    let verified = fresh
        && text("content-type") == "application/json"
        && signing::verify(&shared.options.secret, &id, timestamp, &body, &signature);

    let random_failure = {
        let mut rng = shared.rng.lock().expect("fake pms rng");
        shared.options.failure_rate > 0.0 && rng.f64() < shared.options.failure_rate
    };
    let reply = shared.mutate(|s| {
        if !verified {
            s.bad_signatures += 1;
            return PmsReply::Status(401);
        }
        if let Some(reply) = s.scripted.pop_front() {
            return reply;
        }
        if s.down {
            return PmsReply::Status(503);
        }
        match s.per_id.get(&id) {
            Some(300..=399) => return PmsReply::Redirect,
            Some(status) => return PmsReply::Status(*status),
            None => {}
        }
        PmsReply::Status(if random_failure { 500 } else { 200 })
    });
    if let PmsReply::Late { after, .. } = reply {
        tokio::time::sleep(after).await;
    }
    let (status, response) = match reply {
        PmsReply::Status(code) | PmsReply::Late { status: code, .. } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, (status, "{}").into_response())
        }
        PmsReply::RetryAfter { status, seconds } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut r = (code, "{}").into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            (status, r)
        }
        PmsReply::Redirect => {
            let mut r = (StatusCode::TEMPORARY_REDIRECT, "").into_response();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/elsewhere"));
            (307, r)
        }
    };
    shared.mutate(|s| {
        if shared.options.capture {
            s.log.push((Instant::now(), id.clone(), status));
        }
        if (200..300).contains(&status) {
            let count = s.accepted.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                s.accepted_order.push(id.clone());
            }
            if shared.options.capture {
                s.captured.push(Accepted {
                    webhook_id: id,
                    timestamp,
                    signature,
                    body,
                });
            }
        }
    });
    // The PMS has processed the request; its answer takes `latency` to arrive. A client that dies meanwhile
    // never learns of the acceptance: the worst case for duplicates.
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    response
}
