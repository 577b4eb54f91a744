//! `tokenwatch serve` and `tokenwatch normalize`: the wiring. Each role
//! builds its parts from the configuration ([`build`]), binds its listener
//! ([`http`]), and runs its loops and background tasks ([`tasks`]) under one
//! [`Supervisor`]: one cancellation stops them all, and one that fails stops
//! the process.

mod build;
pub mod edge;
mod grpc;
mod http;
pub mod normalize;
mod supervisor;
mod tasks;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::{self, AllowlistStore, AppState, Credential, Service};
use crate::config::Config;
use crate::decide::{Alerts, Decision, Flagger, Outbox};
use crate::detect::Detector;
use crate::geo::{GeoError, GeoHandle};
use crate::ingest::{self, LoopStats, Readiness, RevocationHandler, ScoringHandler};
use crate::journal::Audit;
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::model::{Model, ModelArtifact, ModelError, ModelHandle, ModelSource};
use crate::respond::{Brake, ControlKey, ControlWriter, Controls, Denylist, Settled};
use crate::telemetry::TokenHasher;

pub use edge::{edge, EdgeHooks};
pub use http::Bound;
pub use normalize::{normalize, NormalizeHooks};
pub use supervisor::{Supervisor, TaskFailed};

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
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error("configuration key `respond.denylist.enabled`: the edge role serves the denylist; set it to true")]
    EdgeWithoutDenylist,
}

/// Optional taps for the demo and tests.
#[derive(Default)]
pub struct Hooks {
    pub decisions: Option<mpsc::UnboundedSender<Decision>>,
    pub settled: Option<mpsc::UnboundedSender<Settled>>,
    /// Receives the HTTP addresses once bound (useful with port 0).
    pub http_bound: Option<oneshot::Sender<Bound>>,
    /// Share a metrics registry with the caller.
    pub metrics: Option<Arc<Metrics>>,
}

/// What ran, for the caller's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeReport {
    pub scored: LoopStats,
    pub settled: LoopStats,
}

/// The consumer loops report what they handled; other tasks report nothing.
type Ended = Option<LoopStats>;

/// Geo databases and the model, loaded before anything connects, so a bad
/// file is a start-up error naming it.
fn load(cfg: &Config, metrics: &Metrics) -> Result<(Arc<GeoHandle>, ModelHandle), ServeError> {
    let geo = GeoHandle::open(cfg.geo.city_db.clone(), cfg.geo.asn_db.clone())?;
    metrics
        .geo_build_epoch
        .set(geo.load().db.build_epoch() as f64);
    let model = Model::new(ModelArtifact::load(&cfg.model_path)?);
    metrics.set_model_version(model.version());
    Ok((geo, Arc::new(ArcSwap::from_pointee(model))))
}

pub async fn serve(
    cfg: Config,
    shutdown: CancellationToken,
    hooks: Hooks,
) -> Result<ServeReport, ServeError> {
    let metrics = hooks.metrics.unwrap_or_default();
    let readiness = Arc::new(Readiness::default());
    let mut tasks: Supervisor<Ended> = Supervisor::new(shutdown.clone());

    let (geo, model) = load(&cfg, &metrics)?;
    metrics.set_mode(cfg.respond.mode.as_str());
    readiness.model_loaded.store(true, Ordering::Release);
    let model_source = Arc::new(ModelSource::new(model.clone(), cfg.model_path.clone()));

    let producer: FutureProducer = ingest::producer_config(&cfg.kafka).create()?;
    let score_topics: Vec<&str> = std::iter::once(cfg.kafka.telemetry_topic.as_str())
        .chain(cfg.gateway.direct_inputs().iter().map(|i| i.topic.as_str()))
        .collect();
    let score_consumer = build::consumer(
        &cfg,
        &cfg.kafka.group_id,
        &score_topics,
        "score",
        Some(readiness.clone()),
        metrics.clone(),
    )?;
    let revoke_group = format!("{}.revoker", cfg.kafka.group_id);
    let revoke_consumer = build::consumer(
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
        ingest::journal::TAIL as usize,
        producer.clone(),
        cfg.kafka.audit_topic.clone(),
    ));
    let alerts = Arc::new(Alerts::new(ingest::journal::TAIL as usize));
    // `/v1/audit` and `/v1/alerts` list what the audit topic holds, the
    // same through every instance.
    let journal = ingest::journal::follow(
        cfg.kafka.clone(),
        cfg.kafka.audit_topic.clone(),
        ingest::journal::JournalFollower {
            audit: audit.clone(),
            alerts: alerts.clone(),
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    tasks.spawn("audit", async move {
        journal.await;
        None
    });
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), cfg.kafka.decisions_topic.clone()),
        alerts,
        audit.clone(),
        metrics.clone(),
        hooks.decisions,
    ));
    let fleet_key = cfg
        .http
        .admin_token
        .as_deref()
        .map(ControlKey::from_admin_token);
    let mut controls = Controls::new(cfg.respond.mode, Brake::new(cfg.respond.brake))
        .with_overrides(cfg.respond.overrides.clone());
    if let Some(key) = &fleet_key {
        // The fleet's control plane: with an admin credential to sign with.
        let writer = TopicWriter::new(producer.clone(), cfg.kafka.control_topic.clone());
        controls = controls.with_fleet(ControlWriter::new(writer, key.clone()));
    }
    let controls = Arc::new(controls);
    metrics.set_brake(controls.brake.status().holding());
    if let Some(key) = fleet_key {
        readiness.control_pending.store(true, Ordering::Release);
        let fleet = ingest::control::Fleet {
            readiness: readiness.clone(),
            controls: controls.clone(),
            allowlist: allowlist.handle.clone(),
            model: model_source.clone(),
            key,
            metrics: metrics.clone(),
        };
        let follow = ingest::control::follow(
            cfg.kafka.clone(),
            cfg.kafka.control_topic.clone(),
            fleet,
            shutdown.clone(),
        );
        tasks.spawn("control", async move {
            follow.await;
            None
        });
    }

    let direct = cfg.gateway.direct_inputs();
    let (verifier, jwks) = tasks::jwt_verifier(
        &cfg,
        !direct.is_empty() || cfg.respond.denylist.is_some(),
        &readiness,
        &metrics,
        &shutdown,
    );
    if let Some(j) = jwks {
        tasks.spawn("jwks", async move {
            j.await;
            None
        });
    }
    let denylist = Arc::new(Denylist::default());
    let edge = cfg.respond.denylist.map(|_| {
        Arc::new(api::EdgeCheck {
            denylist: denylist.clone(),
            hasher: TokenHasher::new(&cfg.gateway.hash_key),
            verifier: verifier.clone(),
        })
    });
    if cfg.respond.denylist.is_some() {
        let follow = ingest::denylist::follow(
            cfg.kafka.clone(),
            cfg.kafka.denylist_topic.clone(),
            denylist.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.spawn("denylist", async move {
            follow.await;
            None
        });
    }

    let state = AppState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        service: Arc::new(Service {
            detector: detector.clone(),
            flagger: flagger.clone(),
            controls: controls.clone(),
            allowlist,
            model: model_source.clone(),
            admin_token: cfg.http.admin_token.as_deref().map(Credential::new),
            read_token: cfg.http.read_token.as_deref().map(Credential::new),
            score_token: cfg.http.score_token.as_deref().map(Credential::new),
            score_updates_state: cfg.http.score_updates_state,
            max_body_bytes: cfg.http.max_body_bytes,
            edge,
        }),
    };
    let (listeners, bound) = http::bind_all(&cfg.http.listen).await?;
    if let Some(tx) = hooks.http_bound {
        let _ = tx.send(bound);
    }
    for l in listeners {
        let app = api::router(state.clone(), &l.audiences);
        let open = metrics.http_connections.with_label_values(&[&l.label()]);
        let (limits, stop) = (cfg.http.limits, shutdown.clone());
        tasks.spawn("http", async move {
            http::run(l.socket, app, limits, open, stop).await;
            None
        });
    }

    if let (Some(addr), Some(edge)) = (cfg.http.listen.grpc, state.service.edge.clone()) {
        let socket = http::bind(addr).await?;
        let (m, limits, stop) = (metrics.clone(), cfg.http.limits, shutdown.clone());
        tasks.spawn("grpc", async move {
            grpc::run(socket, edge, m, limits, stop).await;
            None
        });
    }

    let (m, stop) = (metrics.clone(), shutdown.clone());
    tasks.spawn("geo reload", async move {
        tasks::watch_geo(geo, m, stop).await;
        None
    });
    let (src, m, stop) = (model_source.clone(), metrics.clone(), shutdown.clone());
    tasks.spawn("model reload", async move {
        tasks::keep_model(src, m, stop).await;
        None
    });

    let gateways = build::gateway_adapters(&cfg, direct, verifier);
    let changelog = build::state_changelog(&cfg, &producer).await;
    let population = build::population_log(&cfg, &producer, &detector, &metrics).await;
    let mut scoring = ScoringHandler::new(
        detector,
        producer.clone(),
        cfg.kafka.deadletter_topic.clone(),
        flagger,
        metrics.clone(),
    )
    .with_gateways(gateways)
    .with_changelog(changelog, readiness.clone());
    if let (Some((log, follower)), Some(topic)) = (population, &cfg.kafka.population_topic) {
        let loaded = follower.loaded();
        let follow = ingest::population::follow(
            cfg.kafka.clone(),
            topic.clone(),
            follower,
            shutdown.clone(),
        );
        tasks.spawn("population", async move {
            follow.await;
            None
        });
        scoring = scoring.with_population(log, loaded);
    }
    let revoker = build::revoker(&cfg, controls, &producer, &denylist, &metrics)?;
    let revoking = RevocationHandler::new(
        revoker,
        producer,
        cfg.kafka.deadletter_topic.clone(),
        metrics.clone(),
        audit,
        hooks.settled,
    );

    // A broker that leaves a partition unowned (tansu after an eviction)
    // is answered by a rejoin (`ingest/orphans.rs`).
    for (c, group, name) in [
        (score_consumer.clone(), cfg.kafka.group_id.clone(), "score"),
        (revoke_consumer.clone(), revoke_group.clone(), "revoke"),
    ] {
        let (m, stop) = (metrics.clone(), shutdown.clone());
        tasks.spawn("orphans", async move {
            ingest::orphans::watch(c, group, name, m, stop).await;
            None
        });
    }

    let interval = cfg.kafka.commit_interval;
    let scored = ingest::run(
        score_consumer,
        scoring,
        interval,
        shutdown.clone(),
        metrics.clone(),
    );
    tasks.spawn("score", async move { Some(scored.await) });
    let settled = ingest::run(
        revoke_consumer,
        revoking,
        interval,
        shutdown.clone(),
        metrics,
    );
    tasks.spawn("revoke", async move { Some(settled.await) });

    let mut report = ServeReport::default();
    for (name, stats) in tasks.wait().await? {
        match (name, stats) {
            ("score", Some(s)) => report.scored = s,
            ("revoke", Some(s)) => report.settled = s,
            _ => {}
        }
    }
    Ok(report)
}
