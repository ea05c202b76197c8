//! The API listener's lifetime: bound at start (a taken port fails start-up), its tokens re-read on SIGHUP.

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::Context;
use crate::config::Settings;
use crate::web::api::Api;

pub(super) struct Listening {
    pub api: Api,
    pub server: JoinHandle<()>,
}

pub(super) async fn start(
    settings: &Settings,
    cx: &Context,
    senders: &crate::reply::Senders,
) -> anyhow::Result<Option<Listening>> {
    let Some(config) = &settings.api else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("api.listen: cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().map_or(config.listen, |a| a);
    tracing::info!(listen = %bound, tokens = config.tokens.len(), "serving the API");
    let api = Api::new(settings, cx.store.clone(), senders.routes(), cx.wake.replies.clone());
    let server = tokio::spawn(crate::web::serve(
        listener,
        crate::web::api::router(api.clone()),
        cx.cancel.clone(),
        "api",
        crate::web::Limits::default(),
    ));
    Ok(Some(Listening { api, server }))
}
