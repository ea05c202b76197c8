//! `cargo bench --bench relay`: ota-relay's figures, measured on this machine and printed as one table.
//!
//! The daemon runs as a child process (the release binary), so its peak RSS and CPU time are its own; the fake
//! peers run in this process, on loopback. Not a timed test: it prints numbers and asserts nothing.
//! `BENCH_SCALE=0.1` runs every scenario at a tenth of its size (a quick look).

use std::path::Path;
use std::time::{Duration, Instant};

use ota_relay::fake::{FakeOta, FakeOtaOptions, FakePms, FakePmsOptions, SampleMessage, guest_message};
use ota_relay::store::{Access, IncomingBatch, Store};

const BIN: &str = env!("CARGO_BIN_EXE_ota-relay");

struct Row {
    figure: String,
    value: String,
    note: String,
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

fn write_config(dir: &Path, base_url: &str, extra: &str) -> std::path::PathBuf {
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

struct DrainRun {
    messages: u64,
    seconds: f64,
    peak_rss_kb: u64,
    cpu_seconds: f64,
}

/// Drains `n` messages with the real daemon; time runs from the first GET to the last confirm.
async fn drain_run(n: u64) -> DrainRun {
    let fake = FakeOta::start(FakeOtaOptions::default()).await.unwrap();
    fake.enqueue(samples(n));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake.base_url(), "");
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    tokio::time::timeout(Duration::from_secs(600), fake.wait_for(|s| s.drained()))
        .await
        .expect("drained within 10 minutes");
    let done = Instant::now();
    let first = fake
        .read(|s| s.requests.front().map(|r| r.0))
        .expect("requests were made");
    let (peak_rss_kb, cpu_seconds) = process_figures(pid);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait().await;
    DrainRun {
        messages: n,
        seconds: (done - first).as_secs_f64(),
        peak_rss_kb,
        cpu_seconds,
    }
}

/// A store holding `n` stored messages whose deliveries are all pending, built through the real parser and
/// `Store::commit_batch` (much faster than draining them over HTTP first).
async fn prepare_backlog(dir: &Path, n: u64) {
    let store = Store::open(&dir.join("relay.db"), Access::Consumer).unwrap();
    let mut next = 0;
    while next < n {
        let end = (next + 2000).min(n);
        let messages: Vec<String> = (next..end).map(|i| guest_message(7, i).json).collect();
        let body = format!(
            r#"{{"data":{{"messages":[{}],"ok":true}},"errors":[]}}"#,
            messages.join(",")
        );
        let answer = ota_relay::booking::wire::parse_latest(body.as_bytes()).unwrap();
        store
            .commit_batch(IncomingBatch {
                provider: "booking.com",
                fetched_at: ota_relay::store::now_ms(),
                ruid: None,
                elements: answer.elements,
            })
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
    let forward = format!(
        "[forward]\nurl = \"{}\"\nsecret = \"{}\"\nconcurrency = {concurrency}\n",
        pms.url(),
        pms.secret()
    );
    let config = write_config(dir.path(), &ota.base_url(), &forward);
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let target = deliver as usize;
    tokio::time::timeout(Duration::from_secs(900), pms.wait_for(|s| s.accepted_count() >= target))
        .await
        .expect("delivered within 15 minutes");
    let done = Instant::now();
    let (peak_rss_kb, _) = process_figures(pid);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait().await;
    let first = pms.read(|s| s.first_request).expect("requests were made");
    assert_eq!(pms.read(|s| s.bad_signatures), 0);
    ForwardRun {
        delivered: deliver,
        seconds: (done - first).as_secs_f64(),
        peak_rss_kb,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    runtime.block_on(async {
        let small = drain_run(scale(10_000)).await;
        let large = drain_run(scale(100_000)).await;
        rows.push(Row {
            figure: format!("drain {} messages (synchronous=FULL)", large.messages),
            value: format!("{:.0} msg/s", large.messages as f64 / large.seconds),
            note: format!("{:.2} s; target >= 20,000 msg/s", large.seconds),
        });
        rows.push(Row {
            figure: "CPU time per 1,000 messages drained".into(),
            value: format!(
                "{:.1} ms",
                large.cpu_seconds * 1000.0 / (large.messages as f64 / 1000.0)
            ),
            note: "daemon's user+system time".into(),
        });
        for run in [&small, &large] {
            rows.push(Row {
                figure: format!("peak RSS draining {} messages", run.messages),
                value: format!("{:.1} MB", run.peak_rss_kb as f64 / 1024.0),
                note: "VmHWM of the daemon; target < 40 MB, flat".into(),
            });
        }
        for concurrency in [8, 32] {
            let n = scale(50_000);
            let run = forward_run(n, n, concurrency).await;
            rows.push(Row {
                figure: format!("deliveries to a local receiver, concurrency {concurrency}"),
                value: format!("{:.0} /s", run.delivered as f64 / run.seconds),
                note: format!("{} in {:.2} s; target >= 5,000/s", run.delivered, run.seconds),
            });
        }
        let pending = scale(1_000_000);
        let run = forward_run(pending, pending / 5, 32).await;
        rows.push(Row {
            figure: format!("peak RSS with {pending} pending deliveries"),
            value: format!("{:.1} MB", run.peak_rss_kb as f64 / 1024.0),
            note: format!(
                "while delivering the first {} ({:.0}/s); target < 40 MB",
                run.delivered,
                run.delivered as f64 / run.seconds
            ),
        });
    });
    print_table(&rows);
}

fn print_table(rows: &[Row]) {
    let w0 = rows.iter().map(|r| r.figure.len()).max().unwrap_or(0).max(6);
    let w1 = rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5);
    println!("{:w0$} | {:>w1$} | note", "figure", "value");
    println!("{}-|-{}-|-{}", "-".repeat(w0), "-".repeat(w1), "-".repeat(40));
    for r in rows {
        println!("{:w0$} | {:>w1$} | {}", r.figure, r.value, r.note);
    }
}
