//! `ota-relay dead-letters list|replay`.

use std::fmt::Write as _;
use std::path::Path;

use crate::store::deliveries::{self as outbox, DeadLetter, Replay};
use crate::store::{self, StoreError, now_ms};

pub fn list(store_path: &Path, json: bool) -> Result<String, StoreError> {
    let conn = store::open_for_tools(store_path)?;
    let letters = outbox::dead_letters(&conn)?;
    if json {
        return Ok(serde_json::to_string_pretty(&letters).unwrap_or_else(|_| "[]".into()) + "\n");
    }
    Ok(render(&letters))
}

fn render(letters: &[DeadLetter]) -> String {
    let mut out = String::new();
    if letters.is_empty() {
        out.push_str("no dead letters\n");
        return out;
    }
    let id_width = letters.iter().map(|l| l.message_id.len()).max().unwrap_or(10).max(10);
    let _ = writeln!(
        out,
        "{:>8}  {:<12} {:<id_width$}  {:>8}  {:<24}  LAST FAILURE",
        "SEQ", "PROVIDER", "MESSAGE_ID", "ATTEMPTS", "DEAD SINCE"
    );
    for l in letters {
        let failure = match (&l.last_status, &l.last_error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => error.chars().take(80).collect(),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<12} {:<id_width$}  {:>8}  {:<24}  {failure}",
            l.seq,
            l.provider,
            l.message_id,
            l.attempts,
            l.dead_since.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(out, "{} dead letter(s)", letters.len());
    out
}

/// Returns how many were replayed, and the report.
pub fn replay(store_path: &Path, which: &Replay) -> Result<(usize, String), StoreError> {
    let mut conn = store::open_for_tools(store_path)?;
    let replayed = outbox::replay(&mut conn, which, now_ms())?;
    drop(conn);
    if replayed == 0 {
        let text = match which {
            Replay::All => "no dead letters to replay\n".into(),
            Replay::MessageId(id) => format!("no dead letter with message id {id}\n"),
        };
        return Ok((0, text));
    }
    let woken = super::wake::wake_daemon(store_path);
    Ok((replayed, format!("replayed {replayed} dead letter(s); {woken}\n")))
}

/// `ota-relay retry-now`: every pending delivery waiting for a retry is due now; a running daemon is woken and, if
/// it counts the PMS as failing, probes at once.
pub fn retry_now(store_path: &Path) -> Result<String, StoreError> {
    let conn = store::open_for_tools(store_path)?;
    let due = outbox::retry_now(&conn, now_ms())?;
    drop(conn);
    let woken = super::wake::wake_daemon(store_path);
    Ok(format!(
        "{due} pending deliveries waiting for a retry are due now; {woken}\n"
    ))
}
