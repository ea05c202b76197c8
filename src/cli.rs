//! Command line: parses arguments, maps failures to exit codes. Output for the user goes to stdout; logs and
//! errors to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH};
use crate::ops::tools::ToolError;
use crate::store::StoreError;
use crate::store::housekeeping::Erase;

/// sysexits.h: the configuration is wrong; systemd must not restart (RestartPreventExitStatus=78).
pub const EX_CONFIG: u8 = 78;
/// sysexits.h: the store is unusable as it is (newer schema, corrupt); restarting will not help.
pub const EX_DATAERR: u8 = 65;

#[derive(Parser)]
#[command(
    name = "ota-relay",
    version,
    about = "Relays guest messages from online travel agencies into your PMS, without losing one.",
    long_about = "Relays guest messages from online travel agencies into your PMS, without losing one.\n\n\
        `run` drains the Booking.com Messaging API queue into a local SQLite store (every message stored before \
        it is confirmed upstream). `demo` shows it working against a built-in fake, with no credentials."
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "OTA_RELAY_CONFIG",
        default_value = DEFAULT_CONFIG_PATH,
        value_name = "FILE"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: drain the Booking.com queue into the store until SIGTERM.
    Run,
    /// Validate the configuration and print the effective settings (secrets masked); exit 78 if invalid.
    CheckConfig,
    /// Drain a built-in fake Booking.com queue into a temporary store and print a report (no network).
    Demo {
        /// Guest messages to put in the fake queue.
        #[arg(long, default_value_t = 500)]
        messages: u64,
        /// Seed for the sample messages and redeliveries.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Keep the store at this path instead of a temporary directory.
        #[arg(long, value_name = "FILE")]
        keep: Option<PathBuf>,
        /// Keep running with the staff inbox open on a local port, and print its one-time link (Ctrl-C stops).
        #[arg(long)]
        inbox: bool,
    },
    /// Inspect and replay deliveries the PMS never accepted (works while the daemon runs).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Show what the store says: polls, batches, deliveries, jobs. Exit 0 healthy, 1 degraded, 2 unreadable.
    Status {
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Degraded when the oldest pending delivery is older than this.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
        max_pending_age: std::time::Duration,
        /// Degraded when polls have been failing for longer than this.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, value_name = "DURATION")]
        max_failing: std::time::Duration,
        /// Degraded when no poll has been recorded for this long (raised to suit a long poll_interval).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, value_name = "DURATION")]
        max_silent: std::time::Duration,
    },
    /// Make every pending delivery that waits for a retry due now (the PMS is back after an outage); a running
    /// daemon sends them at once, oldest first.
    RetryNow,
    /// Write a consistent copy of the store to FILE (VACUUM INTO), while the daemon runs.
    Backup {
        /// The new file (never overwritten).
        file: PathBuf,
    },
    /// Inspect or remove elements that could not be understood.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// A guest's erasure request: remove the content of their messages, keeping tombstones so that a redelivery
    /// is not stored again.
    Erase(EraseArgs),
    /// Recovery after an outage: find messages with Booking.com's message search (or Channex's API, with
    /// --source channex) and store (and forward) the ones the store lacks. Safe to repeat; works while the daemon
    /// runs.
    Backfill(BackfillArgs),
    /// Inspect replies, settle the ones whose outcome is unknown, or send a failed one again.
    #[command(subcommand)]
    Replies(RepliesCommand),
    /// Print a one-time link (15 minutes, single use) that signs someone in to the inbox.
    InboxLink(InboxLinkArgs),
}

#[derive(Args)]
struct InboxLinkArgs {
    /// The [[api.tokens]] entry the session acts for (it sees no more than that token).
    #[arg(long, value_name = "NAME")]
    token_name: String,
    /// Who signs in: the author of their replies.
    #[arg(long, value_name = "NAME")]
    user: String,
    /// Only this property's conversations.
    #[arg(long, value_name = "ID")]
    property: Option<String>,
    /// Land on this conversation.
    #[arg(long, value_name = "ID")]
    thread: Option<String>,
}

#[derive(Subcommand)]
enum RepliesCommand {
    /// List replies, newest first.
    List {
        /// Only this state: pending, sending, sent, failed, unknown.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Settle a reply by what you checked in the extranet: it arrived (--sent) or it did not (--failed).
    Resolve(ResolveArgs),
    /// Send a failed or unknown reply again (an unknown one may have arrived: the guest could get it twice).
    Resend {
        /// The reply's number (`replies list`) or UUID.
        id: String,
    },
}

#[derive(Args)]
struct ResolveArgs {
    /// The reply's number (`replies list`) or UUID.
    id: String,
    #[command(flatten)]
    outcome: ResolveOutcome,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ResolveOutcome {
    #[arg(long)]
    sent: bool,
    #[arg(long)]
    failed: bool,
}

#[derive(Args)]
struct BackfillArgs {
    /// Where to look: Booking.com's message search, or Channex's API (its threads and their messages).
    #[arg(long, value_enum, default_value = "booking")]
    source: BackfillSource,
    /// Start of the range, inclusive: RFC 3339 (2026-11-01T00:00:00Z) or a date (its 00:00:00.000 UTC).
    #[arg(long, value_parser = crate::channel::booking::backfill::parse_time, value_name = "TIME")]
    after: i64,
    /// End of the range, inclusive (default: now); Booking.com ranges over 90 days are searched 90 days at a time.
    #[arg(long, value_parser = crate::channel::booking::backfill::parse_time, value_name = "TIME")]
    before: Option<i64>,
    /// Only this property's messages.
    #[arg(long, value_name = "ID")]
    property_id: Option<String>,
    /// Passed to the search as `order_by` unchanged (not sent when absent).
    #[arg(long, value_name = "VALUE")]
    order_by: Option<String>,
    /// How long to wait for one search job to become ready.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_wait: std::time::Duration,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackfillSource {
    Booking,
    Channex,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined elements (without their content).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print one quarantined element byte for byte, with the reason.
    Show { id: i64 },
    /// Remove one quarantined element, or all.
    Purge(PurgeArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PurgeArgs {
    /// The id shown by `quarantine list`.
    id: Option<i64>,
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct EraseArgs {
    #[arg(long, value_name = "ID")]
    message_id: Option<String>,
    #[arg(long, value_name = "ID")]
    conversation_id: Option<String>,
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// List dead letters: deliveries that failed past forward.retry.give_up_after, or got 410 Gone.
    List {
        /// One JSON array on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make dead letters pending again, with a fresh retry budget; a running daemon sends them at once.
    Replay(ReplayArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ReplayArgs {
    /// The message id of the dead letter to replay.
    message_id: Option<String>,
    /// Replay every dead letter.
    #[arg(long)]
    all: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => match config::load(&cli.config) {
            Ok(settings) => {
                for warning in &settings.warnings {
                    eprintln!("warning: {warning}");
                }
                print!("{}", settings.render_masked());
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Run => {
            let settings = match config::load(&cli.config) {
                Ok(settings) => settings,
                Err(e) => return config_failed(&e),
            };
            let log = crate::telemetry::init(&settings.log);
            finish(runtime().and_then(|rt| rt.block_on(crate::daemon::run(settings, log))))
        }
        Command::DeadLetters(command) => {
            let settings = match config::load_for_tools(&cli.config) {
                Ok(settings) => settings,
                Err(e) => return config_failed(&e),
            };
            let store = &settings.store.path;
            let result = match command {
                DeadLettersCommand::List { json } => crate::ops::dead_letters::list(store, json).map(|out| (true, out)),
                DeadLettersCommand::Replay(args) => {
                    let which = match args.message_id {
                        Some(id) if !args.all => crate::store::deliveries::Replay::MessageId(id),
                        _ => crate::store::deliveries::Replay::All,
                    };
                    // An unknown message id is an error; "replay all" with nothing to replay is not.
                    let all = matches!(which, crate::store::deliveries::Replay::All);
                    crate::ops::dead_letters::replay(store, &which).map(|(n, out)| (n > 0 || all, out))
                }
            };
            match result {
                Ok((ok, out)) => {
                    print!("{out}");
                    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("ota-relay: {}", crate::http_client::chain(&e));
                    ExitCode::from(if e.is_data_error() { EX_DATAERR } else { 1 })
                }
            }
        }
        Command::Status {
            json,
            max_pending_age,
            max_failing,
            max_silent,
        } => {
            let settings = match config::load_for_tools(&cli.config) {
                Ok(settings) => settings,
                Err(e) => return config_failed(&e),
            };
            let thresholds = crate::ops::status::Thresholds {
                pending_age: max_pending_age,
                failing_for: max_failing,
                silent_for: max_silent,
                ..Default::default()
            }
            .fitted_to(settings.pull())
            .with_reconcile_window(settings.replies.reconcile_window);
            match crate::ops::status::read(&settings.store.path, thresholds) {
                Ok(status) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
                    } else {
                        print!("{}", status.render());
                    }
                    ExitCode::from(status.exit_code())
                }
                Err(e) => {
                    if json {
                        let out =
                            serde_json::json!({"health": "unreadable", "problems": [crate::http_client::chain(&e)]});
                        println!("{out}");
                    }
                    eprintln!("ota-relay: {}", crate::http_client::chain(&e));
                    ExitCode::from(2)
                }
            }
        }
        Command::RetryNow => tool(&cli.config, |store| Ok(crate::ops::dead_letters::retry_now(store)?)),
        Command::Backup { file } => tool(&cli.config, |store| crate::ops::tools::backup(store, &file)),
        Command::Quarantine(command) => tool(&cli.config, |store| match command {
            QuarantineCommand::List { json } => crate::ops::tools::quarantine_list(store, json).map(String::into_bytes),
            QuarantineCommand::Show { id } => crate::ops::tools::quarantine_show(store, id),
            QuarantineCommand::Purge(args) => {
                crate::ops::tools::quarantine_purge(store, args.id.filter(|_| !args.all)).map(String::into_bytes)
            }
        }),
        Command::Erase(args) => tool(&cli.config, |store| {
            let which = match (&args.message_id, &args.conversation_id) {
                (Some(id), _) => Erase::MessageId(id),
                (None, Some(id)) => Erase::ConversationId(id),
                (None, None) => unreachable!("clap requires one"),
            };
            crate::ops::tools::erase(store, which).map(|(_, text)| text)
        }),
        Command::Backfill(args) => backfill(&cli.config, args),
        Command::InboxLink(args) => inbox_link(&cli.config, args),
        Command::Replies(command) => tool(&cli.config, |store| match command {
            RepliesCommand::List { state, json } => crate::ops::replies::list(store, state.as_deref(), json),
            RepliesCommand::Resolve(args) => crate::ops::replies::resolve(store, &args.id, args.outcome.sent),
            RepliesCommand::Resend { id } => crate::ops::replies::resend(store, &id),
        }),
        Command::Demo {
            messages,
            seed,
            keep,
            inbox,
        } => {
            crate::telemetry::init(&config::LogSettings {
                format: config::LogFormat::Pretty,
                level: "info".into(),
            });
            let options = crate::demo::DemoOptions {
                messages,
                seed,
                keep,
                inbox,
            };
            match runtime().and_then(|rt| rt.block_on(crate::demo::run(options))) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => finish(Err(e)),
            }
        }
    }
}

/// An operator command on the configured store: its report on stdout, or its error on stderr (exit 1; 65 for an
/// unusable store).
fn tool<T: Into<Vec<u8>>>(
    config_path: &std::path::Path,
    f: impl FnOnce(&std::path::Path) -> Result<T, ToolError>,
) -> ExitCode {
    let settings = match config::load_for_tools(config_path) {
        Ok(settings) => settings,
        Err(e) => return config_failed(&e),
    };
    match f(&settings.store.path) {
        Ok(out) => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&out.into());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ota-relay: {}", crate::http_client::chain(&e));
            let data = matches!(&e, ToolError::Store(s) if s.is_data_error());
            ExitCode::from(if data { EX_DATAERR } else { 1 })
        }
    }
}

fn backfill(config_path: &std::path::Path, args: BackfillArgs) -> ExitCode {
    let before = args.before.unwrap_or_else(|| crate::store::now_ms().unix_ms());
    if args.after > before {
        eprintln!("ota-relay: --after must not be later than --before");
        return ExitCode::from(2);
    }
    let settings = match config::load(config_path) {
        Ok(settings) => settings,
        Err(e) => return config_failed(&e),
    };
    crate::telemetry::init(&settings.log);
    if let BackfillSource::Channex = args.source {
        let Some(channex) = &settings.channex else {
            eprintln!(
                "ota-relay: backfill --source channex reads Channex's API: the configuration has no [channex] section"
            );
            return ExitCode::from(EX_CONFIG);
        };
        let run = async {
            let store = crate::store::Store::open(&settings.store.path, crate::store::Access::Shared)?;
            let report =
                crate::channel::channex::backfill::run(channex, &store, args.after, before, |line| println!("{line}"))
                    .await?;
            println!("{report}");
            if report.new > 0 {
                println!("{}", crate::ops::wake::wake_daemon(&settings.store.path));
            }
            anyhow::Ok(())
        };
        return finish(runtime().and_then(|rt| rt.block_on(run)));
    }
    let request = crate::channel::booking::backfill::Request {
        after_ms: args.after,
        before_ms: before,
        property_id: args.property_id,
        order_by: args.order_by,
        max_wait: args.max_wait,
    };
    let Some(booking) = &settings.booking else {
        eprintln!("ota-relay: backfill searches Booking.com: the configuration has no [booking] section");
        return ExitCode::from(EX_CONFIG);
    };
    let run = async {
        let store = crate::store::Store::open(&settings.store.path, crate::store::Access::Shared)?;
        let client =
            crate::channel::booking::BookingClient::new(booking, store.clone(), crate::metrics::Metrics::new())?;
        let report =
            crate::channel::booking::backfill::run(&client, &store, &request, |line| println!("{line}")).await?;
        println!("{report}");
        if report.new > 0 {
            println!("{}", crate::ops::wake::wake_daemon(&settings.store.path));
        }
        anyhow::Ok(())
    };
    finish(runtime().and_then(|rt| rt.block_on(run)))
}

fn inbox_link(config_path: &std::path::Path, args: InboxLinkArgs) -> ExitCode {
    let settings = match config::load(config_path) {
        Ok(settings) => settings,
        Err(e) => return config_failed(&e),
    };
    let link = crate::ops::inbox::link(
        &settings,
        &args.token_name,
        &args.user,
        args.property.as_deref(),
        args.thread.as_deref(),
    );
    match link {
        Ok(link) => {
            println!("{link}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ota-relay: {e}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn config_failed(error: &ConfigError) -> ExitCode {
    eprintln!("ota-relay: configuration error: {error}");
    ExitCode::from(EX_CONFIG)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = match error.downcast_ref::<StoreError>() {
                Some(e) if e.is_data_error() => EX_DATAERR,
                _ => 1,
            };
            // Not through tracing: a startup failure must be visible whatever the log filter says.
            eprintln!("ota-relay: {error:#}");
            ExitCode::from(code)
        }
    }
}
