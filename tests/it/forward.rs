//! Forwarding to a fake PMS over real HTTP: delivery, signatures, retries, probes, dead letters, crashes.

use std::collections::HashMap;
use std::time::Duration;

use ota_relay::config::Secret;
use ota_relay::fake::{FakePmsOptions, PmsReply, SampleMessage};
use ota_relay::forward::Forwarder;
use ota_relay::forward::signing::Signer;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Retries that come back within 20 to 200 ms.
const FAST_RETRY: &str = "[forward.retry]\ninitial_interval = \"20ms\"\nmax_interval = \"200ms\"\n";

#[test]
fn signatures_match_the_standard_webhooks_test_vector() {
    let signer = Signer::new(&[Secret::inline(VECTOR_SECRET)]).unwrap();
    let signature = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    // During a rotation every configured secret signs, current first, space separated.
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=";
    let both = Signer::new(&[Secret::inline(VECTOR_SECRET), Secret::inline(other)]).unwrap();
    let header = both.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], signature);
    for secret in [VECTOR_SECRET, other] {
        assert!(ota_relay::forward::signing::verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &header
        ));
    }
    assert!(!ota_relay::forward::signing::verify(
        VECTOR_SECRET,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265331,
        br#"{"test": 2432232314}"#,
        &header
    ));
}

/// An implementation of the receiver's check written here, independent of ota-relay's signing module.
fn independent_verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header.split(' ').any(|s| s == expected)
}

#[tokio::test]
async fn every_message_is_delivered_once_with_the_payload_contract() {
    let mut relay = TestRelay::with().forward("concurrency = 8").start().await;
    let samples = relay.enqueue(0, 0..300);
    within(60, "300 deliveries", relay.pms.wait_for(|s| s.accepted_count() == 300)).await;
    relay.stop().await;
    let pms = &relay.pms;
    let (duplicates, bad, captured) = pms.read(|s| (s.duplicates(), s.bad_signatures, s.captured.clone()));
    assert_eq!((duplicates, bad), (0, 0));
    let seqs: HashMap<String, i64> = {
        let conn = relay.db();
        let mut stmt = conn.prepare("SELECT message_id, seq FROM messages").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let by_id: HashMap<String, &SampleMessage> = samples.iter().map(|s| (webhook_id(s), s)).collect();
    let mut long_seen = false;
    for request in &captured {
        assert!(independent_verify(
            pms.secret(),
            &request.webhook_id,
            request.timestamp,
            &request.body,
            &request.signature
        ));
        let sample = by_id[&request.webhook_id];
        let upstream: serde_json::Value = serde_json::from_str(&sample.json).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let data = &payload["data"];
        assert_eq!(payload["type"], "message.received");
        let attempt_time = chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(
            attempt_time.timestamp(),
            request.timestamp,
            "payload timestamp is this attempt's"
        );
        assert_eq!(data["provider"], "booking.com");
        assert_eq!(
            data["message_id"].as_str().unwrap(),
            sample.message_id,
            "ids are strings"
        );
        assert_eq!(data["sequence"].as_i64().unwrap(), seqs[&sample.message_id]);
        assert_eq!(data["conversation"]["id"], upstream["conversation"]["conversation_id"]);
        assert_eq!(data["conversation"]["type"], "reservation");
        assert_eq!(
            data["conversation"]["reference"],
            upstream["conversation"]["conversation_reference"]
        );
        assert_eq!(
            data["conversation"]["property_id"].as_str().unwrap(),
            upstream["conversation"]["property_id"].to_string(),
            "a numeric property id becomes its decimal string"
        );
        assert_eq!(data["sender"]["id"], upstream["sender"]["participant_id"]);
        let role = upstream["sender"]["metadata"]["participant_type"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert_eq!(data["sender"]["role"].as_str().unwrap(), role);
        assert_eq!(
            data["sender"]["name"],
            upstream["sender"]["metadata"].get("name").cloned().unwrap_or_default()
        );
        assert_eq!(data["content"], upstream["content"], "content is faithful");
        assert_eq!(data["attachment_ids"], upstream["attachment_ids"]);
        assert_eq!(
            data["sent_at"], upstream["timestamp"],
            "sent_at is copied as the OTA sent it"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(data["received_at"].as_str().unwrap()).is_ok());
        // raw embeds the stored bytes verbatim, unknown fields included.
        let body = std::str::from_utf8(&request.body).unwrap();
        assert!(
            body.contains(&format!("\"raw\":{}", sample.json)),
            "raw is not verbatim for {}",
            sample.message_id
        );
        long_seen |= upstream["content"].as_str().unwrap().len() > 20_000;
    }
    assert!(long_seen, "a 20 KB text went through");
    assert_eq!(captured.len(), 300);
}

#[tokio::test]
async fn signatures_verify_with_python_standard_library_too() {
    let mut relay = TestRelay::with().forward("concurrency = 4").start().await;
    relay.enqueue(0, 0..20);
    within(30, "20 deliveries", relay.pms.wait_for(|s| s.accepted_count() == 20)).await;
    relay.stop().await;
    let pms = &relay.pms;
    let requests: Vec<serde_json::Value> = pms.read(|s| {
        s.captured
            .iter()
            .map(|r| {
                serde_json::json!({"id": r.webhook_id, "ts": r.timestamp, "sig": r.signature,
                                   "body": String::from_utf8(r.body.to_vec()).unwrap()})
            })
            .collect()
    });
    let script = r#"
import base64, hashlib, hmac, json, sys
secret, requests = sys.argv[1], json.load(sys.stdin)
key = base64.b64decode(secret.split("_", 1)[1])
ok = 0
for r in requests:
    mac = hmac.new(key, f"{r['id']}.{r['ts']}.".encode() + r["body"].encode(), hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    ok += any(hmac.compare_digest(expected, s) for s in r["sig"].split(" "))
print(ok)
"#;
    let Ok(mut child) = std::process::Command::new("python3")
        .args(["-c", script, pms.secret()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("python3 not found; the in-test Rust verifier covers signatures");
        return;
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&requests).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "20");
}

#[tokio::test]
async fn a_flaky_then_failing_pms_gets_everything_and_only_probes_during_the_outage() {
    let mut relay = TestRelay::with()
        .pms(|o| FakePmsOptions {
            failure_rate: 0.3,
            seed: 9,
            latency: Duration::from_millis(10), // so that concurrent requests overlap at the receiver
            ..o
        })
        .forward("concurrency = 8\n[forward.retry]\ninitial_interval = \"20ms\"\nmax_interval = \"150ms\"")
        .start()
        .await;
    relay.enqueue(0, 0..300);
    within(
        60,
        "300 deliveries through 30% failures",
        relay.pms.wait_for(|s| s.accepted_count() == 300),
    )
    .await;
    assert!(relay.pms.read(|s| s.requests) > 330, "failures were retried");

    // Outage: the backlog grows while the PMS answers 503 to everything.
    relay.pms.set_down(true);
    let before = relay.pms.read(|s| s.requests);
    relay.enqueue(0, 300..600);
    within(30, "the backlog to be stored", relay.ota.wait_for(|s| s.drained())).await;
    // Up to `concurrency` requests may be under way when the failures start; after 3 in a row it probes.
    within(30, "probe mode", relay.pms.wait_for(|s| s.requests > before + 8 + 3)).await;
    relay.pms.reset_max_in_flight();
    let probes_from = relay.pms.read(|s| s.requests);
    within(30, "more probes", relay.pms.wait_for(|s| s.requests >= probes_from + 4)).await;
    let (max_in_flight, during_outage) = relay.pms.read(|s| (s.max_in_flight, s.requests - before));
    assert_eq!(max_in_flight, 1, "one probe at a time while the PMS is down");
    assert!(
        during_outage < 60,
        "{during_outage} requests during the outage for a backlog of 300: probes, not the backlog"
    );

    relay.pms.set_down(false);
    within(
        60,
        "the backlog after recovery",
        relay.pms.wait_for(|s| s.accepted_count() == 600),
    )
    .await;
    relay.stop().await;
    assert_eq!(relay.pms.read(|s| s.duplicates()), 0);
    assert!(
        relay.pms.read(|s| s.max_in_flight) > 1,
        "full concurrency resumed after recovery"
    );
}

#[tokio::test]
async fn retry_after_from_the_pms_is_honoured() {
    let mut relay = TestRelay::with()
        .forward(&format!("concurrency = 1\n{FAST_RETRY}"))
        .start()
        .await;
    relay.pms.reply_next(PmsReply::RetryAfter {
        status: 429,
        seconds: 1,
    });
    let samples = relay.enqueue(0, 0..1);
    within(30, "the delivery", relay.pms.wait_for(|s| s.accepted_count() == 1)).await;
    relay.stop().await;
    let log = relay.pms.read(|s| s.log.clone());
    let id = webhook_id(&samples[0]);
    let attempts: Vec<_> = log.iter().filter(|(_, i, _)| *i == id).collect();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].2, 429);
    let gap = attempts[1].0 - attempts[0].0;
    assert!(
        gap >= Duration::from_millis(950),
        "retried {gap:?} after Retry-After: 1"
    );
}

#[tokio::test]
async fn gone_is_a_dead_letter_at_once_and_redirects_are_not_followed() {
    let relay = TestRelay::with()
        .queued(41, 0..2)
        .forward(FAST_RETRY)
        .in_process()
        .await;
    let samples = relay.queued();
    relay.drainer().drain_once().await.unwrap();
    let settings = relay.settings().forward.unwrap();
    let mut forwarder = Forwarder::new(&settings, &context(relay.store(), &CancellationToken::new())).unwrap();
    relay.pms.always(&webhook_id(&samples[0]), 410);
    relay.pms.always(&webhook_id(&samples[1]), 307);
    let report = forwarder.deliver_due().await.unwrap();
    assert_eq!((report.attempted, report.dead, report.retried), (2, 1, 1), "{report:?}");
    assert_eq!(relay.pms.read(|s| s.requests), 2, "the redirect was not followed");
    let (state, status, attempts): (String, i64, i64) = relay
        .db()
        .query_row(
            "SELECT d.state, d.last_status, d.attempts FROM deliveries d JOIN messages m USING (seq)
             WHERE m.message_id = ?1",
            [&samples[0].message_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), status, attempts), ("dead", 410, 1));
}

#[tokio::test]
async fn retry_delays_grow_from_the_stored_attempt_count_with_jitter_and_cap() {
    use ota_relay::config::RetryPolicy;
    use ota_relay::forward::attempt::retry_delay;
    let policy = RetryPolicy {
        initial_interval: Duration::from_secs(5),
        max_interval: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(72 * 3600),
    };
    assert_eq!(retry_delay(&policy, 1, 0.5), Duration::from_secs(5));
    assert_eq!(retry_delay(&policy, 2, 0.5), Duration::from_secs(10));
    assert_eq!(retry_delay(&policy, 3, 0.0), Duration::from_secs(16)); // 20 s − 20%
    assert_eq!(retry_delay(&policy, 3, 0.999_999).as_secs(), 23); // 20 s + 20%
    assert_eq!(retry_delay(&policy, 30, 0.5), Duration::from_secs(3600), "capped");
    assert!(
        retry_delay(&policy, 30, 0.999) <= Duration::from_secs(3600),
        "jitter never exceeds the cap"
    );
}

// ---- through the real binary -------------------------------------------------------------------------

#[tokio::test]
async fn dead_letters_can_be_listed_and_replayed_while_the_daemon_runs() {
    let mut relay = TestRelay::with()
        .queued(51, 0..20)
        .forward("[forward.retry]\ninitial_interval = \"20ms\"\nmax_interval = \"100ms\"\ngive_up_after = \"300ms\"")
        .prepare()
        .await;
    let doomed = relay.queued()[3].clone();
    relay.pms.always(&webhook_id(&doomed), 500);
    relay.run();
    relay.wait_for_store("the dead letter", |db| dead(db) == 1).await;
    within(30, "the other 19", relay.pms.wait_for(|s| s.accepted_count() == 19)).await;

    let listed = relay.command(&["dead-letters", "list", "--json"]).await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let letters: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["message_id"], doomed.message_id.as_str());
    assert_eq!(letters[0]["last_status"], 500);
    assert!(letters[0]["attempts"].as_u64().unwrap() >= 2);
    let table = String::from_utf8(relay.command(&["dead-letters", "list"]).await.stdout).unwrap();
    assert!(
        table.contains(&doomed.message_id) && table.contains("1 dead letter"),
        "{table}"
    );

    assert!(
        !relay
            .command(&["dead-letters", "replay", "no-such-message"])
            .await
            .status
            .success()
    );
    relay.pms.clear_always();
    let replayed = relay.command(&["dead-letters", "replay", &doomed.message_id]).await;
    let text = String::from_utf8_lossy(&replayed.stdout);
    assert!(replayed.status.success() && text.contains("picks it up now"), "{text}");
    // The daemon is woken by the command, well before its 30 s rescan.
    within(
        10,
        "the replayed delivery",
        relay.pms.wait_for(|s| s.accepted.contains_key(&webhook_id(&doomed))),
    )
    .await;
    let stderr = relay.stop().await;
    // The operator is told, at error, which message gave up and why.
    let line = stderr.lines().find(|l| l.contains("dead letter")).unwrap_or_default();
    assert!(line.contains(&doomed.message_id) && line.contains("500"), "{line}");
    assert!(
        !stderr.contains(relay.pms.secret()),
        "the webhook secret leaked into the log"
    );
    assert_eq!(relay.pms.read(|s| s.duplicates()), 0);
}

fn dead(db: &rusqlite::Connection) -> i64 {
    db.query_row("SELECT count(*) FROM deliveries WHERE state = 'dead'", [], |r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test]
async fn sigkill_during_delivery_loses_nothing_and_duplicates_at_most_what_was_in_flight() {
    let mut relay = TestRelay::with()
        .pms(|o| FakePmsOptions {
            latency: Duration::from_millis(150),
            ..o
        })
        .queued(61, 0..240)
        .forward("concurrency = 8")
        .prepare()
        .await;
    let kills = 2;
    for k in 1..=kills {
        relay.run();
        let target = 60 * k;
        within(
            30,
            "deliveries under way",
            relay.pms.wait_for(|s| s.accepted_count() >= target && s.in_flight >= 4),
        )
        .await;
        relay.kill9().await;
    }
    relay.run();
    within(
        60,
        "every message delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 240),
    )
    .await;
    relay.stop().await;
    let duplicates = relay.pms.read(|s| s.duplicates());
    eprintln!("duplicates after {kills} kills: {duplicates}");
    assert!(
        duplicates <= 8 * kills as u64,
        "{duplicates} duplicates after {kills} kills at concurrency 8"
    );
    let integrity: String = relay
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(relay.deliveries("delivered"), 240);
}

#[tokio::test]
async fn enabling_forward_on_a_store_with_history_delivers_the_backlog_oldest_first() {
    // First without [forward]: messages are stored and wait in the outbox.
    let mut relay = TestRelay::with().queued(71, 0..150).start().await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    relay.stop().await;
    assert_eq!(relay.deliveries("pending"), 150);
    // A store from before the outbox existed (schema 1) gets its backlog from the migration.
    relay
        .db()
        .execute_batch(
            "DROP TABLE deliveries; DROP TABLE job_runs; ALTER TABLE messages DROP COLUMN redeliveries;
             ALTER TABLE messages DROP COLUMN content_sha256; ALTER TABLE messages DROP COLUMN tombstoned_at;
             ALTER TABLE receipts DROP COLUMN stored; ALTER TABLE batches DROP COLUMN origin;
             ALTER TABLE messages DROP COLUMN raw_exact; ALTER TABLE quarantine DROP COLUMN raw_exact;
             ALTER TABLE source_state DROP COLUMN failures;
             ALTER TABLE messages DROP COLUMN source; ALTER TABLE messages DROP COLUMN ota;
             ALTER TABLE messages DROP COLUMN push_id; DROP TABLE push_stats;
             DROP TRIGGER messages_fts_update; DROP TRIGGER messages_fts_delete;
             DROP TABLE messages_fts; DROP TABLE sessions; DROP TABLE one_time_tokens; DROP TABLE changes;
             DROP TABLE replies; DROP TABLE threads; DROP INDEX messages_thread; DROP INDEX messages_seq_thread;
             ALTER TABLE messages DROP COLUMN uuid; ALTER TABLE messages DROP COLUMN reply_id;
             PRAGMA user_version = 1;",
        )
        .unwrap();

    relay.write_config(&forward_section(&relay.pms, "concurrency = 1"));
    relay.run();
    within(
        30,
        "the backlog delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 150),
    )
    .await;
    relay.stop().await;
    let order = relay.pms.read(|s| s.accepted_order.clone());
    let expected: Vec<String> = relay
        .stored_ids()
        .iter()
        .map(|id| format!("booking.com:{id}"))
        .collect();
    assert_eq!(order, expected, "delivered oldest first");
}

#[tokio::test]
async fn deliveries_scheduled_before_the_clock_went_back_are_due_now_and_later_retries_keep_their_time() {
    let mut relay = TestRelay::with().stored(72, 0..5).forward("").prepare().await;
    // Rows 1 and 2 were scheduled 30 days ahead by a clock that has since gone back; row 3 is a retry due in 30
    // minutes, within the longest delay the worker schedules (Retry-After is honoured up to an hour).
    let now = now();
    let retry_at = now + 30 * 60_000;
    let conn = relay.db();
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1 WHERE seq IN (1, 2)",
        [now + 30 * 86_400_000],
    )
    .unwrap();
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1, attempts = 1 WHERE seq = 3",
        [retry_at],
    )
    .unwrap();
    drop(conn);

    relay.run();
    within(
        30,
        "the due rows delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 4),
    )
    .await;
    let stderr = relay.stop().await;
    // The operator is warned, with how many rows it moved.
    let line = stderr
        .lines()
        .find(|l| l.contains("the system clock went back?"))
        .unwrap_or_default();
    assert!(
        line.contains("deliveries=2"),
        "only the rows beyond the horizon: {line}"
    );

    let accepted: Vec<String> = relay.pms.read(|s| s.accepted_order.clone());
    for i in [0, 1, 3, 4] {
        assert!(
            accepted.contains(&webhook_id(&relay.stored()[i])),
            "message {i} delivered: {accepted:?}"
        );
    }
    let (state, next): (String, i64) = relay
        .db()
        .query_row("SELECT state, next_attempt_at FROM deliveries WHERE seq = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (state.as_str(), next),
        ("pending", retry_at),
        "a retry within the horizon keeps its time"
    );
}

#[tokio::test]
async fn outcomes_the_store_refuses_are_kept_and_recorded_later_never_sent_again() {
    let mut relay = TestRelay::with()
        .stored(73, 0..12)
        .forward("concurrency = 4")
        .prepare()
        .await;
    // Every outcome commit fails, as on a full disk; claims (reads) still work.
    relay
        .db()
        .execute_batch(
            "CREATE TRIGGER refuse_outcomes BEFORE UPDATE OF state ON deliveries
             BEGIN SELECT RAISE(ABORT, 'injected: the store refuses outcomes'); END;",
        )
        .unwrap();

    relay.run();
    // The refusals are seen only in the log, which is what tells the operator: at error, each one.
    let line = relay.daemon().wait_for_log("cannot record delivery outcomes").await;
    assert!(line.contains("injected"), "{line}");
    relay.daemon().wait_for_logs("cannot record delivery outcomes", 2).await;
    // Refused twice, so retried at least once: still only the first round was sent.
    assert_eq!(relay.pms.read(|s| (s.requests, s.accepted_count())), (4, 4));
    relay.db().execute_batch("DROP TRIGGER refuse_outcomes").unwrap();

    within(
        30,
        "every message delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 12),
    )
    .await;
    relay.stop().await;
    assert_eq!(
        relay.pms.read(|s| (s.requests, s.duplicates())),
        (12, 0),
        "nothing was sent twice"
    );
    assert_eq!(relay.deliveries("delivered"), 12);
}

#[tokio::test]
async fn a_token_in_the_webhook_query_never_reaches_logs_errors_or_output() {
    const TOKEN: &str = "query-token-7731";
    // Slower than the request timeout: every attempt fails with a transport error, whose text names the URL.
    let mut relay = TestRelay::with()
        .pms(|o| FakePmsOptions {
            latency: Duration::from_secs(2),
            ..o
        })
        .stored(74, 0..1)
        .prepare()
        .await;
    let section = format!(
        "[forward]\nurl = \"{}?token={TOKEN}\"\nsecret = \"{}\"\nrequest_timeout = \"200ms\"\n\
         [forward.retry]\ninitial_interval = \"20ms\"\n",
        relay.pms.url(),
        relay.pms.secret()
    );
    relay.write_config(&section);

    let checked = relay.command(&["check-config"]).await;
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{stdout}");
    assert!(
        stdout.contains("/hooks/guest-messages") && !stdout.contains(TOKEN),
        "{stdout}"
    );

    relay.run();
    relay
        .wait_for_store("two failed attempts recorded", |db| {
            db.query_row("SELECT attempts FROM deliveries WHERE seq = 1", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
                >= 2
        })
        .await;
    let stderr = relay.stop().await;
    let line = stderr
        .lines()
        .find(|l| l.contains("delivery attempt failed"))
        .unwrap_or_default();
    assert!(line.contains("timed out") || line.contains("timeout"), "{line}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert!(relay.pms.read(|s| s.requests) >= 2, "the attempts reached the PMS");
    let last_error: String = relay
        .db()
        .query_row("SELECT last_error FROM deliveries WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    assert!(!last_error.contains(TOKEN), "{last_error}");
}

#[tokio::test]
async fn when_the_pms_comes_back_the_retries_that_waited_for_it_go_at_once() {
    let mut relay = TestRelay::with()
        .stored(75, 0..10)
        .forward("concurrency = 4\n[forward.retry]\ninitial_interval = \"100ms\"\nmax_interval = \"1h\"")
        .prepare()
        .await;
    // Six tried many times during a long outage: their retries, backed off, are half an hour away.
    relay
        .db()
        .execute(
            "UPDATE deliveries SET attempts = 9, first_attempt_at = ?1, next_attempt_at = ?2 WHERE seq <= 6",
            [now() - 3_600_000, now() + 1_800_000],
        )
        .unwrap();
    // The other four fail (the PMS turns failing), then a probe succeeds: the PMS is back.
    for _ in 0..4 {
        relay.pms.reply_next(PmsReply::Status(503));
    }
    relay.run();
    // Within seconds, not half an hour: the retries that waited for the PMS are due once a probe succeeds.
    within(
        30,
        "every message delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 10),
    )
    .await;
    let stderr = relay.stop().await;
    assert_eq!(relay.pms.read(|s| s.duplicates()), 0);
    let line = stderr
        .lines()
        .find(|l| l.contains("deliveries that waited for a retry are due now"))
        .unwrap_or_default();
    assert!(line.contains("deliveries=") && !line.contains("deliveries=0"), "{line}");
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn a_failing_pms_with_every_retry_scheduled_later_is_waited_for_without_spinning() {
    let mut relay = TestRelay::with()
        .stored(76, 0..4)
        .forward("concurrency = 4")
        .prepare()
        .await;
    // Every message is told to come back in an hour: no row is due, the next probe time passes.
    for _ in 0..4 {
        relay.pms.reply_next(PmsReply::RetryAfter {
            status: 503,
            seconds: 3600,
        });
    }
    relay.run();
    relay.wait_for_attempts(4).await;
    // An observation window, not a synchronisation: a loop that spins spends most of it on the CPU.
    let pid = relay.daemon().pid();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 40, "{spent} ticks of CPU in 3 s of waiting");
    assert_eq!(relay.pms.read(|s| s.requests), 4, "nothing sent before the hour");
    relay.stop().await;
}

#[tokio::test]
async fn a_pms_that_fails_while_a_request_hangs_is_waited_for_without_spinning() {
    let mut relay = TestRelay::with().stored(77, 0..4).prepare().await;
    // Three quick failures make the PMS "failing" while the fourth request is still waiting for its answer.
    for _ in 0..3 {
        relay.pms.reply_next(PmsReply::Status(503));
    }
    relay.pms.reply_next(PmsReply::Late {
        status: 200,
        after: Duration::from_secs(10),
    });
    let section =
        forward_section(&relay.pms, "concurrency = 4").replace("request_timeout = \"2s\"", "request_timeout = \"5s\"");
    relay.write_config(&section);
    relay.run();
    relay.wait_for_attempts(3).await;
    within(5, "the hanging request", relay.pms.wait_for(|s| s.in_flight == 1)).await;
    // An observation window inside the hanging request's timeout, not a synchronisation.
    let pid = relay.daemon().pid();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 30, "{spent} ticks of CPU in 2 s of waiting");
    assert_eq!(
        relay.pms.read(|s| s.requests),
        4,
        "no probe while a request is in flight"
    );
    relay.stop().await;
}

#[tokio::test]
async fn retry_now_after_an_outage_sends_what_waited_at_once_even_at_a_slow_probe_pace() {
    // Retries and probes ten minutes apart.
    let mut relay = TestRelay::with()
        .stored(78, 0..4)
        .forward("concurrency = 4\n[forward.retry]\ninitial_interval = \"10m\"\nmax_interval = \"1h\"")
        .prepare()
        .await;
    relay.pms.set_down(true);
    relay.run();
    relay.wait_for_attempts(4).await;

    // The operator knows the PMS is back.
    relay.pms.set_down(false);
    let out = relay.command(&["retry-now"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("4 pending deliveries waiting for a retry are due now") && stdout.contains("running daemon"),
        "{stdout}"
    );
    within(
        30,
        "every message delivered",
        relay.pms.wait_for(|s| s.accepted_count() == 4),
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn forward_configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[booking]\nusername = \"u\"\npassword = \"p\"\n[forward]\nurl = \"https://pms.example.com/hook\"\n";
    let cases = [
        (format!("{base}secret = \"nope\"\n"), "whsec_"),
        (format!("{base}secret = \"whsec_!!!\"\n"), "base64"),
        (format!("{base}secret = \"whsec_c2hvcnQ=\"\n"), "at least 16"),
        (
            format!("{base}secret = \"{VECTOR_SECRET}\"\nconcurrency = 0\n"),
            "forward.concurrency",
        ),
        (
            format!("{base}secret = \"{VECTOR_SECRET}\"\nsecret_file = \"/x\"\n"),
            "forward.secret_file",
        ),
        (
            format!("{base}secret = \"{VECTOR_SECRET}\"\n[forward.retry]\ngive_up = \"1h\"\n"),
            "forward.retry",
        ),
        (format!("{base}\n"), "forward.secret"),
        (
            "[booking]\nusername = \"u\"\npassword = \"p\"\n[forward]\nsecret = \"x\"\n".to_owned(),
            "forward.url",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("f.toml");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check-config", "--config", path.to_str().unwrap()])
            .env_remove("OTA_RELAY_FORWARD_SECRET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}\n{stderr}");
        assert!(stderr.contains(needle), "{text}\nshould mention {needle}: {stderr}");
    }
    // Rotation: an array, masked one by one.
    let path = dir.path().join("ok.toml");
    std::fs::write(
        &path,
        format!("{base}secret = [\"{VECTOR_SECRET}\", \"whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=\"]\n"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("secret = [\"********\", \"********\"]"), "{stdout}");
    assert!(!stdout.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

#[tokio::test]
async fn sigterm_lets_deliveries_in_flight_finish_and_records_them() {
    let mut relay = TestRelay::with()
        .pms(|o| FakePmsOptions {
            latency: Duration::from_millis(400),
            ..o
        })
        .queued(81, 0..40)
        .forward("concurrency = 4")
        .start()
        .await;
    within(30, "deliveries in flight", relay.pms.wait_for(|s| s.in_flight == 4)).await;
    relay.stop().await;
    let accepted = relay.pms.read(|s| s.accepted_count());
    assert_eq!(
        relay.deliveries("delivered"),
        accepted as i64,
        "every accepted delivery was recorded before exit"
    );
    relay.run();
    within(30, "the rest", relay.pms.wait_for(|s| s.accepted_count() == 40)).await;
    relay.stop().await;
    assert_eq!(
        relay.pms.read(|s| s.duplicates()),
        0,
        "a graceful stop duplicates nothing"
    );
}

mod wake_decision {
    use std::time::{Duration, Instant};

    use ota_relay::forward::worker::{IDLE_RESCAN, WakeInputs, next_wake};

    fn idle(now: Instant) -> WakeInputs {
        WakeInputs {
            now,
            in_flight: 0,
            concurrency: 8,
            ready: 0,
            holding: false,
            commit_retry_at: None,
            failing: false,
            next_probe: now,
            rescan_at: now + IDLE_RESCAN,
            summary_at: now + Duration::from_secs(300),
            clock_check_at: now + IDLE_RESCAN,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn healthy_and_idle_it_wakes_when_the_next_row_is_due() {
        let now = Instant::now();
        let w = WakeInputs {
            rescan_at: now + S(2),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(2));
        // Nothing due for longer: the idle rescan bounds the wait.
        let w = WakeInputs {
            rescan_at: now + S(3600),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + IDLE_RESCAN);
    }

    #[test]
    fn with_every_slot_in_flight_it_waits_for_an_answer_not_for_the_rescan() {
        let now = Instant::now();
        let w = WakeInputs {
            in_flight: 8,
            ready: 4,
            rescan_at: now - S(1),
            ..idle(now)
        };
        assert!(
            next_wake(&w) > now,
            "a past rescan while nothing can be launched would spin"
        );
    }

    /// The first spin found: failing, every row told to wait ("Retry-After: 3600"), the probe time passed.
    #[test]
    fn failing_with_nothing_due_it_does_not_wake_at_a_past_probe_time() {
        let now = Instant::now();
        let w = WakeInputs {
            failing: true,
            next_probe: now - S(5),
            rescan_at: now + S(20),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(20), "the probe waits for a row to come due");
    }

    /// The second spin found: the PMS turned failing while a request hangs; nothing can be claimed until it ends.
    #[test]
    fn failing_with_a_request_in_flight_it_waits_for_that_request() {
        let now = Instant::now();
        let w = WakeInputs {
            failing: true,
            in_flight: 1,
            next_probe: now - S(1),
            rescan_at: now - S(1),
            ..idle(now)
        };
        assert!(next_wake(&w) > now);
        assert_eq!(next_wake(&w), now + IDLE_RESCAN);
    }

    #[test]
    fn during_an_outage_a_ready_probe_goes_at_the_probe_time() {
        let now = Instant::now();
        let w = WakeInputs {
            failing: true,
            ready: 3,
            next_probe: now + S(5),
            rescan_at: now,
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(5));
        // Once the probe time has come, at once.
        let w = WakeInputs { next_probe: now, ..w };
        assert_eq!(next_wake(&w), now);
    }

    #[test]
    fn outcomes_the_store_refused_are_retried_at_their_time_whatever_else_is_due() {
        let now = Instant::now();
        let w = WakeInputs {
            holding: true,
            commit_retry_at: Some(now + S(4)),
            rescan_at: now - S(1),
            failing: true,
            next_probe: now - S(1),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(4));
    }

    #[test]
    fn the_summary_and_the_clock_check_bound_every_wait() {
        let now = Instant::now();
        let w = WakeInputs {
            summary_at: now + S(1),
            rescan_at: now + S(10),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(1));
        let w = WakeInputs {
            clock_check_at: now + S(2),
            failing: true,
            next_probe: now + S(50),
            ..idle(now)
        };
        assert_eq!(next_wake(&w), now + S(2));
    }
}
