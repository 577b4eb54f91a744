//! The at-least-once consumer loop shared by the scoring and revoking
//! consumers.
//!
//! Invariant: an offset is stored only after its record's handler returned
//! Ok and every output it produced (dead letter, decision, revocation) is
//! acknowledged, and the same holds for every earlier record. A handler may
//! leave outputs in flight (`window.rs`) so that the loop reads on while the
//! broker acknowledges them. Stored offsets are committed on a timer (after
//! everything in flight has landed), before partitions are revoked, and at
//! shutdown. A crash replays at most the uncommitted tail; handlers are
//! idempotent, so a replay is harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use super::context::IngestContext;
use super::window::{InFlight, Window};
use crate::metrics::Metrics;

/// A handler failed in a way that retrying the same record may fix (the
/// broker is down, the IdP is unreachable). The loop retries with backoff
/// and never skips the record.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// What became of a handled record's outputs.
pub enum Handled {
    /// Every output is acknowledged.
    Done,
    /// Outputs still on their way to the broker: the record's offset moves
    /// once this task reports them acknowledged.
    InFlight(InFlight),
}

pub trait Handler: Send {
    /// Handles one record: Ok once every output is acknowledged or in
    /// flight (retried by its task until it is).
    fn handle(
        &mut self,
        msg: &BorrowedMessage<'_>,
    ) -> impl Future<Output = Result<Handled, Transient>> + Send;

    /// Called between records and on the commit timer (metrics, expiry).
    fn tick(&mut self) {}

    /// True when `before_commit` writes state that must not run ahead of
    /// outputs still in flight (the state changelog: a restored token that
    /// is already escalated would never be decided again if its decision
    /// were lost). The loop then waits for them at each commit.
    fn commits_state(&self) -> bool {
        false
    }

    /// Called just before stored offsets are committed (the state
    /// changelog is written here); `last` at shutdown.
    fn before_commit(&mut self, _last: bool) -> impl Future<Output = ()> + Send {
        async {}
    }
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Counts what the loop did, for tests and the demo summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopStats {
    pub handled: u64,
    pub retries: u64,
}

/// Records whose outputs may be in flight at once before the loop waits.
const IN_FLIGHT_LIMIT: usize = 4096;

/// How long shutdown waits for in-flight outputs before leaving their
/// records to be read again.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(10);

/// Runs until `shutdown` is cancelled, then commits and returns.
pub async fn run<H: Handler>(
    consumer: Arc<IngestConsumer>,
    mut handler: H,
    commit_interval: Duration,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> LoopStats {
    let mut stats = LoopStats::default();
    let mut commit_tick = tokio::time::interval(commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut window = Window::new(IN_FLIGHT_LIMIT);
    'outer: loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                if handler.commits_state() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'outer,
                        _ = window.drain(&consumer, None) => {}
                    }
                } else {
                    window.settle(&consumer);
                }
                handler.before_commit(false).await;
                commit(&consumer, CommitMode::Async, &metrics);
                handler.tick();
                continue;
            }
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut backoff = Duration::from_millis(50);
        let handled = loop {
            match handler.handle(&msg).await {
                Ok(h) => break h,
                Err(e) => {
                    stats.retries += 1;
                    stuck_lag(&consumer, &msg, &metrics).await;
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), error = %e, "record not handled yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'outer,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        // Handled: its offset moves now, or once its outputs have landed.
        let wait = match handled {
            Handled::Done => None,
            Handled::InFlight(task) => Some(task),
        };
        window.handled(&consumer, &msg, wait);
        stats.handled += 1;
        tokio::select! {
            _ = shutdown.cancelled() => break 'outer,
            _ = window.make_room(&consumer) => {}
        }
    }
    handler.tick();
    if window.drain(&consumer, Some(SHUTDOWN_PATIENCE)).await {
        handler.before_commit(true).await;
    } else {
        tracing::warn!("state changelog not written at shutdown: some outputs never landed");
    }
    commit(&consumer, CommitMode::Sync, &metrics);
    consumer.unsubscribe();
    stats
}

/// The lag behind a record the loop keeps retrying. librdkafka's
/// statistics, which feed the gauge otherwise, are served only while the
/// consumer is polled, so a stuck loop would go on showing its last figure
/// (often 0) just when the lag matters. Asks the broker for the high
/// watermark (the loop is waiting out a backoff anyway).
async fn stuck_lag(consumer: &Arc<IngestConsumer>, msg: &BorrowedMessage<'_>, metrics: &Metrics) {
    let (c, topic, partition) = (consumer.clone(), msg.topic().to_owned(), msg.partition());
    let high = tokio::task::spawn_blocking(move || {
        c.fetch_watermarks(&topic, partition, Duration::from_secs(1))
    })
    .await;
    if let Ok(Ok((_, high))) = high {
        metrics
            .consumer_lag
            .with_label_values(&[msg.topic(), &partition.to_string()])
            .set((high - msg.offset()).max(1));
    }
}

fn commit(consumer: &IngestConsumer, mode: CommitMode, metrics: &Metrics) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) => metrics.commits.with_label_values(&["ok"]).inc(),
        // NoOffset: nothing new was stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(e) => {
            metrics.commits.with_label_values(&["error"]).inc();
            tracing::warn!(error = %e, "offset commit failed; will retry on the next tick");
        }
    }
}
