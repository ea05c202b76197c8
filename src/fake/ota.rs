//! A fake Booking.com message queue over real HTTP on 127.0.0.1, with the semantics ota-relay relies on:
//! GET serves up to `batch_limit` messages from the head, PUT removes N from the head for good, confirmed messages
//! may come back later (redelivery), and faults can be scripted or drawn from a seeded random stream.
//!
//! It also checks the client: a PUT that confirms more than the preceding GET served, or a second PUT without a
//! new GET, is recorded as a violation.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::observed::Observed;
use super::samples::SampleMessage;

mod search;
use search::Archived;

#[derive(Debug, Clone)]
pub enum FakeAuth {
    Any,
    Basic { username: String, password: String },
    Token { client_id: String, client_secret: String },
}

#[derive(Debug, Clone)]
pub struct FakeOtaOptions {
    pub auth: FakeAuth,
    pub batch_limit: usize,
    /// Probability that a confirmed message is enqueued again (once) at the tail.
    pub redelivery_rate: f64,
    /// Probability that a request meets a random fault instead of a normal answer.
    pub fault_rate: f64,
    pub seed: u64,
    /// How long a stalled answer is held (longer than the client's timeout).
    pub stall: Duration,
    /// `expires_in` sent with tokens; None sends none (the client assumes an hour).
    pub token_expires_in: Option<u64>,
    /// A token is refused (401) after this many requests: a lifetime shorter than told.
    pub token_max_uses: Option<u32>,
    /// Messages per page of a search result.
    pub search_page_size: usize,
    /// Result requests answered "pending" before a search job is ready.
    pub search_pending_polls: u32,
}

impl Default for FakeOtaOptions {
    fn default() -> Self {
        FakeOtaOptions {
            auth: FakeAuth::Any,
            batch_limit: 100,
            redelivery_rate: 0.0,
            fault_rate: 0.0,
            seed: 1,
            stall: Duration::from_secs(3),
            token_expires_in: None,
            token_max_uses: None,
            search_page_size: 100,
            search_pending_polls: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Latest,
    Confirm,
    Token,
    /// The message search and its results.
    Search,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An error status with a JSON error body; a confirm is not applied.
    Status(u16),
    /// An error status with `Retry-After: seconds`.
    RetryAfter { status: u16, seconds: u64 },
    /// An HTML page with status 200 (a captive portal or maintenance page).
    Html,
    /// A 200 whose body is not JSON.
    Garbage,
    /// A 200 whose body stops halfway (Content-Length promises more).
    Truncated,
    /// No answer for `stall`, then 503: the client should have timed out.
    Stall,
    /// 200 with `ok: false` and an `errors[]` entry.
    ApiError,
    /// Headers, then the connection drops.
    Reset,
    /// A body larger than any client limit, streamed.
    Oversized,
    /// A latest answer whose `number_of_messages` is off by one.
    WrongCount,
    /// Confirm only: applied upstream, then the answer is lost (connection drops).
    AppliedThenLost,
    /// Confirm only: applied upstream, then a 502.
    AppliedThenStatus(u16),
}

const RANDOM_LATEST_FAULTS: &[Fault] = &[
    Fault::Status(500),
    Fault::Status(503),
    Fault::RetryAfter {
        status: 429,
        seconds: 0,
    },
    Fault::Html,
    Fault::Garbage,
    Fault::Truncated,
    Fault::Stall,
    Fault::ApiError,
    Fault::Reset,
    Fault::WrongCount,
];
const RANDOM_CONFIRM_FAULTS: &[Fault] = &[
    Fault::Status(500),
    Fault::Reset,
    Fault::Stall,
    Fault::AppliedThenLost,
    Fault::AppliedThenStatus(502),
];

#[derive(Debug, Clone)]
struct Queued {
    id: String,
    json: Arc<str>,
    redelivered: bool,
}

/// What the fake has seen and done; read through [`FakeOta::read`] or [`FakeOta::wait_for`].
#[derive(Debug, Default)]
pub struct OtaState {
    queue: VecDeque<Queued>,
    pub enqueued: u64,
    pub gets: u64,
    pub puts: u64,
    /// Messages removed by applied confirms.
    pub confirmed: u64,
    /// Ids removed by applied confirms (gone from upstream for good: they must be in the store).
    pub confirmed_ids: std::collections::HashSet<String>,
    pub redeliveries: u64,
    pub faults_injected: u64,
    pub unauthorized: u64,
    pub token_exchanges: Vec<Instant>,
    /// Protocol violations by the client; must stay empty.
    pub violations: Vec<String>,
    /// (when, endpoint, HTTP status or 0 for a dropped answer) of the latest requests.
    pub requests: VecDeque<(Instant, Endpoint, u16)>,
    /// When the first request of all arrived (benchmarks: start-up time, drain time).
    pub first_request: Option<Instant>,
    last_served: Option<usize>,
    tokens: HashMap<String, u32>,
    revoked: bool,
    scripted: VecDeque<(Endpoint, Fault)>,
    holds: Vec<Hold>,
    archive: Vec<Archived>,
    search_jobs: HashMap<String, search::SearchJob>,
    /// Every search created, as "after=… before=… property_id=… order_by=…".
    pub searches: Vec<String>,
    pub search_result_requests: u64,
}

impl OtaState {
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// True once every message ever enqueued has been confirmed and nothing waits for redelivery.
    pub fn drained(&self) -> bool {
        self.queue.is_empty()
    }

    /// Ids of the messages still queued, head first.
    pub fn queued_ids(&self) -> Vec<String> {
        self.queue.iter().map(|q| q.id.clone()).collect()
    }

    fn log(&mut self, endpoint: Endpoint, status: u16) {
        self.first_request.get_or_insert_with(Instant::now);
        if self.requests.len() >= 10_000 {
            self.requests.pop_front();
        }
        self.requests.push_back((Instant::now(), endpoint, status));
    }
}

/// Where a held request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPoint {
    /// Before anything is applied.
    Before,
    /// Confirm only: after the confirm is applied, before it is answered.
    AfterApply,
}

#[derive(Debug, Clone)]
struct Hold {
    endpoint: Endpoint,
    point: HoldPoint,
    arrived: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

/// A request held by the fake until released (or until the gate is dropped).
pub struct Gate {
    arrived: watch::Receiver<bool>,
    released: watch::Sender<bool>,
}

impl Gate {
    /// Resolves once the held request has reached the fake.
    pub async fn arrived(&mut self) {
        let _ = self.arrived.wait_for(|a| *a).await;
    }

    pub fn release(&self) {
        let _ = self.released.send(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
    }
}

struct Shared {
    state: Observed<OtaState>,
    options: FakeOtaOptions,
    rng: Mutex<fastrand::Rng>,
    ruid: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn mutate<R>(&self, f: impl FnOnce(&mut OtaState) -> R) -> R {
        self.state.mutate(f)
    }

    fn next_ruid(&self) -> String {
        format!(
            "fake-ruid-{}",
            self.ruid.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }

    fn random_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        let pool = match endpoint {
            Endpoint::Latest => RANDOM_LATEST_FAULTS,
            Endpoint::Confirm => RANDOM_CONFIRM_FAULTS,
            Endpoint::Token | Endpoint::Search => return None,
        };
        let mut rng = self.rng.lock().expect("fake rng");
        (self.options.fault_rate > 0.0 && rng.f64() < self.options.fault_rate)
            .then(|| pool[rng.usize(0..pool.len())].clone())
    }
}

/// A running fake queue. Dropping it stops the server.
pub struct FakeOta {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for FakeOta {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeOta {
    pub async fn start(options: FakeOtaOptions) -> std::io::Result<FakeOta> {
        let shared = Arc::new(Shared {
            state: Observed::new(OtaState::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options,
            ruid: Default::default(),
        });
        let app = Router::new()
            .route("/messaging/messages/latest", get(latest))
            .route("/messaging/messages", put(confirm))
            .route("/token", post(token))
            .route("/messaging/messages/search", get(search::create))
            .route("/messaging/messages/search/result/{job_id}", get(search::result))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let addr = crate::web::serve_on_loopback(app, stop.clone()).await?;
        Ok(FakeOta { shared, addr, stop })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues messages; the search finds them too.
    pub fn enqueue(&self, messages: impl IntoIterator<Item = SampleMessage>) {
        self.shared.mutate(|s| {
            for m in messages {
                let json: Arc<str> = m.json.into();
                s.enqueued += 1;
                s.archive.push(Archived::from_json(m.message_id.clone(), json.clone()));
                s.queue.push_back(Queued {
                    id: m.message_id,
                    json,
                    redelivered: false,
                });
            }
        });
    }

    /// Messages the search finds but the queue never serves: lost in an outage, or confirmed by someone else.
    pub fn archive(&self, messages: impl IntoIterator<Item = SampleMessage>) {
        self.shared.mutate(|s| {
            for m in messages {
                s.archive.push(Archived::from_json(m.message_id, m.json.into()));
            }
        });
    }

    /// Every search job created so far answers 410 Gone from now on (as after 48 hours).
    pub fn expire_search_jobs(&self) {
        self.shared
            .mutate(|s| s.search_jobs.values_mut().for_each(|j| j.expired = true));
    }

    /// Enqueues elements that are not valid messages (they carry no usable id).
    pub fn enqueue_raw(&self, elements: impl IntoIterator<Item = String>) {
        self.shared.mutate(|s| {
            for (i, json) in elements.into_iter().enumerate() {
                s.enqueued += 1;
                s.queue.push_back(Queued {
                    id: format!("(raw {i})"),
                    json: json.into(),
                    redelivered: false,
                });
            }
        });
    }

    /// The next request to `endpoint` meets `fault` (scripted faults are served in order).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault) {
        self.shared.mutate(|s| s.scripted.push_back((endpoint, fault)));
    }

    /// Holds the next request to `endpoint` at `point` until the returned gate is released or dropped.
    pub fn hold_next(&self, endpoint: Endpoint, point: HoldPoint) -> Gate {
        let (arrived_tx, arrived) = watch::channel(false);
        let (released, _) = watch::channel(false);
        self.shared.mutate(|s| {
            s.holds.push(Hold {
                endpoint,
                point,
                arrived: arrived_tx,
                released: released.clone(),
            })
        });
        Gate { arrived, released }
    }

    /// Makes the messaging endpoints refuse every token (as for a revoked machine account).
    pub fn revoke_tokens(&self, revoked: bool) {
        self.shared.mutate(|s| s.revoked = revoked);
    }

    pub fn read<R>(&self, f: impl FnOnce(&OtaState) -> R) -> R {
        self.shared.state.read(f)
    }

    /// Waits until `predicate` holds; re-checked after every change of state (no polling).
    pub async fn wait_for(&self, predicate: impl FnMut(&OtaState) -> bool) {
        self.shared.state.wait_for(predicate).await
    }
}

// ---- handlers ---------------------------------------------------------------------------------------

fn take_hold(shared: &Shared, endpoint: Endpoint, point: HoldPoint) -> Option<Hold> {
    shared.mutate(|s| {
        let index = s
            .holds
            .iter()
            .position(|h| h.endpoint == endpoint && h.point == point)?;
        Some(s.holds.remove(index))
    })
}

async fn wait_hold(hold: Option<Hold>) {
    if let Some(hold) = hold {
        let _ = hold.arrived.send(true);
        let mut released = hold.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
}

fn next_fault(shared: &Shared, endpoint: Endpoint) -> Option<Fault> {
    let scripted = shared.mutate(|s| {
        let index = s.scripted.iter().position(|(e, _)| *e == endpoint)?;
        s.scripted.remove(index).map(|(_, f)| f)
    });
    scripted.or_else(|| shared.random_fault(endpoint))
}

/// Checks the Authorization header; Some(response) when the request must be refused.
fn authorize(shared: &Shared, headers: &HeaderMap, endpoint: Endpoint) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = match &shared.options.auth {
        FakeAuth::Any => true,
        FakeAuth::Basic { username, password } => {
            let expected = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            given == format!("Basic {expected}")
        }
        FakeAuth::Token { .. } => {
            let max_uses = shared.options.token_max_uses;
            shared.mutate(|s| {
                let revoked = s.revoked;
                match given.strip_prefix("Bearer ").and_then(|t| s.tokens.get_mut(t)) {
                    Some(uses) if !revoked && max_uses.is_none_or(|m| *uses < m) => {
                        *uses += 1;
                        true
                    }
                    _ => false,
                }
            })
        }
    };
    if ok {
        return None;
    }
    let ruid = shared.next_ruid();
    shared.mutate(|s| {
        s.unauthorized += 1;
        s.log(endpoint, 401);
        if endpoint == Endpoint::Latest {
            s.last_served = None;
        }
    });
    Some(json_response(
        StatusCode::UNAUTHORIZED,
        format!(
            r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{}},"errors":[{{"code":401,"message":"Unauthorized"}}],"warnings":[]}}"#
        ),
    ))
}

async fn latest(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    wait_hold(take_hold(&shared, Endpoint::Latest, HoldPoint::Before)).await;
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Latest) {
        return refused;
    }
    let fault = next_fault(&shared, Endpoint::Latest);
    let ruid = shared.next_ruid();
    let limit = shared.options.batch_limit;
    let (body, count) = shared.mutate(|s| {
        s.gets += 1;
        let batch: Vec<Arc<str>> = s.queue.iter().take(limit).map(|q| q.json.clone()).collect();
        let declared = batch.len() + usize::from(fault == Some(Fault::WrongCount));
        let mut body = String::with_capacity(batch.iter().map(|m| m.len() + 1).sum::<usize>() + 256);
        body.push_str(r#"{"meta":{"ruid":""#);
        body.push_str(&ruid);
        body.push_str(r#""},"warnings":[],"data":{"messages":["#);
        for (i, m) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(m);
        }
        body.push_str(&format!(
            r#"],"ok":true,"number_of_messages":{declared},"timestamp":"2026-11-24T12:00:00.000"}},"errors":[]}}"#
        ));
        (body, batch.len())
    });
    match fault {
        None | Some(Fault::WrongCount) => {
            shared.mutate(|s| {
                s.last_served = Some(count);
                s.log(Endpoint::Latest, 200);
                if fault.is_some() {
                    s.faults_injected += 1;
                }
            });
            json_response(StatusCode::OK, body)
        }
        Some(fault) => {
            shared.mutate(|s| {
                s.last_served = None;
                s.faults_injected += 1;
            });
            faulty(&shared, Endpoint::Latest, fault, body, &ruid).await
        }
    }
}

#[derive(serde::Deserialize)]
struct ConfirmQuery {
    number_of_messages: Option<String>,
}

async fn confirm(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<ConfirmQuery>) -> Response {
    wait_hold(take_hold(&shared, Endpoint::Confirm, HoldPoint::Before)).await;
    if let Some(refused) = authorize(&shared, &headers, Endpoint::Confirm) {
        return refused;
    }
    let ruid = shared.next_ruid();
    let Some(n) = q.number_of_messages.and_then(|n| n.parse::<usize>().ok()) else {
        shared.mutate(|s| {
            s.violations.push("PUT without a valid number_of_messages".into());
            s.log(Endpoint::Confirm, 400);
        });
        return json_response(
            StatusCode::BAD_REQUEST,
            error_body(&ruid, 400, "number_of_messages is required"),
        );
    };
    let fault = next_fault(&shared, Endpoint::Confirm);
    let applies = matches!(
        fault,
        None | Some(Fault::AppliedThenLost) | Some(Fault::AppliedThenStatus(_))
    );
    let redelivery_rate = shared.options.redelivery_rate;
    shared.mutate(|s| {
        s.puts += 1;
        match s.last_served.take() {
            Some(served) if n <= served => {}
            Some(served) => s
                .violations
                .push(format!("PUT confirmed {n} but the preceding GET served {served}")),
            None => s
                .violations
                .push(format!("PUT of {n} without a GET answered since the previous PUT")),
        }
        if fault.is_some() {
            s.faults_injected += 1;
        }
        if applies {
            let n = n.min(s.queue.len());
            let mut rng = shared.rng.lock().expect("fake rng");
            for q in s.queue.drain(..n).collect::<Vec<_>>() {
                s.confirmed_ids.insert(q.id.clone());
                if !q.redelivered && redelivery_rate > 0.0 && rng.f64() < redelivery_rate {
                    s.redeliveries += 1;
                    s.queue.push_back(Queued { redelivered: true, ..q });
                }
            }
            s.confirmed += n as u64;
        }
    });
    wait_hold(take_hold(&shared, Endpoint::Confirm, HoldPoint::AfterApply)).await;
    let body = format!(r#"{{"data":{{"ok":true}},"warnings":[],"meta":{{"ruid":"{ruid}"}},"errors":[]}}"#);
    match fault {
        None => {
            shared.mutate(|s| s.log(Endpoint::Confirm, 200));
            json_response(StatusCode::OK, body)
        }
        Some(Fault::AppliedThenLost) => faulty(&shared, Endpoint::Confirm, Fault::Reset, body, &ruid).await,
        Some(Fault::AppliedThenStatus(code)) => {
            faulty(&shared, Endpoint::Confirm, Fault::Status(code), body, &ruid).await
        }
        Some(fault) => faulty(&shared, Endpoint::Confirm, fault, body, &ruid).await,
    }
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    client_id: String,
    client_secret: String,
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let ruid = shared.next_ruid();
    let request: Option<TokenRequest> = serde_json::from_slice(&body).ok();
    let valid = match (&shared.options.auth, &request) {
        (
            FakeAuth::Token {
                client_id,
                client_secret,
            },
            Some(r),
        ) => r.client_id == *client_id && r.client_secret == *client_secret,
        _ => false,
    };
    if !valid {
        shared.mutate(|s| s.log(Endpoint::Token, 401));
        return json_response(
            StatusCode::UNAUTHORIZED,
            error_body(&ruid, 401, "invalid client credentials"),
        );
    }
    let jwt = format!("fake-jwt-{}-{}", ruid, fastrand::u64(..));
    shared.mutate(|s| {
        let now = Instant::now();
        s.token_exchanges.push(now);
        let window = s
            .token_exchanges
            .iter()
            .filter(|t| now.duration_since(**t) < Duration::from_secs(3600))
            .count();
        if window > 30 {
            s.violations.push(format!("{window} token exchanges within one hour"));
        }
        s.tokens.insert(jwt.clone(), 0);
        s.log(Endpoint::Token, 200);
    });
    let expires = shared
        .options
        .token_expires_in
        .map(|e| format!(r#","expires_in":{e}"#))
        .unwrap_or_default();
    json_response(StatusCode::OK, format!(r#"{{"jwt":"{jwt}","ruid":"{ruid}"{expires}}}"#))
}

// ---- fault rendering ------------------------------------------------------------------------------

fn error_body(ruid: &str, code: u16, message: &str) -> String {
    format!(
        r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{}},"warnings":[],"errors":[{{"code":{code},"message":"{message}"}}]}}"#
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn failing_stream(first: Option<Bytes>) -> Body {
    let items: Vec<Result<Bytes, std::io::Error>> = first
        .into_iter()
        .map(Ok)
        .chain(std::iter::once(Err(std::io::Error::other("fake: connection dropped"))))
        .collect();
    Body::from_stream(futures_util::stream::iter(items))
}

async fn faulty(shared: &Shared, endpoint: Endpoint, fault: Fault, body: String, ruid: &str) -> Response {
    let (status, response) = match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, json_response(status, error_body(ruid, code, "fake failure")))
        }
        Fault::RetryAfter { status: code, seconds } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut r = json_response(status, error_body(ruid, code, "slow down"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            (code, r)
        }
        Fault::Html => {
            let mut r = Response::new(Body::from(
                "<html><body><h1>Service temporarily unavailable</h1></body></html>",
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            (200, r)
        }
        Fault::Garbage => (200, json_response(StatusCode::OK, "this is not json {".into())),
        Fault::ApiError => (
            200,
            json_response(
                StatusCode::OK,
                format!(
                    r#"{{"meta":{{"ruid":"{ruid}"}},"data":{{"ok":false}},"warnings":[],"errors":[{{"code":"E500","message":"internal error"}}]}}"#
                ),
            ),
        ),
        Fault::Truncated => {
            let full = Bytes::from(body);
            let mut r = Response::new(failing_stream(Some(full.slice(..full.len() / 2))));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (0, r)
        }
        Fault::Reset | Fault::AppliedThenLost => (0, Response::new(failing_stream(None))),
        Fault::Stall => {
            tokio::time::sleep(shared.options.stall).await;
            (
                503,
                json_response(StatusCode::SERVICE_UNAVAILABLE, error_body(ruid, 503, "stalled")),
            )
        }
        Fault::Oversized => {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let head = Bytes::from_static(br#"{"data":{"messages":["#);
            let chunks = std::iter::once(head)
                .chain(std::iter::repeat_n(chunk, 40))
                .map(Ok::<_, std::io::Error>);
            let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (200, r)
        }
        Fault::WrongCount | Fault::AppliedThenStatus(_) => unreachable!("handled by the caller"),
    };
    shared.mutate(|s| s.log(endpoint, status));
    response
}
