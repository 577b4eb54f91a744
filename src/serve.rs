//! `tokenwatch serve`: wires the configuration into a running service — geo,
//! model, the scoring consumer, the revoking consumer and the HTTP server —
//! and stops them all on one cancellation.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::{self, AdminToken, AllowlistStore, AppState, Service};
use crate::config::Config;
use crate::detect::{Detector, ModelHandle};
use crate::gateway::{JwtVerifier, Normalizer};
use crate::geo::{GeoError, GeoHandle};
use crate::ingest::{
    self, IngestConsumer, IngestContext, Readiness, RevocationHandler, ScoringHandler,
};
use crate::journal::{Alerts, Audit};
use crate::metrics::Metrics;
use crate::model::{Model, ModelArtifact, ModelError};
use crate::respond::{
    AlertsTarget, Brake, Controls, Decision, Denylist, DenylistTarget, Flagger, Outbox, Revoker,
    Rfc7009Client, Settled, SubjectLogout, Targets, TopicWriter, Webhook, ALERTS, DENYLIST,
    RFC7009,
};
use crate::telemetry::TokenHasher;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Geo(#[from] GeoError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http listener on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("revocation client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Allowlist(#[from] api::allowlist::AllowlistFileError),
}

/// Optional taps for the demo and tests.
#[derive(Default)]
pub struct Hooks {
    pub decisions: Option<mpsc::UnboundedSender<Decision>>,
    pub settled: Option<mpsc::UnboundedSender<Settled>>,
    /// Receives the HTTP address once bound (useful with port 0).
    pub http_bound: Option<oneshot::Sender<SocketAddr>>,
    /// Share a metrics registry with the caller.
    pub metrics: Option<Arc<Metrics>>,
}

/// What ran, for the caller's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeReport {
    pub scored: ingest::LoopStats,
    pub settled: ingest::LoopStats,
}

fn consumer(
    cfg: &Config,
    group: &str,
    topics: &[&str],
    name: &'static str,
    readiness: Option<Arc<Readiness>>,
    metrics: Arc<Metrics>,
) -> Result<Arc<IngestConsumer>, ServeError> {
    let c: IngestConsumer =
        ingest::consumer_config(&cfg.kafka, group).create_with_context(IngestContext {
            readiness,
            name,
            metrics: Some(metrics),
        })?;
    c.subscribe(topics)?;
    Ok(Arc::new(c))
}

/// The state changelog, when its topic is configured and exists.
async fn state_changelog(
    cfg: &Config,
    producer: &rdkafka::producer::FutureProducer,
) -> Option<ingest::changelog::Changelog> {
    let topic = cfg.kafka.state_topic.clone()?;
    // A group id is required by the client; the reader joins nothing.
    let reader = ingest::consumer_config(
        &cfg.kafka,
        &format!("{}.state.{}", cfg.kafka.group_id, std::process::id()),
    );
    let partitions = ingest::changelog::partitions(reader.clone(), topic.clone()).await?;
    Some(ingest::changelog::Changelog::new(
        topic,
        partitions,
        producer.clone(),
        reader,
    ))
}

pub async fn serve(
    cfg: Config,
    shutdown: CancellationToken,
    hooks: Hooks,
) -> Result<ServeReport, ServeError> {
    let metrics = hooks.metrics.unwrap_or_default();
    let readiness = Arc::new(Readiness::default());

    let geo = GeoHandle::open(cfg.geo.city_db.clone(), cfg.geo.asn_db.clone())?;
    metrics
        .geo_build_epoch
        .set(geo.load().db.build_epoch() as f64);
    let model = Model::new(ModelArtifact::load(&cfg.model_path)?);
    metrics.set_model_version(model.version());
    metrics.set_mode(cfg.respond.mode.as_str());
    let model = Arc::new(ArcSwap::from_pointee(model));
    readiness.model_loaded.store(true, Ordering::Release);

    let producer: FutureProducer = ingest::producer_config(&cfg.kafka).create()?;
    let score_topics: Vec<&str> = std::iter::once(cfg.kafka.telemetry_topic.as_str())
        .chain(cfg.gateway.direct_inputs().iter().map(|i| i.topic.as_str()))
        .collect();
    let score_consumer = consumer(
        &cfg,
        &cfg.kafka.group_id,
        &score_topics,
        "score",
        Some(readiness.clone()),
        metrics.clone(),
    )?;
    let revoke_group = format!("{}.revoker", cfg.kafka.group_id);
    let revoke_consumer = consumer(
        &cfg,
        &revoke_group,
        &[&cfg.kafka.decisions_topic],
        "revoke",
        None,
        metrics.clone(),
    )?;

    let allowlist = match &cfg.allowlist_file {
        Some(path) => api::allowlist::load_file(path)?,
        None => Default::default(),
    };
    metrics
        .allowlist_entries
        .set(allowlist.entries().len() as i64);
    let allowlist = AllowlistStore::new(
        Arc::new(ArcSwap::from_pointee(allowlist)),
        cfg.allowlist_file.clone(),
    );
    let detector = Arc::new(std::sync::Mutex::new(
        Detector::new(geo.clone(), model.clone(), cfg.detect.clone())
            .with_allowlist(allowlist.handle.clone()),
    ));
    let audit = Arc::new(Audit::with_topic(
        10_000,
        producer.clone(),
        cfg.kafka.audit_topic.clone(),
    ));
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), cfg.kafka.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        audit.clone(),
        metrics.clone(),
        hooks.decisions,
    ));
    let controls = Arc::new(
        Controls::new(cfg.respond.mode, Brake::new(cfg.respond.brake))
            .with_overrides(cfg.respond.overrides.clone()),
    );
    metrics.set_brake(&controls.brake.status());

    let direct = cfg.gateway.direct_inputs();
    let (verifier, jwks_task) = jwt_verifier(
        &cfg,
        !direct.is_empty() || cfg.respond.denylist.is_some(),
        &metrics,
        &shutdown,
    );
    let denylist = Arc::new(Denylist::default());
    let edge = cfg.respond.denylist.map(|_| api::EdgeCheck {
        denylist: denylist.clone(),
        hasher: TokenHasher::new(&cfg.gateway.hash_key),
        verifier: verifier.clone(),
    });
    let denylist_task = cfg.respond.denylist.map(|_| {
        tokio::spawn(ingest::denylist::follow(
            cfg.kafka.clone(),
            cfg.kafka.denylist_topic.clone(),
            denylist.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });

    let app = api::app(AppState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        service: Arc::new(Service {
            detector: detector.clone(),
            flagger: flagger.clone(),
            controls: controls.clone(),
            allowlist,
            model_path: cfg.model_path.clone(),
            admin_token: cfg.http.admin_token.as_deref().map(AdminToken::new),
            max_body_bytes: cfg.http.max_body_bytes,
            edge,
        }),
    });
    let http = serve_http(cfg.http.listen, app, hooks.http_bound, shutdown.clone()).await?;

    let reload = tokio::spawn(watch_geo(geo.clone(), metrics.clone(), shutdown.clone()));
    let model_reload = tokio::spawn(reload_model_on_hangup(
        model.clone(),
        cfg.model_path.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let gateways = gateway_adapters(&cfg, direct, verifier);
    let changelog = state_changelog(&cfg, &producer).await;
    let scoring = ScoringHandler::new(
        detector,
        producer.clone(),
        cfg.kafka.deadletter_topic.clone(),
        flagger,
        metrics.clone(),
    )
    .with_gateways(gateways)
    .with_changelog(changelog, readiness.clone());
    let revoker = revoker(&cfg, controls, &producer, &denylist, &metrics)?;
    let revoking = RevocationHandler::new(
        revoker,
        producer,
        cfg.kafka.deadletter_topic.clone(),
        metrics.clone(),
        audit,
        hooks.settled,
    );

    let interval = cfg.kafka.commit_interval;
    let score_task = tokio::spawn(ingest::run(
        score_consumer,
        scoring,
        interval,
        shutdown.clone(),
        metrics.clone(),
    ));
    let revoke_task = tokio::spawn(ingest::run(
        revoke_consumer,
        revoking,
        interval,
        shutdown.clone(),
        metrics.clone(),
    ));
    let scored = score_task.await.unwrap_or_default();
    let settled = revoke_task.await.unwrap_or_default();
    let _ = http.await;
    let _ = reload.await;
    let _ = model_reload.await;
    if let Some(t) = jwks_task {
        let _ = t.await;
    }
    if let Some(t) = denylist_task {
        let _ = t.await;
    }
    Ok(ServeReport { scored, settled })
}

/// Binds `addr`, reports the bound address (useful with port 0), and serves
/// `app` until `shutdown`.
pub async fn serve_http(
    addr: SocketAddr,
    app: axum::Router,
    bound_tx: Option<oneshot::Sender<SocketAddr>>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listen_error = |source| ServeError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    if let Some(tx) = bound_tx {
        let _ = tx.send(bound);
    }
    tracing::info!(%bound, "http listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "http server");
        }
    }))
}

/// Loads the model file again and swaps it in; the next event is scored by
/// the new model, no event is dropped. On error the loaded model stays.
pub fn reload_model(
    handle: &ModelHandle,
    path: &std::path::Path,
    metrics: &Metrics,
) -> Result<String, ModelError> {
    match ModelArtifact::load(path) {
        Ok(artifact) => {
            let model = Model::new(artifact);
            let version = model.version().to_owned();
            handle.store(Arc::new(model));
            metrics.set_model_version(&version);
            metrics.model_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(%version, "model reloaded");
            Ok(version)
        }
        Err(e) => {
            metrics.model_reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "model reload failed; keeping the loaded model");
            Err(e)
        }
    }
}

/// `kill -HUP` reloads the model file.
async fn reload_model_on_hangup(
    handle: ModelHandle,
    path: std::path::PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => { let _ = reload_model(&handle, &path, &metrics); }
            }
        }
    }
    #[cfg(not(unix))]
    shutdown.cancelled().await;
}

/// The JWT verifier when `gateway.jwks_url` is set and something derives
/// token ids (`needed`), and the task that keeps its keys fresh.
pub fn jwt_verifier(
    cfg: &Config,
    needed: bool,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> (
    Option<Arc<JwtVerifier>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let verifier = cfg.gateway.jwks_url.as_ref().filter(|_| needed).map(|url| {
        Arc::new(JwtVerifier::with_keys(
            url.clone(),
            jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        ))
    });
    let task = verifier
        .clone()
        .map(|v| tokio::spawn(refresh_jwks(v, metrics.clone(), shutdown.clone())));
    (verifier, task)
}

/// The adapter of each gateway topic in `inputs`.
pub fn gateway_adapters(
    cfg: &Config,
    inputs: &[crate::config::GatewayInput],
    verifier: Option<Arc<JwtVerifier>>,
) -> std::collections::HashMap<String, Normalizer> {
    inputs
        .iter()
        .map(|i| {
            let n = Normalizer::new(
                i.map.clone(),
                cfg.gateway.trusted.clone(),
                cfg.gateway.hash_key.clone(),
                cfg.respond.sealer.clone(),
            )
            .with_verifier(verifier.clone());
            (i.topic.clone(), n)
        })
        .collect()
}

/// The revoker with every configured target.
fn revoker(
    cfg: &Config,
    controls: Arc<Controls>,
    producer: &FutureProducer,
    denylist: &Arc<Denylist>,
    metrics: &Metrics,
) -> Result<Revoker, ServeError> {
    let r = &cfg.respond;
    let targets = Targets {
        rfc7009: r.rfc7009.clone().map(Rfc7009Client::new).transpose()?,
        logouts: r
            .logouts
            .iter()
            .cloned()
            .map(SubjectLogout::new)
            .collect::<Result<_, _>>()?,
        denylist: r.denylist.map(|max_ttl| DenylistTarget {
            writer: TopicWriter::new(producer.clone(), cfg.kafka.denylist_topic.clone()),
            set: denylist.clone(),
            max_ttl,
        }),
        alerts: r.alerts.clone().map(|format| AlertsTarget {
            writer: TopicWriter::new(producer.clone(), cfg.kafka.alerts_topic.clone()),
            format,
        }),
        webhooks: r
            .webhooks
            .iter()
            .cloned()
            .map(Webhook::new)
            .collect::<Result<_, _>>()?,
    };
    let mut names: Vec<&str> = vec![RFC7009];
    names.extend(r.logouts.iter().map(|l| l.name.as_str()));
    names.extend(r.denylist.map(|_| DENYLIST));
    names.extend(r.alerts.as_ref().map(|_| ALERTS));
    names.extend(r.webhooks.iter().map(|w| w.name.as_str()));
    metrics.zero_targets(&names);
    Ok(Revoker::new(controls, r.sealer.clone(), targets)
        .with_active_tokens(metrics.tokens_tracked.clone()))
}

/// Keeps the issuer's keys fresh: every 30 s until the first success (until
/// then no JWT verifies, and tokens are known by their keyed hash), then
/// every 10 minutes for rotations.
async fn refresh_jwks(v: Arc<JwtVerifier>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a default HTTP client builds");
    let mut loaded = false;
    loop {
        match v.refresh(&client).await {
            Ok(n) => {
                metrics.jwks_refreshes.with_label_values(&["ok"]).inc();
                tracing::info!(keys = n, "JWKS loaded");
                loaded = true;
            }
            Err(e) => {
                metrics.jwks_refreshes.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, loaded, "JWKS fetch failed; JWTs that do not verify are known by their keyed hash");
            }
        }
        let wait = if loaded { 600 } else { 30 };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
        }
    }
}

/// Reloads the geo databases when a file is replaced (atomic rename gives
/// it a new modification time), without stopping the consumers.
async fn watch_geo(geo: Arc<GeoHandle>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let stamp = |geo: &GeoHandle| -> Vec<Option<SystemTime>> {
        geo.city_paths()
            .iter()
            .map(|p| p.as_path())
            .chain(geo.asn_path())
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    };
    let mut last = stamp(&geo);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = stamp(&geo);
        if now == last {
            continue;
        }
        last = now;
        match geo.reload() {
            Ok(generation) => {
                metrics.geo_reloads.with_label_values(&["ok"]).inc();
                metrics
                    .geo_build_epoch
                    .set(geo.load().db.build_epoch() as f64);
                tracing::info!(generation, "geo databases reloaded");
            }
            Err(e) => {
                metrics.geo_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "geo reload failed; keeping the loaded databases");
            }
        }
    }
}
