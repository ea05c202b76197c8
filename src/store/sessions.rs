//! `sessions` and `one_time_tokens`: who is signed in to the inbox, and the single-use links that sign staff in.
//! Only hashes of the keys are stored: a copy of the store signs nobody in.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Millis, sha256_hex};

/// A one-time link is valid this long.
pub const ONE_TIME_TTL_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_name: String,
    pub user: String,
    /// The one property this session sees, when its link named one.
    pub property_id: Option<String>,
    pub csrf: String,
    pub last_seen_at: Millis,
}

/// Who a one-time link signs in, and where it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token_name: String,
    pub user: String,
    pub property_id: Option<String>,
    pub thread_id: Option<String>,
}

pub fn create_one_time(conn: &Connection, token: &str, grant: &Grant, now: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO one_time_tokens (token_sha256, token_name, user, property_id, thread_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            sha256_hex(token.as_bytes()),
            grant.token_name,
            grant.user,
            grant.property_id,
            grant.thread_id,
            now,
            now.unix_ms() + ONE_TIME_TTL_MS
        ],
    )?;
    // Spent and expired links are of no use to anyone.
    conn.execute(
        "DELETE FROM one_time_tokens WHERE expires_at < ?1",
        [now.unix_ms() - ONE_TIME_TTL_MS],
    )?;
    Ok(())
}

/// Spends a one-time link: its grant, once, within its 15 minutes; `None` for any other token.
pub fn redeem(conn: &mut Connection, token: &str, now: Millis) -> rusqlite::Result<Option<Grant>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let hash = sha256_hex(token.as_bytes());
    let grant = tx
        .query_row(
            "SELECT token_name, user, property_id, thread_id FROM one_time_tokens
             WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![hash, now],
            |r| {
                Ok(Grant {
                    token_name: r.get(0)?,
                    user: r.get(1)?,
                    property_id: r.get(2)?,
                    thread_id: r.get(3)?,
                })
            },
        )
        .optional()?;
    if grant.is_some() {
        tx.execute(
            "UPDATE one_time_tokens SET used_at = ?2 WHERE token_sha256 = ?1",
            params![hash, now],
        )?;
    }
    tx.commit()?;
    Ok(grant)
}

pub fn create_session(conn: &Connection, id: &str, grant: &Grant, csrf: &str, now: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO sessions (id_sha256, token_name, user, property_id, csrf, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            sha256_hex(id.as_bytes()),
            grant.token_name,
            grant.user,
            grant.property_id,
            csrf,
            now
        ],
    )?;
    Ok(())
}

/// The session of cookie `id`, unless it was idle for `idle_ms` or longer (then it is removed).
pub fn session(conn: &Connection, id: &str, idle_ms: i64, now: Millis) -> rusqlite::Result<Option<Session>> {
    let hash = sha256_hex(id.as_bytes());
    let found = conn
        .prepare_cached("SELECT token_name, user, property_id, csrf, last_seen_at FROM sessions WHERE id_sha256 = ?1")?
        .query_row([&hash], |r| {
            Ok(Session {
                token_name: r.get(0)?,
                user: r.get(1)?,
                property_id: r.get(2)?,
                csrf: r.get(3)?,
                last_seen_at: r.get(4)?,
            })
        })
        .optional()?;
    match found {
        Some(s) if now.unix_ms() - s.last_seen_at.unix_ms() < idle_ms => Ok(Some(s)),
        Some(_) => {
            conn.execute("DELETE FROM sessions WHERE id_sha256 = ?1", [&hash])?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The session was used now (written at most once a minute: reading pages does not write every time).
pub fn touch(conn: &Connection, id: &str, now: Millis) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id_sha256 = ?1 AND last_seen_at < ?3")?
        .execute(params![sha256_hex(id.as_bytes()), now, now.unix_ms() - 60_000])?;
    Ok(())
}

pub fn delete_session(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM sessions WHERE id_sha256 = ?1", [sha256_hex(id.as_bytes())])?;
    Ok(())
}
