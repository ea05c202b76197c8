//! `messages`: every message stored, once per (provider, message_id), in arrival order (`seq`). A tombstone keeps
//! only what recognises a redelivery: provider, ids, times and a hash of the content.

use rusqlite::{Connection, params};

use super::{Millis, sha256_hex};

/// A message understood well enough to store; every field but `message_id` may be missing upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: String,
    pub conversation_id: Option<String>,
    pub conversation_type: Option<String>,
    pub conversation_reference: Option<String>,
    pub property_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_role: Option<String>,
    pub sender_name: Option<String>,
    pub content: Option<String>,
    pub attachment_ids: Vec<String>,
    pub sent_at: Option<String>,
    /// The message object as received, as JSON text (empty once tombstoned): its exact bytes, unless they were
    /// not valid JSON (invalid UTF-8, a raw control character in a string), then their repair.
    pub raw: String,
    /// The exact bytes, when `raw` had to repair them.
    pub raw_exact: Option<Vec<u8>>,
}

/// Where a message came from: the path (`booking_pull`, `booking_notification`, `staah`, `channex`), the OTA it
/// belongs to when known (`booking.com`, `airbnb`, `expedia`), and a push's own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub source: &'a str,
    pub ota: Option<&'a str>,
    pub push_id: Option<&'a str>,
}

impl Origin<'static> {
    /// The Booking.com queue (and its search).
    pub const BOOKING_PULL: Origin<'static> = Origin {
        source: "booking_pull",
        ota: Some("booking.com"),
        push_id: None,
    };
}

/// A stored message as the outbox and the tools read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    /// The dedup namespace (`booking.com`, `staah:<channel>`, `channex`): with the message id, the `webhook-id`.
    pub provider: String,
    pub source: String,
    pub ota: Option<String>,
    pub first_seen_at: Millis,
    pub message: NewMessage,
}

impl StoredMessage {
    /// The `webhook-id`: the same across retries and replays, so the PMS can deduplicate on it.
    pub fn webhook_id(&self) -> String {
        webhook_id(&self.provider, &self.message.message_id)
    }
}

/// Longest `webhook-id` sent; a longer id is sent as its hash (the body keeps the id itself).
const MAX_WEBHOOK_ID: usize = 200;

/// `provider:id`, safe in an HTTP header whatever the id holds: every byte outside visible ASCII, and `%`
/// itself, is percent-encoded (so an id that needs none is sent as it is), and an id too long for a header is
/// sent as `provider:sha256:<hex>`. Stable: the same message always gets the same header.
pub fn webhook_id(provider: &str, message_id: &str) -> String {
    let mut id = String::with_capacity(provider.len() + 1 + message_id.len());
    id.push_str(provider);
    id.push(':');
    for &b in message_id.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            id.push(b as char);
        } else {
            id.push_str(&format!("%{b:02X}"));
        }
    }
    if id.len() > MAX_WEBHOOK_ID {
        return format!("{provider}:sha256:{}", sha256_hex(message_id.as_bytes()));
    }
    id
}

/// How many columns [`COLUMNS`] names.
pub(super) const COLUMN_COUNT: usize = 18;

/// The columns [`read_at`] reads, for a query that names the table `m`.
pub(super) const COLUMNS: &str = "m.seq, m.provider, m.message_id, m.conversation_id, m.conversation_type,
    m.conversation_reference, m.property_id, m.sender_id, m.sender_role, m.sender_name, m.content,
    m.attachment_ids, m.sent_at, m.first_seen_at, m.raw, m.raw_exact, m.source, m.ota";

/// A [`StoredMessage`] from [`COLUMNS`], starting at column `offset`.
pub(super) fn read_at(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<StoredMessage> {
    let attachments: String = row.get(offset + 11)?;
    Ok(StoredMessage {
        seq: row.get(offset)?,
        provider: row.get(offset + 1)?,
        source: row.get(offset + 16)?,
        ota: row.get(offset + 17)?,
        first_seen_at: row.get(offset + 13)?,
        message: NewMessage {
            message_id: row.get(offset + 2)?,
            conversation_id: row.get(offset + 3)?,
            conversation_type: row.get(offset + 4)?,
            conversation_reference: row.get(offset + 5)?,
            property_id: row.get(offset + 6)?,
            sender_id: row.get(offset + 7)?,
            sender_role: row.get(offset + 8)?,
            sender_name: row.get(offset + 9)?,
            content: row.get(offset + 10)?,
            attachment_ids: serde_json::from_str(&attachments).unwrap_or_default(),
            sent_at: row.get(offset + 12)?,
            raw: row.get::<_, Option<String>>(offset + 14)?.unwrap_or_default(),
            raw_exact: row.get(offset + 15)?,
        },
    })
}

/// Indexes the text of the messages from `first_seq` on, in one statement. (A trigger per row would do it
/// per statement instead: FTS5 writes its pending terms out at every statement's savepoint, a segment per
/// message, which raised the drain's CPU time by half.)
pub(super) fn index_text(conn: &Connection, first_seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages_fts (rowid, content)
         SELECT seq, content FROM messages WHERE seq >= ?1 AND content IS NOT NULL",
    )?
    .execute([first_seq])?;
    Ok(())
}

/// The insert of new messages, prepared once for a whole batch.
pub(super) struct Insert<'c>(rusqlite::CachedStatement<'c>);

impl<'c> Insert<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<Insert<'c>> {
        conn.prepare_cached(
            "INSERT INTO messages (provider, message_id, conversation_id, conversation_type,
                 conversation_reference, property_id, sender_id, sender_role, sender_name, content,
                 attachment_ids, sent_at, first_seen_at, raw, raw_exact, source, ota, push_id, uuid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
             ON CONFLICT (provider, message_id) DO NOTHING",
        )
        .map(Insert)
    }

    /// Stores `m` unless the provider's message id is stored already: true if it was new (its `seq` is then
    /// the connection's last insert rowid).
    pub(super) fn run(
        &mut self,
        provider: &str,
        origin: Origin<'_>,
        m: &NewMessage,
        at: Millis,
    ) -> rusqlite::Result<bool> {
        let attachments = serde_json::to_string(&m.attachment_ids).unwrap_or_else(|_| "[]".into());
        let inserted = self.0.execute(params![
            provider,
            m.message_id,
            m.conversation_id,
            m.conversation_type,
            m.conversation_reference,
            m.property_id,
            m.sender_id,
            m.sender_role,
            m.sender_name,
            m.content,
            attachments,
            m.sent_at,
            at,
            m.raw,
            m.raw_exact,
            origin.source,
            origin.ota,
            origin.push_id,
            super::threads::message_uuid(provider, &m.message_id),
        ])?;
        Ok(inserted == 1)
    }
}

/// Marks a stored message as the channel's echo of reply `reply`.
pub(super) fn mark_echo(conn: &Connection, seq: i64, reply: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages SET reply_id = ?2 WHERE seq = ?1")?
        .execute(params![seq, reply])?;
    Ok(())
}

/// Removes the personal data of one message and keeps what recognises a redelivery.
pub(super) fn tombstone(conn: &Connection, seq: i64, now: Millis) -> rusqlite::Result<()> {
    let content: Option<String> = conn.query_row("SELECT content FROM messages WHERE seq = ?1", [seq], |r| r.get(0))?;
    conn.execute(
        "UPDATE messages SET content = NULL, raw = NULL, raw_exact = NULL, sender_name = NULL, attachment_ids = '[]',
             content_sha256 = coalesce(content_sha256, ?2), tombstoned_at = ?3
         WHERE seq = ?1",
        params![seq, content.map(|c| sha256_hex(c.as_bytes())), now],
    )?;
    Ok(())
}

/// Which messages an erasure request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erase<'a> {
    MessageId(&'a str),
    ConversationId(&'a str),
}

pub(super) fn seqs_named(conn: &Connection, which: Erase<'_>) -> rusqlite::Result<Vec<i64>> {
    let (sql, id) = match which {
        Erase::MessageId(id) => ("SELECT seq FROM messages WHERE message_id = ?1", id),
        Erase::ConversationId(id) => ("SELECT seq FROM messages WHERE conversation_id = ?1", id),
    };
    conn.prepare(sql)?.query_map([id], |r| r.get(0))?.collect()
}

/// Up to `limit` tombstones made before `cutoff`.
pub(super) fn tombstones_before(conn: &Connection, cutoff: Millis, limit: usize) -> rusqlite::Result<Vec<i64>> {
    conn.prepare("SELECT seq FROM messages WHERE tombstoned_at < ?1 LIMIT ?2")?
        .query_map(params![cutoff, limit as i64], |r| r.get(0))?
        .collect()
}

pub(super) fn delete(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
    Ok(())
}

/// Folds the redelivered copies among the receipts up to `max_receipt` into each message's count.
pub(super) fn add_redeliveries(conn: &Connection, max_receipt: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE messages SET redeliveries = redeliveries + c.n
         FROM (SELECT provider, message_id, count(*) AS n FROM receipts
               WHERE id <= ?1 AND stored = 0 GROUP BY provider, message_id) AS c
         WHERE messages.provider = c.provider AND messages.message_id = c.message_id",
        [max_receipt],
    )?;
    Ok(())
}

/// (messages stored, of them tombstones).
pub fn counts(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("SELECT count(*), count(tombstoned_at) FROM messages", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

/// Messages that are a channel's echo of a reply.
pub fn echo_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM messages WHERE reply_id IS NOT NULL", [], |r| {
        r.get(0)
    })
}

/// The first `n` messages stored (the demo's report).
pub fn first(conn: &Connection, n: usize) -> rusqlite::Result<Vec<StoredMessage>> {
    conn.prepare(&format!("SELECT {COLUMNS} FROM messages m ORDER BY m.seq LIMIT ?1"))?
        .query_map([n as i64], |r| read_at(r, 0))?
        .collect()
}

/// The raw body of the newest guest message of a conversation (else of any message): what a STAAH reply takes
/// its coordinates from.
pub fn latest_raw_of(conn: &Connection, provider: &str, conversation_id: &str) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension as _;
    conn.prepare_cached(
        "SELECT raw FROM messages WHERE provider = ?1 AND conversation_id = ?2 AND raw IS NOT NULL
         ORDER BY sender_role = 'guest' DESC, seq DESC LIMIT 1",
    )?
    .query_row(params![provider, conversation_id], |r| r.get(0))
    .optional()
}

/// Whether a message with this channel id is stored already, and since when.
pub fn first_seen(conn: &Connection, provider: &str, message_id: &str) -> rusqlite::Result<Option<Millis>> {
    use rusqlite::OptionalExtension as _;
    conn.prepare_cached("SELECT first_seen_at FROM messages WHERE provider = ?1 AND message_id = ?2")?
        .query_row(params![provider, message_id], |r| r.get(0))
        .optional()
}
