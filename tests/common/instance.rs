//! One whole tokenwatch instance (`serve`) in the test process, sharing
//! its metrics and reporting its decisions, for the fleet and fault tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokenwatch::config::Config;
use tokenwatch::decide::Decision;
use tokenwatch::metrics::Metrics;
use tokenwatch::serve::{serve, Bound, Hooks, ServeError, ServeReport};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub struct Instance {
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<ServeReport, ServeError>>,
    /// The API's address (and, unless configured apart, every audience's).
    pub http: SocketAddr,
    pub bound: Bound,
}

/// Starts `serve` and returns once its HTTP side is bound (not yet ready:
/// see `wait_ready`).
pub async fn start(cfg: Config, decisions: mpsc::UnboundedSender<Decision>) -> Instance {
    start_with(
        cfg,
        Hooks {
            decisions: Some(decisions),
            ..Hooks::default()
        },
    )
    .await
}

/// The same with the caller's taps (decisions, settled decisions); the
/// fixture adds the metrics registry and the bound address.
pub async fn start_with(cfg: Config, hooks: Hooks) -> Instance {
    let metrics = hooks.metrics.clone().unwrap_or_default();
    let stop = CancellationToken::new();
    let (btx, brx) = oneshot::channel();
    let task = tokio::spawn(serve(
        cfg,
        stop.clone(),
        Hooks {
            http_bound: Some(btx),
            metrics: Some(metrics.clone()),
            ..hooks
        },
    ));
    let bound = brx.await.expect("http bound");
    Instance {
        metrics,
        stop,
        task,
        http: bound.api,
        bound,
    }
}
