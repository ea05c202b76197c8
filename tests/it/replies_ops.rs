//! What operators do about replies: list them, settle an unknown one, send a failed one again; status and
//! health count them, and an unknown one left past the reconcile window degrades health.

use ota_relay::fake::FakeChannex;
use ota_relay::fake::pushes;

use crate::support::*;

const THREAD: &str = "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa";

#[tokio::test]
async fn operators_list_resolve_and_resend_replies_and_health_counts_them() {
    let channex = FakeChannex::start("channex-api-key-2").await.unwrap();
    channex.add_thread(THREAD, "AirBNB", "Maldonado Roxy");
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .channex_api(&channex)
        .api()
        .forward("")
        .ops_listener()
        .config("[replies]\nrequest_timeout = \"1s\"\nreconcile_window = \"1s\"\n")
        .start()
        .await;
    let sample = pushes::channex_message(980, 1, THREAD);
    assert_eq!(relay.senders().channex(&sample.body).await.unwrap().status, 200);
    let list = relay.api().get("/api/v1/message_threads").await.unwrap().json();
    let thread = list["data"][0]["id"].as_str().unwrap().to_owned();

    // A 500 from Channex: the outcome is unknown; Channex cannot prove absence, so it stays unknown.
    channex.fail_next_post(500);
    let unknown = relay.api().reply(&thread, "First", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    relay
        .wait_for_store("the reply unknown", |db| {
            db.query_row("SELECT count(*) FROM replies WHERE state = 'unknown'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 1
        })
        .await;
    let listed = relay
        .command(&["replies", "list", "--state", "unknown", "--json"])
        .await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["uuid"], unknown.as_str());
    assert!(rows[0]["reason"].as_str().unwrap().contains("HTTP 500"), "{rows}");

    // Left unknown past the window: health says so, with what to do.
    let degraded = within(30, "health degraded", async {
        loop {
            let (code, status) = relay.status(&[]).await;
            if code == Some(1) {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    let problems = degraded["problems"].to_string();
    assert!(
        problems.contains("unknown outcome") && problems.contains("replies resolve"),
        "{problems}"
    );
    assert_eq!(degraded["replies"]["unknown"], 1);
    let health = reqwest::get(format!("{}/healthz", relay.ops_url())).await.unwrap();
    assert_eq!(health.status(), 503);
    let metrics = reqwest::get(format!("{}/metrics", relay.ops_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ota_relay_replies{state=\"unknown\"} 1"), "{metrics}");

    // The operator checked the extranet: it arrived.
    let resolved = relay.command(&["replies", "resolve", &unknown, "--sent"]).await;
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    let id = format!("reply:{unknown}:sent");
    within(30, "the PMS told", relay.pms.wait_for(|s| s.accepted.contains_key(&id))).await;
    assert_eq!(relay.status(&[]).await.0, Some(0), "healthy once settled");
    let again = relay.command(&["replies", "resolve", &unknown, "--failed"]).await;
    assert!(!again.status.success(), "a sent reply stays sent");

    // Refused by Channex, then sent again by the operator.
    channex.fail_next_post(403);
    let failed = relay.api().reply(&thread, "Second", None).await.unwrap().json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = format!("reply:{failed}:failed");
    within(30, "failed", relay.pms.wait_for(|s| s.accepted.contains_key(&id))).await;
    let resent = relay.command(&["replies", "resend", &failed]).await;
    assert!(resent.status.success(), "{}", String::from_utf8_lossy(&resent.stderr));
    assert!(
        !String::from_utf8_lossy(&resent.stdout).contains("warning"),
        "a failed reply is safe to resend"
    );
    let id = format!("reply:{failed}:sent");
    within(
        30,
        "sent after the resend",
        relay.pms.wait_for(|s| s.accepted.contains_key(&id)),
    )
    .await;
    let not_again = relay.command(&["replies", "resend", &failed]).await;
    assert!(!not_again.status.success(), "a sent reply is not sent again");
    relay.stop().await;
    assert_eq!(channex.read(|s| (s.post_attempts, s.posted.len())), (3, 1));
}

#[tokio::test]
async fn backfill_from_channex_stores_what_the_webhook_missed_once() {
    let channex = FakeChannex::start("channex-api-key-3").await.unwrap();
    channex.add_thread(THREAD, "AirBNB", "Maldonado Roxy");
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .channex_api(&channex)
        .forward("")
        .start()
        .await;
    let pushed = pushes::channex_message(981, 1, THREAD);
    assert_eq!(relay.senders().channex(&pushed.body).await.unwrap().status, 200);
    let pushed_id = serde_json::from_str::<serde_json::Value>(&pushed.body).unwrap()["payload"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    channex.add_message(
        THREAD,
        &pushed_id,
        "Can we bring our dog? (#1)",
        "guest",
        "2026-11-30T10:15:00.000000",
    );
    channex.add_message(
        THREAD,
        "5848b518-07a4-4c8c-a998-2784d638ba31",
        "Missed one",
        "guest",
        "2026-11-30T11:00:00.000000",
    );
    channex.add_message(
        THREAD,
        "5848b518-07a4-4c8c-a998-2784d638ba32",
        "Missed two",
        "property",
        "2026-11-30T11:05:00.000000",
    );
    channex.add_message(
        THREAD,
        "5848b518-07a4-4c8c-a998-2784d638ba33",
        "Before the range",
        "guest",
        "2026-10-01T09:00:00.000000",
    );

    let run = relay
        .command(&["backfill", "--source", "channex", "--after", "2026-11-30"])
        .await;
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(out.contains("3 message(s) in range: 2 new"), "{out}");
    assert!(out.contains("1 already stored"), "{out}");
    within(30, "three delivered", relay.pms.wait_for(|s| s.accepted_count() == 3)).await;

    let again = relay
        .command(&["backfill", "--source", "channex", "--after", "2026-11-30"])
        .await;
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 new"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    relay.stop().await;
    let accepted = relay.pms.read(|s| s.accepted.clone());
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    assert_eq!(accepted.len(), 3);
    let (provider, name): (Option<String>, Option<String>) = relay
        .db()
        .query_row(
            "SELECT ota, sender_name FROM messages WHERE message_id = '5848b518-07a4-4c8c-a998-2784d638ba31'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (provider.as_deref(), name.as_deref()),
        (Some("airbnb"), Some("Maldonado Roxy"))
    );
    assert_eq!(
        relay.count("SELECT count(*) FROM messages WHERE content = 'Before the range'"),
        0
    );
}
