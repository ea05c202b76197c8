//! `threads`: one conversation of one channel (a Booking.com conversation, a STAAH thread, a Channex message
//! thread), keyed by the dedup namespace and the channel's conversation id. Updated in the transaction that
//! stores its messages ([`Deltas`]), so a thread never disagrees with its messages.

use rusqlite::{Connection, OptionalExtension, params};

use super::Millis;
use super::messages::NewMessage;

/// Namespaces of the UUIDs ota-relay derives (v5): the same thread or message always gets the same id.
const THREAD_NAMESPACE: uuid::Uuid = uuid::uuid!("5b0e5c1e-7a53-4b8e-9d0a-0f0a7e1d2c01");
const MESSAGE_NAMESPACE: uuid::Uuid = uuid::uuid!("5b0e5c1e-7a53-4b8e-9d0a-0f0a7e1d2c02");

/// A channel's own UUID where it has one (Channex's thread and message ids: a PMS moving from Channex keeps
/// them), else one derived from the namespace and the channel's id.
fn stable_uuid(namespace: &uuid::Uuid, provider: &str, id: &str) -> String {
    if provider == "channex"
        && let Ok(own) = uuid::Uuid::parse_str(id)
    {
        return own.hyphenated().to_string();
    }
    uuid::Uuid::new_v5(namespace, format!("{provider}\u{0}{id}").as_bytes()).to_string()
}

pub fn thread_uuid(provider: &str, conversation_id: &str) -> String {
    stable_uuid(&THREAD_NAMESPACE, provider, conversation_id)
}

pub fn message_uuid(provider: &str, message_id: &str) -> String {
    stable_uuid(&MESSAGE_NAMESPACE, provider, message_id)
}

/// A thread as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub id: String,
    pub provider: String,
    pub conversation_id: String,
    pub ota: Option<String>,
    pub title: Option<String>,
    pub property_id: Option<String>,
    pub booking_reference: Option<String>,
    pub conversation_type: Option<String>,
    pub is_closed: bool,
    pub message_count: i64,
    pub last_message_at: Millis,
    pub inserted_at: Millis,
    pub updated_at: Millis,
    /// When someone last opened it in the inbox.
    pub read_at: Option<Millis>,
    /// When its guest last wrote.
    pub last_guest_at: Option<Millis>,
    /// Who wrote its newest entry (`guest`, `property`, ...).
    pub last_from: Option<String>,
}

impl Thread {
    /// The guest wrote since anyone last opened it.
    pub fn unread(&self) -> bool {
        self.last_guest_at.is_some_and(|g| self.read_at.is_none_or(|r| r < g))
    }

    /// Open, and the guest has the last word.
    pub fn needs_reply(&self) -> bool {
        !self.is_closed && self.last_from.as_deref() == Some("guest")
    }
}

pub(super) const COLUMNS: &str = "t.id, t.provider, t.conversation_id, t.ota, t.title, t.property_id,
    t.booking_reference, t.conversation_type, t.is_closed, t.message_count, t.last_message_at, t.inserted_at,
    t.updated_at, t.read_at, t.last_guest_at, t.last_from";

pub(super) fn read_at(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<Thread> {
    Ok(Thread {
        id: row.get(offset)?,
        provider: row.get(offset + 1)?,
        conversation_id: row.get(offset + 2)?,
        ota: row.get(offset + 3)?,
        title: row.get(offset + 4)?,
        property_id: row.get(offset + 5)?,
        booking_reference: row.get(offset + 6)?,
        conversation_type: row.get(offset + 7)?,
        is_closed: row.get::<_, i64>(offset + 8)? != 0,
        message_count: row.get(offset + 9)?,
        last_message_at: row.get(offset + 10)?,
        inserted_at: row.get(offset + 11)?,
        updated_at: row.get(offset + 12)?,
        read_at: row.get(offset + 13)?,
        last_guest_at: row.get(offset + 14)?,
        last_from: row.get(offset + 15)?,
    })
}

/// What the new messages of one transaction do to one thread: gathered, then written once ([`Upsert`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Delta {
    ota: Option<String>,
    title: Option<String>,
    property_id: Option<String>,
    booking_reference: Option<String>,
    conversation_type: Option<String>,
    /// A guest wrote: the thread is open again.
    reopen: bool,
    count: i64,
    at: Millis,
    /// The role of the newest of these messages.
    last_from: Option<String>,
}

/// The new messages of one transaction, by thread: a batch of 100 messages touches each of its threads once.
#[derive(Default)]
pub(super) struct Deltas(std::collections::HashMap<(String, String), Delta>);

impl Deltas {
    /// Counts a new message `m` of namespace `provider` into its thread (none without a conversation id).
    pub(super) fn add(&mut self, provider: &str, ota: Option<&str>, m: &NewMessage, at: Millis) {
        let Some(conversation) = m.conversation_id.as_deref() else {
            return;
        };
        let guest = m.sender_role.as_deref() == Some("guest");
        let d = self
            .0
            .entry((provider.to_owned(), conversation.to_owned()))
            .or_default();
        let later = |kept: &mut Option<String>, new: Option<&str>| {
            if let Some(new) = new {
                *kept = Some(new.to_owned());
            }
        };
        later(&mut d.ota, ota);
        later(&mut d.title, m.sender_name.as_deref().filter(|_| guest));
        later(&mut d.property_id, m.property_id.as_deref());
        later(&mut d.booking_reference, m.conversation_reference.as_deref());
        later(&mut d.conversation_type, m.conversation_type.as_deref());
        d.reopen |= guest;
        d.count += 1;
        d.at = d.at.max(at);
        d.last_from = m.sender_role.clone();
    }

    /// As [`Deltas::write`], for schema version 10 (before the inbox's columns and change log existed).
    fn write_v10(self, conn: &Connection) -> rusqlite::Result<()> {
        let mut upsert = conn.prepare(
            "INSERT INTO threads (id, provider, conversation_id, ota, title, property_id, booking_reference,
                 conversation_type, is_closed, message_count, last_message_at, inserted_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?11, ?9, ?9, ?9)
             ON CONFLICT (provider, conversation_id) DO UPDATE SET
                 ota = coalesce(excluded.ota, ota),
                 title = coalesce(excluded.title, title),
                 property_id = coalesce(excluded.property_id, property_id),
                 booking_reference = coalesce(excluded.booking_reference, booking_reference),
                 conversation_type = coalesce(excluded.conversation_type, conversation_type),
                 is_closed = CASE WHEN ?10 THEN 0 ELSE is_closed END,
                 message_count = message_count + ?11,
                 last_message_at = max(last_message_at, excluded.last_message_at),
                 updated_at = excluded.updated_at",
        )?;
        for ((provider, conversation), d) in self.0 {
            upsert.execute(params![
                thread_uuid(&provider, &conversation),
                provider,
                conversation,
                d.ota,
                d.title,
                d.property_id,
                d.booking_reference,
                d.conversation_type,
                d.at,
                d.reopen,
                d.count
            ])?;
        }
        Ok(())
    }

    /// Writes every thread's change, in the caller's transaction.
    pub(super) fn write(self, conn: &Connection) -> rusqlite::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        // A guest's message reopens a closed thread and names it (when it gives a name); what the messages do
        // not say keeps the thread's value.
        let mut upsert = conn.prepare_cached(
            "INSERT INTO threads (id, provider, conversation_id, ota, title, property_id, booking_reference,
                 conversation_type, is_closed, message_count, last_message_at, inserted_at, updated_at,
                 last_guest_at, last_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?11, ?9, ?9, ?9, CASE WHEN ?10 THEN ?9 END, ?12)
             ON CONFLICT (provider, conversation_id) DO UPDATE SET
                 ota = coalesce(excluded.ota, ota),
                 title = coalesce(excluded.title, title),
                 property_id = coalesce(excluded.property_id, property_id),
                 booking_reference = coalesce(excluded.booking_reference, booking_reference),
                 conversation_type = coalesce(excluded.conversation_type, conversation_type),
                 is_closed = CASE WHEN ?10 THEN 0 ELSE is_closed END,
                 message_count = message_count + ?11,
                 last_message_at = max(last_message_at, excluded.last_message_at),
                 updated_at = excluded.updated_at,
                 last_guest_at = coalesce(excluded.last_guest_at, last_guest_at),
                 last_from = coalesce(excluded.last_from, last_from)",
        )?;
        for ((provider, conversation), d) in self.0 {
            let id = thread_uuid(&provider, &conversation);
            super::changes::record(conn, &id, super::changes::Kind::Message, d.at)?;
            upsert.execute(params![
                id,
                provider,
                conversation,
                d.ota,
                d.title,
                d.property_id,
                d.booking_reference,
                d.conversation_type,
                d.at,
                d.reopen,
                d.count,
                d.last_from
            ])?;
        }
        Ok(())
    }
}

/// The thread of namespace `provider` and conversation `conversation_id`, if any.
pub fn find(conn: &Connection, provider: &str, conversation_id: &str) -> rusqlite::Result<Option<Thread>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM threads t WHERE t.provider = ?1 AND t.conversation_id = ?2"
    ))?
    .query_row(params![provider, conversation_id], |r| read_at(r, 0))
    .optional()
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Thread>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM threads t WHERE t.id = ?1"))?
        .query_row([id], |r| read_at(r, 0))
        .optional()
}

/// A reply counts into its thread: its last activity, its count, and it reopens it (as Channex does).
pub(super) fn add_reply(conn: &Connection, id: &str, at: Millis) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE threads SET message_count = message_count + 1, is_closed = 0,
             last_message_at = max(last_message_at, ?2), updated_at = ?2, last_from = 'property'
         WHERE id = ?1",
    )?
    .execute(params![id, at])?;
    super::changes::record(conn, id, super::changes::Kind::Reply, at)
}

pub fn set_closed(conn: &Connection, id: &str, closed: bool, at: Millis) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("UPDATE threads SET is_closed = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, closed, at])?;
    if n == 1 {
        super::changes::record(conn, id, super::changes::Kind::Thread, at)?;
    }
    Ok(n == 1)
}

/// Opening a thread in the inbox marks it read, for everyone.
pub fn mark_read(conn: &Connection, id: &str, at: Millis) -> rusqlite::Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE threads SET read_at = ?2 WHERE id = ?1 AND coalesce(read_at, 0) < coalesce(last_guest_at, 0)",
        )?
        .execute(params![id, at])?;
    if n == 1 {
        super::changes::record(conn, id, super::changes::Kind::Thread, at)?;
    }
    Ok(())
}

/// The threads of conversation `conversation_id`, in any channel.
pub(super) fn named(conn: &Connection, conversation_id: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT id FROM threads WHERE conversation_id = ?1")?
        .query_map([conversation_id], |r| r.get(0))?
        .collect()
}

pub(super) fn forget_title(conn: &Connection, id: &str, now: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE threads SET title = NULL, updated_at = ?2 WHERE id = ?1 AND title IS NOT NULL",
        params![id, now],
    )?;
    Ok(())
}

/// The title of the thread of message `seq` (its guest's name) goes with the message's personal data.
pub(super) fn forget_title_of_message(conn: &Connection, seq: i64, now: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE threads SET title = NULL, updated_at = ?2
         WHERE title IS NOT NULL
           AND (provider, conversation_id) = (SELECT provider, conversation_id FROM messages WHERE seq = ?1)",
        params![seq, now],
    )?;
    Ok(())
}

/// Retention: titles of threads without activity since `cutoff`.
pub(super) fn forget_titles_idle_since(conn: &Connection, cutoff: Millis, now: Millis) -> rusqlite::Result<u64> {
    Ok(conn.execute(
        "UPDATE threads SET title = NULL, updated_at = ?2 WHERE title IS NOT NULL AND last_message_at < ?1",
        params![cutoff, now],
    )? as u64)
}

/// Version 10: every stored message gets its UUID and is counted into its thread, in arrival order.
pub(super) fn build_all(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(
        "SELECT seq, provider, message_id, conversation_id, conversation_type, conversation_reference,
                property_id, sender_role, sender_name, ota, first_seen_at
         FROM messages ORDER BY seq",
    )?;
    let mut rows = read.query([])?;
    let mut set_uuid = conn.prepare("UPDATE messages SET uuid = ?2 WHERE seq = ?1")?;
    let mut deltas = Deltas::default();
    while let Some(r) = rows.next()? {
        let provider: String = r.get(1)?;
        let m = NewMessage {
            message_id: r.get(2)?,
            conversation_id: r.get(3)?,
            conversation_type: r.get(4)?,
            conversation_reference: r.get(5)?,
            property_id: r.get(6)?,
            sender_id: None,
            sender_role: r.get(7)?,
            sender_name: r.get(8)?,
            content: None,
            attachment_ids: Vec::new(),
            sent_at: None,
            raw: String::new(),
            raw_exact: None,
        };
        set_uuid.execute(params![r.get::<_, i64>(0)?, message_uuid(&provider, &m.message_id)])?;
        let ota: Option<String> = r.get(9)?;
        deltas.add(&provider, ota.as_deref(), &m, r.get(10)?);
    }
    // Migrations run in order: this one writes version 10's columns only.
    deltas.write_v10(conn)
}

/// Which threads a list shows.
#[derive(Debug, Clone, Default)]
pub struct ThreadFilter {
    /// The caller's scope: only these properties (an API token limited to some).
    pub scope: Option<Vec<String>>,
    pub property_id: Option<String>,
    pub is_closed: Option<bool>,
    /// The OTA, as stored (`booking.com`, `airbnb`, `expedia`).
    pub ota: Option<String>,
    pub booking_reference: Option<String>,
    /// Threads of this channel's namespace (`booking.com`, `staah:` and its channels, `channex`).
    pub namespace_prefix: Option<String>,
    /// Open, and the guest has the last word.
    pub needs_reply: bool,
    /// Words that a message of the thread contains (full-text search).
    pub search: Option<String>,
}

/// A search box's words as an FTS5 query: each a quoted phrase (so no word is taken for syntax), all required.
fn fts_query(words: &str) -> Option<String> {
    let phrases: Vec<String> = words
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!phrases.is_empty()).then(|| phrases.join(" "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadOrder {
    LastMessage,
    Inserted,
    Updated,
}

/// A page of threads, and how many match in all. Ties are broken by id, in the same direction.
pub fn list(
    conn: &Connection,
    filter: &ThreadFilter,
    order: ThreadOrder,
    descending: bool,
    limit: usize,
    offset: usize,
) -> rusqlite::Result<(Vec<Thread>, i64)> {
    let mut clauses = Vec::new();
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(scope) = &filter.scope {
        let marks = vec!["?"; scope.len()].join(", ");
        clauses.push(format!("t.property_id IN ({marks})"));
        values.extend(scope.iter().map(|p| Box::new(p.clone()) as Box<dyn rusqlite::ToSql>));
    }
    if let Some(p) = &filter.property_id {
        clauses.push("t.property_id = ?".into());
        values.push(Box::new(p.clone()));
    }
    if let Some(closed) = filter.is_closed {
        clauses.push("t.is_closed = ?".into());
        values.push(Box::new(closed));
    }
    if let Some(ota) = &filter.ota {
        clauses.push("t.ota = ?".into());
        values.push(Box::new(ota.clone()));
    }
    if let Some(reference) = &filter.booking_reference {
        clauses.push("t.booking_reference = ?".into());
        values.push(Box::new(reference.clone()));
    }
    if let Some(prefix) = &filter.namespace_prefix {
        clauses.push("substr(t.provider, 1, length(?)) = ?".into());
        values.push(Box::new(prefix.clone()));
        values.push(Box::new(prefix.clone()));
    }
    if filter.needs_reply {
        clauses.push("t.is_closed = 0 AND t.last_from = 'guest'".into());
    }
    let searching = filter.search.as_deref().and_then(fts_query);
    if let Some(query) = &searching {
        clauses.push(
            "(t.provider, t.conversation_id) IN (SELECT m.provider, m.conversation_id FROM messages_fts f
             JOIN messages m INDEXED BY messages_seq_thread ON m.seq = f.rowid WHERE messages_fts MATCH ?)"
                .into(),
        );
        values.push(Box::new(query.clone()));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let count = |conn: &Connection, values: &[Box<dyn rusqlite::ToSql>]| {
        conn.query_row(
            &format!("SELECT count(*) FROM threads t {filter_sql}"),
            rusqlite::params_from_iter(values.iter()),
            |r| r.get::<_, i64>(0),
        )
    };
    let column = match order {
        ThreadOrder::LastMessage => "t.last_message_at",
        ThreadOrder::Inserted => "t.inserted_at",
        ThreadOrder::Updated => "t.updated_at",
    };
    let direction = if descending { "DESC" } else { "ASC" };
    let filtered = values.len();
    values.push(Box::new(limit as i64));
    values.push(Box::new(offset as i64));
    let page_sql = |extra: &str| {
        format!(
            "SELECT {COLUMNS}{extra} FROM threads t {filter_sql}
             ORDER BY {column} {direction}, t.id {direction} LIMIT ? OFFSET ?"
        )
    };
    if searching.is_none() {
        let total = count(conn, &values[..filtered])?;
        let threads = conn
            .prepare_cached(&page_sql(""))?
            .query_map(rusqlite::params_from_iter(values.iter()), |r| read_at(r, 0))?
            .collect::<Result<_, _>>()?;
        return Ok((threads, total));
    }
    // A common word matches many messages: the page and its count come from one pass over them.
    let total_at = COLUMNS.split(',').count();
    let rows: Vec<(Thread, i64)> = conn
        .prepare_cached(&page_sql(", count(*) OVER ()"))?
        .query_map(rusqlite::params_from_iter(values.iter()), |r| {
            Ok((read_at(r, 0)?, r.get(total_at)?))
        })?
        .collect::<Result<_, _>>()?;
    let total = match rows.first() {
        Some((_, total)) => *total,
        None if offset == 0 => 0,
        None => count(conn, &values[..filtered])?,
    };
    Ok((rows.into_iter().map(|(t, _)| t).collect(), total))
}

/// One entry of a thread: a message a channel brought, or a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Message(ReceivedEntry),
    Reply(super::replies::Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEntry {
    pub uuid: String,
    /// The channel's message id.
    pub message_id: String,
    pub content: Option<String>,
    pub attachment_ids: Vec<String>,
    pub sender_role: Option<String>,
    pub received_at: Millis,
}

/// A page of a thread's entries by time (newest first when `descending`, ties by id). A reply's echo is not
/// listed: the reply stands for it.
pub fn entries(
    conn: &Connection,
    thread: &Thread,
    descending: bool,
    limit: usize,
    offset: usize,
) -> rusqlite::Result<Vec<Entry>> {
    let direction = if descending { "DESC" } else { "ASC" };
    let union = "SELECT 0 AS kind, m.seq AS key, m.first_seen_at AS at, m.uuid AS uuid FROM messages m
                 WHERE m.provider = ?1 AND m.conversation_id = ?2 AND m.reply_id IS NULL
                 UNION ALL
                 SELECT 1, r.id, r.created_at, r.uuid FROM replies r WHERE r.thread_id = ?3";
    let keys: Vec<(i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT kind, key FROM ({union}) ORDER BY at {direction}, uuid {direction} LIMIT ?4 OFFSET ?5"
        ))?
        .query_map(
            params![
                thread.provider,
                thread.conversation_id,
                thread.id,
                limit as i64,
                offset as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(keys.len());
    for (kind, key) in keys {
        if kind == 1 {
            if let Some(reply) = super::replies::by_id(conn, key)? {
                out.push(Entry::Reply(reply));
            }
            continue;
        }
        let entry = conn
            .prepare_cached(
                "SELECT uuid, message_id, content, attachment_ids, sender_role, first_seen_at FROM messages
                 WHERE seq = ?1",
            )?
            .query_row([key], |r| {
                let attachments: String = r.get(3)?;
                Ok(ReceivedEntry {
                    uuid: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    message_id: r.get(1)?,
                    content: r.get(2)?,
                    attachment_ids: serde_json::from_str(&attachments).unwrap_or_default(),
                    sender_role: r.get(4)?,
                    received_at: r.get(5)?,
                })
            })?;
        out.push(Entry::Message(entry));
    }
    Ok(out)
}

/// How many entries a thread lists (its messages but the echoes, and its replies).
pub fn entry_count(conn: &Connection, thread: &Thread) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM messages WHERE provider = ?1 AND conversation_id = ?2 AND reply_id IS NULL)
              + (SELECT count(*) FROM replies WHERE thread_id = ?3)",
    )?
    .query_row(params![thread.provider, thread.conversation_id, thread.id], |r| {
        r.get(0)
    })
}
