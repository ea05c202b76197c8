//! The staff inbox without JavaScript, over real HTTP on the real binary: signing in (a token, a one-time link
//! made by the API, an https link for a PMS iframe), reading and replying with forms, the list's filters, search
//! and pages, erasure leaving the search index, the live stream resuming after a reconnect, and SIGTERM with
//! streams open.

use std::time::Instant;

use ota_relay::fake::pms_api::{LIMITED_PROPERTY, LIMITED_TOKEN, PMS_TOKEN};
use ota_relay::fake::staff::StaffClient;
use serde_json::json;

use crate::support::*;

/// A Booking.com guest message written at `minute` past nine. (The list orders threads by when their newest
/// message arrived here, so tests that check the order queue messages one batch at a time.)
fn guest(id: &str, conversation: &str, property: &str, text: &str, minute: u32) -> String {
    booking_guest(
        id,
        conversation,
        property.parse().unwrap(),
        text,
        &format!("Guest {conversation}"),
        &format!("2026-12-01T09:{minute:02}:00.000Z"),
    )
}

fn thread_of(relay: &TestRelay, conversation: &str) -> String {
    relay
        .db()
        .query_row(
            "SELECT id FROM threads WHERE conversation_id = ?1",
            [conversation],
            |r| r.get(0),
        )
        .unwrap()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn signed_in(relay: &TestRelay, token: &str, user: &str) -> StaffClient {
    let mut staff = relay.staff();
    let answer = staff.sign_in(token, user).await.unwrap();
    assert_eq!(answer.status, 303, "{}", answer.body);
    staff
}

#[tokio::test]
async fn staff_sign_in_with_a_token_read_reply_close_and_reopen_with_plain_forms() {
    let relay = TestRelay::with().api().forward("").start().await;
    let mut with_attachment: serde_json::Value =
        serde_json::from_str(&guest("m-a", "conv-a", "8011855", "Is breakfast included?", 1)).unwrap();
    with_attachment["attachment_ids"] = json!(["att-5521"]);
    for element in [
        with_attachment.to_string(),
        guest("m-b", "conv-b", "8011856", "We arrive late, around midnight.", 2),
    ] {
        relay.ota.enqueue_raw([element]);
        within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    }
    let (a, b) = (thread_of(&relay, "conv-a"), thread_of(&relay, "conv-b"));

    let mut staff = relay.staff();
    let page = staff.get("/inbox/threads").await.unwrap();
    assert_eq!((page.status, page.location()), (303, Some("/inbox/login")));
    assert_eq!(staff.events("", None).await.unwrap().status, 401);
    let refused = staff.sign_in("not-a-token", "Eve").await.unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("That is not a valid API token."));
    assert!(refused.set_cookie().is_none() && !staff.signed_in());
    let nameless = staff.sign_in(PMS_TOKEN, "  ").await.unwrap();
    assert_eq!(nameless.status, 422);
    assert!(nameless.body.contains("Give your name"));

    let answer = staff.sign_in(PMS_TOKEN, "Front desk").await.unwrap();
    assert_eq!((answer.status, answer.location()), (303, Some("/inbox/threads")));
    let cookie = answer.set_cookie().unwrap();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/inbox"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let list = staff.get("/inbox/threads").await.unwrap();
    assert_eq!(list.status, 200, "{}", list.body);
    let csp = list.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(list.header("x-content-type-options"), "nosniff");
    assert_eq!(list.header("cache-control"), "no-store");
    assert_eq!(
        list.threads(),
        vec![(b.clone(), true), (a.clone(), true)],
        "newest first, both unread"
    );
    assert_eq!(list.body.matches("badge needs-reply").count(), 2);
    assert!(list.body.contains("Guest conv-a") && list.body.contains("Is breakfast included?"));
    assert!(list.body.contains("Property 8011855 · Booking ref-conv-a"));

    // Opening a conversation marks it read for everyone.
    let page = staff.get(&format!("/inbox/threads/{a}")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Is breakfast included?") && page.body.contains("from-guest"));
    assert!(page.body.contains("Attachment: att-5521"), "{}", page.body);
    let mut porter = signed_in(&relay, PMS_TOKEN, "Night porter").await;
    let list = porter.get("/inbox/threads").await.unwrap();
    assert_eq!(list.threads(), vec![(b.clone(), true), (a.clone(), false)]);

    // An empty reply is refused with a message and nothing is stored.
    let reply = format!("/inbox/threads/{a}/reply");
    let empty = staff.submit(&reply, &[("message", " \r\n ")]).await.unwrap();
    assert_eq!(empty.status, 422);
    assert!(empty.body.contains("An empty reply cannot be sent"));
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM replies"), 0);

    // Without the page's CSRF token a form does nothing.
    let forged = staff
        .post_form(&reply, &[("message", "forged"), ("csrf", "guess")])
        .await
        .unwrap();
    assert_eq!(forged.status, 403);
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM replies"), 0);

    let sent = staff
        .submit(&reply, &[("message", "Yes, from 7 to 10.\r\nSee you!")])
        .await
        .unwrap();
    assert_eq!(
        (sent.status, sent.location()),
        (303, Some(format!("/inbox/threads/{a}").as_str()))
    );
    within(
        30,
        "the reply at Booking.com",
        relay
            .ota
            .wait_for(|s| s.posted.iter().any(|p| p.content == "Yes, from 7 to 10.\nSee you!")),
    )
    .await;
    relay
        .wait_for_store("the reply sent", |db| {
            db.query_row("SELECT state FROM replies", [], |r| r.get::<_, String>(0))
                .is_ok_and(|s| s == "sent")
        })
        .await;
    let author: String = relay
        .db()
        .query_row("SELECT author FROM replies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(author, "Front desk");
    let page = staff.get(&format!("/inbox/threads/{a}")).await.unwrap();
    assert!(
        page.body.contains("state state-sent") && page.body.contains(">Sent<"),
        "{}",
        page.body
    );
    assert_eq!(relay.ota.read(|s| s.posted.len()), 1, "sent once");

    let close = staff.submit(&format!("/inbox/threads/{a}/close"), &[]).await.unwrap();
    assert_eq!(close.status, 303);
    let page = staff.get(&format!("/inbox/threads/{a}")).await.unwrap();
    assert!(page.body.contains("<span id=\"thread-state\">Closed</span>") && page.body.contains("Reopen"));
    assert_eq!(
        staff.get("/inbox/threads?state=closed").await.unwrap().thread_ids(),
        vec![a.clone()]
    );
    assert_eq!(
        staff.get("/inbox/threads?state=open").await.unwrap().thread_ids(),
        vec![b.clone()]
    );
    assert_eq!(
        staff
            .get("/inbox/threads?state=needs_reply")
            .await
            .unwrap()
            .thread_ids(),
        vec![b.clone()]
    );
    staff.submit(&format!("/inbox/threads/{a}/reopen"), &[]).await.unwrap();
    assert_eq!(
        staff.get("/inbox/threads?state=open").await.unwrap().thread_ids(),
        vec![a.clone(), b.clone()],
        "the reply is the newest activity"
    );

    // Signing out ends the session: the old cookie no longer opens anything.
    let mut leaving = signed_in(&relay, PMS_TOKEN, "Day shift").await;
    leaving.get("/inbox/threads").await.unwrap();
    let old_cookie = leaving.cookie().unwrap().to_owned();
    let out = leaving.submit("/inbox/logout", &[]).await.unwrap();
    assert_eq!((out.status, out.location()), (303, Some("/inbox/login")));
    assert!(!leaving.signed_in());
    let replayed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(leaving.url("/inbox/threads"))
        .header("cookie", old_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303, "a signed-out session stays out");
    assert_eq!(count(&relay.path(), "SELECT count(*) FROM sessions"), 2);
}

#[tokio::test]
async fn filters_search_and_pages_narrow_the_list_and_an_erasure_takes_the_text_out_of_the_search() {
    let relay = TestRelay::with().api().receiving().forward("").start().await;
    let batches = [
        (0..58)
            .map(|i| guest(&format!("m-{i}"), &format!("conv-{i:02}"), "8011857", "Hello", i))
            .collect(),
        vec![guest("m-park", "conv-park", "8011856", "Where can we park?", 58)],
        vec![guest(
            "m-cot",
            "conv-cot",
            "8011855",
            "Could you put a baby cot in the room?",
            59,
        )],
    ];
    for batch in batches {
        relay.ota.enqueue_raw(batch);
        within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    }
    let staah = ota_relay::fake::pushes::staah_message(5, 0);
    assert_eq!(relay.senders().staah(&staah.body).await.unwrap().status, 200);
    relay
        .wait_for_store("the STAAH thread", |db| {
            db.query_row("SELECT count(*) FROM threads", [], |r| r.get::<_, i64>(0))
                .is_ok_and(|n| n == 61)
        })
        .await;
    let mut staff = signed_in(&relay, PMS_TOKEN, "Front desk").await;

    let ids = |page: &ota_relay::fake::staff::Page| page.thread_ids();
    let staah_thread = ids(&staff.get("/inbox/threads?channel=staah").await.unwrap());
    assert_eq!(staah_thread.len(), 1);
    let booking = staff.get("/inbox/threads?channel=booking").await.unwrap();
    assert!(booking.body.contains("60 conversations"), "{}", booking.body);
    let one = staff.get("/inbox/threads?property=8011856").await.unwrap();
    assert_eq!(ids(&one), vec![thread_of(&relay, "conv-park")]);

    // 61 threads, 25 a page, newest first, none twice.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let answer = staff.get(&format!("/inbox/threads?page={page}")).await.unwrap();
        assert!(answer.body.contains(&format!("Page {page} of 3")), "{}", answer.body);
        assert_eq!(answer.body.contains("rel=\"next\""), page < 3);
        seen.extend(ids(&answer));
    }
    assert_eq!(seen.len(), 61);
    assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 61);
    let newest = [
        staah_thread[0].clone(),
        thread_of(&relay, "conv-cot"),
        thread_of(&relay, "conv-park"),
    ];
    assert_eq!(seen[..3], newest);

    let cot = thread_of(&relay, "conv-cot");
    assert_eq!(
        ids(&staff.get("/inbox/threads?q=baby+cot").await.unwrap()),
        vec![cot.clone()]
    );
    assert_eq!(
        ids(&staff.get("/inbox/threads?q=cot&property=8011856").await.unwrap()),
        Vec::<String>::new()
    );
    let odd = staff.get("/inbox/threads?q=%22unbalanced+OR+(").await.unwrap();
    assert_eq!(
        odd.status, 200,
        "a stray quote is text, not a query error: {}",
        odd.body
    );
    assert!(ids(&odd).is_empty());

    let erased = relay.command(&["erase", "--conversation-id", "conv-cot"]).await;
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    assert_eq!(
        ids(&staff.get("/inbox/threads?q=baby+cot").await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        count(
            &relay.path(),
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'cot'"
        ),
        0,
        "the index holds no erased word"
    );
    let page = staff.get(&format!("/inbox/threads/{cot}")).await.unwrap();
    assert!(!page.body.contains("baby cot"), "{}", page.body);
}

#[tokio::test]
async fn the_live_stream_resumes_from_the_page_and_after_a_reconnect_without_losing_a_change() {
    let mut relay = TestRelay::with().api().forward("").start().await;
    relay
        .ota
        .enqueue_raw([guest("m-1", "conv-1", LIMITED_PROPERTY, "First", 1)]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    let mut staff = signed_in(&relay, PMS_TOKEN, "Front desk").await;
    let page = staff.get("/inbox/threads").await.unwrap();
    let loaded = page.last_change();
    assert!(loaded > 0, "the page carries its last change");

    // Between the page's render and the stream: a message arrives; the stream still brings it.
    relay
        .ota
        .enqueue_raw([guest("m-2", "conv-2", LIMITED_PROPERTY, "Second", 2)]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    let mut events = staff.events(&format!("?after={loaded}"), None).await.unwrap();
    assert_eq!(events.status, 200);
    let first = within(5, "the first change", events.next()).await.unwrap().unwrap();
    assert_eq!(
        (first.thread.as_str(), first.kind.as_str()),
        (thread_of(&relay, "conv-2").as_str(), "message")
    );
    assert!(first.id > loaded);
    drop(events);

    // Disconnected: two more messages and a close; a reconnect with Last-Event-ID brings all of them, in order.
    relay.ota.enqueue_raw([
        guest("m-3", "conv-3", LIMITED_PROPERTY, "Third", 3),
        guest("m-4", "conv-4", "8011856", "Fourth", 4),
    ]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    let c1 = thread_of(&relay, "conv-1");
    staff.get(&format!("/inbox/threads/{c1}")).await.unwrap();
    staff.submit(&format!("/inbox/threads/{c1}/close"), &[]).await.unwrap();
    let mut events = staff.events("?after=0", Some(first.id)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(within(5, "the missed changes", events.next()).await.unwrap().unwrap());
    }
    let conv3 = thread_of(&relay, "conv-3");
    let conv4 = thread_of(&relay, "conv-4");
    let batch: std::collections::HashSet<&str> = got[..2].iter().map(|c| c.thread.as_str()).collect();
    assert_eq!(
        batch,
        [conv3.as_str(), conv4.as_str()].into_iter().collect(),
        "one batch, two threads"
    );
    assert_eq!((got[2].thread.as_str(), got[2].kind.as_str()), (c1.as_str(), "thread"));
    assert!(got.windows(2).all(|w| w[0].id < w[1].id) && got[0].id > first.id);

    // A property-limited session's stream says nothing of another property.
    let mut limited = signed_in(&relay, LIMITED_TOKEN, "Limited desk").await;
    limited.get("/inbox/threads").await.unwrap();
    let mut theirs = limited.events("?after=0", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(
            within(5, "the limited changes", theirs.next())
                .await
                .unwrap()
                .unwrap()
                .thread,
        );
    }
    assert!(!seen.contains(&conv4), "{seen:?}");

    // SIGTERM with streams open: they end, and the daemon exits well within its grace.
    let grace = ota_relay::daemon::shutdown_grace(&relay.settings());
    let stopping = Instant::now();
    relay.stop().await;
    let ended = within(10, "the stream to end", async {
        loop {
            match theirs.next().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    });
    ended.await;
    assert!(
        stopping.elapsed() < grace,
        "stopped after {:?} (grace {grace:?})",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn the_pms_makes_single_use_links_limited_to_a_property_and_idle_sessions_end() {
    let relay = TestRelay::with().api().forward("").start().await;
    relay.ota.enqueue_raw([
        guest("m-mine", "conv-mine", LIMITED_PROPERTY, "Mine", 1),
        guest("m-other", "conv-other", "8011856", "Other", 2),
    ]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    let (mine, other) = (thread_of(&relay, "conv-mine"), thread_of(&relay, "conv-other"));
    let endpoint = "/api/v1/auth/one_time_token";
    let ask =
        |property: &str, user: &str| json!({"one_time_token": {"property_id": property, "username": user}}).to_string();

    let limited = relay.limited_api();
    let answer = limited.post(endpoint, &ask("8011856", "Desk"), None).await.unwrap();
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = limited
        .post(
            endpoint,
            &json!({"one_time_token": {"username": "Desk"}}).to_string(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains("property_id"), "{}", answer.body);
    let answer = relay
        .api()
        .post(endpoint, &ask(LIMITED_PROPERTY, ""), None)
        .await
        .unwrap();
    assert_eq!(answer.status, 422);
    assert!(answer.body.contains("username"), "{}", answer.body);
    let unauthenticated = reqwest::Client::new()
        .post(relay.api().url(endpoint))
        .body(ask(LIMITED_PROPERTY, "Desk"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let answer = relay
        .api()
        .post(endpoint, &ask(LIMITED_PROPERTY, "PMS user"), None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = answer.json()["data"]["token"].as_str().unwrap().to_owned();
    let link = format!("/inbox/auth/exchange?oauth_session_key={token}&redirect_to=/inbox/threads/{mine}");
    let mut staff = relay.staff();
    let landed = staff.get(&link).await.unwrap();
    assert_eq!(
        (landed.status, landed.location()),
        (303, Some(format!("/inbox/threads/{mine}").as_str()))
    );
    let page = staff.get(&format!("/inbox/threads/{mine}")).await.unwrap();
    assert!(page.body.contains("Signed in as <strong>PMS user</strong>"));
    assert_eq!(
        staff.get("/inbox/threads").await.unwrap().thread_ids(),
        vec![mine.clone()]
    );
    assert_eq!(staff.get(&format!("/inbox/threads/{other}")).await.unwrap().status, 404);
    assert_eq!(
        staff.get("/inbox/threads?q=Other").await.unwrap().thread_ids(),
        Vec::<String>::new()
    );
    let (raw, hashed) = (
        format!("SELECT count(*) FROM one_time_tokens WHERE token_sha256 = '{token}'"),
        format!(
            "SELECT count(*) FROM one_time_tokens WHERE token_sha256 = '{}' AND used_at IS NOT NULL",
            sha256_hex(&token)
        ),
    );
    assert_eq!(
        (count(&relay.path(), &raw), count(&relay.path(), &hashed)),
        (0, 1),
        "only the link's hash is kept"
    );

    let mut replayed = relay.staff();
    let again = replayed.get(&link).await.unwrap();
    assert_eq!(again.status, 401);
    assert!(again.body.contains("used already or has expired") && !replayed.signed_in());
    // A link lands only inside the inbox, wherever redirect_to points.
    for to in [
        "https://evil.example/",
        "//evil.example/inbox/",
        "/inbox/../api/v1/message_threads",
        "/inbox/%2E%2E/api/v1/message_threads",
        "/inbox/\\\\evil.example",
    ] {
        let answer = relay
            .api()
            .post(endpoint, &ask(LIMITED_PROPERTY, "Desk"), None)
            .await
            .unwrap();
        let key = answer.json()["data"]["token"].as_str().unwrap().to_owned();
        let query = serde_urlencoded::to_string([("oauth_session_key", key.as_str()), ("redirect_to", to)]).unwrap();
        let landed = relay
            .staff()
            .get(&format!("/inbox/auth/exchange?{query}"))
            .await
            .unwrap();
        assert_eq!(
            (landed.status, landed.location()),
            (303, Some("/inbox/threads")),
            "redirect_to={to}"
        );
    }

    // Fifteen minutes later a link no longer signs in.
    let answer = relay
        .api()
        .post(endpoint, &ask(LIMITED_PROPERTY, "Late"), None)
        .await
        .unwrap();
    let late = answer.json()["data"]["token"].as_str().unwrap().to_owned();
    relay
        .db()
        .execute(
            "UPDATE one_time_tokens SET expires_at = created_at WHERE used_at IS NULL",
            [],
        )
        .unwrap();
    let mut slow = relay.staff();
    let expired = slow
        .get(&format!("/inbox/auth/exchange?oauth_session_key={late}"))
        .await
        .unwrap();
    assert_eq!(expired.status, 401);

    // A session idle for longer than session_idle (12 hours by default) signs in again.
    relay
        .db()
        .execute(
            "UPDATE sessions SET last_seen_at = last_seen_at - 12 * 3600 * 1000 - 1000",
            [],
        )
        .unwrap();
    let page = staff.get("/inbox/threads").await.unwrap();
    assert_eq!((page.status, page.location()), (303, Some("/inbox/login")));
}

#[tokio::test]
async fn behind_https_the_link_and_cookie_suit_an_iframe_in_the_pms_and_only_its_origins_may_frame() {
    let signed = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::write(&cert, signed.cert.pem()).unwrap();
    std::fs::write(&key, signed.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let keys = format!(
        "public_url = \"https://127.0.0.1:{port}/\"\nframe_ancestors = [\"https://pms.example\", \"https://*.pms.example\"]\n\
         tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let relay = TestRelay::with().api_on(port).api_keys(&keys).start().await;

    let out = relay
        .command(&["inbox-link", "--token-name", "pms", "--user", "Front desk"])
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap();
    assert_eq!(link.lines().count(), 1);
    let link = link.trim();
    assert!(
        link.starts_with(&format!(
            "https://127.0.0.1:{port}/inbox/auth/exchange?oauth_session_key="
        )),
        "{link}"
    );

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(signed.cert.pem().as_bytes()).unwrap()]);
    let mut staff = StaffClient::new(&format!("https://127.0.0.1:{port}"), trusting);
    let landed = staff.get(link).await.unwrap();
    assert_eq!((landed.status, landed.location()), (303, Some("/inbox/threads")));
    let cookie = landed.set_cookie().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("SameSite=None") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let list = staff.get("/inbox/threads").await.unwrap();
    assert_eq!(list.status, 200);
    let csp = list.header("content-security-policy");
    assert!(
        csp.ends_with("frame-ancestors https://pms.example https://*.pms.example"),
        "{csp}"
    );
}
