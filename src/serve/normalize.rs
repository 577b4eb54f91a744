//! `tokenwatch normalize`: the first hop for gateway logs. Consumes the raw
//! topics (`gateway.inputs`) in its own consumer group and republishes each
//! record as telemetry keyed by token id, so that in a fleet one token's
//! requests reach one scoring instance, and the raw token never travels
//! further. Stateless: run as many as the raw topics have partitions.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{build, http, tasks, ServeError, Supervisor};
use crate::config::Config;
use crate::ingest::{self, LoopStats, NormalizeHandler, Readiness};
use crate::metrics::Metrics;

#[derive(Default)]
pub struct NormalizeHooks {
    pub http_bound: Option<oneshot::Sender<SocketAddr>>,
    pub metrics: Option<Arc<Metrics>>,
}

/// Runs until `shutdown`; returns what the loop handled.
pub async fn normalize(
    cfg: Config,
    shutdown: CancellationToken,
    hooks: NormalizeHooks,
) -> Result<LoopStats, ServeError> {
    let metrics = hooks.metrics.unwrap_or_default();
    let readiness = Arc::new(Readiness::default());
    // Nothing to load: ready as soon as partitions are assigned.
    readiness.model_loaded.store(true, Ordering::Release);
    let mut tasks: Supervisor<Option<LoopStats>> = Supervisor::new(shutdown.clone());
    let group = format!("{}.normalize", cfg.kafka.group_id);
    let topics: Vec<&str> = cfg
        .gateway
        .inputs
        .iter()
        .map(|i| i.topic.as_str())
        .collect();
    let consumer = build::consumer(
        &cfg,
        &group,
        &topics,
        "normalize",
        Some(readiness.clone()),
        metrics.clone(),
    )?;
    let producer: FutureProducer = ingest::producer_config(&cfg.kafka).create()?;
    let (verifier, jwks) = tasks::jwt_verifier(&cfg, true, &readiness, &metrics, &shutdown);
    if let Some(j) = jwks {
        tasks.spawn("jwks", async move {
            j.await;
            None
        });
    }
    let adapters = build::gateway_adapters(&cfg, &cfg.gateway.inputs, verifier);

    tracing::info!(topics = ?topics, "normalize: reading gateway topics");
    let app = crate::api::ops_app(metrics.clone(), readiness);
    // Only probes and metrics: one listener, on `http.listen`.
    let listener = http::bind(cfg.http.listen.api).await?;
    if let (Some(tx), Ok(bound)) = (hooks.http_bound, listener.local_addr()) {
        let _ = tx.send(bound);
    }
    let open = metrics.http_connections.with_label_values(&["api+metrics"]);
    let (limits, stop) = (cfg.http.limits, shutdown.clone());
    tasks.spawn("http", async move {
        http::run(listener, app, limits, open, stop).await;
        None
    });

    let handler = NormalizeHandler::new(
        adapters,
        producer,
        cfg.kafka.telemetry_topic.clone(),
        cfg.kafka.deadletter_topic.clone(),
        metrics.clone(),
    )
    .with_max_clock_skew_ms(cfg.detect.max_clock_skew_ms);
    let normalized = ingest::run(
        consumer,
        handler,
        cfg.kafka.commit_interval,
        shutdown,
        metrics,
    );
    tasks.spawn("normalize", async move { Some(normalized.await) });
    let stats = tasks
        .wait()
        .await?
        .into_iter()
        .find_map(|(_, s)| s)
        .unwrap_or_default();
    Ok(stats)
}
