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
use axum::routing::{get, post, put};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::observed::Observed;
use super::samples::SampleMessage;

pub mod conversations;
mod handlers;
mod search;
use handlers::{confirm, latest, token};
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
    /// Queue each reply posted to a conversation as a property message, as Booking.com does.
    pub echo_replies: bool,
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
            echo_replies: true,
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
    /// The conversation endpoints (replies, the conversation read, tags).
    Reply,
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
    /// The element's bytes as served (not always valid JSON: the fake serves hostile bytes too).
    json: Arc<[u8]>,
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
    expired_tokens: std::collections::HashSet<String>,
    revoked: bool,
    scripted: VecDeque<(Endpoint, Fault)>,
    holds: Vec<Hold>,
    archive: Vec<Archived>,
    search_jobs: HashMap<String, search::SearchJob>,
    /// Every search created, as "after=… before=… property_id=… order_by=…".
    pub searches: Vec<String>,
    pub search_result_requests: u64,
    /// Replies applied (posted to a conversation), in order.
    pub posted: Vec<conversations::Posted>,
    /// Reply POSTs received, applied or not.
    pub reply_attempts: u64,
    pub conversation_reads: u64,
    /// (property, conversation, tag) set.
    pub tags: Vec<(String, String, String)>,
    reply_faults: VecDeque<conversations::ReplyFault>,
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
            Endpoint::Token | Endpoint::Search | Endpoint::Reply => return None,
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
            .route(
                "/messaging/properties/{property}/conversations/{conversation}",
                post(conversations::post).get(conversations::get),
            )
            .route(
                "/messaging/properties/{property}/conversations/{conversation}/tags/no_reply_needed",
                put(conversations::tag),
            )
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

    /// What the next reply POSTs meet, in order.
    pub fn reply_fault(&self, fault: conversations::ReplyFault) {
        self.shared.mutate(|s| s.reply_faults.push_back(fault));
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
                    json: Arc::from(json.as_bytes()),
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
        self.enqueue_bytes(elements.into_iter().map(String::into_bytes));
    }

    /// Enqueues elements served byte for byte, valid JSON or not (Latin-1 text, raw control characters).
    pub fn enqueue_bytes(&self, elements: impl IntoIterator<Item = Vec<u8>>) {
        self.shared.mutate(|s| {
            for (i, bytes) in elements.into_iter().enumerate() {
                s.enqueued += 1;
                s.queue.push_back(Queued {
                    id: format!("(raw {i})"),
                    json: bytes.into(),
                    redelivered: false,
                });
            }
        });
    }

    /// Every token issued so far is refused from now on (401), as once its lifetime has passed.
    pub fn expire_tokens(&self) {
        self.shared.mutate(|s| {
            let issued: Vec<String> = s.tokens.keys().cloned().collect();
            s.expired_tokens.extend(issued);
        });
    }

    /// The next request to `endpoint` meets `fault` (scripted faults are served in order).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault) {
        self.shared.mutate(|s| s.scripted.push_back((endpoint, fault)));
    }

    /// Holds the next request to `endpoint` at `point` until the returned gate is released or dropped. For
    /// [`Endpoint::Reply`], only the conversation read is held (a reconciliation's question).
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
