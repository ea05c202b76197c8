//! The API listener's lifetime: bound at start (a taken port fails start-up), its tokens re-read on SIGHUP.

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::Context;
use crate::config::Settings;
use crate::web::api::Api;

pub(super) struct Listening {
    pub api: Api,
    pub server: JoinHandle<()>,
    tls: Option<crate::web::tls::Tls>,
}

impl Listening {
    /// SIGHUP: the tokens and the inbox's settings, and the TLS files (the running certificate stays when the
    /// new ones cannot be read).
    pub fn reload(&self, settings: &Settings, routes: crate::web::api::ReplyRoutes) {
        self.api.reload(settings, routes);
        if let (Some(tls), Some(api)) = (&self.tls, &settings.api)
            && let (Some(cert), Some(key)) = (&api.tls_cert_file, &api.tls_key_file)
            && let Err(e) = tls.reload(cert, key)
        {
            tracing::error!(error = %format!("{e:#}"), "cannot read api.tls_cert_file or api.tls_key_file; serving the running certificate");
        }
    }
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
    let api = Api::new(
        settings,
        cx.store.clone(),
        senders.routes(),
        cx.wake.replies.clone(),
        cx.cancel.clone(),
    );
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::web::tls::Tls::load(cert, key).map_err(|e| anyhow::anyhow!("api: {e:#}"))?)
        }
        _ => None,
    };
    let server = tokio::spawn(crate::web::serve_tls(
        listener,
        crate::web::api::router(api.clone()),
        cx.cancel.clone(),
        "api",
        crate::web::Limits::default(),
        tls.clone(),
    ));
    Ok(Some(Listening { api, server, tls }))
}
