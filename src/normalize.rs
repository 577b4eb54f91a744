//! `tokenwatch normalize`: the first hop for gateway logs. Consumes the raw
//! topics (`gateway.inputs`) in its own consumer group and republishes each
//! record as telemetry keyed by token id, so that in a fleet one token's
//! requests reach one scoring instance, and the raw token never travels
//! further. Stateless: run as many as the raw topics have partitions.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingest::{self, IngestConsumer, IngestContext, LoopStats, NormalizeHandler, Readiness};
use crate::metrics::Metrics;
use crate::serve::ServeError;

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
    let group = format!("{}.normalize", cfg.kafka.group_id);
    let consumer: IngestConsumer = ingest::consumer_config(&cfg.kafka, &group)
        .create_with_context(IngestContext {
            readiness: Some(readiness.clone()),
            name: "normalize",
            metrics: Some(metrics.clone()),
        })?;
    let topics: Vec<&str> = cfg
        .gateway
        .inputs
        .iter()
        .map(|i| i.topic.as_str())
        .collect();
    consumer.subscribe(&topics)?;
    let producer: FutureProducer = ingest::producer_config(&cfg.kafka).create()?;
    let (verifier, jwks) = crate::serve::jwt_verifier(&cfg, true, &metrics, &shutdown);
    let adapters = crate::serve::gateway_adapters(&cfg, &cfg.gateway.inputs, verifier);

    tracing::info!(topics = ?topics, "normalize: reading gateway topics");
    let app = crate::api::ops_app(metrics.clone(), readiness);
    let http =
        crate::serve::serve_http(cfg.http.listen, app, hooks.http_bound, shutdown.clone()).await?;

    let handler = NormalizeHandler::new(
        adapters,
        producer,
        cfg.kafka.telemetry_topic.clone(),
        cfg.kafka.deadletter_topic.clone(),
        metrics.clone(),
    );
    let stats = ingest::run(
        Arc::new(consumer),
        handler,
        cfg.kafka.commit_interval,
        shutdown,
        metrics,
    )
    .await;
    let _ = http.await;
    if let Some(t) = jwks {
        let _ = t.await;
    }
    Ok(stats)
}
