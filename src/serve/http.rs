//! The HTTP listeners: bind first (so a bad address is a start-up error
//! naming it), then serve until shutdown under the supervisor.
//!
//! `axum::serve` sets no timer, so a client that opens connections and
//! never finishes a request head would hold them (and their memory)
//! forever. This accept loop bounds what one connection may cost: a request
//! head must arrive within `header_read_timeout` (an idle keep-alive
//! connection is closed after as long), a request is answered within
//! `request_timeout` (408 otherwise, slow bodies included), and at most
//! `max_connections` are open; more wait in the kernel's backlog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use super::ServeError;
use crate::api::Audience;
use crate::config::{HttpLimits, Listeners};

/// How long a stop waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(5);

/// The addresses each audience is served on once bound (the same address
/// for audiences that share a listener).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub api: SocketAddr,
    pub edge: SocketAddr,
    pub metrics: SocketAddr,
}

/// One bound socket and the audiences it serves.
pub struct Listener {
    pub socket: TcpListener,
    pub audiences: Vec<Audience>,
}

impl Listener {
    /// `api+edge`: the metrics label of the connections it holds.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self.audiences.iter().map(|a| a.as_str()).collect();
        names.join("+")
    }
}

/// Binds one socket per configured address; an audience without one of
/// its own is served on the API's.
pub async fn bind_all(listen: &Listeners) -> Result<(Vec<Listener>, Bound), ServeError> {
    let api = bind(listen.api).await?;
    let api_addr = local(&api, listen.api)?;
    let mut shared = vec![Audience::Api];
    let mut own = Vec::new();
    let mut bound = Bound {
        api: api_addr,
        edge: api_addr,
        metrics: api_addr,
    };
    for (audience, addr) in [
        (Audience::Edge, listen.edge),
        (Audience::Metrics, listen.metrics),
    ] {
        let Some(addr) = addr else {
            shared.push(audience);
            continue;
        };
        let socket = bind(addr).await?;
        let at = local(&socket, addr)?;
        match audience {
            Audience::Edge => bound.edge = at,
            _ => bound.metrics = at,
        }
        own.push(Listener {
            socket,
            audiences: vec![audience],
        });
    }
    own.insert(
        0,
        Listener {
            socket: api,
            audiences: shared,
        },
    );
    Ok((own, bound))
}

fn local(socket: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    socket
        .local_addr()
        .map_err(|source| ServeError::Listen { addr, source })
}

/// Binds `addr`; the bound address is `local_addr()` (useful with port 0).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let listen_error = |source| ServeError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    tracing::info!(%bound, "http listening");
    Ok(listener)
}

/// Serves `app` on `listener` within `limits` until `shutdown`, then lets
/// requests in progress finish (at most [`DRAIN`]). `open` counts the
/// connections held.
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    open: IntGauge,
    shutdown: CancellationToken,
) {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it
                    // was taken: not the listener's end. Pause so a full
                    // descriptor table does not spin the loop.
                    tracing::warn!(error = %e, "http accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.inc();
        tokio::spawn(async move {
            // A client that goes away, or is timed out, ends its own
            // connection; nothing for the listener to report.
            let _ = conn.await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            after = ?DRAIN,
            "http: connections still open at shutdown were dropped"
        );
    }
}
