//! The daemon's HTTP listeners. Each surface is a module exporting `router()`; [`serve`] runs one on a listener
//! bound by the caller (so a taken port fails start-up) until shutdown.
//!
//! Every listener is open to whoever can reach it, so each connection is bounded: its request headers must
//! arrive within [`Limits::header_read`] (the same bound closes a kept-alive connection that sends nothing),
//! and at most [`Limits::max_connections`] are served at once; beyond that, new connections wait in the
//! listen backlog rather than being refused. Half-sent requests can then neither pile up nor take the
//! process's file descriptors, which the outbound requests to the OTAs and the PMS need too.

pub mod api;
pub mod inbox;
pub mod ops;
pub mod receive;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How much a listener gives any one caller.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers, or the next request on a kept-alive connection, must arrive within this.
    pub header_read: Duration,
    /// Connections served at once (well below the unit's `LimitNOFILE`).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// How long open connections get to finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `cancel` fires; `what` names the surface in the logs. Handlers see the
/// caller's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    what: &'static str,
    limits: Limits,
) {
    serve_tls(listener, router, cancel, what, limits, None).await
}

/// As [`serve`], speaking TLS when `tls` is given (the handshake bounded like the headers).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    what: &'static str,
    limits: Limits,
    tls: Option<tls::Tls>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = cancel.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait a moment rather
                    // than spin, and go on serving.
                    tracing::warn!(listener = what, error = %e, "cannot accept a connection");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            },
            _ = cancel.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let cancel = cancel.clone();
        let acceptor = tls.as_ref().map(tls::Tls::acceptor);
        connections.spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, peer, service, limits, cancel, what).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, service, limits, cancel, what).await,
                    Ok(Err(e)) => tracing::debug!(listener = what, %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(listener = what, %peer, "TLS handshake did not finish in time"),
                },
            }
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait()).await.is_err() {
        tracing::debug!(listener = what, "connections still open at shutdown were dropped");
    }
}

async fn serve_connection<I, S>(
    stream: I,
    peer: SocketAddr,
    service: S,
    limits: Limits,
    cancel: CancellationToken,
    what: &'static str,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = axum::response::Response>,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, connection.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(listener = what, %peer, error = %e, "connection ended with an error");
    }
}

/// Whether a presented credential is the expected one, in time that depends on neither value: both are hashed
/// first (so neither length nor any prefix shows in the timing), then compared in constant time.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// A key nobody can guess (256 bits from the OS), base64url: session cookies, CSRF tokens, one-time links.
pub fn random_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Binds `127.0.0.1:0` and serves `router` there until `stop` fires: the built-in fakes of the demo, the tests
/// and the benchmarks. Returns the bound address.
pub async fn serve_on_loopback(router: Router, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let limits = Limits {
        max_connections: 4096,
        ..Limits::default()
    };
    tokio::spawn(serve(listener, router, stop, "fake", limits));
    Ok(addr)
}
