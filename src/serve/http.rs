//! The HTTP listeners: bind first (so a bad address is a start-up error
//! naming it), then serve until shutdown under the supervisor.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::ServeError;

/// Binds `addr` and reports the bound address (useful with port 0).
pub async fn bind(
    addr: SocketAddr,
    bound_tx: Option<oneshot::Sender<SocketAddr>>,
) -> Result<TcpListener, ServeError> {
    let listen_error = |source| ServeError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    if let Some(tx) = bound_tx {
        let _ = tx.send(bound);
    }
    tracing::info!(%bound, "http listening");
    Ok(listener)
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, app: axum::Router, shutdown: CancellationToken) {
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "http server");
    }
}
