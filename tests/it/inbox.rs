//! The staff inbox in a real browser (headless Chromium over WebDriver): sign in with a one-time link, see a new
//! guest message arrive without a reload, reply and watch the reply's state change live, including a send whose
//! answer is lost; a property-limited session sees nothing else; replayed links and forms without their CSRF
//! token are refused; the list and a conversation pass an accessibility check.

use fantoccini::Locator;
use ota_relay::fake::{Endpoint, HoldPoint, ReplyFault};

use crate::browser::Browser;
use crate::support::*;

const QUICK: &str = "[replies]\nrequest_timeout = \"1s\"\nreconcile_window = \"2s\"\n";

async fn link(relay: &TestRelay, extra: &[&str]) -> String {
    let mut args = vec!["inbox-link", "--token-name", "pms", "--user", "Front desk"];
    args.extend_from_slice(extra);
    let out = relay.command(&args).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with("http://127.0.0.1:") && link.contains("/inbox/auth/exchange?oauth_session_key="),
        "{link}"
    );
    link
}

fn guest(id: &str, conversation: &str, property: u64, text: &str, name: &str) -> String {
    booking_guest(id, conversation, property, text, name, "2026-12-01T09:00:00.000Z")
}

async fn assert_accessible(browser: &Browser, page: &str) {
    if let Some(violations) = browser.accessibility_violations().await {
        assert!(
            violations.is_empty(),
            "{page}: serious accessibility violations: {violations}"
        );
    }
}

#[tokio::test]
async fn staff_sign_in_read_reply_and_follow_the_replys_state_live_in_a_real_browser() {
    let Some(mut browser) = Browser::start("conversation").await else {
        return;
    };
    let mut relay = TestRelay::with()
        .queued(990, 0..6)
        .api()
        .forward("")
        .config(QUICK)
        .start()
        .await;
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;

    browser.client.goto(&link(&relay, &[]).await).await.unwrap();
    browser.wait_for("#threads").await;
    assert!(
        browser
            .client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/inbox/threads")
    );
    browser.wait_for_text("Signed in as").await;
    browser.screenshot("list").await;
    assert_accessible(&browser, "the list").await;

    // A guest writes: the open list shows it without a reload.
    relay.ota.enqueue_raw([guest(
        "live-1",
        "conv-live",
        8011855,
        "Is breakfast included?",
        "Ana Lima",
    )]);
    browser.wait_for_text("Is breakfast included?").await;
    browser.screenshot("new-message-arrived").await;
    let row = browser.wait_for("li.thread.unread").await;
    assert!(row.text().await.unwrap().contains("Ana Lima"));

    browser
        .client
        .find(Locator::XPath("//a[contains(., 'Ana Lima')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for("#reply").await;
    browser.wait_for_text("Is breakfast included?").await;
    browser.screenshot("conversation").await;
    assert_accessible(&browser, "a conversation").await;
    // Times are shown in the viewer's zone (the page without its script says UTC).
    let zone = browser
        .client
        .execute("return Intl.DateTimeFormat().resolvedOptions().timeZone", vec![])
        .await
        .unwrap();
    assert_eq!(zone.as_str(), Some("Asia/Tokyo"));
    let shown = browser.wait_for("#messages time").await.text().await.unwrap();
    assert!(!shown.is_empty() && !shown.contains("UTC"), "{shown}");
    let read_at: Option<i64> = relay
        .db()
        .query_row(
            "SELECT read_at FROM threads WHERE conversation_id = 'conv-live'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(read_at.is_some(), "opening the thread marks it read");

    // An empty reply is refused: nothing is stored.
    browser.wait_for("#reply").await.send_keys("\u{E007}").await.unwrap();
    assert_eq!(relay.count("SELECT count(*) FROM replies"), 0);

    // Enter sends; the state becomes Sent when the fake Booking.com took it.
    let reply = browser.wait_for("#reply").await;
    reply.send_keys("Yes, breakfast is included.\u{E007}").await.unwrap();
    browser.wait_for_text("Yes, breakfast is included.").await;
    browser.wait_for(".state-sent").await;
    browser.screenshot("reply-sent").await;
    let author: String = relay
        .db()
        .query_row("SELECT author FROM replies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(author, "Front desk", "the signed-in user is the author");

    // A send whose answer is lost shows unknown, then sent once the conversation read finds it.
    relay.ota.reply_fault(ReplyFault::AppliedSilentlyThenLost);
    // The reconciliation's question waits until the page has shown the unknown state.
    let question = relay.ota.hold_next(Endpoint::Reply, HoldPoint::Before);
    browser
        .wait_for("#reply")
        .await
        .send_keys("We will check the late check-in.\u{E007}")
        .await
        .unwrap();
    browser.wait_for(".state-unknown").await;
    browser.screenshot("reply-unknown").await;
    question.release();
    within(30, "both replies shown sent", async {
        loop {
            if browser
                .client
                .find_all(Locator::Css(".state-sent"))
                .await
                .unwrap()
                .len()
                == 2
            {
                return;
            }
            browser.wait_for(".state").await;
        }
    })
    .await;
    browser.screenshot("reply-reconciled").await;

    browser.wait_for("#close").await.click().await.unwrap();
    browser.wait_for_text("Reopen").await;
    assert_eq!(browser.wait_for("#thread-state").await.text().await.unwrap(), "Closed");
    browser.screenshot("closed").await;
    browser.close().await;
    relay.stop().await;
    assert_eq!(
        relay.ota.read(|s| (s.reply_attempts, s.posted.len())),
        (2, 2),
        "each reply sent once"
    );
}

#[tokio::test]
async fn a_property_limited_session_sees_only_its_property_and_forms_need_their_csrf_token() {
    let Some(mut browser) = Browser::start("limited").await else {
        return;
    };
    let mut relay = TestRelay::with().api().forward("").start().await;
    relay.ota.enqueue_raw([
        guest("mine-1", "conv-mine", 8011855, "Can we park the car?", "Own Guest"),
        guest(
            "other-1",
            "conv-other",
            8011856,
            "Is there a zebra crossing nearby?",
            "Other Guest",
        ),
    ]);
    within(30, "drained", relay.ota.wait_for(|s| s.drained())).await;
    let other: String = relay
        .db()
        .query_row("SELECT id FROM threads WHERE conversation_id = 'conv-other'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mine: String = relay
        .db()
        .query_row("SELECT id FROM threads WHERE conversation_id = 'conv-mine'", [], |r| {
            r.get(0)
        })
        .unwrap();

    let limited = link(&relay, &["--property", "8011855"]).await;
    browser.client.goto(&limited).await.unwrap();
    browser.wait_for("#threads").await;
    browser.wait_for_text("Own Guest").await;
    let list = browser.wait_for("#threads").await.text().await.unwrap();
    assert!(
        !list.contains("Other Guest"),
        "another property's thread is listed: {list}"
    );
    assert!(browser.wait_for("#count").await.text().await.unwrap().starts_with("1 "));

    // On a phone nothing is wider than the screen; the keyboard alone reaches the skip link, then the
    // conversation, and opens it.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.refresh().await.unwrap();
    browser.wait_for("#threads").await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow.as_i64(), Some(0), "the list scrolls sideways on a phone");
    browser.screenshot("phone").await;
    let tab = "\u{E004}";
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys(tab)
        .await
        .unwrap();
    let first = browser.client.active_element().await.unwrap();
    assert_eq!(first.text().await.unwrap(), "Skip to content");
    let mut reached = false;
    for _ in 0..30 {
        let focused = browser.client.active_element().await.unwrap();
        if focused.text().await.unwrap().contains("Own Guest") {
            focused.send_keys("\u{E007}").await.unwrap();
            reached = true;
            break;
        }
        focused.send_keys(tab).await.unwrap();
    }
    assert!(reached, "Tab never reached the conversation");
    browser.wait_for("#reply").await;
    browser.wait_for_text("Can we park the car?").await;
    browser.client.set_window_size(1280, 900).await.unwrap();
    browser
        .client
        .goto(&format!("{}/inbox/threads", limited.split("/inbox/").next().unwrap()))
        .await
        .unwrap();
    browser.wait_for("#threads").await;

    // Search finds this property's words, and nothing of the other's.
    let base = limited.split("/inbox/").next().unwrap().to_owned();
    browser
        .client
        .goto(&format!("{base}/inbox/threads?q=zebra"))
        .await
        .unwrap();
    assert_eq!(
        browser.wait_for("#count").await.text().await.unwrap(),
        "0 conversations"
    );
    browser
        .client
        .goto(&format!("{base}/inbox/threads?q=park"))
        .await
        .unwrap();
    browser.wait_for_text("Own Guest").await;
    browser.screenshot("search").await;

    browser
        .client
        .goto(&format!("{base}/inbox/threads/{other}"))
        .await
        .unwrap();
    browser.wait_for_text("There is no such conversation").await;
    browser.screenshot("other-property-not-found").await;

    // The same link again: refused.
    browser.client.goto(&limited).await.unwrap();
    browser.wait_for_text("used already or has expired").await;

    // A form POST without the session's CSRF token changes nothing.
    let fresh = link(&relay, &["--property", "8011855"]).await;
    browser.client.goto(&fresh).await.unwrap();
    browser.wait_for("#threads").await;
    let cookie = browser
        .client
        .get_named_cookie(ota_relay::web::inbox::COOKIE)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = client
        .post(format!("{base}/inbox/threads/{mine}/close"))
        .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let closed: i64 = relay
        .db()
        .query_row("SELECT is_closed FROM threads WHERE id = ?1", [&mine], |r| r.get(0))
        .unwrap();
    assert_eq!(closed, 0, "nothing was done");
    let unsigned = client.get(format!("{base}/inbox/threads")).send().await.unwrap();
    assert_eq!(unsigned.status(), 303, "without a session: to the sign-in page");
    browser.close().await;
    relay.stop().await;
}
