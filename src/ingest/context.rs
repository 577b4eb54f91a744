//! Consumer callbacks: commit what is done before partitions are taken away,
//! and tell readiness whether this instance holds an assignment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};

/// What `/readyz` reports: ready once the consumer has partitions and the
/// model is loaded.
#[derive(Debug, Default)]
pub struct Readiness {
    pub assigned: AtomicBool,
    pub model_loaded: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && self.model_loaded.load(Ordering::Acquire)
    }
}

pub struct IngestContext {
    pub readiness: Option<Arc<Readiness>>,
    pub name: &'static str,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Offsets stored so far are of fully handled records: commit
            // them before another instance takes these partitions over.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    consumer = self.name,
                    partitions = tpl.count(),
                    "committed before revoke"
                ),
                Err(e) => {
                    tracing::debug!(consumer = self.name, error = %e, "nothing to commit before revoke")
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(r) = &self.readiness {
            let held = consumer
                .assignment()
                .map(|a| a.count() > 0)
                .unwrap_or(false);
            let assigned = matches!(rebalance, Rebalance::Assign(tpl) if tpl.count() > 0) || held;
            r.assigned.store(assigned, Ordering::Release);
        }
        let (kind, n) = match rebalance {
            Rebalance::Assign(tpl) => ("assign", tpl.count()),
            Rebalance::Revoke(tpl) => ("revoke", tpl.count()),
            Rebalance::Error(_) => ("error", 0),
        };
        tracing::info!(consumer = self.name, kind, partitions = n, "rebalance");
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(consumer = self.name, error = %e, "commit");
        }
    }
}
