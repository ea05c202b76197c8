//! The daemon's Prometheus instruments. Counters count what happened since this process started (Prometheus
//! handles restarts); the outbox gauges are read from the store at scrape time, so they are right even for
//! changes made by operator commands from another process.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::forward::outbox::OutboxSummary;
use crate::store::push_stats::PushSource;
use crate::store::{BatchSummary, Millis};

/// The media type of [`Metrics::encode`]'s answer (OpenMetrics, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    peer: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: &'static str,
}

#[derive(Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 5 ms … ~41 s: a local PMS answers in milliseconds, a request timeout is tens of seconds.
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.005, 2.0, 14,
        ))
    }
}

struct Instruments {
    registry: Registry,
    polls: Family<OutcomeLabel, Counter>,
    batches: Counter,
    stored: Counter,
    redeliveries: Counter,
    quarantined: Counter,
    confirms: Family<OutcomeLabel, Counter>,
    confirmed_messages: Counter,
    deliveries: Family<OutcomeLabel, Counter>,
    pending: Gauge,
    oldest_pending_age: Gauge,
    dead_letters: Gauge,
    pms_failing: Gauge,
    requests: Family<RequestLabels, Histogram, LatencyBuckets>,
    job_runs: Family<JobLabels, Counter>,
    job_last_success: Family<JobLabel, Gauge>,
    pushes: Family<PushLabels, Counter>,
    reply_sends: Family<OutcomeLabel, Counter>,
    push_last_accepted: Family<SourceLabel, Gauge>,
    replies: Family<StateLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

/// Cheap to clone; every clone feeds the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Instruments>);

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut i = Instruments {
            registry: Registry::with_prefix("ota_relay"),
            polls: Family::default(),
            batches: Counter::default(),
            stored: Counter::default(),
            redeliveries: Counter::default(),
            quarantined: Counter::default(),
            confirms: Family::default(),
            confirmed_messages: Counter::default(),
            deliveries: Family::default(),
            pending: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            dead_letters: Gauge::default(),
            pms_failing: Gauge::default(),
            requests: Family::new_with_constructor(LatencyBuckets),
            job_runs: Family::default(),
            job_last_success: Family::default(),
            pushes: Family::default(),
            reply_sends: Family::default(),
            push_last_accepted: Family::default(),
            replies: Family::default(),
        };
        let r = &mut i.registry;
        // Each instrument with its name and help text; the registry keeps a handle, the struct the other.
        macro_rules! register {
            ($($name:literal, $help:literal => $field:ident;)*) => {
                $(r.register($name, $help, i.$field.clone());)*
            };
        }
        register! {
            "polls", "GET /messaging/messages/latest answers, by outcome (messages, empty, error)" => polls;
            "batches", "Answers with messages committed to the store" => batches;
            "messages_stored", "New messages stored" => stored;
            "redeliveries", "Copies of already stored messages recognised and not stored again" => redeliveries;
            "quarantined", "Elements that could not be understood, kept in quarantine" => quarantined;
            "confirms", "PUT confirms, by outcome (ok, unknown)" => confirms;
            "messages_confirmed", "Messages removed upstream by successful confirms" => confirmed_messages;
            "deliveries", "Webhook delivery attempts, by outcome (delivered, retry, dead)" => deliveries;
            "deliveries_pending", "Deliveries waiting in the outbox" => pending;
            "oldest_pending_age_seconds", "Age of the oldest pending delivery's message (0 when none is pending)" => oldest_pending_age;
            "dead_letters", "Deliveries that gave up and wait for an operator" => dead_letters;
            "pms_failing", "1 while the PMS webhook counts as failing (one probe at a time), else 0" => pms_failing;
            "request_duration_seconds", "Outbound HTTP request latency, by peer and operation" => requests;
            "job_runs", "Housekeeping job runs, by job and outcome (ok, failed)" => job_runs;
            "job_last_success_timestamp_seconds", "Unix time of each job's last successful run in this process" => job_last_success;
            "replies", "Replies by state (from the store): pending, sending, sent, failed, unknown" => replies;
            "push_last_accepted_timestamp_seconds", "Unix time each push source's last new message was stored (from the store)" => push_last_accepted;
            "reply_sends", "Reply sends, by what their answer proved (sent, retry, failed, unknown)" => reply_sends;
            "pushes", "Pushed requests, by source and outcome (stored, duplicate, quarantined, ignored, refused, unavailable)" => pushes;
        }
        Metrics(Arc::new(i))
    }

    pub fn poll(&self, outcome: &'static str) {
        self.0.polls.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn batch(&self, summary: &BatchSummary) {
        self.0.batches.inc();
        self.0.stored.inc_by(summary.new as u64);
        self.0.redeliveries.inc_by(summary.redelivered as u64);
        self.0.quarantined.inc_by(summary.quarantined as u64);
    }

    pub fn confirm(&self, confirmed: Option<usize>) {
        let outcome = if confirmed.is_some() { "ok" } else { "unknown" };
        self.0.confirms.get_or_create(&OutcomeLabel { outcome }).inc();
        self.0.confirmed_messages.inc_by(confirmed.unwrap_or(0) as u64);
    }

    pub fn delivery(&self, outcome: &'static str) {
        self.0.deliveries.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn request(&self, peer: &'static str, operation: &'static str, took: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels { peer, operation })
            .observe(took.as_secs_f64());
    }

    pub fn reply(&self, outcome: &'static str) {
        self.0.reply_sends.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn push(&self, source: &'static str, outcome: &'static str) {
        self.0.pushes.get_or_create(&PushLabels { source, outcome }).inc();
    }

    pub fn pms_failing(&self, failing: bool) {
        self.0.pms_failing.set(i64::from(failing));
    }

    pub fn job_run(&self, job: &'static str, ok: bool, finished_at: Millis) {
        let outcome = if ok { "ok" } else { "failed" };
        self.0.job_runs.get_or_create(&JobLabels { job, outcome }).inc();
        if ok {
            self.0
                .job_last_success
                .get_or_create(&JobLabel { job })
                .set(finished_at.unix_secs());
        }
    }

    /// The exposition, with the outbox and push gauges set from `outbox` and `pushes` (read from the store at
    /// `now`).
    pub fn encode(&self, outbox: &OutboxSummary, pushes: &[PushSource], now: Millis) -> String {
        self.encode_with(outbox, pushes, &[], now)
    }

    /// [`Self::encode`], with the replies' counts by state.
    pub fn encode_with(
        &self,
        outbox: &OutboxSummary,
        pushes: &[PushSource],
        replies: &[(String, i64)],
        now: Millis,
    ) -> String {
        let i = &self.0;
        for state in ["pending", "sending", "sent", "failed", "unknown"] {
            let n = replies.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            i.replies
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(n);
        }
        for p in pushes {
            if let Some(at) = p.last_accepted_ms {
                let label = SourceLabel {
                    source: p.source.clone(),
                };
                i.push_last_accepted.get_or_create(&label).set(at.unix_secs());
            }
        }
        i.pending.set(outbox.pending);
        i.dead_letters.set(outbox.dead);
        i.oldest_pending_age.set(outbox.oldest_pending_age_s(now).unwrap_or(0));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &i.registry).expect("writing to a String cannot fail");
        out
    }
}
