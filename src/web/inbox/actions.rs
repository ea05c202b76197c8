//! What the inbox's forms do: sign in (a token, or a one-time link), sign out, reply, close, reopen and "no
//! reply needed". Replies go through the same store and reply outbox as the API's.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{self, LoginPage, redirect_to, render};
use super::{Staff, Urls, cleared_cookie, session_cookie};
use crate::store::replies::{self, NewReply};
use crate::store::sessions::{self, Grant};
use crate::web::api::Api;

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Starts a session for `grant` and lands on `to`.
async fn sign_in(api: &Api, grant: Grant, to: String) -> Response {
    let (id, csrf) = (crate::web::random_key(), crate::web::random_key());
    let now = crate::store::now_ms();
    let (stored_id, stored) = (id.clone(), grant.clone());
    if let Err(e) = api
        .store()
        .call(move |conn| Ok(sessions::create_session(conn, &stored_id, &stored, &csrf, now)?))
        .await
    {
        tracing::error!(error = %e, "cannot store an inbox session");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible now; try again.",
        )
            .into_response();
    }
    tracing::info!(user = %grant.user, token = %grant.token_name, "inbox sign-in");
    let cookie = session_cookie(&id, api.inbox().secure_cookies);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response()
}

/// With an API token, and the name to sign replies with.
pub async fn login(State(api): State<Api>, body: Bytes) -> Response {
    let fields = form(&body);
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let user = fields.get("user").map(|u| u.trim()).unwrap_or_default();
    let Some(found) = api.token_matching(token) else {
        tracing::warn!("inbox sign-in refused: not an API token");
        return render(
            &LoginPage::with("That is not a valid API token."),
            StatusCode::UNAUTHORIZED,
        );
    };
    if user.is_empty() || user.chars().count() > 80 {
        return render(
            &LoginPage::with("Give your name (at most 80 characters)."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let grant = Grant {
        token_name: found.name,
        user: user.to_owned(),
        property_id: None,
        thread_id: None,
    };
    sign_in(&api, grant, Urls::Threads.path()).await
}

/// `/inbox/auth/exchange?oauth_session_key=...[&redirect_to=/inbox/threads/ID]`: a one-time link, once.
pub async fn exchange(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let params: HashMap<String, String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .collect();
    let key = params.get("oauth_session_key").cloned().unwrap_or_default();
    let now = crate::store::now_ms();
    let redeemed = api
        .store()
        .call(move |conn| Ok(sessions::redeem(conn, &key, now)?))
        .await
        .ok()
        .flatten();
    let Some(grant) = redeemed.filter(|g| api.token_named(&g.token_name).is_some()) else {
        tracing::warn!("inbox sign-in refused: a one-time link used already, expired or unknown");
        return render(
            &LoginPage::with("This sign-in link was used already or has expired. Ask for a new one."),
            StatusCode::UNAUTHORIZED,
        );
    };
    // Only a path inside the inbox: the link must not send anyone elsewhere.
    let to = params
        .get("redirect_to")
        .filter(|p| inside_inbox(p))
        .cloned()
        .or_else(|| grant.thread_id.as_ref().map(|t| Urls::Thread(t.clone()).path()))
        .unwrap_or_else(|| Urls::Threads.path());
    sign_in(&api, grant, to).await
}

/// A path under `/inbox/` that stays there: no `..` segment, no backslash (which browsers read as `/`), no
/// second slash that would make it another host.
fn inside_inbox(path: &str) -> bool {
    path.starts_with("/inbox/")
        && !path.contains("//")
        && !path.contains('\\')
        && !path
            .split(['/', '?', '#'])
            .any(|segment| segment.to_ascii_lowercase().replace("%2e", ".") == "..")
        && !path.chars().any(char::is_control)
}

pub async fn logout(State(api): State<Api>, staff: Staff, body: Bytes) -> Response {
    if let Err(refused) = staff.check_csrf(form(&body).get("csrf").map(String::as_str)) {
        return refused.into_response();
    }
    let id = staff.session_id.clone();
    let _ = api
        .store()
        .call(move |conn| Ok(sessions::delete_session(conn, &id)?))
        .await;
    (
        [(header::SET_COOKIE, cleared_cookie())],
        Redirect::to(&Urls::Login.path()),
    )
        .into_response()
}

/// The thread a form acts on, after the CSRF check.
async fn target(
    api: &Api,
    staff: &Staff,
    id: &str,
    body: &[u8],
) -> Result<(crate::store::threads::Thread, HashMap<String, String>), Response> {
    let fields = form(body);
    staff
        .check_csrf(fields.get("csrf").map(String::as_str))
        .map_err(IntoResponse::into_response)?;
    match pages::visible(api, staff, id).await {
        Some(thread) => Ok((thread, fields)),
        None => Err(pages::not_found(staff)),
    }
}

pub async fn reply(State(api): State<Api>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Response {
    let (thread, fields) = match target(&api, &staff, &id, &body).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let text = fields
        .get("message")
        .map(|m| m.replace("\r\n", "\n"))
        .unwrap_or_default();
    if text.trim().is_empty() {
        return pages::thread_page(
            &api,
            &staff,
            &id,
            "An empty reply cannot be sent: write something first.",
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if let Some(problem) = api.reply_route_problem(&thread) {
        return pages::thread_page(&api, &staff, &id, &problem, "", StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let new = NewReply {
        thread_id: thread.id.clone(),
        author: staff.session.user.clone(),
        content: text,
        attachments: Vec::new(),
        idempotency: None,
    };
    let now = crate::store::now_ms();
    match api
        .store()
        .call(move |conn| Ok(replies::create(conn, &new, now)?))
        .await
    {
        Ok((stored, _)) => {
            tracing::info!(reply = %stored.uuid, thread = %thread.id, author = %stored.author, "inbox reply stored; sending");
            api.wake_replies();
            redirect_to(Urls::Thread(thread.id))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store an inbox reply");
            pages::thread_page(
                &api,
                &staff,
                &id,
                "The reply could not be stored; it was not sent. Try again.",
                "",
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        }
    }
}

async fn set_closed(api: Api, staff: Staff, id: String, body: Bytes, closed: bool) -> Response {
    let (thread, _) = match target(&api, &staff, &id, &body).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let now = crate::store::now_ms();
    let thread_id = thread.id.clone();
    let _ = api
        .store()
        .call(move |conn| Ok(crate::store::threads::set_closed(conn, &thread_id, closed, now)?))
        .await;
    redirect_to(Urls::Thread(thread.id))
}

pub async fn close(State(api): State<Api>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Response {
    set_closed(api, staff, id, body, true).await
}

pub async fn reopen(State(api): State<Api>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Response {
    set_closed(api, staff, id, body, false).await
}

pub async fn no_reply_needed(State(api): State<Api>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Response {
    let (thread, _) = match target(&api, &staff, &id, &body).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let notice = match api.tag_no_reply_needed(&thread).await {
        Ok(()) => "Booking.com was told this conversation needs no reply.".to_owned(),
        Err(problem) => format!("Not done: {problem}"),
    };
    pages::thread_page(&api, &staff, &id, "", &notice, StatusCode::OK).await
}
