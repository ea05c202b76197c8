//! Schema migrations, tracked in `PRAGMA user_version`. Each migration runs in one transaction together with
//! the version bump, so a crash mid-migration leaves the previous version intact.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// A schema change: SQL, or a step that needs Rust (values SQLite cannot compute, such as UUIDs).
enum Migration {
    Sql(&'static str),
    Rust(fn(&Connection) -> rusqlite::Result<()>),
}
use Migration::{Rust, Sql};

/// Times are Unix milliseconds (INTEGER); OTA timestamps are kept as the OTA sent them (TEXT).
const MIGRATIONS: &[Migration] = &[
    // 1: the drained queue.
    Sql(r#"
    CREATE TABLE messages (
        seq                    INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order; never reused
        provider               TEXT NOT NULL,
        message_id             TEXT NOT NULL,
        conversation_id        TEXT,
        conversation_type      TEXT,
        conversation_reference TEXT,
        property_id            TEXT,
        sender_id              TEXT,
        sender_role            TEXT,
        sender_name            TEXT,
        content                TEXT,
        attachment_ids         TEXT NOT NULL DEFAULT '[]',         -- JSON array of strings
        sent_at                TEXT,                               -- the OTA's timestamp, as sent
        first_seen_at          INTEGER NOT NULL,
        raw                    TEXT,                               -- the message object's exact bytes
        UNIQUE (provider, message_id)
    ) STRICT;

    CREATE TABLE batches (
        id          INTEGER PRIMARY KEY,
        provider    TEXT NOT NULL,
        fetched_at  INTEGER NOT NULL,
        fetched     INTEGER NOT NULL,
        new         INTEGER NOT NULL,
        redelivered INTEGER NOT NULL,
        quarantined INTEGER NOT NULL,
        ruid        TEXT
    ) STRICT;

    -- Every fetched copy of every message, so redeliveries stay visible.
    CREATE TABLE receipts (
        id          INTEGER PRIMARY KEY,
        batch_id    INTEGER NOT NULL REFERENCES batches(id),
        provider    TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        received_at INTEGER NOT NULL
    ) STRICT;

    -- Elements that could not be understood, kept byte for byte; a redelivered one bumps seen_count.
    CREATE TABLE quarantine (
        id            INTEGER PRIMARY KEY,
        provider      TEXT NOT NULL,
        raw_sha256    TEXT NOT NULL,
        raw           TEXT NOT NULL,
        reason        TEXT NOT NULL,
        first_batch   INTEGER REFERENCES batches(id),
        first_seen_at INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL,
        seen_count    INTEGER NOT NULL DEFAULT 1,
        UNIQUE (provider, raw_sha256)
    ) STRICT;

    -- When each token exchange was attempted (never the token): the 30-per-rolling-hour quota survives restarts.
    CREATE TABLE token_exchanges (
        at INTEGER NOT NULL
    ) STRICT;

    -- The drain loop's latest outcome per provider, for status and health.
    CREATE TABLE source_state (
        provider        TEXT PRIMARY KEY,
        last_poll_at    INTEGER,
        last_success_at INTEGER,
        last_batch_at   INTEGER,
        failing_since   INTEGER,
        last_error      TEXT,
        last_error_at   INTEGER
    ) STRICT;
    "#),
    // 2: the transactional outbox towards the PMS. One row per stored message, keyed by its seq, written in the
    // transaction that first stores the message; stores with history get their backlog here, oldest first.
    Sql(r#"
    CREATE TABLE deliveries (
        seq              INTEGER PRIMARY KEY REFERENCES messages(seq),
        state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        first_attempt_at INTEGER,
        next_attempt_at  INTEGER NOT NULL,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        done_at          INTEGER                 -- delivered, or dead, since
    ) STRICT;
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_pending ON deliveries (seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (done_at) WHERE state = 'dead';
    INSERT INTO deliveries (seq, next_attempt_at) SELECT seq, first_seen_at FROM messages ORDER BY seq;
    "#),
    // 3: housekeeping. Redelivery counts compacted from `receipts`; tombstones (content removed by retention or
    // an erasure request, the row kept so that a redelivery is still recognised); the last run of each job.
    Sql(r#"
    ALTER TABLE messages ADD COLUMN redeliveries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN content_sha256 TEXT;
    ALTER TABLE messages ADD COLUMN tombstoned_at INTEGER;
    CREATE TABLE job_runs (
        job         TEXT PRIMARY KEY,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        ok          INTEGER,
        summary     TEXT,
        runs        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    "#),
    // 4: each receipt says whether it is the copy that stored the message. Version 3 inferred that from
    // received_at = first_seen_at, which also matched a redelivery stored in the same millisecond. Rows written
    // before this version get the inference, restricted to the earliest such receipt of each message.
    // Batches say whether they came from the queue or from a search (`backfill`).
    Sql(r#"
    ALTER TABLE batches ADD COLUMN origin TEXT NOT NULL DEFAULT 'queue';
    ALTER TABLE receipts ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;
    UPDATE receipts SET stored = 1 WHERE id IN (
        SELECT min(r.id) FROM receipts r JOIN messages m USING (provider, message_id)
        WHERE r.received_at = m.first_seen_at GROUP BY r.provider, r.message_id);
    "#),
    // 5: `deliveries_pending` only served "the oldest pending delivery", and every outcome commit paid for it
    // (about a tenth of the forwarder's CPU). That question now scans `deliveries_due`, which holds the same rows.
    Sql(r#"
    DROP INDEX deliveries_pending;
    "#),
    // 6: `state IN (three values)` made SQLite build a temporary b-tree for the CHECK at every insert and
    // update of a delivery (it looks up more than two values in one): about 9% of the CPU per message end to
    // end. The same constraint as comparisons; SQLite cannot change a CHECK in place, so the table is rebuilt
    // (about 1 s per million deliveries).
    Sql(r#"
    CREATE TABLE deliveries_v6 (
        seq              INTEGER PRIMARY KEY REFERENCES messages(seq),
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state = 'pending' OR state = 'delivered' OR state = 'dead'),
        attempts         INTEGER NOT NULL DEFAULT 0,
        first_attempt_at INTEGER,
        next_attempt_at  INTEGER NOT NULL,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        done_at          INTEGER
    ) STRICT;
    INSERT INTO deliveries_v6 (seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at,
                               last_status, last_error, done_at)
        SELECT seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at, last_status, last_error,
               done_at
        FROM deliveries ORDER BY seq;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v6 RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (done_at) WHERE state = 'dead';
    "#),
    // 7: what hostile input and bad luck showed. An element's exact bytes when they were not valid JSON as
    // received (the text columns hold the repaired JSON, the PMS payload both). An erased message's delivery is
    // `erased`, not a dead letter. A PMS's Retry-After is kept (`not_before`), so the end of an outage does not
    // send such a row sooner. A source's run of identical failures is counted, and a job that cannot run on is
    // marked stopped, for health. The deliveries table is rebuilt for its CHECK (as in version 6).
    Sql(r#"
    ALTER TABLE messages ADD COLUMN raw_exact BLOB;
    ALTER TABLE quarantine ADD COLUMN raw_exact BLOB;
    ALTER TABLE source_state ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE job_runs ADD COLUMN stopped TEXT;
    CREATE TABLE deliveries_v7 (
        seq              INTEGER PRIMARY KEY REFERENCES messages(seq),
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state = 'pending' OR state = 'delivered' OR state = 'dead' OR state = 'erased'),
        attempts         INTEGER NOT NULL DEFAULT 0,
        first_attempt_at INTEGER,
        next_attempt_at  INTEGER NOT NULL,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        done_at          INTEGER,
        not_before       INTEGER                 -- the PMS's Retry-After: never attempted sooner
    ) STRICT;
    INSERT INTO deliveries_v7 (seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at,
                               last_status, last_error, done_at)
        SELECT seq,
               CASE WHEN state = 'dead' AND last_error = 'erased on request before delivery' THEN 'erased'
                    ELSE state END,
               attempts, first_attempt_at, next_attempt_at, last_attempt_at, last_status, last_error, done_at
        FROM deliveries ORDER BY seq;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v7 RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (done_at) WHERE state = 'dead';
    "#),
    // 8: pushed messages. `provider` stays the dedup namespace (`booking.com` for the pull and Booking.com's
    // notifications alike, `staah:<channel>`, `channex`); `ota` names the OTA for the PMS, `source` the path the
    // message came by, `push_id` a push's own id (a notification's uuid). What each push source accepted and
    // refused, for status.
    Sql(r#"
    ALTER TABLE messages ADD COLUMN source TEXT NOT NULL DEFAULT 'booking_pull';
    ALTER TABLE messages ADD COLUMN ota TEXT DEFAULT 'booking.com';
    ALTER TABLE messages ADD COLUMN push_id TEXT;
    CREATE TABLE push_stats (
        source           TEXT PRIMARY KEY,
        accepted         INTEGER NOT NULL DEFAULT 0,   -- new messages stored
        duplicates       INTEGER NOT NULL DEFAULT 0,   -- already stored: acknowledged, nothing changed
        quarantined      INTEGER NOT NULL DEFAULT 0,
        ignored          INTEGER NOT NULL DEFAULT 0,   -- other event types, acknowledged
        refused          INTEGER NOT NULL DEFAULT 0,   -- failed authentication
        last_accepted_at INTEGER,
        last_refused_at  INTEGER
    ) STRICT;
    "#),
    // 9: threads and replies. A thread is one conversation of one channel (`provider`, the dedup namespace, and
    // the channel's conversation id), kept up to date in the transaction that stores each message. Replies are
    // stored before they are sent; `sending` is committed before the request goes out, so a crash leaves it
    // `unknown`, never sent twice. A channel's echo of a reply is stored as a message (it recognises the
    // redeliveries) that names its reply, and is never forwarded as guest news. Messages get the stable UUID the
    // API shows (filled in by version 10 for the messages already stored).
    Sql(r#"
    CREATE TABLE threads (
        id                TEXT PRIMARY KEY,               -- stable UUID
        provider          TEXT NOT NULL,
        conversation_id   TEXT NOT NULL,
        ota               TEXT,
        title             TEXT,                           -- the guest's name, when known
        property_id       TEXT,
        booking_reference TEXT,
        conversation_type TEXT,
        is_closed         INTEGER NOT NULL DEFAULT 0,
        message_count     INTEGER NOT NULL DEFAULT 0,
        last_message_at   INTEGER NOT NULL,
        inserted_at       INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        UNIQUE (provider, conversation_id)
    ) STRICT;
    CREATE INDEX threads_activity ON threads (last_message_at, id);
    CREATE INDEX threads_booking ON threads (booking_reference);
    CREATE TABLE replies (
        id                 INTEGER PRIMARY KEY,
        uuid               TEXT NOT NULL UNIQUE,
        thread_id          TEXT NOT NULL REFERENCES threads(id),
        author             TEXT NOT NULL,                 -- the API token's name, or "operator"
        content            TEXT,                          -- NULL once erased or past retention
        attachments        TEXT NOT NULL DEFAULT '[]',
        state              TEXT NOT NULL DEFAULT 'pending'
                           CHECK (state = 'pending' OR state = 'sending' OR state = 'sent' OR state = 'failed'
                                  OR state = 'unknown'),
        attempts           INTEGER NOT NULL DEFAULT 0,
        next_attempt_at    INTEGER,
        reason             TEXT,
        channel_message_id TEXT,
        idempotency_token  TEXT,
        idempotency_key    TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        unknown_since      INTEGER,
        tombstoned_at      INTEGER,
        UNIQUE (idempotency_token, idempotency_key)
    ) STRICT;
    CREATE INDEX replies_thread ON replies (thread_id, created_at);
    CREATE INDEX replies_state ON replies (state, next_attempt_at);
    ALTER TABLE messages ADD COLUMN uuid TEXT;
    ALTER TABLE messages ADD COLUMN reply_id INTEGER;      -- the reply this message is the channel's echo of
    CREATE INDEX messages_thread ON messages (provider, conversation_id, seq);
    "#),
    // 10: the threads and message UUIDs of the messages stored before version 9 (computed in Rust).
    Rust(super::threads::build_all),
    // 11: the outbox carries events: a message received, and each state a reply reaches (sent, failed,
    // unknown). Rebuilt with its own id (a message's row keeps its seq as id); `seq` names the message of a
    // `message.received`, `reply_id` and `reply_state` the reply and the state of a `reply.*` event.
    Sql(r#"
    CREATE TABLE deliveries_v11 (
        id               INTEGER PRIMARY KEY,
        event            TEXT NOT NULL DEFAULT 'message.received',
        seq              INTEGER UNIQUE REFERENCES messages(seq),
        reply_id         INTEGER REFERENCES replies(id),
        reply_state      TEXT,
        reason           TEXT,
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state = 'pending' OR state = 'delivered' OR state = 'dead' OR state = 'erased'),
        attempts         INTEGER NOT NULL DEFAULT 0,
        first_attempt_at INTEGER,
        next_attempt_at  INTEGER NOT NULL,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        done_at          INTEGER,
        not_before       INTEGER,
        created_at       INTEGER,
        CHECK ((event = 'message.received') = (seq IS NOT NULL)),
        CHECK ((event = 'message.received') = (reply_id IS NULL))
    ) STRICT;
    INSERT INTO deliveries_v11 (id, seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at,
                                last_status, last_error, done_at, not_before)
        SELECT seq, seq, state, attempts, first_attempt_at, next_attempt_at, last_attempt_at, last_status,
               last_error, done_at, not_before
        FROM deliveries ORDER BY seq;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v11 RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (done_at) WHERE state = 'dead';
    "#),
    // 12: the staff inbox. A thread's read marker (read by anyone) and when its guest last wrote (unread, needs
    // reply); sign-in sessions and one-time links (kept as hashes: the store never holds a usable key); the
    // log of changes the inbox's live pages follow (pruned by the duplicate filter); and the full-text index of
    // message text, kept by triggers in the transaction that changes the text (an erasure takes it out too).
    Sql(r#"
    ALTER TABLE threads ADD COLUMN read_at INTEGER;
    ALTER TABLE threads ADD COLUMN last_guest_at INTEGER;
    ALTER TABLE threads ADD COLUMN last_from TEXT;
    UPDATE threads SET
        last_guest_at = (SELECT max(m.first_seen_at) FROM messages m
                         WHERE m.provider = threads.provider AND m.conversation_id = threads.conversation_id
                           AND m.sender_role = 'guest'),
        last_from = (SELECT m.sender_role FROM messages m
                     WHERE m.provider = threads.provider AND m.conversation_id = threads.conversation_id
                     ORDER BY m.seq DESC LIMIT 1);
    CREATE TABLE sessions (
        id_sha256    TEXT PRIMARY KEY,
        token_name   TEXT NOT NULL,
        user         TEXT NOT NULL,
        property_id  TEXT,                         -- the link's property: the session sees no other
        csrf         TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE one_time_tokens (
        token_sha256 TEXT PRIMARY KEY,
        token_name   TEXT NOT NULL,
        user         TEXT NOT NULL,
        property_id  TEXT,
        thread_id    TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_at      INTEGER
    ) STRICT;
    CREATE TABLE changes (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id TEXT NOT NULL,
        kind      TEXT NOT NULL,                    -- message, reply, thread
        at        INTEGER NOT NULL
    ) STRICT;
    CREATE VIRTUAL TABLE messages_fts USING fts5(content, content = 'messages', content_rowid = 'seq');
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.content IS NOT NULL BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.seq, old.content WHERE old.content IS NOT NULL;
        INSERT INTO messages_fts (rowid, content) SELECT new.seq, new.content WHERE new.content IS NOT NULL;
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.content IS NOT NULL BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    END;
    "#),
    // 13: new messages' text is indexed once per transaction by the write path (messages::index_text), not by
    // a trigger per row; a search hit's thread is found without reading its message's row (large, anywhere
    // in the file): a third of a common word's search time at 1,000,000 messages.
    Sql(r#"
    DROP TRIGGER messages_fts_insert;
    CREATE INDEX messages_seq_thread ON messages (seq, provider, conversation_id);
    "#),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection, path: &Path, may_upgrade: bool) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION && !may_upgrade {
        return Err(StoreError::Open {
            path: path.to_owned(),
            what: format!(
                "schema version {found} is older than this ota-relay's ({SCHEMA_VERSION}); \
                 restart the daemon with this version once to migrate it"
            ),
            source: None,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        match sql {
            Sql(sql) => tx.execute_batch(sql)?,
            Rust(step) => step(&tx)?,
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
