//! `POST /channex/webhook`: authenticated by the header set on the webhook.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Parsed;
use crate::channel::Source;
use crate::web::receive::{Auth, Receiver, Rejection, Shape, Sources};
use crate::web::same_secret;

pub async fn webhook(State(receiver): State<Receiver>, request: Request) -> Response {
    let source = Source::Channex;
    let admitted = match receiver.admit(source, request, authenticate).await {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.render(Shape::Json),
    };
    let ok = |status: &str| (StatusCode::OK, axum::Json(json!({ "status": status }))).into_response();
    match super::parse(&admitted.body) {
        Parsed::Other { event } => {
            receiver.ignored(source, &event);
            ok("ignored")
        }
        Parsed::Message { mut push, thread } => {
            let hook = admitted.sources.channex.as_ref().expect("authenticated against it");
            if let (Some(threads), Some(thread)) = (&hook.threads, thread)
                && let Some(thread) = threads.lookup(&thread).await
            {
                super::apply(&mut push, &thread);
            }
            match receiver.store(push).await {
                Ok(outcome) => ok(outcome.name()),
                Err(rejection) => rejection.render(Shape::Json),
            }
        }
        Parsed::Quarantine {
            push,
            problem,
            sender_error,
        } => match receiver.store(push).await {
            Ok(_) if sender_error => {
                tracing::warn!(
                    source = source.name(),
                    problem,
                    "Channex event quarantined: it cannot be understood"
                );
                Rejection::malformed(&problem).render(Shape::Json)
            }
            Ok(_) => {
                tracing::warn!(
                    source = source.name(),
                    "a message event without its data, kept in quarantine: create the Channex webhook with \
                     send_data: true"
                );
                ok("quarantined")
            }
            Err(rejection) => rejection.render(Shape::Json),
        },
    }
}

fn authenticate(sources: &Sources, headers: &HeaderMap) -> Auth {
    let Some(hook) = &sources.channex else {
        return Auth::NotConfigured;
    };
    let presented = headers.get(&hook.header).and_then(|v| v.to_str().ok()).unwrap_or("");
    // An empty header is compared like any other value: no shortcut that would time differently.
    Auth::check(
        same_secret(presented, hook.secret.expose()) && !presented.is_empty(),
        "Secret",
    )
}
