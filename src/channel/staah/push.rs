//! `POST /staah/messages`, answered as STAAH expects: `{"status": "Success"}`, or `{"status": "Fail",
//! "response": "..."}` with the error's status.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::channel::Source;
use crate::web::receive::{Auth, Receiver, Rejection, Shape, Sources, basic_credentials};
use crate::web::same_secret;

pub async fn message(State(receiver): State<Receiver>, request: Request) -> Response {
    let admitted = match receiver.admit(Source::Staah, request, authenticate).await {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.render(Shape::Staah),
    };
    let (push, problem) = super::parse(&admitted.body);
    match (receiver.store(push).await, problem) {
        (Ok(_), None) => (StatusCode::OK, axum::Json(json!({ "status": "Success" }))).into_response(),
        (Ok(_), Some(problem)) => {
            tracing::warn!(
                source = "staah",
                problem,
                "STAAH message quarantined: it cannot be understood"
            );
            Rejection::malformed(&problem).render(Shape::Staah)
        }
        (Err(rejection), _) => rejection.render(Shape::Staah),
    }
}

fn authenticate(sources: &Sources, headers: &HeaderMap) -> Auth {
    let Some(staah) = &sources.staah else {
        return Auth::NotConfigured;
    };
    let passed = basic_credentials(headers).is_some_and(|(user, password)| {
        // Both compared, always: which one was wrong must not show in the time either.
        let user = same_secret(&user, &staah.username);
        let password = same_secret(&password, staah.password.expose());
        user & password
    });
    Auth::check(passed, "Basic")
}
