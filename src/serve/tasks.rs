//! Background tasks of a running instance: model reload on SIGHUP, geo
//! database reload when a file is replaced, and the issuer's signing keys
//! kept fresh. Each runs until shutdown under the supervisor.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::JwtVerifier;
use crate::geo::GeoHandle;
use crate::ingest::Readiness;
use crate::metrics::Metrics;
use crate::model::ModelSource;

/// How often an instance whose model is not the fleet's pinned version
/// reads its file again (a ConfigMap update reaches a pod within a minute).
const PIN_RETRY: Duration = Duration::from_secs(10);

/// `kill -HUP` reloads the model file (unless the fleet pinned another
/// version); while the pinned version is not loaded here, the file is
/// tried again every ten seconds.
pub async fn keep_model(src: Arc<ModelSource>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(PIN_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hangup => { let _ = src.reload(&metrics); }
            _ = tick.tick() => src.enforce(&metrics),
        }
    }
}

/// The JWT verifier when `gateway.jwks_url` is set and something derives
/// token ids (`needed`), and the task that keeps its keys fresh.
pub fn jwt_verifier(
    cfg: &Config,
    needed: bool,
    readiness: &Arc<Readiness>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> (
    Option<Arc<JwtVerifier>>,
    Option<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    let verifier = cfg.gateway.jwks_url.as_ref().filter(|_| needed).map(|url| {
        Arc::new(JwtVerifier::with_keys(
            url.clone(),
            jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        ))
    });
    let task = verifier.clone().map(|v| {
        readiness.jwks_pending.store(true, Ordering::Release);
        refresh_jwks(v, readiness.clone(), metrics.clone(), shutdown.clone())
    });
    (verifier, task)
}

/// Keeps the issuer's keys fresh: every 30 s until the first success (until
/// then no JWT verifies, tokens are known by their keyed hash, and the
/// instance is not ready), then every 10 minutes for rotations, and sooner
/// when a token names a key the set lacks (at most every 30 s, so forged
/// `kid`s cannot make it hammer the issuer).
async fn refresh_jwks(
    v: Arc<JwtVerifier>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
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
                readiness.jwks_pending.store(false, Ordering::Release);
            }
            Err(e) => {
                metrics.jwks_refreshes.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, loaded, "JWKS fetch failed; JWTs that do not verify are known by their keyed hash");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if loaded {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(570)) => {}
                _ = v.unknown_kid() => {}
            }
        }
    }
}

/// Reloads the geo databases when a file is replaced (atomic rename gives
/// it a new modification time), without stopping the consumers.
pub async fn watch_geo(geo: Arc<GeoHandle>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
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
