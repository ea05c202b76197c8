//! The daemon's HTTP listeners. Each surface is a module exporting `router()`; [`serve`] runs one on a listener
//! bound by the caller (so a taken port fails start-up) until shutdown.

pub mod ops;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `cancel` fires; `what` names the surface in the failure log.
pub async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken, what: &'static str) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, listener = what, "the listener failed");
    }
}

/// Binds `127.0.0.1:0` and serves `router` there until `stop` fires: the built-in fakes of the demo, the tests
/// and the benchmarks. Returns the bound address.
pub async fn serve_on_loopback(router: Router, stop: CancellationToken) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, router, stop, "fake"));
    Ok(addr)
}
