//! The test harness. [`TestRelay`] starts the fakes and the real binary from a configuration the test builds
//! (or, for tests that drive one worker step by step, the same workers in this process), and waits on state:
//! the fakes' records, the store, `status --json` and the systemd notifications the daemon sends. [`Daemon`] is
//! the spawned binary with its stderr read as it arrives, for the tests of logging itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ota_relay::channel::booking::drain::Drainer;
use ota_relay::config::BookingSettings;
use ota_relay::daemon::Context;
use ota_relay::fake::{
    FakeOta, FakeOtaOptions, FakePms, FakePmsOptions, SampleMessage, commit_as_batch, guest_message,
};
use ota_relay::store::{Access, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_ota-relay");
pub const PASSWORD: &str = "s3cret-Pa55word";
pub const CLIENT_SECRET: &str = "client-s3cret-value";

/// Now as Unix milliseconds, for arithmetic on the store's columns.
/// A Booking.com guest message as `messages/latest` serves it: `name` writes in `conversation` of `property`.
pub fn booking_guest(id: &str, conversation: &str, property: u64, text: &str, name: &str, timestamp: &str) -> String {
    serde_json::json!({
        "message_id": id,
        "content": text,
        "timestamp": timestamp,
        "sender": {"participant_id": format!("g-{conversation}"), "metadata": {"participant_type": "GUEST", "name": name}},
        "conversation": {"conversation_id": conversation, "conversation_type": "reservation",
                         "conversation_reference": format!("ref-{conversation}"), "property_id": property}
    })
    .to_string()
}

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

/// A daemon's context on `store` (fresh metrics and wake-ups), cancelled by `cancel`.
pub fn context(store: &Store, cancel: &CancellationToken) -> Context {
    Context::new(store.clone(), cancel.clone()).0
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
    let basic = format!("username = \"relay\"\npassword = \"{PASSWORD}\"");
    write_config_with(dir, base_url, &basic, extra)
}

/// [`write_config`] with other keys in `[booking]` (the credentials, and any of the quick defaults overridden).
pub fn write_config_with(dir: &Path, base_url: &str, booking: &str, extra: &str) -> PathBuf {
    let path = dir.join("ota-relay.toml");
    let quick = [
        ("poll_interval", "100ms"),
        ("request_timeout", "1s"),
        ("backoff_initial", "10ms"),
        ("backoff_max", "200ms"),
    ];
    let defaults: String = quick
        .iter()
        .filter(|(key, _)| !booking.lines().any(|l| l.starts_with(&format!("{key} ="))))
        .map(|(key, value)| format!("{key} = \"{value}\"\n"))
        .collect();
    let text = format!(
        r#"[store]
path = "{store}"

[booking]
base_url = "{base_url}"
{booking}
{defaults}{extra}
"#,
        store = dir.join("relay.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `[forward]` section pointing at `pms` with its secret and quick retries; `extra` adds keys (and may bring
/// its own `[forward.retry]`).
pub fn forward_section(pms: &ota_relay::fake::FakePms, extra: &str) -> String {
    let retry = if extra.contains("[forward.retry]") {
        ""
    } else {
        "[forward.retry]\ninitial_interval = \"20ms\"\nmax_interval = \"100ms\"\n"
    };
    format!(
        "[forward]\nurl = \"{}\"\nsecret = \"{}\"\nrequest_timeout = \"2s\"\n{extra}\n{retry}",
        pms.url(),
        pms.secret()
    )
}

/// A port for a listener the daemon binds. Taken below the ephemeral range (where every fake's `bind(0)` lands),
/// so that no fake of a test running beside can take it between this check and the daemon's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20_000 + (std::process::id() % 1000) * 10;
    loop {
        let port = (start + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
        Daemon::spawn_limited(args, envs, None, None)
    }

    /// [`Daemon::spawn`] with a soft limit on open files (systemd's default is 1024), as a unit without
    /// `LimitNOFILE=` runs it.
    /// With `listen_fd`, the daemon is socket-activated as systemd does it: the socket as descriptor 3,
    /// `LISTEN_FDS=1` and `LISTEN_PID` its own pid (set by a shell that then execs it, keeping the pid).
    pub fn spawn_limited(
        args: &[&str],
        envs: &[(&str, &str)],
        open_files: Option<u64>,
        listen_fd: Option<std::os::fd::RawFd>,
    ) -> Daemon {
        let mut command = match listen_fd {
            None => tokio::process::Command::new(BIN),
            Some(fd) => {
                let mut command = tokio::process::Command::new("/bin/sh");
                command.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", BIN]);
                // SAFETY: dup2 is async-signal-safe, and nothing else runs in the child before exec.
                unsafe {
                    command.pre_exec(move || {
                        if libc::dup2(fd, 3) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                command
            }
        };
        if let Some(limit) = open_files {
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs in the child before exec.
            unsafe {
                command.pre_exec(move || {
                    let mut current = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut current);
                    current.rlim_cur = limit.min(current.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &current) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("OTA_RELAY_CONFIG")
            .env_remove("OTA_RELAY_BOOKING_PASSWORD")
            .env_remove("OTA_RELAY_BOOKING_CLIENT_SECRET")
            .env_remove("OTA_RELAY_FORWARD_SECRET")
            .env_remove("OTA_RELAY_BOOKING_NOTIFICATIONS_CLIENT_SECRET")
            .env_remove("OTA_RELAY_STAAH_PASSWORD")
            .env_remove("OTA_RELAY_CHANNEX_WEBHOOK_SECRET")
            .env_remove("OTA_RELAY_CHANNEX_API_KEY");
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

/// Every systemd notification datagram the daemon sent to the test's NOTIFY_SOCKET, in order.
#[derive(Clone)]
pub struct Notifications {
    messages: Arc<Mutex<Vec<String>>>,
    changed: watch::Receiver<usize>,
}

impl Notifications {
    pub fn bind(path: &Path) -> Notifications {
        let socket = tokio::net::UnixDatagram::bind(path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0);
        let collected = messages.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let len = {
                    let mut all = collected.lock().unwrap();
                    all.push(text);
                    all.len()
                };
                let _ = tx.send(len);
            }
        });
        Notifications { messages, changed }
    }

    pub fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// How many notifications contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    }

    /// Waits until `predicate` holds for the notifications so far.
    pub async fn wait_for(&mut self, what: &str, mut predicate: impl FnMut(&[String]) -> bool) {
        let messages = self.messages.clone();
        within(30, what, async {
            loop {
                if predicate(&messages.lock().unwrap()) {
                    return;
                }
                self.changed.changed().await.unwrap();
            }
        })
        .await
    }

    /// Waits for the `n`th notification containing `needle`, and returns it.
    pub async fn wait_for_nth(&mut self, needle: &str, n: usize) -> String {
        self.wait_for(needle, |m| m.iter().filter(|m| m.contains(needle)).count() >= n)
            .await;
        self.all()
            .into_iter()
            .filter(|m| m.contains(needle))
            .nth(n - 1)
            .unwrap()
    }
}

/// What a [`TestRelay`] starts with: the fakes' options, the messages queued or already stored, and the
/// configuration's sections.
pub struct Setup {
    ota: FakeOtaOptions,
    pms: FakePmsOptions,
    queued: Vec<SampleMessage>,
    stored: Vec<SampleMessage>,
    run: RunConfig,
}

/// How the daemon is configured and run: kept by the relay, which writes the configuration from it.
#[derive(Default)]
struct RunConfig {
    forward: Option<String>,
    booking: String,
    sections: String,
    envs: Vec<(String, String)>,
    token: bool,
    open_files: Option<u64>,
    ops_port: Option<u16>,
    /// `[receive]` on this port, with every push source configured.
    receive_port: Option<u16>,
    /// The Channex thread lookup's base URL and key.
    channex_api: Option<(String, String)>,
    /// More `[booking.notifications]` keys.
    notification_keys: String,
    /// More `[receive]` keys.
    receive_keys: String,
    /// More `[staah]` keys.
    staah_keys: String,
    /// `[api]` on this port, with [`ota_relay::fake::pms_api`]'s tokens.
    api_port: Option<u16>,
    /// More `[api]` keys.
    api_keys: String,
    /// The receiver's socket, bound by the test and passed as systemd passes it (`listen = "systemd"`).
    socket: Option<std::net::TcpListener>,
    /// The push senders' credentials, as configured (changed to test a rotation).
    push_credentials: ota_relay::fake::PushCredentials,
}

impl Setup {
    /// Changes the fake Booking.com queue's options (by default: Basic authentication with [`PASSWORD`]).
    pub fn ota(mut self, change: impl FnOnce(FakeOtaOptions) -> FakeOtaOptions) -> Setup {
        self.ota = change(self.ota);
        self
    }

    /// Changes the fake PMS's options.
    pub fn pms(mut self, change: impl FnOnce(FakePmsOptions) -> FakePmsOptions) -> Setup {
        self.pms = change(self.pms);
        self
    }

    /// Queues seed `seed`'s sample messages `range` upstream before the relay starts.
    pub fn queued(mut self, seed: u64, range: std::ops::Range<u64>) -> Setup {
        self.queued.extend(range.map(|i| guest_message(seed, i)));
        self
    }

    /// A store that already holds seed `seed`'s sample messages `range`, pending as the drain leaves them.
    pub fn stored(mut self, seed: u64, range: std::ops::Range<u64>) -> Setup {
        self.stored.extend(range.map(|i| guest_message(seed, i)));
        self
    }

    /// Forward to the fake PMS (quick retries); `keys` adds or overrides `[forward]` keys.
    pub fn forward(mut self, keys: &str) -> Setup {
        self.run.forward = Some(keys.to_owned());
        self
    }

    /// Token authentication (client id and secret exchanged at the fake's token endpoint).
    pub fn token_auth(mut self) -> Setup {
        self.ota.auth = token_fake_auth();
        self.run.token = true;
        self
    }

    /// More `[booking]` keys.
    pub fn booking(mut self, keys: &str) -> Setup {
        self.run.booking.push_str(keys);
        self.run.booking.push('\n');
        self
    }

    /// More sections, written after the others.
    pub fn config(mut self, sections: &str) -> Setup {
        self.run.sections.push_str(sections);
        self.run.sections.push('\n');
        self
    }

    /// Runs the daemon with this soft limit on open files.
    pub fn open_files(mut self, limit: u64) -> Setup {
        self.run.open_files = Some(limit);
        self
    }

    /// A health and metrics listener on a free port (see [`TestRelay::ops_url`]).
    pub fn ops_listener(mut self) -> Setup {
        self.run.ops_port = Some(free_port());
        self
    }

    /// The receiver on a free port, with Booking.com notifications, STAAH and Channex configured
    /// ([`ota_relay::fake::PushCredentials::default`]); see [`TestRelay::senders`].
    pub fn receiving(mut self) -> Setup {
        self.run.receive_port = Some(free_port());
        self
    }

    /// [`Self::receiving`] on a socket the test binds and passes to every run of the daemon, as
    /// `ota-relay.socket` does: it stays open while the daemon restarts.
    pub fn socket_activated(mut self) -> Setup {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        self.run.receive_port = Some(socket.local_addr().unwrap().port());
        self.run.socket = Some(socket);
        self
    }

    /// Channex's thread lookup against `api`.
    pub fn channex_api(mut self, api: &ota_relay::fake::FakeChannex) -> Setup {
        self.run.channex_api = Some((api.base_url(), api.api_key().to_owned()));
        self
    }

    /// The API on a free port (see [`TestRelay::api`]).
    pub fn api(mut self) -> Setup {
        self.run.api_port = Some(free_port());
        self
    }

    /// The API on `port` (a test that needs its address in the configuration).
    pub fn api_on(mut self, port: u16) -> Setup {
        self.run.api_port = Some(port);
        self
    }

    /// More `[api]` keys (with [`Self::api`]).
    pub fn api_keys(mut self, keys: &str) -> Setup {
        self.run.api_keys.push_str(keys);
        self.run.api_keys.push('\n');
        self
    }

    /// More `[staah]` keys (with [`Self::receiving`]).
    pub fn staah_keys(mut self, keys: &str) -> Setup {
        self.run.staah_keys.push_str(keys);
        self.run.staah_keys.push('\n');
        self
    }

    /// More `[receive]` keys.
    pub fn receive_keys(mut self, keys: &str) -> Setup {
        self.run.receive_keys.push_str(keys);
        self.run.receive_keys.push('\n');
        self
    }

    /// More `[booking.notifications]` keys.
    pub fn notification_keys(mut self, keys: &str) -> Setup {
        self.run.notification_keys.push_str(keys);
        self.run.notification_keys.push('\n');
        self
    }

    /// Pushes only: `[booking] pull = false`.
    pub fn without_pull(self) -> Setup {
        self.booking("pull = false")
    }

    /// An environment variable for every run of the daemon.
    pub fn env(mut self, name: &str, value: &str) -> Setup {
        self.run.envs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The fakes are up, the store prepared and the configuration written; no daemon runs yet.
    pub async fn prepare(self) -> TestRelay {
        let ota = FakeOta::start(self.ota).await.unwrap();
        ota.enqueue(self.queued.clone());
        let pms = FakePms::start(self.pms).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let notify_socket = dir.path().join("notify.sock");
        let notifications = Notifications::bind(&notify_socket);
        let relay = TestRelay {
            ota,
            pms,
            notifications,
            notify_socket,
            run: self.run,
            queued: self.queued,
            stored: self.stored,
            daemon: None,
            store: None,
            dir,
        };
        relay.write_config("");
        if !relay.stored.is_empty() {
            let store = Store::open(&relay.path(), Access::Consumer).unwrap();
            let elements: Vec<String> = relay.stored.iter().map(|s| s.json.clone()).collect();
            commit_as_batch(&store, &elements, ota_relay::store::now_ms())
                .await
                .unwrap();
        }
        relay
    }

    /// [`Self::prepare`], with the store opened in this process, for tests that drive the workers themselves.
    pub async fn in_process(self) -> TestRelay {
        let mut relay = self.prepare().await;
        relay.store = Some(relay.open_store());
        relay
    }

    /// A store the real binary drained the queue into and was stopped on, its WAL folded into the file (so the
    /// file alone is the store).
    pub async fn drained(self) -> TestRelay {
        let mut relay = self.start().await;
        within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
        relay.stop().await;
        relay
            .db()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        relay
    }

    /// [`Self::prepare`], then the real binary, started and ready (systemd's READY=1).
    pub async fn start(self) -> TestRelay {
        let mut relay = self.prepare().await;
        relay.run();
        relay.ready(1).await;
        relay
    }
}

/// The fakes, a configuration, a store, and the real binary running on them (or not yet, or no more).
pub struct TestRelay {
    pub ota: FakeOta,
    pub pms: FakePms,
    pub notifications: Notifications,
    notify_socket: PathBuf,
    run: RunConfig,
    queued: Vec<SampleMessage>,
    stored: Vec<SampleMessage>,
    daemon: Option<Daemon>,
    store: Option<Store>,
    dir: tempfile::TempDir,
}

impl TestRelay {
    /// A relay draining a fake Booking.com queue (Basic authentication, quick polls and backoff) into a new store.
    pub fn with() -> Setup {
        Setup {
            ota: FakeOtaOptions {
                auth: basic_fake_auth(),
                ..FakeOtaOptions::default()
            },
            pms: FakePmsOptions::default(),
            queued: Vec::new(),
            stored: Vec::new(),
            run: RunConfig::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PMS's client of the API ([`Setup::api`]), with the token for every property.
    pub fn api(&self) -> ota_relay::fake::pms_api::ApiClient {
        let port = self.run.api_port.expect("an API listener");
        ota_relay::fake::pms_api::ApiClient::new(
            &format!("http://127.0.0.1:{port}"),
            ota_relay::fake::pms_api::PMS_TOKEN,
        )
    }

    /// The same, with the token limited to [`ota_relay::fake::pms_api::LIMITED_PROPERTY`].
    pub fn limited_api(&self) -> ota_relay::fake::pms_api::ApiClient {
        let port = self.run.api_port.expect("an API listener");
        ota_relay::fake::pms_api::ApiClient::new(
            &format!("http://127.0.0.1:{port}"),
            ota_relay::fake::pms_api::LIMITED_TOKEN,
        )
    }

    /// A member of staff at the inbox ([`Setup::api`]), not signed in yet, without JavaScript.
    pub fn staff(&self) -> ota_relay::fake::staff::StaffClient {
        let port = self.run.api_port.expect("an API listener");
        ota_relay::fake::staff::StaffClient::new(&format!("http://127.0.0.1:{port}"), reqwest::Client::builder())
    }

    /// The push senders, pointed at the receiver ([`Setup::receiving`]).
    pub fn senders(&self) -> ota_relay::fake::Senders {
        ota_relay::fake::Senders::new(&self.receive_url(), self.run.push_credentials.clone())
    }

    /// Changes the configured push credentials and writes the configuration again (a SIGHUP or a restart
    /// applies it); [`Self::senders`] then sends the new ones.
    pub fn change_push_credentials(&mut self, change: impl FnOnce(&mut ota_relay::fake::PushCredentials)) {
        change(&mut self.run.push_credentials);
        self.write_config("");
    }

    pub fn receive_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.run.receive_port.expect("a receiver"))
    }

    /// The health and metrics listener's base URL ([`Setup::ops_listener`]).
    pub fn ops_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.run.ops_port.expect("an ops listener"))
    }

    /// The store file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("relay.db")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ota-relay.toml")
    }

    /// The messages queued before the start, and the ones stored before it.
    pub fn queued(&self) -> &[SampleMessage] {
        &self.queued
    }

    pub fn stored(&self) -> &[SampleMessage] {
        &self.stored
    }

    /// Waits until at least `n` deliveries have a recorded attempt.
    pub async fn wait_for_attempts(&self, n: i64) {
        self.wait_for_store(&format!("{n} deliveries attempted"), |db| {
            db.query_row("SELECT count(*) FROM deliveries WHERE attempts > 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
                >= n
        })
        .await
    }

    /// Writes the configuration again, `sections` in place of the ones the setup gave (`""` keeps none).
    pub fn write_config(&self, replacing: &str) {
        let sections = if replacing.is_empty() {
            &self.run.sections
        } else {
            replacing
        };
        let forward = self
            .run
            .forward
            .as_deref()
            .map(|keys| forward_section(&self.pms, keys))
            .unwrap_or_default();
        let ops = self
            .run
            .ops_port
            .map(|port| format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"))
            .unwrap_or_default();
        let receive = self
            .run
            .receive_port
            .map(|port| {
                let c = &self.run.push_credentials;
                let api = self
                    .run
                    .channex_api
                    .as_ref()
                    .map(|(url, key)| (url.as_str(), key.as_str()));
                let listen = match self.run.socket {
                    Some(_) => "systemd".to_owned(),
                    None => format!("127.0.0.1:{port}"),
                };
                format!(
                    "[receive]\nlisten = \"{listen}\"\n{}{}{}\n{}{}\n{}",
                    self.run.receive_keys,
                    c.notifications_section(),
                    self.run.notification_keys,
                    c.staah_section(),
                    self.run.staah_keys,
                    c.channex_section(api)
                )
            })
            .unwrap_or_default();
        let api = self
            .run
            .api_port
            .map(|port| ota_relay::fake::pms_api::api_section(&format!("127.0.0.1:{port}"), &self.run.api_keys))
            .unwrap_or_default();
        let extra = format!("{forward}{sections}{ops}{receive}{api}");
        let credentials = if self.run.token {
            format!(
                "auth = \"token\"\nclient_id = \"relay-client\"\nclient_secret = \"{CLIENT_SECRET}\"\ntoken_url = \"{}\"",
                self.ota.token_url()
            )
        } else {
            format!("username = \"relay\"\npassword = \"{PASSWORD}\"")
        };
        let booking = format!("{credentials}\n{}", self.run.booking);
        write_config_with(self.dir.path(), &self.ota.base_url(), &booking, &extra);
    }

    /// The configuration as the daemon reads it (secrets resolved from the file).
    pub fn settings(&self) -> ota_relay::config::Settings {
        ota_relay::config::load(&self.config()).unwrap()
    }

    /// Queues seed `seed`'s sample messages `range` upstream.
    pub fn enqueue(&self, seed: u64, range: std::ops::Range<u64>) -> Vec<SampleMessage> {
        let samples: Vec<SampleMessage> = range.map(|i| guest_message(seed, i)).collect();
        self.ota.enqueue(samples.clone());
        samples
    }

    /// Starts the real binary on the configuration (it must not be running).
    pub fn run(&mut self) {
        assert!(self.daemon.is_none(), "the daemon runs already");
        let mut envs: Vec<(&str, &str)> = self.run.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        envs.push(("NOTIFY_SOCKET", self.notify_socket.to_str().unwrap()));
        let config = self.config();
        let args = ["run", "--config", config.to_str().unwrap()];
        let fd = self.run.socket.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        self.daemon = Some(Daemon::spawn_limited(&args, &envs, self.run.open_files, fd));
    }

    /// Waits for the `n`th READY=1 (one per start of the daemon).
    pub async fn ready(&mut self, n: usize) {
        self.notifications.wait_for_nth("READY=1", n).await;
    }

    /// The running daemon (for signals, its pid and its log).
    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the daemon runs")
    }

    pub fn signal(&mut self, signal: i32) {
        self.daemon().signal(signal);
    }

    /// SIGTERM, then the exit, which must be a success: its stderr.
    pub async fn stop(&mut self) -> String {
        self.daemon.take().expect("the daemon runs").stop().await
    }

    /// Waits for the daemon to exit by itself: its status and stderr.
    pub async fn exit(&mut self) -> (std::process::ExitStatus, String) {
        self.daemon.take().expect("the daemon runs").exit().await
    }

    pub async fn kill9(&mut self) {
        self.daemon.take().expect("the daemon runs").kill9().await;
    }

    /// Sends SIGHUP and waits for the reload's outcome in the daemon's systemd STATUS, which it returns.
    pub async fn reload(&mut self) -> String {
        let before = self.notifications.count("STATUS=configuration reload");
        self.signal(libc::SIGHUP);
        let note = self
            .notifications
            .wait_for_nth("STATUS=configuration reload", before + 1)
            .await;
        note.lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_default()
            .to_owned()
    }

    /// Opens the store in this process, as the daemon does (its lock: the binary must not run).
    pub fn open_store(&self) -> Store {
        Store::open(&self.path(), Access::Consumer).unwrap()
    }

    pub fn db(&self) -> rusqlite::Connection {
        db(&self.path())
    }

    pub fn count(&self, sql: &str) -> i64 {
        count(&self.path(), sql)
    }

    pub fn stored_ids(&self) -> Vec<String> {
        stored_ids(&self.path())
    }

    /// The deliveries in `state` (pending, delivered, dead).
    pub fn deliveries(&self, state: &str) -> i64 {
        db(&self.path())
            .query_row("SELECT count(*) FROM deliveries WHERE state = ?1", [state], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// Waits until `check` holds for the store, read as the tools read it (beside the daemon).
    pub async fn wait_for_store(&self, what: &str, check: impl Fn(&rusqlite::Connection) -> bool) {
        let path = self.path();
        within(30, what, async {
            loop {
                if path.exists() && check(&db(&path)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Waits until the store records a successful run of `job`.
    pub async fn wait_for_job_run(&self, job: &str) {
        self.wait_for_store(&format!("a {job} run"), |db| {
            db.query_row("SELECT count(*) FROM job_runs WHERE job = ?1 AND ok", [job], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
                > 0
        })
        .await
    }

    /// An operator command on the configuration, run to completion.
    pub async fn command(&self, args: &[&str]) -> std::process::Output {
        command(&self.config(), args).await
    }

    /// `ota-relay status --json`, with its exit code.
    pub async fn status(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut full = vec!["status", "--json"];
        full.extend_from_slice(args);
        let out = self.command(&full).await;
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), json)
    }

    /// Every message queued upstream is stored once, and nothing was confirmed that the fake did not serve.
    pub fn assert_stored_exactly(&self, samples: &[SampleMessage]) {
        let stored = self.stored_ids();
        let set: HashSet<&String> = stored.iter().collect();
        assert_eq!(set.len(), stored.len(), "a message was stored twice");
        let missing: Vec<&String> = samples
            .iter()
            .map(|s| &s.message_id)
            .filter(|id| !set.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} messages lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        assert_eq!(stored.len(), samples.len());
        let violations = self.ota.read(|s| s.violations.clone());
        assert!(violations.is_empty(), "protocol violations: {violations:?}");
    }

    /// The store opened in this process by [`Setup::in_process`].
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("a relay started in_process")
    }

    /// The `[booking]` section as the daemon reads it.
    pub fn booking(&self) -> BookingSettings {
        self.settings().booking.expect("a [booking] section")
    }

    /// A drain loop on the in-process store and the relay's configuration, stopped by `cancel`.
    pub fn drainer_until(&self, cancel: &CancellationToken) -> Drainer {
        self.drainer_with(&self.booking(), cancel)
    }

    /// A drain loop on the in-process store with other Booking.com settings.
    pub fn drainer_with(&self, settings: &BookingSettings, cancel: &CancellationToken) -> Drainer {
        Drainer::new(settings, &context(self.store(), cancel)).unwrap()
    }

    /// A drain loop on `store` (opened by the test, e.g. again after a simulated restart).
    pub fn drainer_on(&self, store: &Store) -> Drainer {
        Drainer::new(&self.booking(), &context(store, &CancellationToken::new())).unwrap()
    }

    /// A drain loop on the in-process store, as the daemon builds it.
    pub fn drainer(&self) -> Drainer {
        self.drainer_until(&CancellationToken::new())
    }

    /// Runs the real drain loop in this process until the fake's queue is empty.
    pub async fn drain_all(&self) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.drainer_until(&cancel).run());
        within(60, "the fake queue to be drained", self.ota.wait_for(|s| s.drained())).await;
        cancel.cancel();
        within(10, "the drain loop to stop", task).await.unwrap();
    }
}

/// The webhook-id of a drained sample message.
pub fn webhook_id(sample: &SampleMessage) -> String {
    format!("booking.com:{}", sample.message_id)
}
