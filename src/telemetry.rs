//! Logging: to stderr (stdout carries only a command's own output), human-readable or one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};

#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error("not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("cannot change the filter: {0}")]
    Reload(#[from] reload::Error),
}

/// Changes the log filter of a running process (SIGHUP reload).
#[derive(Clone)]
pub struct LogHandle {
    reload: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
}

impl LogHandle {
    /// Applies `level` unless `RUST_LOG` is set (it overrides the file, as at start).
    pub fn set_level(&self, level: &str) -> Result<(), LevelError> {
        if std::env::var_os("RUST_LOG").is_some() {
            return Ok(());
        }
        let filter = EnvFilter::builder().parse(level)?;
        Ok(self.reload.reload(filter)?)
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides `settings.level`.
pub fn init(settings: &LogSettings) -> LogHandle {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .unwrap_or_else(|| EnvFilter::builder().parse_lossy(&settings.level));
    let (filter, reload) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    let _ = result; // a second init (tests, demo inside tests) keeps the first subscriber
    LogHandle { reload }
}
