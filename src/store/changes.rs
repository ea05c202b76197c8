//! `changes`: what happened to which thread, in order, for the inbox's live pages. Written in the transaction of
//! the change itself, so a page that read the store up to change N and then follows changes after N misses
//! nothing; pruned after a day (a page older than that reloads whole).

use rusqlite::{Connection, params};

use super::Millis;

/// How long changes are kept for pages to catch up on.
pub const KEPT_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// New messages in the thread.
    Message,
    /// A reply was written or reached a new state.
    Reply,
    /// Closed, opened, read, tagged.
    Thread,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Reply => "reply",
            Kind::Thread => "thread",
        }
    }
}

pub(super) fn record(conn: &Connection, thread_id: &str, kind: Kind, at: Millis) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO changes (thread_id, kind, at) VALUES (?1, ?2, ?3)")?
        .execute(params![thread_id, kind.name(), at])?;
    Ok(())
}

/// A reply's change, by the reply's id.
pub(super) fn record_reply(conn: &Connection, reply_id: i64, at: Millis) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO changes (thread_id, kind, at) SELECT thread_id, 'reply', ?2 FROM replies WHERE id = ?1",
    )?
    .execute(params![reply_id, at])?;
    Ok(())
}

/// One change as the live pages get it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub id: i64,
    pub thread_id: String,
    pub kind: String,
}

/// Changes after `after`, of threads the caller may see (`scope`: only these properties), oldest first.
pub fn since(conn: &Connection, after: i64, scope: Option<&[String]>, limit: usize) -> rusqlite::Result<Vec<Change>> {
    let rows: Vec<(Change, Option<String>)> = conn
        .prepare_cached(
            "SELECT c.id, c.thread_id, c.kind, t.property_id FROM changes c JOIN threads t ON t.id = c.thread_id
             WHERE c.id > ?1 ORDER BY c.id LIMIT ?2",
        )?
        .query_map(params![after, limit as i64], |r| {
            Ok((
                Change {
                    id: r.get(0)?,
                    thread_id: r.get(1)?,
                    kind: r.get(2)?,
                },
                r.get(3)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter(|(_, property)| match scope {
            None => true,
            Some(ids) => property.as_ref().is_some_and(|p| ids.contains(p)),
        })
        .map(|(c, _)| c)
        .collect())
}

/// The newest change's id (0 when none): what a page reflects when it is rendered.
pub fn latest(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))
}

pub(super) fn prune(conn: &Connection, now: Millis) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM changes WHERE at < ?1", [now.unix_ms() - KEPT_MS])
}
