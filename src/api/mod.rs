//! The HTTP surface (axum). `app()` builds the router without a socket so
//! tests drive it with `tower::ServiceExt::oneshot`; `docs/openapi.yaml`
//! describes every route.
//!
//! - operations: `/metrics`, `/healthz`, `/readyz`
//! - scoring: `POST /v1/score` (its own credential; a dry run by default)
//! - reads (read or admin credential): `GET /v1/tokens/{id}`,
//!   `GET /v1/alerts`, `GET /v1/audit`, `GET /v1/policy`
//! - edge: `/v1/check` for NGINX `auth_request` and Envoy `ext_authz`
//!
//! Each audience ([`Audience`]) may have a listener of its own.
//! - admin (bearer credential, every action audited): revoke a token,
//!   allowlist CRUD, model reload, mode switch, brake reset

mod admin;
pub mod allowlist;
mod auth;
pub mod check;
mod error;
pub mod ext_authz;
mod journal;
mod score;
mod tokens;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post, put};
use axum::Router;

pub use allowlist::AllowlistStore;
pub use auth::Credential;
pub use check::EdgeCheck;
pub use error::ApiError;

use crate::decide::{Flagger, SharedDetector};
use crate::ingest::Readiness;
use crate::metrics::Metrics;
use crate::respond::Controls;

/// Everything the `/v1` routes act on; shared with the consumers.
pub struct Service {
    pub detector: SharedDetector,
    pub flagger: Arc<Flagger>,
    pub controls: Arc<Controls>,
    pub allowlist: AllowlistStore,
    /// The model in use, its file and the fleet's pin.
    pub model: Arc<crate::model::ModelSource>,
    pub admin_token: Option<Credential>,
    /// Reads subjects, places and decisions (the admin token also reads).
    pub read_token: Option<Credential>,
    /// `POST /v1/score`.
    pub score_token: Option<Credential>,
    /// `POST /v1/score` feeds the token's state (and may flag it) instead
    /// of scoring without changing anything (`http.score_updates_state`).
    pub score_updates_state: bool,
    pub max_body_bytes: usize,
    /// The edge check; `None` when the denylist is off.
    pub edge: Option<Arc<EdgeCheck>>,
}

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub service: Arc<Service>,
}

/// Who calls a group of routes; each can have a listener of its own
/// (`http.edge_listen`, `http.metrics_listen`), so it is exposed only where
/// that audience is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Operators and their tooling: scoring, reads, admin.
    Api,
    /// The gateways: `/v1/check`.
    Edge,
    /// Prometheus: `/metrics`.
    Metrics,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Api => "api",
            Audience::Edge => "edge",
            Audience::Metrics => "metrics",
        }
    }
}

/// `/metrics`, `/healthz` and `/readyz` alone: what the normalize stage
/// serves.
pub fn ops_app(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    ops(metrics, readiness, true)
}

/// Every route on one listener: what tests drive, and what `serve` binds
/// when no audience has a listener of its own.
pub fn app(state: AppState) -> Router {
    router(state, &[Audience::Api, Audience::Edge, Audience::Metrics])
}

/// The routes of `audiences`, with the probes (every listener answers
/// `/healthz` and `/readyz`, so each can be probed where it is exposed).
pub fn router(state: AppState, audiences: &[Audience]) -> Router {
    let limit = state.service.max_body_bytes;
    let mut routes = Router::new();
    if audiences.contains(&Audience::Api) {
        routes = routes
            .route("/v1/score", post(score::score))
            .route("/v1/tokens/{token_id}", get(tokens::show))
            .route("/v1/tokens/{token_id}/revoke", post(tokens::revoke))
            .route("/v1/alerts", get(journal::alerts))
            .route("/v1/audit", get(journal::audit))
            .route("/v1/allowlist", get(admin::allowlist_list))
            .route("/v1/allowlist", post(admin::allowlist_add))
            .route("/v1/allowlist/{id}", delete(admin::allowlist_remove))
            .route("/v1/model/reload", post(admin::model_reload))
            .route("/v1/model/pin", put(admin::set_model_pin))
            .route("/v1/policy", get(admin::policy))
            .route("/v1/policy/mode", put(admin::set_mode))
            .route("/v1/policy/brake/reset", post(admin::reset_brake));
    }
    let ops = ops(
        state.metrics.clone(),
        state.readiness.clone(),
        audiences.contains(&Audience::Metrics),
    );
    let edge = audiences
        .contains(&Audience::Edge)
        .then(|| check_routes(state.service.edge.clone(), state.metrics.clone()));
    let routes = routes
        .fallback(|| async { ApiError::not_found("no such route; see docs/openapi.yaml") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
        .merge(ops);
    match edge {
        Some(edge) => routes.merge(edge),
        None => routes,
    }
}

/// `/v1/check` alone, with the probes and `/metrics`: the edge role
/// (`tokenwatch edge`), which holds no partition, model or detector.
pub fn edge_app(edge: Arc<EdgeCheck>, metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    check_routes(Some(edge), metrics.clone())
        .fallback(|| async { ApiError::not_found("no such route; see docs/openapi.yaml") })
        .merge(ops(metrics, readiness, true))
}

fn check_routes(edge: Option<Arc<EdgeCheck>>, metrics: Arc<Metrics>) -> Router {
    // Envoy's ext_authz appends the original path to its path_prefix.
    Router::new()
        .route("/v1/check", any(check::check))
        .route("/v1/check/{*original}", any(check::check))
        .with_state(check::EdgeState { edge, metrics })
}

/// The probes, and `/metrics` if `with_metrics`.
fn ops(metrics: Arc<Metrics>, readiness: Arc<Readiness>, with_metrics: bool) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        r = r.route("/metrics", get(render_metrics));
    }
    r.with_state(Ops { metrics, readiness })
}

#[derive(Clone)]
struct Ops {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn render_metrics(State(s): State<Ops>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<Ops>) -> impl IntoResponse {
    let r = &s.readiness;
    let assigned = r.assigned.load(std::sync::atomic::Ordering::Acquire);
    let model = r.model_loaded.load(std::sync::atomic::Ordering::Acquire);
    let jwks = !r.jwks_pending.load(std::sync::atomic::Ordering::Acquire);
    let control = !r.control_pending.load(std::sync::atomic::Ordering::Acquire);
    let mut body = format!(
        "assigned={assigned} model_loaded={model} jwks_loaded={jwks} control_loaded={control}"
    );
    if let Some(d) = r.denylist.get() {
        body.push_str(&format!(" denylist_loaded={}", d.is_ready()));
    }
    body.push('\n');
    if r.is_ready() {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
