//! Command line: parses arguments, maps failures to exit codes. Output for the user goes to stdout; logs and
//! errors to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH};
use crate::store::StoreError;

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
    },
    /// Inspect and replay deliveries the PMS never accepted (works while the daemon runs).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
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
            crate::telemetry::init(&settings.log);
            finish(runtime().and_then(|rt| rt.block_on(crate::app::run(settings))))
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
                        Some(id) if !args.all => crate::forward::outbox::Replay::MessageId(id),
                        _ => crate::forward::outbox::Replay::All,
                    };
                    // An unknown message id is an error; "replay all" with nothing to replay is not.
                    let all = matches!(which, crate::forward::outbox::Replay::All);
                    crate::ops::dead_letters::replay(store, &which).map(|(n, out)| (n > 0 || all, out))
                }
            };
            match result {
                Ok((ok, out)) => {
                    print!("{out}");
                    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("ota-relay: {e}");
                    ExitCode::from(if e.is_data_error() { EX_DATAERR } else { 1 })
                }
            }
        }
        Command::Demo { messages, seed, keep } => {
            crate::telemetry::init(&config::LogSettings {
                format: config::LogFormat::Pretty,
                level: "info".into(),
            });
            let options = crate::demo::DemoOptions { messages, seed, keep };
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
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
