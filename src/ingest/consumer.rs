//! The at-least-once consumer loop shared by the scoring and revoking
//! consumers.
//!
//! Invariant: an offset is stored only after its record's handler returned
//! Ok — every output it produced (dead letter, decision, revocation) is
//! acknowledged. Stored offsets are committed on a timer, before partitions
//! are revoked, and at shutdown. A crash replays at most the uncommitted
//! tail; handlers are idempotent, so a replay is harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use super::context::IngestContext;
use crate::metrics::Metrics;

/// A handler failed in a way that retrying the same record may fix (the
/// broker is down, the IdP is unreachable). The loop retries with backoff
/// and never skips the record.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

pub trait Handler: Send {
    /// Handles one record fully. Ok means every output is acknowledged.
    fn handle(
        &mut self,
        msg: &BorrowedMessage<'_>,
    ) -> impl Future<Output = Result<(), Transient>> + Send;

    /// Called between records and on the commit timer (metrics, expiry).
    fn tick(&mut self) {}

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
    'outer: loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
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
        loop {
            match handler.handle(&msg).await {
                Ok(()) => break,
                Err(e) => {
                    stats.retries += 1;
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), error = %e, "record not handled yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'outer,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        // The record is fully handled: only now may its offset move.
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "cannot store offset (partition revoked?); the record will be redelivered");
        }
        stats.handled += 1;
    }
    handler.tick();
    handler.before_commit(true).await;
    commit(&consumer, CommitMode::Sync, &metrics);
    consumer.unsubscribe();
    stats
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
