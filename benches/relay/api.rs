//! The API's figures on a large store: the thread list and a thread's messages (p50 / p99 over sequential
//! requests, 1,000,000 messages in 10,000 threads), and replies accepted per second from concurrent PMS clients
//! (each committed with synchronous=FULL before its 200); and the inbox's pages on the same store: a list page at
//! any depth, a search for a common word and for a rare one, a conversation.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ota_relay::fake::pms_api::{ApiClient, PMS_TOKEN, api_section};
use ota_relay::fake::staff::StaffClient;
use ota_relay::fake::{FakeOta, FakeOtaOptions, commit_as_batch, guest_message};
use ota_relay::store::{Access, Store};

pub struct ApiRun {
    pub list_ms: Vec<f64>,
    pub messages_ms: Vec<f64>,
    pub replies: u64,
    pub reply_seconds: f64,
    pub inbox: InboxRun,
}

#[derive(Default)]
pub struct InboxRun {
    pub list_ms: Vec<f64>,
    pub common_search_ms: Vec<f64>,
    pub rare_search_ms: Vec<f64>,
    pub thread_ms: Vec<f64>,
}

/// Sequential page loads as staff make them, signed in with the PMS's token.
async fn inbox(base: &str, ids: &[String], threads: u64, requests: usize) -> InboxRun {
    let mut staff = StaffClient::new(base, reqwest::Client::builder());
    assert_eq!(staff.sign_in(PMS_TOKEN, "Bench").await.unwrap().status, 303);
    let mut run = InboxRun::default();
    let timed = async |staff: &mut StaffClient, path: String, into: &mut Vec<f64>| {
        let started = Instant::now();
        let page = staff.get(&path).await.unwrap();
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        into.push(started.elapsed().as_secs_f64() * 1000.0);
        page
    };
    let mut rng = fastrand::Rng::with_seed(5);
    let pages = threads.div_ceil(25);
    for i in 0..requests {
        let page = 1 + rng.u64(0..pages);
        let list = timed(&mut staff, format!("/inbox/threads?page={page}"), &mut run.list_ms).await;
        assert!(!list.thread_ids().is_empty());
        timed(
            &mut staff,
            format!("/inbox/threads/{}", ids[i % ids.len()]),
            &mut run.thread_ms,
        )
        .await;
    }
    for _ in 0..requests / 5 {
        // About one message in eight mentions parking; a message's number is in its text once.
        timed(&mut staff, "/inbox/threads?q=parking".into(), &mut run.common_search_ms).await;
        let number = rng.u64(0..threads * 100);
        timed(
            &mut staff,
            format!("/inbox/threads?q={number}"),
            &mut run.rare_search_ms,
        )
        .await;
    }
    for v in [
        &mut run.list_ms,
        &mut run.thread_ms,
        &mut run.common_search_ms,
        &mut run.rare_search_ms,
    ] {
        v.sort_by(f64::total_cmp);
    }
    run
}

/// `n` messages spread over `threads` conversations (each guest message re-addressed), through the real parser
/// and store: the threads are built as the drain would build them.
async fn prepare(dir: &Path, n: u64, threads: u64) {
    let store = Store::open(&dir.join("relay.db"), Access::Consumer).unwrap();
    let mut next = 0;
    while next < n {
        let end = (next + 2000).min(n);
        let messages: Vec<String> = (next..end)
            .map(|i| {
                let mut m: serde_json::Value = serde_json::from_str(&guest_message(11, i).json).unwrap();
                m["conversation"]["conversation_id"] = serde_json::json!(format!("thread-{:05}", i % threads));
                m.to_string()
            })
            .collect();
        commit_as_batch(&store, &messages, ota_relay::store::now_ms())
            .await
            .unwrap();
        next = end;
    }
}

pub async fn run(n: u64, threads: u64, requests: usize, replies: u64) -> ApiRun {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), n, threads).await;
    let fake = FakeOta::start(FakeOtaOptions {
        auth: ota_relay::fake::FakeAuth::Any,
        ..FakeOtaOptions::default()
    })
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = super::write_config(
        dir.path(),
        &fake.base_url(),
        &api_section(&format!("127.0.0.1:{port}"), ""),
    );
    let (child, pid) = super::spawn_daemon(&config);
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"), PMS_TOKEN);
    let deadline = Instant::now() + Duration::from_secs(120);
    while api
        .get("/api/v1/message_threads")
        .await
        .map_or(true, |a| a.status != 200)
    {
        assert!(Instant::now() < deadline, "the API did not answer within 2 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = api
        .get("/api/v1/message_threads?pagination[limit]=100")
        .await
        .unwrap()
        .json();
    let ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(list["meta"]["total"], threads, "the threads were built");

    let mut list_ms = Vec::with_capacity(requests);
    let mut messages_ms = Vec::with_capacity(requests);
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..requests {
        let page = 1 + rng.u64(0..threads / 10);
        let started = Instant::now();
        let answer = api
            .get(&format!("/api/v1/message_threads?pagination[page]={page}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        list_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let thread = &ids[i % ids.len()];
        let started = Instant::now();
        let answer = api
            .get(&format!("/api/v1/message_threads/{thread}/messages?pagination[page]=2"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        messages_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    list_ms.sort_by(f64::total_cmp);
    messages_ms.sort_by(f64::total_cmp);
    let inbox = inbox(&format!("http://127.0.0.1:{port}"), &ids, threads, requests).await;

    let ids = Arc::new(ids);
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for client in 0..16u64 {
        let (api, ids) = (api.clone(), ids.clone());
        posts.spawn(async move {
            for i in (client..replies).step_by(16) {
                let thread = &ids[i as usize % ids.len()];
                let answer = api.reply(thread, &format!("Reply #{i}"), None).await.unwrap();
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let reply_seconds = started.elapsed().as_secs_f64();
    super::stop(child, pid).await;
    ApiRun {
        list_ms,
        messages_ms,
        replies,
        reply_seconds,
        inbox,
    }
}
