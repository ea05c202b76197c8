//! `ota-relay backfill` against the fake's message search: only missing messages are stored and forwarded,
//! results are paged, long ranges split, expired jobs and unknown answer shapes reported.

use ota_relay::channel::booking::search_wire::{SearchResult, parse_search_job, parse_search_result};
use ota_relay::fake::{FakeOta, FakeOtaOptions, guest_message};

use crate::support::*;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn backfill_stores_and_forwards_only_missing_messages_paging_through_results() {
    let mut relay = TestRelay::with()
        .ota(|o| FakeOtaOptions {
            search_page_size: 7,
            search_pending_polls: 1,
            ..o
        })
        // 12 come through the queue; 8 were lost in an outage and only the search knows them.
        .queued(41, 0..12)
        .forward("")
        .start()
        .await;
    relay.ota.archive((12..20).map(|i| guest_message(41, i)));
    let (ota, pms, path, config) = (&relay.ota, &relay.pms, relay.path(), relay.config());
    within(30, "the queue delivered", pms.wait_for(|s| s.accepted_count() == 12)).await;

    let args = ["backfill", "--after", "2026-11-01", "--before", "2026-11-30T23:59:59Z"];
    let out = command(&config, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("window 1/1: 2026-11-01T00:00:00.000Z .. 2026-11-30T23:59:59.000Z"),
        "{text}"
    );
    assert!(text.contains("is pending"), "waited for the job: {text}");
    assert!(
        text.contains(
            "1 search window(s), 3 page(s); 20 messages found: 8 new (queued for the PMS), 12 already stored"
        ),
        "{text}"
    );
    within(
        30,
        "the missing ones delivered",
        pms.wait_for(|s| s.accepted_count() == 20),
    )
    .await;
    assert_eq!(pms.read(|s| s.duplicates()), 0);
    let lost = guest_message(41, 15);
    let raw: String = db(&path)
        .query_row(
            "SELECT raw FROM messages WHERE message_id = ?1",
            [&lost.message_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, lost.json, "kept byte for byte");

    // Again: everything is already stored, no delivery is created, nothing can be forwarded twice.
    let out = command(&config, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("20 messages found: 0 new (queued for the PMS), 20 already stored"),
        "{}",
        stdout(&out)
    );
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 20);
    assert_eq!(count(&path, "SELECT count(*) FROM batches WHERE origin = 'search'"), 6);
    let searches = ota.read(|s| s.searches.clone());
    assert_eq!(
        searches[0],
        "after=2026-11-01T00:00:00.000Z before=2026-11-30T23:59:59.000Z property_id=- order_by=-"
    );
    assert_eq!(pms.read(|s| s.accepted_count()), 20);
    assert_eq!(pms.read(|s| s.duplicates()), 0);
    relay.stop().await;
}

#[tokio::test]
async fn backfill_splits_long_ranges_filters_by_property_and_reports_an_expired_job() {
    let relay = TestRelay::with().prepare().await;
    // Conversations of four messages each, on three properties in turn: 8011856 holds messages 4..8.
    relay.ota.archive((0..12).map(|i| guest_message(42, i)));
    let (ota, path, config) = (&relay.ota, relay.path(), relay.config());
    drop(relay.open_store());

    let out = command(
        &config,
        &[
            "backfill",
            "--after",
            "2026-01-01",
            "--before",
            "2026-11-30",
            "--property-id",
            "8011856",
            "--order-by",
            "desc",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("4 search window(s)"), "{}", stdout(&out));
    assert!(stdout(&out).contains("4 messages found: 4 new"), "{}", stdout(&out));
    let searches = ota.read(|s| s.searches.clone());
    assert_eq!(searches.len(), 4);
    assert!(
        searches[0].starts_with(
            "after=2026-01-01T00:00:00.000Z before=2026-03-31T23:59:59.999Z property_id=8011856 order_by=desc"
        ),
        "{searches:?}"
    );
    assert!(
        searches[1].starts_with("after=2026-04-01T00:00:00.000Z"),
        "{searches:?}"
    );
    assert!(searches[3].contains("before=2026-11-30T00:00:00.000Z"), "{searches:?}");
    let ids = stored_ids(&path);
    let expected: Vec<String> = (4..8).rev().map(|i| guest_message(42, i).message_id).collect();
    assert_eq!(ids, expected, "only property 8011856, in the order served");

    // A job that expires while it is waited for: a clear error, nothing more stored.
    let slow = FakeOta::start(FakeOtaOptions {
        auth: basic_fake_auth(),
        search_pending_polls: 1000,
        ..FakeOtaOptions::default()
    })
    .await
    .unwrap();
    slow.archive((20..30).map(|i| guest_message(42, i)));
    let config = write_config(relay.dir(), &slow.base_url(), "");
    let run = command(
        &config,
        &["backfill", "--after", "2026-11-01", "--before", "2026-11-30"],
    );
    let expire = async {
        slow.wait_for(|s| s.search_result_requests >= 1).await;
        slow.expire_search_jobs();
    };
    let (out, ()) = tokio::join!(run, expire);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("search job search-job-1 expired (HTTP 410"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 4);

    let out = command(
        &config,
        &["backfill", "--after", "2026-11-30", "--before", "2026-11-01"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--after must not be later than --before"));
}

#[test]
fn search_answers_are_parsed_tolerantly_and_unknown_shapes_are_named() {
    assert_eq!(
        parse_search_job(br#"{"data":{"job_id":"j-1"},"errors":[]}"#)
            .unwrap()
            .job_id,
        "j-1"
    );
    assert_eq!(parse_search_job(br#"{"data":{"id":42}}"#).unwrap().job_id, "42");
    let e = parse_search_job(br#"{"data":{"search":"x"},"meta":{"ruid":"r"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no job id") && e.contains("data keys [search]"), "{e}");
    let e = parse_search_job(br#"{"errors":[{"code":"400","message":"bad range"}]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad range"), "{e}");

    assert!(matches!(
        parse_search_result(br#"{"data":{"job_status":"IN_PROGRESS"}}"#).unwrap(),
        SearchResult::Pending { .. }
    ));
    match parse_search_result(
        br#"{"data":{"messages":[{"message_id":"m1","content":"hi"},{"no":"id"}],"next_page":7}}"#,
    )
    .unwrap()
    {
        SearchResult::Page {
            elements, next_page_id, ..
        } => {
            assert_eq!(elements.len(), 2, "the element without an id is kept for quarantine");
            assert_eq!(next_page_id.as_deref(), Some("7"));
        }
        other => panic!("{other:?}"),
    }
    // A status nobody documented, a ready job without messages, results under another name: named, not "none".
    for (body, needle) in [
        (
            &br#"{"data":{"status":"archived"}}"#[..],
            "unknown job status \"archived\"",
        ),
        (br#"{"data":{"status":"ready"}}"#, "no data.messages array"),
        (br#"{"data":{"results":[{"message_id":"m1"}]}}"#, "data keys [results]"),
    ] {
        let e = parse_search_result(body).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("unrecognised"), "{e}");
    }
}
