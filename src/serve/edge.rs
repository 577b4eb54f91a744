//! `tokenwatch edge`: the edge check alone. It reads the denylist topic
//! (and the issuer's keys, to name JWTs as the scorer does) and answers
//! `/v1/check` for NGINX `auth_request` and Envoy `ext_authz` (HTTP, and
//! gRPC on `http.grpc_listen`). It joins no
//! consumer group and holds no partition, model or detector, so a
//! rebalance or a coordinator outage of the scoring fleet never takes it
//! out of the gateways' path, and it scales with the gateways, not with
//! the telemetry topic's partitions. Ready once the denylist is loaded.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{grpc, http, tasks, ServeError, Supervisor};
use crate::api::{self, EdgeCheck};
use crate::config::Config;
use crate::ingest::{self, Readiness};
use crate::metrics::Metrics;
use crate::respond::Denylist;
use crate::telemetry::TokenHasher;

#[derive(Default)]
pub struct EdgeHooks {
    pub http_bound: Option<oneshot::Sender<SocketAddr>>,
    pub metrics: Option<Arc<Metrics>>,
}

/// Runs until `shutdown`.
pub async fn edge(
    cfg: Config,
    shutdown: CancellationToken,
    hooks: EdgeHooks,
) -> Result<(), ServeError> {
    if cfg.respond.denylist.is_none() {
        return Err(ServeError::EdgeWithoutDenylist);
    }
    let metrics = hooks.metrics.unwrap_or_default();
    let readiness = Arc::new(Readiness::default());
    // No partitions and no model: ready once the denylist (and the keys,
    // if configured) are loaded.
    readiness.assigned.store(true, Ordering::Release);
    readiness.model_loaded.store(true, Ordering::Release);
    let denylist = Arc::new(Denylist::default());
    let _ = readiness.denylist.set(denylist.clone());
    let mut tasks: Supervisor<()> = Supervisor::new(shutdown.clone());

    let (verifier, jwks) = tasks::jwt_verifier(&cfg, true, &readiness, &metrics, &shutdown);
    if let Some(j) = jwks {
        tasks.spawn("jwks", async move {
            j.await;
        });
    }
    let follow = ingest::denylist::follow(
        cfg.kafka.clone(),
        cfg.kafka.denylist_topic.clone(),
        denylist.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    tasks.spawn("denylist", follow);

    let check = Arc::new(EdgeCheck {
        denylist,
        hasher: TokenHasher::new(&cfg.gateway.hash_key),
        verifier,
    });
    if let Some(addr) = cfg.http.listen.grpc {
        let socket = http::bind(addr).await?;
        let (edge, m, limits, stop) = (
            check.clone(),
            metrics.clone(),
            cfg.http.limits,
            shutdown.clone(),
        );
        tasks.spawn("grpc", async move {
            grpc::run(socket, edge, m, limits, stop).await;
        });
    }
    let app = api::edge_app(check, metrics.clone(), readiness);
    // The gateways' listener if one is configured, else `http.listen`.
    let addr = cfg.http.listen.edge.unwrap_or(cfg.http.listen.api);
    let listener = http::bind(addr).await?;
    if let (Some(tx), Ok(bound)) = (hooks.http_bound, listener.local_addr()) {
        let _ = tx.send(bound);
    }
    tracing::info!(%addr, "edge: serving /v1/check from the denylist");
    let open = metrics.http_connections.with_label_values(&["edge"]);
    let (limits, stop) = (cfg.http.limits, shutdown);
    tasks.spawn("http", async move {
        http::run(listener, app, limits, open, stop).await;
    });
    tasks.wait().await?;
    Ok(())
}
