//! `cargo bench --bench relay`: ota-relay's figures, measured on this machine and printed as one table.
//!
//! The daemon runs as a child process (the release binary), so its peak RSS and CPU time are its own; the fake
//! peers run in this process, on loopback. The ceilings are measured here too, in the same run and against the
//! same fakes: a client that only GETs and PUTs without storing, and a load generator that only POSTs signed
//! webhooks. Not a timed test: it prints numbers and asserts nothing.
//! `BENCH_SCALE=0.1` runs every scenario at a tenth of its size (a quick look); `BENCH_ONLY=drain,e2e` runs only
//! the named groups (`drain`, `deliveries`, `e2e`, `large`, `pushes`, `api`).

#[path = "relay/api.rs"]
mod api;
#[path = "relay/pushes.rs"]
mod pushes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ota_relay::config::Secret;
use ota_relay::fake::{
    FakeOta, FakeOtaOptions, FakePms, FakePmsOptions, SampleMessage, commit_as_batch, guest_message,
};
use ota_relay::forward::signing::Signer;
use ota_relay::store::{Access, Store};

const BIN: &str = env!("CARGO_BIN_EXE_ota-relay");

/// One line of the table: a figure of ota-relay, its ceiling measured in the same run (where one exists), the
/// ratio, and the issue's target.
struct Row {
    figure: String,
    value: String,
    ceiling: String,
    ratio: String,
    target: String,
}

impl Row {
    fn new(figure: impl Into<String>, value: String, target: &str) -> Row {
        Row {
            figure: figure.into(),
            value,
            ceiling: "-".into(),
            ratio: "-".into(),
            target: target.into(),
        }
    }

    fn against(mut self, ceiling: String, ratio: f64) -> Row {
        self.ceiling = ceiling;
        self.ratio = format!("{ratio:.2}");
        self
    }
}

fn scale(n: u64) -> u64 {
    let factor: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * factor) as u64).max(1000)
}

/// Peak resident set (VmHWM) and CPU seconds (utime + stime) of a running process.
fn process_figures(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    (hwm_kb, ticks / hz)
}

fn write_config(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("bench.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{}\"\n[booking]\nbase_url = \"{base_url}\"\nusername = \"bench\"\npassword = \"bench\"\n\
             poll_interval = \"1s\"\nrequest_timeout = \"30s\"\n[log]\nlevel = \"warn\"\n{extra}",
            dir.join("relay.db").display()
        ),
    )
    .unwrap();
    path
}

fn samples(n: u64) -> Vec<SampleMessage> {
    (0..n).map(|i| guest_message(99, i)).collect()
}

fn forward_section(pms: &FakePms, concurrency: usize) -> String {
    format!(
        "[forward]\nurl = \"{}\"\nsecret = \"{}\"\nconcurrency = {concurrency}\n",
        pms.url(),
        pms.secret()
    )
}

fn spawn_daemon(config: &Path) -> (tokio::process::Child, u32) {
    let child = tokio::process::Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    (child, pid)
}

async fn stop(mut child: tokio::process::Child, pid: u32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait().await;
}

struct DrainRun {
    messages: u64,
    seconds: f64,
    peak_rss_kb: u64,
    cpu_seconds: f64,
    /// Holds the drained store, for the start-up measurement.
    dir: tempfile::TempDir,
}

/// Drains `n` messages with the real daemon; time runs from the first answered GET to the last confirm.
async fn drain_run(n: u64) -> DrainRun {
    let fake = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    fake.enqueue(samples(n));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    let (child, pid) = spawn_daemon(&config);
    tokio::time::timeout(Duration::from_secs(900), fake.wait_for(|s| s.drained()))
        .await
        .expect("drained within 15 minutes");
    let done = Instant::now();
    let first = fake.read(|s| s.first_request).expect("requests were made");
    let (peak_rss_kb, cpu_seconds) = process_figures(pid);
    stop(child, pid).await;
    DrainRun {
        messages: n,
        seconds: (done - first).as_secs_f64(),
        peak_rss_kb,
        cpu_seconds,
        dir,
    }
}

/// The drain ceiling: GET, count, PUT, as fast as loopback and the fake allow, storing nothing. Runs on its own
/// thread and runtime so that it competes for the cores as the daemon would. With `fsync_each`, every answer is
/// also appended to a file and fsynced before its PUT: the least any durable consumer must do per batch.
async fn drain_ceiling(n: u64, fsync_each: bool) -> f64 {
    let fake = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    fake.enqueue(samples(n));
    let base = fake.base_url();
    let dir = tempfile::tempdir().unwrap();
    let mut journal = fsync_each.then(|| std::fs::File::create(dir.path().join("journal")).unwrap());
    let seconds = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            loop {
                let body = client
                    .get(format!("{base}/messaging/messages/latest"))
                    .basic_auth("bench", Some("bench"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let count = ota_relay::channel::booking::wire::parse_latest(&body)
                    .unwrap()
                    .elements
                    .len();
                if count == 0 {
                    return started.elapsed().as_secs_f64();
                }
                if let Some(file) = journal.as_mut() {
                    use std::io::Write as _;
                    file.write_all(&body).unwrap();
                    file.sync_all().unwrap();
                }
                let answer = client
                    .put(format!("{base}/messaging/messages?number_of_messages={count}"))
                    .basic_auth("bench", Some("bench"))
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success());
            }
        })
    })
    .join()
    .unwrap();
    assert!(fake.read(|s| s.drained()));
    n as f64 / seconds
}

/// Seconds from spawning the daemon to its first answered poll, on the store in `dir` (fresh if empty).
async fn startup_run(dir: &Path) -> f64 {
    let fake = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    let config = write_config(dir, &fake.base_url(), "");
    let started = Instant::now();
    let (child, pid) = spawn_daemon(&config);
    tokio::time::timeout(Duration::from_secs(120), fake.wait_for(|s| s.first_request.is_some()))
        .await
        .expect("first poll within 2 minutes");
    let seconds = (fake.read(|s| s.first_request).unwrap() - started).as_secs_f64();
    stop(child, pid).await;
    seconds
}

/// A store holding `n` stored messages whose deliveries are all pending, built through the real parser and
/// `Store::commit_batch` (much faster than draining them over HTTP first).
async fn prepare_backlog(dir: &Path, n: u64) {
    let store = Store::open(&dir.join("relay.db"), Access::Consumer).unwrap();
    let mut next = 0;
    while next < n {
        let end = (next + 2000).min(n);
        let messages: Vec<String> = (next..end).map(|i| guest_message(7, i).json).collect();
        commit_as_batch(&store, &messages, ota_relay::store::now_ms())
            .await
            .unwrap();
        next = end;
    }
}

struct ForwardRun {
    delivered: u64,
    seconds: f64,
    peak_rss_kb: u64,
}

/// Delivers `deliver` of `pending` backlogged messages to a fast local receiver, with the real daemon.
async fn forward_run(pending: u64, deliver: u64, concurrency: usize) -> ForwardRun {
    let dir = tempfile::tempdir().unwrap();
    prepare_backlog(dir.path(), pending).await;
    let ota = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    let pms = FakePms::start(FakePmsOptions {
        capture: false,
        ..FakePmsOptions::default()
    })
    .await
    .unwrap();
    let config = write_config(dir.path(), &ota.base_url(), &forward_section(&pms, concurrency));
    let (child, pid) = spawn_daemon(&config);
    let target = deliver as usize;
    tokio::time::timeout(Duration::from_secs(900), pms.wait_for(|s| s.accepted_count() >= target))
        .await
        .expect("delivered within 15 minutes");
    let done = Instant::now();
    let (peak_rss_kb, _) = process_figures(pid);
    stop(child, pid).await;
    let first = pms.read(|s| s.first_request).expect("requests were made");
    assert_eq!(pms.read(|s| s.bad_signatures), 0);
    ForwardRun {
        delivered: deliver,
        seconds: (done - first).as_secs_f64(),
        peak_rss_kb,
    }
}

/// The delivery ceiling: `concurrency` loops POSTing signed webhooks of the same size class to the same fake
/// receiver, with no store behind them. Own thread and runtime, like `drain_ceiling`.
async fn delivery_ceiling(n: u64, concurrency: usize) -> f64 {
    let pms = FakePms::start(FakePmsOptions {
        capture: false,
        ..FakePmsOptions::default()
    })
    .await
    .unwrap();
    let url = pms.url();
    let signer = Arc::new(Signer::new(&[Secret::inline(pms.secret())]).unwrap());
    let seconds = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let next = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (client, url, signer, next) = (client.clone(), url.clone(), signer.clone(), next.clone());
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let message = guest_message(7, i);
                        let body = format!(r#"{{"type":"message.received","data":{{"raw":{}}}}}"#, message.json);
                        let id = format!("booking.com:{}", message.message_id);
                        let timestamp = ota_relay::store::now_ms().unix_secs();
                        let answer = client
                            .post(&url)
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", timestamp)
                            .header("webhook-signature", signer.sign(&id, timestamp, body.as_bytes()))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        assert!(answer.status().is_success());
                    }
                });
            }
            tasks.join_all().await;
            started.elapsed().as_secs_f64()
        })
    })
    .join()
    .unwrap();
    assert_eq!(pms.read(|s| s.bad_signatures), 0);
    n as f64 / seconds
}

struct EndToEnd {
    latencies_ms: Vec<f64>,
    /// Daemon CPU seconds per burst, sorted.
    cpu_seconds: Vec<f64>,
}

/// Bursts whose CPU time is measured; the table shows their median, because CPU time on a shared virtual
/// machine varies by several percent from one burst to the next.
const BURSTS: u64 = 3;

/// Messages enqueued upstream one by one at random gaps, with a 1 s poll: latency from enqueue to the PMS's
/// acceptance. Then a burst of `burst` messages drained and delivered, for CPU time per message end to end.
async fn end_to_end_run(trickle: u64, burst: u64) -> EndToEnd {
    let ota = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    let pms = FakePms::start(FakePmsOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &ota.base_url(), &forward_section(&pms, 8));
    let (child, pid) = spawn_daemon(&config);
    tokio::time::timeout(Duration::from_secs(60), ota.wait_for(|s| s.first_request.is_some()))
        .await
        .expect("the daemon polls");
    let mut enqueued_at = HashMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..trickle {
        tokio::time::sleep(Duration::from_millis(rng.u64(0..250))).await;
        let message = guest_message(3, i);
        enqueued_at.insert(format!("booking.com:{}", message.message_id), Instant::now());
        ota.enqueue([message]);
    }
    let target = trickle as usize;
    tokio::time::timeout(Duration::from_secs(120), pms.wait_for(|s| s.accepted_count() >= target))
        .await
        .expect("trickle delivered");
    let mut latencies_ms: Vec<f64> = pms.read(|s| {
        s.log
            .iter()
            .filter(|(_, _, status)| (200..300).contains(status))
            .filter_map(|(at, id, _)| enqueued_at.get(id).map(|sent| (*at - *sent).as_secs_f64() * 1000.0))
            .collect()
    });
    latencies_ms.sort_by(f64::total_cmp);
    let mut cpu_seconds = Vec::new();
    for round in 0..BURSTS {
        let (_, cpu_before) = process_figures(pid);
        // Indices after the trickle's: some sample ids are numeric and do not depend on the seed.
        let first = trickle + round * burst;
        ota.enqueue((first..first + burst).map(|i| guest_message(4, i)));
        let target = (first + burst) as usize;
        tokio::time::timeout(Duration::from_secs(900), pms.wait_for(|s| s.accepted_count() >= target))
            .await
            .expect("burst delivered");
        let (_, cpu_after) = process_figures(pid);
        cpu_seconds.push(cpu_after - cpu_before);
    }
    cpu_seconds.sort_by(f64::total_cmp);
    stop(child, pid).await;
    assert_eq!(pms.read(|s| s.duplicates()), 0);
    EndToEnd {
        latencies_ms,
        cpu_seconds,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn wanted(group: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|g| g.trim() == group))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    runtime.block_on(async {
        if wanted("drain") {
            let n = scale(100_000);
            let ceiling = drain_ceiling(n, false).await;
            let durable_ceiling = drain_ceiling(n, true).await;
            let drain = drain_run(n).await;
            let rate = drain.messages as f64 / drain.seconds;
            push(
                &mut rows,
                Row::new(
                    format!("drain {n} messages (synchronous=FULL)"),
                    format!("{rate:.0} msg/s"),
                    ">= 20,000 msg/s and >= 0.5 x ceiling",
                )
                .against(format!("{ceiling:.0} msg/s"), rate / ceiling),
            );
            push(
                &mut rows,
                Row::new(
                    "the same drain, against GET + fsync + PUT",
                    format!("{rate:.0} msg/s"),
                    "-",
                )
                .against(format!("{durable_ceiling:.0} msg/s"), rate / durable_ceiling),
            );
            push(
                &mut rows,
                Row::new(
                    "CPU time per 1,000 messages, drain only",
                    format!("{:.1} ms", drain.cpu_seconds * 1000.0 / (n as f64 / 1000.0)),
                    "-",
                ),
            );
        }
        if wanted("deliveries") {
            // 8 is the default `forward.concurrency`.
            for concurrency in [8, 32] {
                let n = scale(50_000);
                let ceiling = delivery_ceiling(n, concurrency).await;
                let run = forward_run(n, n, concurrency).await;
                let rate = run.delivered as f64 / run.seconds;
                push(
                    &mut rows,
                    Row::new(
                        format!("deliveries to a local receiver, concurrency {concurrency}"),
                        format!("{rate:.0} /s"),
                        ">= 5,000 /s",
                    )
                    .against(format!("{ceiling:.0} /s"), rate / ceiling),
                );
            }
        }
        if wanted("e2e") {
            let e2e = end_to_end_run(scale(150_000) / 1000, scale(100_000)).await;
            push(
                &mut rows,
                Row::new(
                    format!("end-to-end latency p50, 1 s poll ({} messages)", e2e.latencies_ms.len()),
                    format!("{:.0} ms", percentile(&e2e.latencies_ms, 0.50)),
                    "-",
                ),
            );
            push(
                &mut rows,
                Row::new(
                    "end-to-end latency p99, 1 s poll",
                    format!("{:.0} ms", percentile(&e2e.latencies_ms, 0.99)),
                    "< 1,100 ms",
                ),
            );
            let per_1000 = |seconds: f64| seconds * 1000.0 / (scale(100_000) as f64 / 1000.0);
            let (low, high) = (e2e.cpu_seconds[0], e2e.cpu_seconds[e2e.cpu_seconds.len() - 1]);
            push(
                &mut rows,
                Row::new(
                    format!("CPU per 1,000 msgs end to end, median of {BURSTS} x {}", scale(100_000)),
                    format!(
                        "{:.1} ms ({:.1}-{:.1})",
                        per_1000(percentile(&e2e.cpu_seconds, 0.5)),
                        per_1000(low),
                        per_1000(high)
                    ),
                    "< 50 ms",
                ),
            );
        }
        if wanted("pushes") {
            let n = scale(50_000);
            let ceiling = pushes::ceiling_run(n).await;
            let (run, stored) = pushes::receiver_run(n).await;
            assert_eq!(stored as u64, n, "every acknowledged push is stored");
            push(
                &mut rows,
                Row::new(
                    format!("pushes accepted, {} senders, synchronous=FULL ({n})", pushes::SENDERS),
                    format!("{:.0} /s", run.rate()),
                    ">= 5,000 /s",
                )
                .against(format!("{:.0} /s", ceiling.rate()), run.rate() / ceiling.rate()),
            );
            push(
                &mut rows,
                Row::new(
                    "time to answer a push, p50 / p99",
                    format!(
                        "{:.1} / {:.1} ms",
                        percentile(&run.latencies_ms, 0.50),
                        percentile(&run.latencies_ms, 0.99)
                    ),
                    "-",
                )
                .against(
                    format!(
                        "{:.1} / {:.1} ms",
                        percentile(&ceiling.latencies_ms, 0.50),
                        percentile(&ceiling.latencies_ms, 0.99)
                    ),
                    percentile(&run.latencies_ms, 0.99) / percentile(&ceiling.latencies_ms, 0.99),
                ),
            );
        }
        if wanted("api") {
            let n = scale(1_000_000);
            let threads = (n / 100).max(100);
            let run = api::run(n, threads, 500, scale(5_000)).await;
            let p = |v: &[f64]| format!("{:.1} / {:.1} ms", percentile(v, 0.50), percentile(v, 0.99));
            push(
                &mut rows,
                Row::new(
                    format!("API thread list p50 / p99 ({n} messages, {threads} threads)"),
                    p(&run.list_ms),
                    "p99 < 50 ms",
                ),
            );
            push(
                &mut rows,
                Row::new("API thread messages p50 / p99", p(&run.messages_ms), "p99 < 50 ms"),
            );
            push(
                &mut rows,
                Row::new(
                    "inbox list page p50 / p99 (any page)",
                    p(&run.inbox.list_ms),
                    "p99 < 100 ms",
                ),
            );
            push(
                &mut rows,
                Row::new("inbox conversation p50 / p99", p(&run.inbox.thread_ms), "p99 < 100 ms"),
            );
            push(
                &mut rows,
                Row::new(
                    "inbox search p50 / p99, a rare word / one in 8 messages",
                    format!("{} · {}", p(&run.inbox.rare_search_ms), p(&run.inbox.common_search_ms)),
                    "-",
                ),
            );
            push(
                &mut rows,
                Row::new(
                    "replies accepted, 16 PMS clients, synchronous=FULL",
                    format!("{:.0} /s", run.replies as f64 / run.reply_seconds),
                    "-",
                ),
            );
        }
        if wanted("large") {
            let fresh = tempfile::tempdir().unwrap();
            let startup_fresh = startup_run(fresh.path()).await;
            let n = scale(1_000_000);
            let large = drain_run(n).await;
            push(
                &mut rows,
                Row::new(
                    format!("peak RSS draining a {n}-message backlog"),
                    format!("{:.1} MB", large.peak_rss_kb as f64 / 1024.0),
                    "< 40 MB",
                ),
            );
            let startup_large = startup_run(large.dir.path()).await;
            push(
                &mut rows,
                Row::new(
                    "start-up to first poll answered, new store",
                    format!("{:.0} ms", startup_fresh * 1000.0),
                    "-",
                ),
            );
            push(
                &mut rows,
                Row::new(
                    format!("start-up to first poll answered, store of {n}"),
                    format!("{:.0} ms", startup_large * 1000.0),
                    "-",
                ),
            );

            let pending = scale(1_000_000);
            let run = forward_run(pending, pending / 5, 32).await;
            push(
                &mut rows,
                Row::new(
                    format!("peak RSS with {pending} pending deliveries"),
                    format!("{:.1} MB", run.peak_rss_kb as f64 / 1024.0),
                    "< 40 MB",
                ),
            );
        }
    });
    print_table(&rows);
}

/// Each figure is also printed as soon as measured (stderr), so a long run shows progress.
fn push(rows: &mut Vec<Row>, row: Row) {
    eprintln!("measured: {} = {} (ceiling {})", row.figure, row.value, row.ceiling);
    rows.push(row);
}

fn print_table(rows: &[Row]) {
    let width = |f: fn(&Row) -> &str, min: usize| rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(min);
    let w0 = width(|r| &r.figure, 6);
    let w1 = width(|r| &r.value, 9);
    let w2 = width(|r| &r.ceiling, 7);
    println!(
        "{:w0$} | {:>w1$} | {:>w2$} | ratio | target",
        "figure", "ota-relay", "ceiling"
    );
    println!(
        "{}-|-{}-|-{}-|-------|-{}",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(w2),
        "-".repeat(36)
    );
    for r in rows {
        println!(
            "{:w0$} | {:>w1$} | {:>w2$} | {:>5} | {}",
            r.figure, r.value, r.ceiling, r.ratio, r.target
        );
    }
}
