//! `ota-relay replies list|resolve|resend`: what an operator does about replies, beside the running daemon.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::ops::tools::ToolError;
use crate::store::replies::{self, Reply, ReplyState};
use crate::store::threads::Thread;
use crate::store::{self, now_ms};

#[derive(Serialize)]
struct Listed<'a> {
    id: i64,
    uuid: &'a str,
    state: &'static str,
    thread_id: &'a str,
    channel: &'a str,
    conversation_id: &'a str,
    author: &'a str,
    created_at: String,
    updated_at: String,
    reason: Option<&'a str>,
    channel_message_id: Option<&'a str>,
}

fn listed<'a>(r: &'a Reply, t: &'a Thread) -> Listed<'a> {
    Listed {
        id: r.id,
        uuid: &r.uuid,
        state: r.state.name(),
        thread_id: &r.thread_id,
        channel: &t.provider,
        conversation_id: &t.conversation_id,
        author: &r.author,
        created_at: r.created_at.rfc3339(),
        updated_at: r.updated_at.rfc3339(),
        reason: r.reason.as_deref(),
        channel_message_id: r.channel_message_id.as_deref(),
    }
}

pub fn list(store_path: &Path, state: Option<&str>, json: bool) -> Result<String, ToolError> {
    let state = match state {
        Some(s) => Some(ReplyState::parse(s).ok_or_else(|| {
            ToolError::Usage(format!("--state {s:?}: one of pending, sending, sent, failed, unknown"))
        })?),
        None => None,
    };
    let conn = store::open_for_tools(store_path)?;
    let found = replies::list(&conn, state, 1000)?;
    let rows: Vec<Listed<'_>> = found.iter().map(|(r, t)| listed(r, t)).collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into()) + "\n");
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no replies\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<36}  {:<8}  {:<14}  {:<24}  REASON",
        "ID", "UUID", "STATE", "CHANNEL", "CREATED"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:>6}  {:<36}  {:<8}  {:<14}  {:<24}  {}",
            r.id,
            r.uuid,
            r.state,
            r.channel,
            r.created_at,
            r.reason.unwrap_or("-")
        );
    }
    let _ = writeln!(out, "{} reply(ies), newest first", rows.len());
    Ok(out)
}

fn found(conn: &rusqlite::Connection, id: &str) -> Result<Reply, ToolError> {
    replies::find(conn, id)?.ok_or_else(|| ToolError::Usage(format!("no reply {id} (see `ota-relay replies list`)")))
}

/// An operator who checked the extranet says how it ended.
pub fn resolve(store_path: &Path, id: &str, sent: bool) -> Result<String, ToolError> {
    let mut conn = store::open_for_tools(store_path)?;
    let reply = found(&conn, id)?;
    if !replies::resolve(&mut conn, reply.id, sent, now_ms())? {
        return Err(ToolError::Usage(format!(
            "reply {id} is {}: only a pending, unknown or failed reply can be resolved (and a sent one stays sent)",
            reply.state.name()
        )));
    }
    drop(conn);
    let woken = super::wake::wake_daemon(store_path);
    let state = if sent { "sent" } else { "failed" };
    Ok(format!(
        "reply {} resolved as {state}; the PMS is told; {woken}\n",
        reply.uuid
    ))
}

/// Sends a failed or unknown reply again.
pub fn resend(store_path: &Path, id: &str) -> Result<String, ToolError> {
    let conn = store::open_for_tools(store_path)?;
    let reply = found(&conn, id)?;
    let warning = match reply.state {
        ReplyState::Unknown => {
            "warning: its first send may have arrived: the guest may get it twice (check the extranet first)\n"
        }
        ReplyState::Failed => "",
        other => {
            return Err(ToolError::Usage(format!(
                "reply {id} is {}: only a failed or unknown reply can be sent again",
                other.name()
            )));
        }
    };
    if !replies::resend(&conn, reply.id, now_ms())? {
        return Err(ToolError::Usage(format!(
            "reply {id} has no text left (erased): nothing to send"
        )));
    }
    drop(conn);
    let woken = super::wake::wake_daemon(store_path);
    Ok(format!("{warning}reply {} is pending again; {woken}\n", reply.uuid))
}
