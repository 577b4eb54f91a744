//! One whole tokenwatch instance (`serve`) in the test process, sharing
//! its metrics and reporting its decisions, for the fleet and fault tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokenwatch::config::Config;
use tokenwatch::decide::Decision;
use tokenwatch::metrics::Metrics;
use tokenwatch::serve::{serve, Hooks, ServeError, ServeReport};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub struct Instance {
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<ServeReport, ServeError>>,
    pub http: SocketAddr,
}

/// Starts `serve` and returns once its HTTP side is bound (not yet ready:
/// see `wait_ready`).
pub async fn start(cfg: Config, decisions: mpsc::UnboundedSender<Decision>) -> Instance {
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (btx, brx) = oneshot::channel();
    let task = tokio::spawn(serve(
        cfg,
        stop.clone(),
        Hooks {
            decisions: Some(decisions),
            http_bound: Some(btx),
            metrics: Some(metrics.clone()),
            ..Hooks::default()
        },
    ));
    let http = brx.await.expect("http bound");
    Instance {
        metrics,
        stop,
        task,
        http,
    }
}
