//! The receiver's figures: accepted pushes per second from 64 concurrent senders, each answered only after its
//! commit (synchronous=FULL), and the time to answer; next to the same HTTP stack and parser answering without
//! storing (the ceiling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::IntoResponse;
use ota_relay::fake::pushes::staah_message;
use ota_relay::fake::{PushCredentials, Senders};
use tokio_util::sync::CancellationToken;

pub const SENDERS: usize = 64;

pub struct PushRun {
    pub pushes: u64,
    pub seconds: f64,
    pub latencies_ms: Vec<f64>,
}

impl PushRun {
    pub fn rate(&self) -> f64 {
        self.pushes as f64 / self.seconds
    }
}

/// `n` STAAH pushes from [`SENDERS`] senders on their own thread and runtime (so they compete for the cores as
/// real senders would not, the same in both runs).
fn storm(base: String, n: u64, seed: u64) -> PushRun {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let senders = Senders::new(&base, PushCredentials::default());
            let bodies: Arc<Vec<String>> = Arc::new((0..n).map(|i| staah_message(seed, i).body).collect());
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for s in 0..SENDERS {
                let (senders, bodies) = (senders.clone(), bodies.clone());
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    for i in (s..bodies.len()).step_by(SENDERS) {
                        let sent = Instant::now();
                        let answer = senders.staah(&bodies[i]).await.expect("the receiver answers");
                        assert_eq!(answer.status, 200, "{}", answer.body);
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    latencies
                });
            }
            let mut latencies_ms = Vec::with_capacity(n as usize);
            while let Some(latencies) = tasks.join_next().await {
                latencies_ms.extend(latencies.unwrap());
            }
            let seconds = started.elapsed().as_secs_f64();
            latencies_ms.sort_by(f64::total_cmp);
            PushRun {
                pushes: n,
                seconds,
                latencies_ms,
            }
        })
    })
    .join()
    .unwrap()
}

/// The real daemon (release binary), pushes only, no forwarding: what it accepts, durably.
pub async fn receiver_run(n: u64) -> (PushRun, i64) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = PushCredentials::default();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[receive]\nlisten = \"127.0.0.1:{port}\"\n{}[log]\nlevel = \"warn\"\n",
            dir.path().join("relay.db").display(),
            c.staah_section()
        ),
    )
    .unwrap();
    let (child, pid) = super::spawn_daemon(&config);
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(&base).await;
    let run = tokio::task::spawn_blocking(move || storm(base, n, 7)).await.unwrap();
    super::stop(child, pid).await;
    let stored: i64 = rusqlite::Connection::open(dir.path().join("relay.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    (run, stored)
}

/// The ceiling: the receiver's HTTP stack (`web::serve`, its limits), Basic authentication in constant time,
/// the body read and parsed by the STAAH parser, answered at once without storing. On its own runtime thread.
pub async fn ceiling_run(n: u64) -> PushRun {
    let stop = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let server_stop = stop.clone();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let router = axum::Router::new().route("/staah/messages", axum::routing::post(parse_only));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            ota_relay::web::serve(
                listener,
                router,
                server_stop,
                "ceiling",
                ota_relay::web::Limits::default(),
            )
            .await;
        })
    });
    let addr = rx.recv().unwrap();
    let base = format!("http://{addr}");
    let run = tokio::task::spawn_blocking(move || storm(base, n, 8)).await.unwrap();
    stop.cancel();
    server.join().unwrap();
    run
}

async fn parse_only(request: Request) -> axum::response::Response {
    let c = PushCredentials::default();
    let (parts, body) = request.into_parts();
    let authenticated = ota_relay::web::receive::basic_credentials(&parts.headers).is_some_and(|(user, password)| {
        ota_relay::web::same_secret(&user, &c.staah_username)
            & ota_relay::web::same_secret(&password, &c.staah_password)
    });
    assert!(authenticated);
    let body = axum::body::to_bytes(body, 1024 * 1024).await.unwrap();
    let (push, problem) = ota_relay::channel::staah::parse(&body);
    assert!(problem.is_none(), "{push:?}");
    axum::Json(serde_json::json!({ "status": "Success" })).into_response()
}

async fn wait_listening(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    while client.get(format!("{base}/")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the receiver did not listen within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
