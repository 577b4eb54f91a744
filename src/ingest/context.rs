//! Consumer callbacks: commit what is done before partitions are taken away,
//! and tell readiness whether this instance holds an assignment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::metrics::Metrics;

/// What `/readyz` reports: ready once the consumer has partitions and the
/// model is loaded.
#[derive(Debug, Default)]
pub struct Readiness {
    pub assigned: AtomicBool,
    pub model_loaded: AtomicBool,
    /// Bumped on every rebalance: per-partition work done since (the state
    /// restore) is done again for partitions that come back.
    pub rebalances: std::sync::atomic::AtomicU64,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && self.model_loaded.load(Ordering::Acquire)
    }
}

pub struct IngestContext {
    pub readiness: Option<Arc<Readiness>>,
    pub name: &'static str,
    /// Where librdkafka's periodic statistics land (consumer lag).
    pub metrics: Option<Arc<Metrics>>,
}

/// The part of librdkafka's statistics JSON tokenwatch reads. Parsed here
/// rather than through `rdkafka::statistics::Statistics`, whose typed topic
/// map comes back empty with the bundled librdkafka.
#[derive(serde::Deserialize)]
struct Stats {
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStats>,
}

#[derive(serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: std::collections::HashMap<i32, PartitionStats>,
}

#[derive(serde::Deserialize)]
struct PartitionStats {
    #[serde(default)]
    desired: bool,
    #[serde(default = "unknown")]
    consumer_lag_stored: i64,
}

fn unknown() -> i64 {
    -1
}

impl ClientContext for IngestContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): export the
    /// lag of each assigned partition behind its high watermark, counted
    /// from the stored offset, i.e. records not yet fully handled.
    fn stats_raw(&self, statistics: &[u8]) {
        let Some(m) = &self.metrics else { return };
        let Ok(stats) = serde_json::from_slice::<Stats>(statistics) else {
            tracing::debug!(consumer = self.name, "unreadable librdkafka statistics");
            return;
        };
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired || p.consumer_lag_stored < 0 {
                    continue;
                }
                m.consumer_lag
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set(p.consumer_lag_stored);
            }
        }
    }
}

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
            r.rebalances.fetch_add(1, Ordering::AcqRel);
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
