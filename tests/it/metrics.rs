//! `[http] listen`: /healthz and /metrics of the real binary, compared with what the fakes saw; and what the
//! workers count into the metrics.

use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use ota_relay::channel::booking::drain::Drainer;
use ota_relay::fake::{Endpoint, Fault, PmsReply, guest_message, poison_message};
use ota_relay::forward::OutboxSummary;
use ota_relay::store::now_ms;
use tokio_util::sync::CancellationToken;

use crate::support::*;

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// The value of `family`'s sample whose labels include `labels` (a histogram gives its count).
fn value(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let family_data = exposition
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no metric family {family}"));
    let sample = family_data
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().expect("a sample bound to its family");
            labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample of {family} with {labels:?}"));
    match &sample.value {
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        OpenMetricsValue::Gauge(g) => g.as_f64(),
        OpenMetricsValue::Histogram(h) => h.count.expect("a histogram count") as f64,
        other => panic!("unexpected value {other:?}"),
    }
}

async fn get(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url).await.expect("the listener answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// Scrapes `/metrics` until `ready` holds for the parsed exposition; returns it and its text.
async fn scrape_until(base: &str, what: &str, ready: impl Fn(&Exposition) -> bool) -> (Exposition, String) {
    within(30, what, async {
        loop {
            let (status, _, text) = get(&format!("{base}/metrics")).await;
            if status == 200
                && let Ok(m) = openmetrics_parser::openmetrics::parse_openmetrics(&text)
                && ready(&m)
            {
                return (m, text);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The value of a sample, or zero while the family has no such sample yet.
fn value_or_zero(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let known = exposition.families.get(family).is_some_and(|f| {
        f.iter_samples().any(|s| {
            let set = s.get_labelset().expect("a sample bound to its family");
            labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
    });
    if known { value(exposition, family, labels) } else { 0.0 }
}

#[tokio::test]
async fn metrics_parse_as_openmetrics_and_match_what_happened_healthz_follows_status() {
    let port = free_port();
    let mut relay = TestRelay::with()
        .queued(31, 0..30)
        .forward("")
        .config(&format!(
            "[jobs]\nduplicate_filter = \"* * * * * *\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .prepare()
        .await;
    let (ota, pms) = (&relay.ota, &relay.pms);
    ota.inject(Endpoint::Latest, Fault::Status(500));
    ota.enqueue_raw((0..2).map(poison_message));
    pms.reply_next(PmsReply::Status(500));
    pms.reply_next(PmsReply::Status(503));
    relay.run();
    relay.ready(1).await;
    let (ota, pms) = (&relay.ota, &relay.pms);
    let base = format!("http://127.0.0.1:{port}");

    within(30, "all delivered", pms.wait_for(|s| s.accepted_count() == 30)).await;
    within(30, "drained", ota.wait_for(|s| s.drained())).await;
    let (status, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"healthy"}"#));

    // A redelivery of a confirmed message, and a message the PMS refuses for good (a dead letter).
    let refused = guest_message(31, 30);
    pms.always(&format!("booking.com:{}", refused.message_id), 410);
    ota.enqueue([guest_message(31, 0), refused]);
    relay
        .wait_for_store("the dead letter", |db| {
            db.query_row("SELECT count(*) FROM deliveries WHERE state = 'dead'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
                == 1
        })
        .await;
    // The second batch's confirm and a duplicate-filter run, counted.
    let (m, text) = scrape_until(&base, "the second confirm and a job run counted", |m| {
        value_or_zero(m, "ota_relay_confirms", &[("outcome", "ok")]) == 2.0
            && value_or_zero(
                m,
                "ota_relay_job_runs",
                &[("job", "duplicate_filter"), ("outcome", "ok")],
            ) >= 1.0
    })
    .await;

    let (status, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(
        health["problems"][0].as_str().unwrap().contains("dead letter"),
        "{body}"
    );

    let (status, content_type, _) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let (gets, puts, confirmed) = ota.read(|s| (s.gets, s.puts, s.confirmed));
    let pms_requests = pms.read(|s| s.requests);

    assert_eq!(value(&m, "ota_relay_messages_stored", &[]), 31.0);
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 31);
    assert_eq!(value(&m, "ota_relay_redeliveries", &[]), 1.0);
    assert_eq!(value(&m, "ota_relay_quarantined", &[]), 2.0);
    assert_eq!(value(&m, "ota_relay_batches", &[]), puts as f64);
    assert_eq!(value(&m, "ota_relay_polls", &[("outcome", "messages")]), puts as f64);
    assert_eq!(value(&m, "ota_relay_polls", &[("outcome", "error")]), 1.0);
    assert!(value(&m, "ota_relay_polls", &[("outcome", "empty")]) >= 1.0);
    assert!(value(&m, "ota_relay_request_duration_seconds", &[("operation", "latest")]) <= gets as f64);
    assert_eq!(value(&m, "ota_relay_confirms", &[("outcome", "ok")]), puts as f64);
    assert_eq!(value(&m, "ota_relay_messages_confirmed", &[]), confirmed as f64);
    assert_eq!(confirmed, 34);
    assert_eq!(value(&m, "ota_relay_deliveries", &[("outcome", "delivered")]), 30.0);
    assert_eq!(value(&m, "ota_relay_deliveries", &[("outcome", "retry")]), 2.0);
    assert_eq!(value(&m, "ota_relay_deliveries", &[("outcome", "dead")]), 1.0);
    assert_eq!(
        value(&m, "ota_relay_request_duration_seconds", &[("peer", "pms")]),
        pms_requests as f64
    );
    assert_eq!(pms_requests, 33);
    assert_eq!(value(&m, "ota_relay_deliveries_pending", &[]), 0.0);
    assert_eq!(value(&m, "ota_relay_oldest_pending_age_seconds", &[]), 0.0);
    assert_eq!(value(&m, "ota_relay_dead_letters", &[]), 1.0);
    assert!(
        value(
            &m,
            "ota_relay_job_runs",
            &[("job", "duplicate_filter"), ("outcome", "ok")]
        ) >= 1.0
    );

    relay.stop().await;
}

#[tokio::test]
async fn a_listen_address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        &format!("[http]\nlisten = \"{addr}\"\n"),
    );
    let (status, stderr) = Daemon::run(&config).exit().await;
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("http.listen: cannot listen on {addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_exchanges_are_timed_with_the_other_booking_requests() {
    let relay = TestRelay::with().token_auth().queued(5, 0..150).in_process().await;
    let ota = &relay.ota;
    let cx = context(relay.store(), &CancellationToken::new());
    let metrics = cx.metrics.clone();
    let mut drainer = Drainer::new(&relay.booking(), &cx).unwrap();
    drainer.drain_once().await.unwrap();
    drainer.drain_once().await.unwrap();

    let text = metrics.encode(&OutboxSummary::default(), &[], now_ms());
    let m = openmetrics_parser::openmetrics::parse_openmetrics(&text).unwrap();
    let (exchanges, gets) = ota.read(|s| (s.token_exchanges.len(), s.gets));
    assert_eq!((exchanges, gets), (1, 2));
    let timed = |operation| {
        value(
            &m,
            "ota_relay_request_duration_seconds",
            &[("peer", "booking"), ("operation", operation)],
        )
    };
    assert_eq!(timed("token"), 1.0, "{text}");
    assert_eq!(timed("latest"), 2.0, "{text}");
}

#[tokio::test]
async fn metrics_and_healthz_show_each_push_source() {
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .ops_listener()
        .start()
        .await;
    let senders = relay.senders();
    let sample = ota_relay::fake::pushes::staah_message(950, 1);
    assert_eq!(senders.staah(&sample.body).await.unwrap().status, 200);
    assert_eq!(senders.staah(&sample.body).await.unwrap().status, 200);
    let mut wrong = senders.clone();
    wrong.credentials.channex_secret = "wrong".into();
    let channex = ota_relay::fake::pushes::channex_message(950, 1, "t");
    assert_eq!(wrong.channex(&channex.body).await.unwrap().status, 401);

    let base = relay.ops_url();
    let (m, text) = scrape_until(&base, "the pushes counted", |m| {
        m.families
            .contains_key("ota_relay_push_last_accepted_timestamp_seconds")
    })
    .await;
    let pushes = |source, outcome| value(&m, "ota_relay_pushes", &[("source", source), ("outcome", outcome)]);
    assert_eq!(pushes("staah", "stored"), 1.0, "{text}");
    assert_eq!(pushes("staah", "duplicate"), 1.0, "{text}");
    assert_eq!(pushes("channex", "refused"), 1.0, "{text}");
    let last = value(
        &m,
        "ota_relay_push_last_accepted_timestamp_seconds",
        &[("source", "staah")],
    );
    assert!((last - now_ms().unix_secs() as f64).abs() < 60.0, "{text}");

    let (status, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let staah = health["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["source"] == "staah")
        .unwrap()
        .clone();
    assert_eq!(
        (staah["accepted"].as_i64(), staah["duplicates"].as_i64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert!(staah["last_accepted_at"].is_string(), "{body}");
    relay.stop().await;
}
