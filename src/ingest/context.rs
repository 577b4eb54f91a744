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
    /// Set when a state changelog is written at each commit: partitions
    /// taken away are then not committed first (see `pre_rebalance`).
    pub changelog: AtomicBool,
    /// The issuer's keys (`gateway.jwks_url`) have not loaded yet: JWTs
    /// would be known by their keyed hash rather than their `jti`.
    pub jwks_pending: AtomicBool,
    /// The fleet's control topic has not been read to its end: the mode
    /// and brake in force are not known yet (revocations wait too).
    pub control_pending: AtomicBool,
    /// Set on the edge role, whose only job is the denylist: not ready
    /// until it has been read to its end.
    pub denylist: std::sync::OnceLock<Arc<crate::respond::Denylist>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
            && self.model_loaded.load(Ordering::Acquire)
            && !self.jwks_pending.load(Ordering::Acquire)
            && !self.control_pending.load(Ordering::Acquire)
            && self.denylist.get().is_none_or(|d| d.is_ready())
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
    #[serde(default = "unknown")]
    hi_offset: i64,
    #[serde(default = "unknown")]
    lo_offset: i64,
    #[serde(default = "unknown")]
    stored_offset: i64,
    #[serde(default = "unknown")]
    committed_offset: i64,
}

impl PartitionStats {
    /// Records not yet fully handled. librdkafka reports no lag (-1) until
    /// the group has stored or committed an offset, so a consumer stuck on
    /// its very first record would show none; tokenwatch reads from the
    /// earliest offset then, so everything from the low watermark is lag.
    fn lag(&self) -> Option<i64> {
        if self.consumer_lag_stored >= 0 {
            return Some(self.consumer_lag_stored);
        }
        let done = self.stored_offset.max(self.committed_offset);
        let from = if done >= 0 { done } else { self.lo_offset };
        (self.hi_offset >= 0 && from >= 0).then(|| (self.hi_offset - from).max(0))
    }
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
                if *partition < 0 || !p.desired {
                    continue;
                }
                let Some(lag) = p.lag() else { continue };
                m.consumer_lag
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set(lag);
            }
        }
    }
}

impl IngestContext {
    /// Drops the lag series of partitions this instance no longer reads:
    /// another instance reports them now, and a stale series would make
    /// `sum by (topic)` (the lag alert, an autoscaler) count them twice.
    fn forget_lag(&self, revoked: &TopicPartitionList) {
        let Some(m) = &self.metrics else { return };
        for e in revoked.elements() {
            // Absent when no statistics arrived for it: nothing to drop.
            let _ = m
                .consumer_lag
                .remove_label_values(&[e.topic(), &e.partition().to_string()]);
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if self
                .readiness
                .as_ref()
                .is_some_and(|r| r.changelog.load(Ordering::Acquire))
            {
                // The changelog holds state up to the last commit. Committing
                // further now would hand the successor offsets past records
                // whose state it never gets; it re-scores them instead.
                tracing::info!(
                    consumer = self.name,
                    partitions = tpl.count(),
                    "not committing before revoke: the successor replays since the last commit"
                );
                return;
            }
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
            Rebalance::Revoke(tpl) => {
                self.forget_lag(tpl);
                ("revoke", tpl.count())
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partition_leaves_no_lag_series_behind() {
        let metrics = Arc::new(Metrics::new());
        let ctx = IngestContext {
            readiness: None,
            name: "score",
            metrics: Some(metrics.clone()),
        };
        for p in ["0", "1"] {
            metrics.consumer_lag.with_label_values(&["t", p]).set(5);
        }
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("t", 1);
        ctx.forget_lag(&revoked);
        let text = metrics.render();
        assert!(
            text.contains(r#"tokenwatch_consumer_lag_messages{partition="0",topic="t"} 5"#),
            "{text}"
        );
        assert!(!text.contains(r#"partition="1""#), "{text}");
    }

    fn stats(lag: i64, hi: i64, lo: i64, stored: i64, committed: i64) -> PartitionStats {
        PartitionStats {
            desired: true,
            consumer_lag_stored: lag,
            hi_offset: hi,
            lo_offset: lo,
            stored_offset: stored,
            committed_offset: committed,
        }
    }

    #[test]
    fn lag_counts_from_what_is_handled_or_from_the_start() {
        assert_eq!(
            stats(7, 10, 0, 3, 2).lag(),
            Some(7),
            "librdkafka's own figure"
        );
        // Nothing stored or committed yet: everything from the low mark.
        assert_eq!(stats(-1, 6, 0, -1001, -1001).lag(), Some(6));
        assert_eq!(stats(-1, 6, 2, -1001, 4).lag(), Some(2));
        assert_eq!(
            stats(-1, -1, 0, -1001, -1001).lag(),
            None,
            "no watermark yet"
        );
    }
}
