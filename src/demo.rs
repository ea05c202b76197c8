//! `ota-relay demo`: the real daemon against the built-in fakes, into a temporary store: the drain loop on a fake
//! Booking.com queue (with redeliveries, poison messages and a few faults), and the receiver taking pushes from
//! a fake Booking.com notification service (which fetches its token first), STAAH and Channex, one message
//! arriving by push and by pull; prints a short report. No credentials, no network.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{
    ApiSettings, ApiToken, BookingAuth, BookingSettings, ChannexSettings, ForwardSettings, NotificationSettings,
    ReceiveSettings, RepliesSettings, RetryPolicy, Secret, Settings, StaahSettings,
};
use crate::fake::pms_api::{ApiClient, PMS_TOKEN};
use crate::fake::pushes::{self, STAAH_SEED_SAMPLE};
use crate::fake::{
    Endpoint, FakeAuth, FakeChannex, FakeOta, FakeOtaOptions, FakePms, FakePmsOptions, Fault, PmsReply,
    PushCredentials, ReplyFault, SampleMessage, Senders, guest_message, poison_message,
};
use crate::store::{Access, Store, batches, messages, quarantine, receipts};

pub struct DemoOptions {
    pub messages: u64,
    pub seed: u64,
    /// Keep the store here instead of in a temporary directory.
    pub keep: Option<PathBuf>,
    /// Keep running with the inbox open, printing its one-time link, until Ctrl-C.
    pub inbox: bool,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<String> {
    let started = Instant::now();
    let fake = FakeOta::start(FakeOtaOptions {
        auth: FakeAuth::Basic {
            username: "demo".into(),
            password: "demo-password".into(),
        },
        redelivery_rate: 0.05,
        seed: options.seed,
        stall: Duration::from_secs(2),
        ..FakeOtaOptions::default()
    })
    .await
    .context("cannot start the fake Booking.com queue")?;
    fake.enqueue((0..options.messages).map(|i| guest_message(options.seed, i)));
    fake.enqueue_raw((0..2).map(poison_message));
    for (endpoint, fault) in [
        (Endpoint::Latest, Fault::Status(500)),
        (
            Endpoint::Latest,
            Fault::RetryAfter {
                status: 429,
                seconds: 1,
            },
        ),
        (Endpoint::Latest, Fault::Truncated),
        (Endpoint::Latest, Fault::Html),
        (Endpoint::Confirm, Fault::AppliedThenLost),
        (Endpoint::Confirm, Fault::Status(503)),
    ] {
        fake.inject(endpoint, fault);
    }

    let pms = FakePms::start(FakePmsOptions::default())
        .await
        .context("cannot start the fake PMS")?;
    for reply in [
        PmsReply::Status(500),
        PmsReply::RetryAfter {
            status: 503,
            seconds: 1,
        },
        PmsReply::Status(502),
    ] {
        pms.reply_next(reply);
    }

    let dir = tempfile::Builder::new().prefix("ota-relay-demo").tempdir()?;
    let store_path = match &options.keep {
        Some(path) => path.clone(),
        None => dir.path().join("relay.db"),
    };
    let mut booking = BookingSettings::new(
        fake.base_url().parse()?,
        BookingAuth::Basic {
            username: "demo".into(),
            password: Secret::inline("demo-password"),
        },
    );
    booking.poll_interval = Duration::from_millis(200);
    booking.request_timeout = Duration::from_secs(1);
    booking.backoff_initial = Duration::from_millis(50);
    booking.backoff_max = Duration::from_secs(1);
    let mut forward = ForwardSettings::new(pms.url().parse()?, vec![Secret::inline(pms.secret())]);
    forward.request_timeout = Duration::from_secs(2);
    forward.retry = RetryPolicy {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(1),
        give_up_after: Duration::from_secs(3600),
    };
    let channex_api = FakeChannex::start("demo-channex-api-key")
        .await
        .context("cannot start the fake Channex API")?;
    channex_api.add_thread(DEMO_THREAD, "BookingCom", "Maldonado Roxy");
    let credentials = PushCredentials::default();
    let receive_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let api_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    booking.notifications = Some(NotificationSettings::new(
        &credentials.notifications_client_id,
        Secret::inline(&credentials.notifications_client_secret),
    ));
    let mut channex = ChannexSettings::new(Secret::inline(&credentials.channex_secret));
    channex.base_url = channex_api.base_url().parse()?;
    channex.api_key = Some(Secret::inline(channex_api.api_key()));
    let settings = Settings {
        forward: Some(forward),
        staah: Some(StaahSettings::new(
            &credentials.staah_username,
            Secret::inline(&credentials.staah_password),
        )),
        channex: Some(channex),
        receive: Some(ReceiveSettings::on(receive_addr)),
        api: Some(ApiSettings::new(
            api_addr,
            vec![ApiToken::new("pms", Secret::inline(PMS_TOKEN), None)],
        )),
        replies: RepliesSettings {
            request_timeout: Duration::from_secs(1),
            ..RepliesSettings::default()
        },
        ..Settings::built_in(store_path, booking)
    };
    let path = settings.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&path, Access::Consumer)).await??;
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn({
        let (settings, store, cancel) = (settings.clone(), store.clone(), cancel.clone());
        async move {
            let (cx, fatal) = crate::daemon::Context::new(store, cancel);
            crate::daemon::serve(&settings, cx, fatal, None).await
        }
    });
    let senders = Senders::new(&format!("http://{receive_addr}"), credentials);
    let pushed = push(&senders, options.seed).await?;
    tokio::time::timeout(Duration::from_secs(120), fake.wait_for(|s| s.drained()))
        .await
        .context("the demo did not drain the fake queue within 120 s")?;
    let expected = options.messages as usize + pushed.new;
    let api = ApiClient::new(&format!("http://{api_addr}"), PMS_TOKEN);
    let replied = reply(&api, &fake, &pms, &guest_message(options.seed, 0)).await?;
    tokio::time::timeout(
        Duration::from_secs(120),
        pms.wait_for(|s| s.accepted_count() >= expected + replied.len()),
    )
    .await
    .context("the fake PMS did not receive every message within 120 s")?;

    let counts = store
        .read(|conn| {
            Ok((
                messages::counts(conn)?.0,
                receipts::count(conn)?,
                quarantine::count(conn)?,
                batches::count(conn)?,
                messages::echo_count(conn)?,
            ))
        })
        .await?;
    let samples = store.read(|conn| Ok(messages::first(conn, 3)?)).await?;
    let (messages, receipts, quarantined, batches, echoes) = counts;

    let mut out = String::new();
    let (gets, puts, confirmed, redeliveries, faults, violations) = fake.read(|s| {
        (
            s.gets,
            s.puts,
            s.confirmed,
            s.redeliveries,
            s.faults_injected,
            s.violations.clone(),
        )
    });
    let _ = writeln!(
        out,
        "ota-relay demo: drained the built-in fake Booking.com queue and took pushes from three senders"
    );
    let _ = writeln!(
        out,
        "  upstream  enqueued {} messages and {} poison elements",
        options.messages, 2
    );
    let _ = writeln!(
        out,
        "            {gets} GETs, {puts} PUTs confirming {confirmed}; {faults} injected faults"
    );
    let _ = writeln!(out, "            {redeliveries} confirmed messages delivered again");
    let _ = writeln!(
        out,
        "  store     {messages} messages stored once each, in {batches} batches ({echoes} the echoes of replies)"
    );
    let _ = writeln!(
        out,
        "            {} redelivered copies recognised, {quarantined} quarantined",
        receipts - messages
    );
    let _ = writeln!(
        out,
        "  pushes    CNS fetched a token and sent {} notifications (1 also pulled: stored and delivered once),",
        pushed.notifications
    );
    let _ = writeln!(
        out,
        "            STAAH posted {} (its documentation's sample among them), Channex {} (the OTA read from the thread)",
        pushed.staah, pushed.channex
    );
    let (reply_sends, posted) = fake.read(|s| (s.reply_attempts, s.posted.len()));
    let _ = writeln!(
        out,
        "  replies   the PMS answered through the API twice: {posted} reached the fake Booking.com in {reply_sends} sends;"
    );
    let _ = writeln!(
        out,
        "            one send's answer was lost (a timeout): its echo in the queue settled it, never sent again"
    );
    let (pms_requests, delivered, duplicates, bad_signatures) =
        pms.read(|s| (s.requests, s.accepted_count(), s.duplicates(), s.bad_signatures));
    let _ = writeln!(
        out,
        "  PMS       {} messages and {} reply outcomes delivered and accepted, every signature verified",
        delivered - replied.len(),
        replied.len()
    );
    let _ = writeln!(
        out,
        "            {pms_requests} requests ({} refused by injected PMS failures and retried), {duplicates} duplicates",
        pms_requests.saturating_sub(delivered as u64 + duplicates)
    );
    let _ = writeln!(
        out,
        "  checks    {}",
        if violations.is_empty()
            && messages as usize == expected + replied.len()
            && echoes as usize == replied.len()
            && bad_signatures == 0
            && pushed.refused == 0
            && delivered == expected + replied.len()
            && reply_sends == 2
            && posted == 2
        {
            "no confirm exceeded what was fetched; nothing lost, nothing stored twice".to_owned()
        } else {
            format!(
                "FAILED: {messages} stored of {}; {} pushes refused; violations: {violations:?}",
                expected + replied.len(),
                pushed.refused
            )
        }
    );
    let _ = writeln!(out, "  first messages:");
    for stored in samples {
        let m = &stored.message;
        let content = m.content.as_deref().unwrap_or_default();
        let excerpt: String = content.chars().filter(|c| !c.is_control()).take(48).collect();
        let _ = writeln!(
            out,
            "    #{} {} reservation {} from {}: {excerpt}",
            stored.seq,
            m.message_id,
            m.conversation_reference.as_deref().unwrap_or("?"),
            m.sender_role.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "  took {:.1} s; store {}",
        started.elapsed().as_secs_f64(),
        match &options.keep {
            Some(p) => format!("kept at {}", p.display()),
            None => "was temporary and is removed".into(),
        }
    );
    if options.inbox {
        print!("{out}");
        let key = crate::web::random_key();
        let grant = crate::store::sessions::Grant {
            token_name: "pms".into(),
            user: "Demo front desk".into(),
            property_id: None,
            thread_id: None,
        };
        let stored = key.clone();
        store
            .call(move |conn| {
                Ok(crate::store::sessions::create_one_time(
                    conn,
                    &stored,
                    &grant,
                    crate::store::now_ms(),
                )?)
            })
            .await?;
        println!("\ninbox: open http://{api_addr}/inbox/auth/exchange?oauth_session_key={key}");
        println!("       (the link works once, for 15 minutes; Ctrl-C stops the demo)");
        tokio::signal::ctrl_c().await?;
        out = String::new();
    }
    cancel.cancel();
    daemon.await??;
    Ok(out)
}

const DEMO_THREAD: &str = "4e160f0b-016a-424a-a30d-a9f0a8b1cbaa";

#[derive(Default)]
struct Pushed {
    notifications: usize,
    staah: usize,
    channex: usize,
    /// Messages that only the pushes brought.
    new: usize,
    /// Pushes not answered 2xx (the checks fail on any).
    refused: usize,
}

/// What the three senders do once the receiver listens: CNS exchanges its credentials for a token and sends
/// notifications (the first carries a message that the queue serves too); STAAH posts its own sample and more;
/// Channex posts message events of a thread its API knows.
async fn push(senders: &Senders, seed: u64) -> anyhow::Result<Pushed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        match senders.booking_token().await {
            Ok(token) if !token.is_empty() => break token,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => anyhow::bail!("the receiver did not issue a token within 10 s"),
        }
    };
    let mut pushed = Pushed::default();
    let mut count = |ok: bool, new: bool| {
        if !ok {
            pushed.refused += 1;
        } else if new {
            pushed.new += 1;
        }
    };
    let mut tallies = (0, 0, 0);
    for i in 0..5u64 {
        // Index 0 is in the pulled queue as well; the rest only arrive by push.
        let index = if i == 0 { 0 } else { 1_000_000 + i };
        let sample = pushes::booking_notification(&guest_message(seed, index), &format!("demo-uuid-{i}"));
        let ok = senders.notify(&token, &sample.body).await?.status == 200;
        count(ok, i != 0);
        tallies.0 += 1;
    }
    let ok = senders.staah(STAAH_SEED_SAMPLE).await?.status == 200;
    count(ok, true);
    tallies.1 += 1;
    for i in 0..4u64 {
        let ok = senders.staah(&pushes::staah_message(seed, i).body).await?.status == 200;
        count(ok, true);
        tallies.1 += 1;
    }
    for i in 0..3u64 {
        let ok = senders
            .channex(&pushes::channex_message(seed, i, DEMO_THREAD).body)
            .await?
            .status
            == 200;
        count(ok, true);
        tallies.2 += 1;
    }
    (pushed.notifications, pushed.staah, pushed.channex) = tallies;
    Ok(pushed)
}

/// The PMS answers the guest of `message` through the API, twice: the first reply goes out at once; the second
/// send's answer is lost (the fake times it out after taking it), and its echo from the queue settles it.
/// Returns the replies' ids once the PMS has heard both were sent.
async fn reply(api: &ApiClient, fake: &FakeOta, pms: &FakePms, message: &SampleMessage) -> anyhow::Result<Vec<String>> {
    let sample: serde_json::Value = serde_json::from_str(&message.json)?;
    let conversation = sample["conversation"]["conversation_id"].as_str().unwrap_or_default();
    let thread = crate::store::threads::thread_uuid(crate::channel::booking::wire::PROVIDER, conversation);
    let mut ids = Vec::new();
    for (text, lost) in [
        ("Thank you! A baby cot will be ready in your room.", false),
        ("Late check-in is no problem.", true),
    ] {
        if lost {
            fake.reply_fault(ReplyFault::AppliedThenLost);
        }
        let answer = api.reply(&thread, text, None).await?;
        anyhow::ensure!(
            answer.status == 200,
            "the API refused the demo's reply: {}",
            answer.body
        );
        let id = answer.json()["data"]["id"].as_str().unwrap_or_default().to_owned();
        let event = format!("reply:{id}:sent");
        tokio::time::timeout(
            Duration::from_secs(60),
            pms.wait_for(|s| s.accepted.contains_key(&event)),
        )
        .await
        .context("a demo reply was not settled within 60 s")?;
        ids.push(id);
    }
    Ok(ids)
}
