//! The SQLite store: the single source of truth.
//!
//! One connection per process does all writing, on a dedicated thread, so SQLite work never blocks the async
//! runtime and transactions never interleave. Operator commands open their own short-lived connections.
//!
//! Every table has one module, which holds every statement on it (functions over a `Connection`, shared by the
//! daemon and the operator commands); [`ingest`] is the one write path for messages.

pub mod batches;
pub mod changes;
pub mod deliveries;
pub mod housekeeping;
mod ingest;
pub mod job_runs;
pub mod messages;
pub mod push_stats;
pub mod quarantine;
pub mod readers;
pub mod receipts;
pub mod replies;
mod schema;
pub mod sessions;
pub mod source_state;
pub mod threads;
mod token_exchanges;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use batches::{BatchOrigin, BatchSummary};
pub use ingest::{Committed, ConfirmCount, Element, IncomingBatch, Ingest, Poison, Push, PushContent, PushOutcome};
pub use messages::{NewMessage, Origin, StoredMessage};
pub use schema::SCHEMA_VERSION;
pub use token_exchanges::Reservation;

/// How long a writer waits for another connection's lock (operator commands run beside the daemon).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
const AUTOCHECKPOINT_FALLBACK_PAGES: i64 = 20_000;
/// How long the consumer lock is waited for before the store counts as taken by another consumer.
const LOCK_WAIT: Duration = Duration::from_secs(1);
/// How long the daemon waits at startup for another program's write transaction before refusing to start.
const STARTUP_LOCK_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store {path} is in use by another ota-relay process (lock {lock} is held); \
         only one consumer may drain a queue into a store"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot open store {path}: {what}")]
    Open {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<OpenCause>,
    },
    #[error(
        "store {path} has schema version {found}, newer than this ota-relay understands ({supported}); \
         run the newer ota-relay or restore a backup made for this version"
    )]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error(
        "store {path} is not writable ({detail}); check the path and its file system (mounted read-only?), \
         and under systemd that it lies in the unit's StateDirectory"
    )]
    ReadOnly { path: PathBuf, detail: String },
    #[error(
        "store {path} is locked by another program holding a write transaction (a sqlite3 shell or a backup \
         tool?); close it and start again"
    )]
    Busy { path: PathBuf },
    #[error(
        "store {path} is damaged ({detail}); ota-relay will not write to it. Stop, move the file aside (with its \
         -wal and -shm files) and restore the latest backup (`ota-relay backup` makes them), or salvage it with \
         `sqlite3 {path} .recover`; then start again"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the disk holding the store is full ({0}); whatever could not be stored was not confirmed upstream or \
         marked delivered. Free some space: ota-relay resumes by itself"
    )]
    Full(String),
    #[error("store error: {0}")]
    Sqlite(rusqlite::Error),
    #[error(
        "store {0} was deleted or replaced while ota-relay had it open (a restore or a clean-up?); nothing more is \
         stored or confirmed into the old file. Restart ota-relay: it opens what is at that path now (a new store \
         if nothing is), and messages not confirmed yet are fetched again"
    )]
    Replaced(PathBuf),
    #[error("the store thread has stopped")]
    Closed,
    /// A commit shared by several callers failed, for the reason given (each caller gets its copy).
    #[error("{0}")]
    Refused(String),
    #[error(
        "a store operation panicked (a bug: the log has the panic message); its transaction, if still open, was \
         rolled back"
    )]
    Panicked,
}

/// What refused to open a store, kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum OpenCause {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// The same failure for another caller of a shared commit: its kind kept where callers act on it.
    pub fn for_each_caller(&self) -> StoreError {
        match self {
            StoreError::Full(text) => StoreError::Full(text.clone()),
            StoreError::Replaced(path) => StoreError::Replaced(path.clone()),
            other => StoreError::Refused(other.to_string()),
        }
    }

    fn open(path: &Path, what: impl Into<String>, source: Option<OpenCause>) -> StoreError {
        StoreError::Open {
            path: path.to_owned(),
            what: what.into(),
            source,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

impl StoreError {
    /// True when the store cannot be used at all as it is (newer schema, corruption): a restart won't help.
    pub fn is_data_error(&self) -> bool {
        matches!(self, StoreError::TooNew { .. } | StoreError::Corrupt { .. })
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    // Dropped with the store: the checkpoint thread sees the disconnection and stops.
    _checkpointer: Option<mpsc::Sender<()>>,
    path: PathBuf,
    file: Option<OpenFile>,
    // Held for the life of the process: the one-consumer-per-store lock.
    _lock: Option<File>,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The daemon: takes the exclusive consumer lock, creates and migrates the store.
    Consumer,
    /// Operator commands beside a running daemon: no lock; the store must exist and be current.
    Shared,
}

impl Store {
    pub fn open(path: &Path, access: Access) -> Result<Store, StoreError> {
        let lock = match access {
            Access::Consumer => Some(take_lock(path)?),
            Access::Shared => {
                if !path.exists() {
                    return Err(StoreError::open(path, "no such file (has ota-relay run yet?)", None));
                }
                None
            }
        };
        let mut conn = connect(path)?;
        if access == Access::Consumer {
            startup_checks(&conn, path)?;
        }
        schema::migrate(&mut conn, path, access == Access::Consumer)?;
        // SQLite in WAL mode keeps writing to a deleted or renamed file without complaint.
        let file = match access {
            Access::Consumer => Some(OpenFile::at(path)?),
            Access::Shared => None,
        };
        let checkpointer = match access {
            Access::Consumer => {
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
                conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_FALLBACK_PAGES)?;
                Some(spawn_checkpointer(path)?)
            }
            Access::Shared => None,
        };

        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = rx.recv() {
                    // A job that panics must not take the store (and so the whole daemon) with it: its open
                    // transaction rolled back as it unwound, its caller gets `Panicked`, and the next job runs.
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                    if run.is_err() && !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(|e| StoreError::open(path, "cannot start the store thread", Some(e.into())))?;
        Ok(Store {
            inner: Arc::new(Inner {
                jobs,
                _checkpointer: checkpointer,
                path: path.to_owned(),
                file,
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The daemon's store file as opened, to be checked before a commit that allows a confirm upstream.
    pub(crate) fn open_file(&self) -> Option<OpenFile> {
        self.inner.file.clone()
    }

    /// `Replaced` if the store's path no longer names the file the daemon opened (no check for tools).
    pub fn check_file(&self) -> Result<(), StoreError> {
        self.inner.file.as_ref().map_or(Ok(()), OpenFile::verify)
    }

    /// Runs `f` on the store thread with `synchronous = FULL` (a commit is on disk when it returns), and returns
    /// its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call_with(Durability::Full, f).await
    }

    /// Runs `f` with `synchronous = NORMAL`: its commits reach the OS but not the disk. Only for writes whose
    /// loss in a power cut is harmless (they are redone); anything that allows a confirm upstream uses `call`.
    pub(crate) async fn call_without_fsync<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call_with(Durability::Normal, f).await
    }

    /// Runs `f`, which only reads, at whatever `synchronous` level the previous job left: switching costs a
    /// PRAGMA compile, and the forwarder's claims sit between its outcome commits (NORMAL).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call_with(Durability::ReadOnly, |conn| {
            let changes = conn.total_changes();
            let read = f(conn);
            debug_assert_eq!(conn.total_changes(), changes, "a Store::read job wrote");
            read
        })
        .await
    }

    async fn call_with<T, F>(&self, sync: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(sync.ensure(conn).and_then(|()| f(conn)));
        });
        self.inner.jobs.send(job).map_err(|_| StoreError::Closed)?;
        // The thread outlives a panicking job, so an answer that never comes means the job panicked.
        rx.await.map_err(|_| StoreError::Panicked)?
    }
}

/// Copies the WAL into the database file from a second connection on its own thread, so commits (and so
/// confirms upstream) never wait for a checkpoint: SQLite's automatic checkpoint runs inside the committing
/// connection, and was most of the drain's time. PASSIVE never blocks the writer; the writer's own
/// autocheckpoint stays as a fallback at a much larger WAL size.
fn spawn_checkpointer(path: &Path) -> Result<mpsc::Sender<()>, StoreError> {
    let conn = connect(path)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "background checkpoint failed; the next one retries");
                }
            }
        })
        .map_err(|e| StoreError::open(path, "cannot start the checkpoint thread", Some(e.into())))?;
    Ok(stop)
}

/// The store file the connection has open (device and inode), so that deleting or replacing it underneath (a
/// restore by `mv`, a clean-up) stops the drain from confirming messages into a file nobody will open again.
#[derive(Clone, Debug)]
pub(crate) struct OpenFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OpenFile {
    fn at(path: &Path) -> Result<OpenFile, StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let meta =
            std::fs::metadata(path).map_err(|e| StoreError::open(path, "cannot read its metadata", Some(e.into())))?;
        Ok(OpenFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Ok while the path still names the file that was opened.
    pub(crate) fn verify(&self) -> Result<(), StoreError> {
        match OpenFile::at(&self.path) {
            Ok(now) if (now.dev, now.ino) == (self.dev, self.ino) => Ok(()),
            _ => Err(StoreError::Replaced(self.path.clone())),
        }
    }
}

fn take_lock(path: &Path) -> Result<File, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::open(
                path,
                format!("cannot create directory {}", dir.display()),
                Some(e.into()),
            )
        })?;
    }
    let lock_path = lock_path(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => StoreError::ReadOnly {
                path: path.to_owned(),
                detail: format!("cannot create the lock file {}: {e}", lock_path.display()),
            },
            _ => StoreError::open(
                path,
                format!("cannot open lock file {}", lock_path.display()),
                Some(e.into()),
            ),
        })?;
    // A holder that is exiting (or a child forked a moment before it closed the file, which shares the lock until
    // it execs) lets go within moments: wait that long before calling the store taken.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut attempt = file.try_lock();
    while matches!(attempt, Err(std::fs::TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        attempt = file.try_lock();
    }
    match attempt {
        Ok(()) => {
            // The holder's pid, so operator commands can wake it (SIGUSR1) after changing the store.
            use std::io::Write as _;
            let mut file = file;
            let _ = file
                .set_len(0)
                .and_then(|_| write!(file, "{}", std::process::id()))
                .and_then(|_| file.flush());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::open(
            path,
            format!("cannot lock {}", lock_path.display()),
            Some(e.into()),
        )),
    }
}

/// A plain connection for operator commands beside a running daemon: the store must exist and be current.
pub fn open_for_tools(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::open(
            path,
            "no such file (has `ota-relay run` been started with this configuration?)",
            None,
        ));
    }
    let mut conn = connect_existing(path)?;
    schema::migrate(&mut conn, path, false)?;
    Ok(conn)
}

/// A connection to a store that exists (operator commands, the health and metrics listener): no pragma that
/// writes (a new store's `auto_vacuum`, switching to WAL, both set when the daemon created it), so that reading
/// works on a full disk.
pub(super) fn connect_existing(path: &Path) -> Result<Connection, StoreError> {
    let classify = |e: rusqlite::Error| classify_open_error(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;")
        .map_err(classify)?;
    Ok(conn)
}

/// Bytes free for the store on its file system (`statvfs`), if the system says.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a pointer to a statvfs the call fills in; it is read only on success.
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// The lock file of the store the path names: beside the file itself, after symbolic links, so that every path
/// to one store (a link, `..` segments) means one lock.
fn lock_path(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).ok().or_else(|| {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
    });
    let mut lock = real.unwrap_or_else(|| path.to_owned()).into_os_string();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// The pid of the daemon consuming this store, if one is running (its lock is held).
pub fn consumer_pid(path: &Path) -> Option<u32> {
    let lock = lock_path(path);
    let file = std::fs::File::open(&lock).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None, // nobody holds it: no daemon
        Err(std::fs::TryLockError::WouldBlock) => std::fs::read_to_string(&lock).ok()?.trim().parse().ok(),
        Err(_) => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    Full,
    Normal,
    ReadOnly,
}

thread_local! {
    // The store thread's connection's `synchronous` setting, so it changes only when a job needs the other one:
    // a PRAGMA is compiled anew each time, which cost a noticeable share of every outcome commit.
    static STORE_SYNC: std::cell::Cell<Option<Durability>> = const { std::cell::Cell::new(None) };
}

impl Durability {
    fn ensure(self, conn: &Connection) -> Result<(), StoreError> {
        let level = match self {
            Durability::ReadOnly => return Ok(()),
            _ if STORE_SYNC.get() == Some(self) => return Ok(()),
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        STORE_SYNC.set(None);
        conn.pragma_update(None, "synchronous", level)?;
        STORE_SYNC.set(Some(self));
        Ok(())
    }
}

const STATEMENT_CACHE: usize = 128;

/// Opens a connection with the durability settings every writer must use.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let classify = |e: rusqlite::Error| classify_open_error(path, e);
    // READ_WRITE falls back to read-only when the OS refuses writes: checked below rather than discovered at the
    // first commit.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    // Closing the last connection would otherwise copy the WAL into the file: a store refused as damaged must be
    // left exactly as found. The daemon turns it back on once the store passed its checks.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    // Every statement of the hot paths stays prepared: rusqlite's default of 16 is fewer than the writer uses,
    // and a statement pushed out is parsed and planned again at its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(classify)? {
        return Err(StoreError::ReadOnly {
            path: path.to_owned(),
            detail: "the file can only be opened read-only".into(),
        });
    }
    // Takes effect only on a new, empty file (before WAL mode and the first table): lets the maintenance job
    // return free pages to the file system. On existing stores it changes nothing.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        .map_err(classify)?;
    // WAL + synchronous=FULL: a commit is durable once COMMIT returns, which is what allows a confirm upstream.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::open(
            path,
            format!("cannot switch to WAL journal mode (got {mode})"),
            None,
        ));
    }
    // Room for every statement of the hot paths (batches, outcomes, claims) beside the periodic ones, so a
    // status read or a housekeeping job does not evict them.
    conn.set_prepared_statement_cache_capacity(64);
    // secure_delete: an erasure or a tombstone overwrites the content it removes, instead of leaving it readable in
    // free space (the WAL is truncated after an erasure, and by the maintenance job).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;")
        .map_err(classify)?;
    Ok(conn)
}

fn classify_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        Some(ReadOnly) => StoreError::ReadOnly {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        Some(DatabaseBusy | DatabaseLocked) => StoreError::Busy { path: path.to_owned() },
        Some(CannotOpen) if directory_read_only(path) => StoreError::ReadOnly {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        _ => StoreError::open(path, "SQLite refused it", Some(e.into())),
    }
}

fn directory_read_only(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(".ota-relay-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(_) => true,
    }
}

/// Before the daemon touches anything: the store must be intact and writable now.
///
/// `quick_check` reads the whole file (seconds for gigabytes): a damaged store is refused with instructions,
/// never written to or recreated. The write probe turns "locked by another program" into a startup error
/// instead of a drain loop that fails at every commit.
fn startup_checks(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let classify = |e: rusqlite::Error| classify_open_error(path, e);
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(classify)?;
    if problems != ["ok"] {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("quick_check: {}", problems.join("; ")),
        });
    }
    conn.busy_timeout(STARTUP_LOCK_WAIT).map_err(classify)?;
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    Ok(())
}

pub use crate::time::Millis;

/// Now, in the store's time unit.
pub fn now_ms() -> Millis {
    Millis::now()
}

/// A store time as RFC 3339 UTC with milliseconds, for logs and reports.
pub fn format_ms(at: Millis) -> String {
    at.rfc3339()
}

/// Lower-case hex SHA-256: tombstones' content hashes and the quarantine's dedup key.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
