//! The gRPC listener: Envoy's `ext_authz` (`api/ext_authz.rs`), on a socket
//! of its own (`http.grpc_listen`), in both roles. Limits as the HTTP
//! listeners have them where gRPC has an equivalent: a request answered
//! within `http.request_timeout`, bounded streams per connection and header
//! list size, keep-alive pings that close a connection whose peer is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::check::EdgeCheck;
use crate::api::ext_authz::{AuthorizationServer, ExtAuthz, MAX_REQUEST_BYTES};
use crate::config::HttpLimits;
use crate::metrics::Metrics;

/// Concurrent calls on one HTTP/2 connection (Envoy multiplexes its checks
/// over a few connections).
const STREAMS_PER_CONNECTION: usize = 1024;

pub async fn run(
    listener: TcpListener,
    edge: Arc<EdgeCheck>,
    metrics: Arc<Metrics>,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = AuthorizationServer::new(ExtAuthz { edge, metrics })
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    tracing::info!(?addr, "gRPC ext_authz listening");
    let served = tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(64 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "gRPC ext_authz listener failed");
    }
}
