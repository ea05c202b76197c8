//! The inbox's pages: sign-in, the conversation list, one conversation. Each page carries the id of the last
//! change it reflects, which its live stream resumes from.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::{Staff, Urls};
use crate::channel::ThreadChannel;
use crate::store::Millis;
use crate::store::replies::{Reply, ReplyState};
use crate::store::threads::{self, Entry, Thread, ThreadFilter, ThreadOrder};
use crate::web::api::Api;

const PAGE: usize = 25;

pub fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render an inbox page");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub user: String,
    pub csrf: String,
    pub last_change: i64,
    pub live: bool,
    pub problem: String,
}

impl LoginPage {
    pub fn with(problem: &str) -> LoginPage {
        LoginPage {
            user: String::new(),
            csrf: String::new(),
            last_change: 0,
            live: false,
            problem: problem.to_owned(),
        }
    }
}

pub async fn login() -> Response {
    render(&LoginPage::with(""), StatusCode::OK)
}

pub struct Filters {
    pub q: String,
    pub property: String,
    pub channel: String,
    pub state: String,
}

pub struct ThreadRow {
    pub id: String,
    pub title: String,
    pub channel: &'static str,
    pub provider: String,
    pub property: String,
    pub booking: String,
    pub preview: String,
    pub at_iso: String,
    pub at_text: String,
    pub unread: bool,
    pub needs_reply: bool,
    pub closed: bool,
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage {
    pub user: String,
    pub csrf: String,
    pub last_change: i64,
    pub live: bool,
    pub filters: Filters,
    pub channels: Vec<(&'static str, &'static str)>,
    pub states: Vec<(&'static str, &'static str)>,
    pub threads: Vec<ThreadRow>,
    pub total: i64,
    pub page: usize,
    pub pages: usize,
    pub prev_link: String,
    pub next_link: String,
}

fn channel_label(provider: &str) -> &'static str {
    match ThreadChannel::of(provider) {
        Some(ThreadChannel::Booking) => "Booking.com",
        Some(ThreadChannel::Staah) => "STAAH",
        Some(ThreadChannel::Channex) => "Channex",
        None => "Other",
    }
}

fn ota_label(ota: Option<&str>) -> String {
    match ota {
        Some("booking.com") => "Booking.com".into(),
        Some("airbnb") => "Airbnb".into(),
        Some("expedia") => "Expedia".into(),
        Some(other) => other.to_owned(),
        None => String::new(),
    }
}

/// A time for `<time datetime>`, and as text until the page's script shows it in the viewer's zone.
fn times(at: Millis) -> (String, String) {
    let t = chrono::DateTime::from_timestamp_millis(at.unix_ms()).unwrap_or_default();
    (
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn preview(entry: Option<&Entry>) -> String {
    let text = match entry {
        Some(Entry::Message(m)) => m.content.clone().unwrap_or_default(),
        Some(Entry::Reply(r)) => format!("You: {}", r.content.clone().unwrap_or_default()),
        None => String::new(),
    };
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 {
        format!("{}…", flat.chars().take(119).collect::<String>())
    } else {
        flat
    }
}

fn param(params: &[(String, String)], name: &str) -> String {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

pub async fn list(State(api): State<Api>, staff: Staff, RawQuery(raw): RawQuery) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let filters = Filters {
        q: param(&params, "q"),
        property: param(&params, "property"),
        channel: param(&params, "channel"),
        state: param(&params, "state"),
    };
    let page: usize = param(&params, "page").parse().unwrap_or(1).max(1);
    let filter = ThreadFilter {
        scope: staff.scope.clone(),
        property_id: (!filters.property.is_empty()).then(|| filters.property.clone()),
        is_closed: match filters.state.as_str() {
            "open" => Some(false),
            "closed" => Some(true),
            _ => None,
        },
        needs_reply: filters.state == "needs_reply",
        namespace_prefix: match filters.channel.as_str() {
            "booking" => Some(crate::channel::booking::wire::PROVIDER.to_owned()),
            "staah" => Some("staah:".to_owned()),
            "channex" => Some(crate::channel::channex::NAMESPACE.to_owned()),
            _ => None,
        },
        search: (!filters.q.is_empty()).then(|| filters.q.clone()),
        ..ThreadFilter::default()
    };
    let offset = (page - 1) * PAGE;
    let read = api
        .readers()
        .read(move |conn| {
            let last_change = crate::store::changes::latest(conn)?;
            let (threads, total) = threads::list(conn, &filter, ThreadOrder::LastMessage, true, PAGE, offset)?;
            let mut rows = Vec::with_capacity(threads.len());
            for t in &threads {
                let last = threads::entries(conn, t, true, 1, 0)?;
                rows.push(row(t, last.first()));
            }
            Ok((rows, total, last_change))
        })
        .await;
    let (rows, total, last_change) = match read {
        Ok(read) => read,
        Err(e) => return unavailable(&e),
    };
    let pages = (total as usize).div_ceil(PAGE).max(1);
    let link = |p: usize| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("q", filters.q.clone()),
            ("property", filters.property.clone()),
            ("channel", filters.channel.clone()),
            ("state", filters.state.clone()),
        ];
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.push(("page", p.to_string()));
        format!(
            "/inbox/threads?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let page_view = ListPage {
        user: staff.session.user.clone(),
        csrf: staff.session.csrf.clone(),
        last_change,
        live: true,
        channels: vec![
            ("", "All channels"),
            ("booking", "Booking.com"),
            ("staah", "STAAH"),
            ("channex", "Channex"),
        ],
        states: vec![
            ("", "All"),
            ("open", "Open"),
            ("closed", "Closed"),
            ("needs_reply", "Needs reply"),
        ],
        threads: rows,
        total,
        page,
        pages,
        prev_link: link(page.saturating_sub(1).max(1)),
        next_link: link(page + 1),
        filters,
    };
    render(&page_view, StatusCode::OK)
}

fn row(t: &Thread, last: Option<&Entry>) -> ThreadRow {
    let (at_iso, at_text) = times(t.last_message_at);
    ThreadRow {
        id: t.id.clone(),
        title: t.title.clone().unwrap_or_else(|| "Guest".into()),
        channel: channel_label(&t.provider),
        provider: ota_label(t.ota.as_deref()),
        property: t.property_id.clone().unwrap_or_else(|| "unknown".into()),
        booking: t.booking_reference.clone().unwrap_or_else(|| "none".into()),
        preview: preview(last),
        at_iso,
        at_text,
        unread: t.unread(),
        needs_reply: t.needs_reply(),
        closed: t.is_closed,
    }
}

pub struct MessageView {
    pub from: &'static str,
    pub who: String,
    pub text: String,
    pub attachments: Vec<String>,
    pub at_iso: String,
    pub at_text: String,
    pub state: &'static str,
    pub state_text: String,
    pub reply_id: String,
}

#[derive(Template)]
#[template(path = "thread.html")]
pub struct ThreadPage {
    pub user: String,
    pub csrf: String,
    pub last_change: i64,
    pub live: bool,
    pub id: String,
    pub title: String,
    pub channel: &'static str,
    pub provider: String,
    pub property: String,
    pub booking: String,
    pub closed: bool,
    pub booking_channel: bool,
    pub messages: Vec<MessageView>,
    pub problem: String,
    pub notice: String,
}

/// A reply's state in words.
fn state_text(r: &Reply) -> (&'static str, String) {
    match r.state {
        ReplyState::Pending | ReplyState::Sending => ("pending", "Sending…".into()),
        ReplyState::Sent => ("sent", "Sent".into()),
        ReplyState::Failed => (
            "failed",
            format!("Failed: {}", r.reason.as_deref().unwrap_or("the channel refused it")),
        ),
        ReplyState::Unknown => (
            "unknown",
            "Unknown: the channel's answer was lost. ota-relay is checking whether it arrived; it is never sent twice by itself."
                .into(),
        ),
    }
}

fn message_view(e: &Entry, thread: &Thread) -> MessageView {
    match e {
        Entry::Message(m) => {
            let (at_iso, at_text) = times(m.received_at);
            let from = match m.sender_role.as_deref() {
                Some("guest") => "guest",
                Some("property") => "property",
                _ => "system",
            };
            let who = match from {
                "guest" => thread.title.clone().unwrap_or_else(|| "Guest".into()),
                "property" => "Property".into(),
                _ => "System".into(),
            };
            MessageView {
                from,
                who,
                text: m.content.clone().unwrap_or_else(|| "(erased)".into()),
                attachments: m.attachment_ids.clone(),
                at_iso,
                at_text,
                state: "",
                state_text: String::new(),
                reply_id: String::new(),
            }
        }
        Entry::Reply(r) => {
            let (at_iso, at_text) = times(r.created_at);
            let (state, state_text) = state_text(r);
            MessageView {
                from: "property",
                who: format!("{} (reply)", r.author),
                text: r.content.clone().unwrap_or_else(|| "(erased)".into()),
                attachments: r.attachments.clone(),
                at_iso,
                at_text,
                state,
                state_text,
                reply_id: r.uuid.clone(),
            }
        }
    }
}

/// The conversation, oldest first; opening it marks it read for everyone.
pub async fn thread(State(api): State<Api>, staff: Staff, Path(id): Path<String>) -> Response {
    thread_page(&api, &staff, &id, "", "", StatusCode::OK).await
}

pub async fn thread_page(
    api: &Api,
    staff: &Staff,
    id: &str,
    problem: &str,
    notice: &str,
    status: StatusCode,
) -> Response {
    let Some(thread) = visible(api, staff, id).await else {
        return not_found(staff);
    };
    let thread_id = thread.id.clone();
    let now = crate::store::now_ms();
    if let Err(e) = api
        .store()
        .call(move |conn| Ok(threads::mark_read(conn, &thread_id, now)?))
        .await
    {
        tracing::warn!(error = %e, "cannot mark a thread read");
    }
    let read_thread = thread.clone();
    let read = api
        .readers()
        .read(move |conn| {
            let last_change = crate::store::changes::latest(conn)?;
            let entries = threads::entries(conn, &read_thread, false, 1000, 0)?;
            Ok((entries, last_change))
        })
        .await;
    let (entries, last_change) = match read {
        Ok(read) => read,
        Err(e) => return unavailable(&e),
    };
    let page = ThreadPage {
        user: staff.session.user.clone(),
        csrf: staff.session.csrf.clone(),
        last_change,
        live: true,
        id: thread.id.clone(),
        title: thread.title.clone().unwrap_or_else(|| "Guest".into()),
        channel: channel_label(&thread.provider),
        provider: ota_label(thread.ota.as_deref()),
        property: thread.property_id.clone().unwrap_or_else(|| "unknown".into()),
        booking: thread.booking_reference.clone().unwrap_or_else(|| "none".into()),
        closed: thread.is_closed,
        booking_channel: ThreadChannel::of(&thread.provider) == Some(ThreadChannel::Booking),
        messages: entries.iter().map(|e| message_view(e, &thread)).collect(),
        problem: problem.to_owned(),
        notice: notice.to_owned(),
    };
    render(&page, status)
}

/// The thread, if this member of staff may see it.
pub async fn visible(api: &Api, staff: &Staff, id: &str) -> Option<Thread> {
    let id = id.to_owned();
    let thread = api
        .readers()
        .read(move |conn| Ok(threads::get(conn, &id)?))
        .await
        .ok()
        .flatten()?;
    staff.sees(thread.property_id.as_deref()).then_some(thread)
}

#[derive(Template)]
#[template(path = "not_found.html")]
pub struct NotFoundPage {
    pub user: String,
    pub csrf: String,
    pub last_change: i64,
    pub live: bool,
}

/// Another property's thread is as absent as one that never existed.
pub fn not_found(staff: &Staff) -> Response {
    let page = NotFoundPage {
        user: staff.session.user.clone(),
        csrf: staff.session.csrf.clone(),
        last_change: 0,
        live: false,
    };
    render(&page, StatusCode::NOT_FOUND)
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "the inbox cannot read the store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The store cannot answer now; reload in a moment.",
    )
        .into_response()
}

pub fn redirect_to(url: Urls) -> Response {
    axum::response::Redirect::to(&url.path()).into_response()
}
