//! Shared test plumbing: settings pointing at the fakes, a spawned daemon whose stderr is read as it arrives,
//! and direct reads of the SQLite file.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ota_relay::channel::booking::drain::Drainer;
use ota_relay::config::{BookingAuth, BookingSettings, Secret};
use ota_relay::daemon::Context;
use ota_relay::fake::{FakeOta, FakeOtaOptions, guest_message};
use ota_relay::store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_ota-relay");
pub const PASSWORD: &str = "s3cret-Pa55word";
pub const CLIENT_SECRET: &str = "client-s3cret-value";

/// Now as Unix milliseconds, for arithmetic on the store's columns.
pub fn now() -> i64 {
    ota_relay::store::now_ms().unix_ms()
}

/// A store time from Unix milliseconds.
pub fn at(ms: i64) -> ota_relay::store::Millis {
    ota_relay::store::Millis::from_unix_ms(ms)
}

/// Fails the test (instead of hanging it) when `future` does not finish in time.
pub async fn within<T>(seconds: u64, what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {seconds} s waiting for: {what}"),
    }
}

pub fn basic_settings(fake: &FakeOta) -> BookingSettings {
    let auth = BookingAuth::Basic {
        username: "relay".into(),
        password: Secret::inline(PASSWORD),
    };
    let mut settings = BookingSettings::new(fake.base_url().parse().unwrap(), auth);
    settings.poll_interval = Duration::from_millis(100);
    settings.request_timeout = Duration::from_secs(1);
    settings.backoff_initial = Duration::from_millis(10);
    settings.backoff_max = Duration::from_millis(100);
    settings
}

pub fn token_settings(fake: &FakeOta) -> BookingSettings {
    let mut settings = basic_settings(fake);
    settings.auth = BookingAuth::Token {
        client_id: "relay-client".into(),
        client_secret: Secret::inline(CLIENT_SECRET),
        token_url: fake.token_url().parse().unwrap(),
    };
    settings
}

/// A daemon's context on `store` (fresh metrics and wake-ups), cancelled by `cancel`.
pub fn context(store: &Store, cancel: &CancellationToken) -> Context {
    Context::new(store.clone(), cancel.clone()).0
}

/// A drain loop on `store`, as the daemon builds it.
pub fn drainer(settings: &BookingSettings, store: &Store) -> Drainer {
    Drainer::new(settings, &context(store, &CancellationToken::new())).unwrap()
}

pub fn basic_fake_auth() -> ota_relay::fake::FakeAuth {
    ota_relay::fake::FakeAuth::Basic {
        username: "relay".into(),
        password: PASSWORD.into(),
    }
}

pub fn token_fake_auth() -> ota_relay::fake::FakeAuth {
    ota_relay::fake::FakeAuth::Token {
        client_id: "relay-client".into(),
        client_secret: CLIENT_SECRET.into(),
    }
}

/// A fake queue that wants token authentication, holding `messages` guest messages.
pub async fn token_fake(options: FakeOtaOptions, messages: u64) -> FakeOta {
    let fake = FakeOta::start(FakeOtaOptions {
        auth: token_fake_auth(),
        ..options
    })
    .await
    .unwrap();
    fake.enqueue((0..messages).map(|i| guest_message(5, i)));
    fake
}

pub fn db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open the store for inspection")
}

pub fn count(path: &Path, sql: &str) -> i64 {
    db(path).query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Every stored message id, in `seq` order.
pub fn stored_ids(path: &Path) -> Vec<String> {
    let conn = db(path);
    let mut stmt = conn.prepare("SELECT message_id FROM messages ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// A configuration file for the real binary, draining `base_url` with Basic auth into `dir/relay.db`.
pub fn write_config(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("ota-relay.toml");
    let text = format!(
        r#"[store]
path = "{store}"

[booking]
base_url = "{base_url}"
username = "relay"
password = "{PASSWORD}"
poll_interval = "100ms"
request_timeout = "1s"
backoff_initial = "10ms"
backoff_max = "200ms"
{extra}
"#,
        store = dir.join("relay.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `[forward]` section pointing at `pms` with its secret and quick retries; `extra` adds keys.
pub fn forward_section(pms: &ota_relay::fake::FakePms, extra: &str) -> String {
    format!(
        "[forward]\nurl = \"{}\"\nsecret = \"{}\"\nrequest_timeout = \"2s\"\n{extra}\n[forward.retry]\n\
         initial_interval = \"20ms\"\nmax_interval = \"100ms\"\n",
        pms.url(),
        pms.secret()
    )
}

/// Runs an operator command of the real binary to completion without blocking the runtime (the fakes it talks to
/// may be served by this test's runtime).
pub async fn command(config: &Path, args: &[&str]) -> std::process::Output {
    let mut full: Vec<&str> = args.to_vec();
    full.extend_from_slice(&["--config", config.to_str().unwrap()]);
    let run = tokio::process::Command::new(BIN)
        .args(&full)
        .env_remove("OTA_RELAY_CONFIG")
        .env_remove("RUST_LOG")
        .output();
    within(60, "the command to finish", run).await.unwrap()
}

/// The real binary, its stderr collected line by line as it arrives.
pub struct Daemon {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    changes: watch::Receiver<(usize, bool)>,
}

impl Daemon {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("OTA_RELAY_CONFIG")
            .env_remove("OTA_RELAY_BOOKING_PASSWORD")
            .env_remove("OTA_RELAY_BOOKING_CLIENT_SECRET")
            .env_remove("OTA_RELAY_FORWARD_SECRET");
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            command.env_remove(var);
        }
        command
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn ota-relay");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, changes) = watch::channel((0, false));
        let collected = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let n = {
                    let mut lines = collected.lock().unwrap();
                    lines.push(line);
                    lines.len()
                };
                let _ = tx.send((n, false));
            }
            let n = collected.lock().unwrap().len();
            let _ = tx.send((n, true));
        });
        Daemon { child, lines, changes }
    }

    pub fn run(config: &Path) -> Daemon {
        Daemon::spawn(&["run", "--config", config.to_str().unwrap()], &[])
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`; panics if stderr closes first.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        self.wait_for_logs(needle, 1).await
    }

    /// Waits for the `n`th stderr line containing `needle` and returns it.
    pub async fn wait_for_logs(&mut self, needle: &str, n: usize) -> String {
        self.wait_until(needle, |lines| {
            lines.iter().filter(|l| l.contains(needle)).nth(n - 1).cloned()
        })
        .await
    }

    /// Waits until `check` finds something in the stderr lines so far; panics if stderr closes first.
    pub async fn wait_until<T>(&mut self, what: &str, check: impl Fn(&[String]) -> Option<T>) -> T {
        let lines = self.lines.clone();
        let found = within(30, what, async {
            loop {
                if let Some(found) = check(&lines.lock().unwrap()) {
                    return Some(found);
                }
                if self.changes.borrow().1 {
                    return None;
                }
                if self.changes.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("stderr closed without {what:?}; stderr:\n{}", self.stderr()))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child we spawned and still own.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for exit (bounded) and for stderr to be fully read.
    /// SIGTERM, then the exit, which must be a success: its stderr.
    pub async fn stop(self) -> String {
        self.signal(libc::SIGTERM);
        let (status, stderr) = self.exit().await;
        assert!(status.success(), "{stderr}");
        stderr
    }

    pub async fn exit(mut self) -> (ExitStatus, String) {
        let status = within(30, "the daemon to exit", self.child.wait()).await.unwrap();
        let _ = within(10, "stderr to close", self.changes.wait_for(|c| c.1)).await;
        let text = self.stderr();
        (status, text)
    }

    pub async fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = within(10, "the killed daemon to be reaped", self.child.wait()).await;
    }

    pub async fn stdout(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).await.unwrap();
        }
        out
    }
}
