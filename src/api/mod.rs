//! The HTTP surface (axum): Prometheus metrics, liveness and readiness.
//! `app()` builds the router without a socket so tests can drive it with
//! `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::ingest::Readiness;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let r = &s.readiness;
    let assigned = r.assigned.load(std::sync::atomic::Ordering::Acquire);
    let model = r.model_loaded.load(std::sync::atomic::Ordering::Acquire);
    let body = format!("assigned={assigned} model_loaded={model}\n");
    if r.is_ready() {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
