//! `ota-relay backup`, `quarantine list|show|purge` and `erase`: each a short transaction (or a read) on its own
//! connection, beside a running daemon.

use std::fmt::Write as _;
use std::path::Path;

use crate::store::housekeeping::{self, Erase, EraseReport};
use crate::store::{self, StoreError, messages, now_ms, quarantine};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
}

impl From<rusqlite::Error> for ToolError {
    fn from(e: rusqlite::Error) -> ToolError {
        ToolError::Store(e.into())
    }
}

/// A consistent copy of the store (`VACUUM INTO` reads one snapshot while the daemon keeps writing), checked with
/// `integrity_check` before it is reported done. Returns the report.
pub fn backup(store_path: &Path, target: &Path) -> Result<String, ToolError> {
    if target.exists() {
        return Err(ToolError::Usage(format!(
            "{} exists; choose a new file name (a backup never overwrites)",
            target.display()
        )));
    }
    let target_text = target
        .to_str()
        .ok_or_else(|| ToolError::Usage(format!("{} is not valid UTF-8", target.display())))?;
    let conn = store::open_for_tools(store_path)?;
    conn.execute("VACUUM INTO ?1", [target_text])?;
    drop(conn);
    let copy = rusqlite::Connection::open_with_flags(target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(ToolError::Usage(format!(
            "the backup {} failed its integrity check: {check}",
            target.display()
        )));
    }
    let (messages, _) = messages::counts(&copy)?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "backup written to {} ({messages} messages, {bytes} bytes, integrity_check ok)\n",
        target.display()
    ))
}

pub fn quarantine_list(store_path: &Path, json: bool) -> Result<String, ToolError> {
    let conn = store::open_for_tools(store_path)?;
    let items = quarantine::list(&conn)?;
    if json {
        return Ok(serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into()) + "\n");
    }
    let mut out = String::new();
    if items.is_empty() {
        out.push_str("nothing quarantined\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<12} {:<24}  {:>5}  {:>7}  REASON",
        "ID", "PROVIDER", "LAST SEEN", "SEEN", "BYTES"
    );
    for q in &items {
        let _ = writeln!(
            out,
            "{:>6}  {:<12} {:<24}  {:>5}  {:>7}  {}",
            q.id, q.provider, q.last_seen_at, q.seen_count, q.bytes, q.reason
        );
    }
    let _ = writeln!(
        out,
        "{} quarantined element(s); `ota-relay quarantine show ID` prints one",
        items.len()
    );
    Ok(out)
}

/// The element's exact bytes as received (guest data: for the operator's terminal, never the log), which need
/// not be UTF-8.
pub fn quarantine_show(store_path: &Path, id: i64) -> Result<Vec<u8>, ToolError> {
    let conn = store::open_for_tools(store_path)?;
    let (reason, raw) =
        quarantine::get(&conn, id)?.ok_or_else(|| ToolError::Usage(format!("no quarantined element with id {id}")))?;
    let mut out = format!("# reason: {reason}\n").into_bytes();
    out.extend_from_slice(&raw);
    out.push(b'\n');
    Ok(out)
}

/// Removes quarantined elements: one by id, or all.
pub fn quarantine_purge(store_path: &Path, id: Option<i64>) -> Result<String, ToolError> {
    let conn = store::open_for_tools(store_path)?;
    let n = quarantine::purge(&conn, id)?;
    if n == 0
        && let Some(id) = id
    {
        return Err(ToolError::Usage(format!("no quarantined element with id {id}")));
    }
    Ok(format!("purged {n} quarantined element(s)\n"))
}

/// A guest's erasure request: content and raw removed, a tombstone kept so that a redelivery is not stored again.
pub fn erase(store_path: &Path, which: Erase<'_>) -> Result<(EraseReport, String), ToolError> {
    let mut conn = store::open_for_tools(store_path)?;
    let report = housekeeping::erase(&mut conn, which, now_ms())?;
    // secure_delete overwrote the file's copy; the WAL still holds the pages as they were until it is emptied.
    let emptied = housekeeping::truncate_wal(&conn)?;
    let what = match which {
        Erase::MessageId(id) => format!("message id {id}"),
        Erase::ConversationId(id) => format!("conversation id {id}"),
    };
    let text = if report.erased == 0 && report.quarantined_removed == 0 {
        format!("nothing stored for {what}\n")
    } else {
        format!(
            "erased {} message(s) for {what} ({} not yet delivered, now never sent); {} quarantined element(s) \
             removed; tombstones keep redeliveries out\n",
            report.erased, report.undelivered, report.quarantined_removed
        )
    };
    let text = if emptied {
        text
    } else {
        format!(
            "{text}the write-ahead log could not be emptied now (a reader holds it); earlier copies of the erased \
             text stay in it until the next maintenance run or daemon stop\n"
        )
    };
    Ok((report, text))
}
