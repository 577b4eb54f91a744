//! Follows the compacted denylist topic into the in-memory set, which is
//! marked ready once the topic has been read up to where it ended at
//! start-up (until then the edge check answers 503).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::compacted::{self, Apply};
use crate::clock::now_ms;
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::respond::{DenyEntry, Denylist};

struct Set {
    set: Arc<Denylist>,
    metrics: Arc<Metrics>,
}

impl Apply for Set {
    fn record(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let Some(token_id) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        match payload {
            None => self.set.remove(token_id),
            Some(p) => match serde_json::from_slice::<DenyEntry>(p) {
                Ok(e) => self.set.insert(&e),
                Err(e) => {
                    tracing::warn!(error = %e, partition, offset, "denylist entry unreadable, skipped")
                }
            },
        }
        self.metrics.denylist_entries.set(self.set.len() as i64);
    }

    fn caught_up(&mut self) {
        tracing::info!(entries = self.set.len(), "denylist loaded");
        self.set.mark_ready();
    }

    fn tick(&mut self) {
        self.set.prune(now_ms());
        self.metrics.denylist_entries.set(self.set.len() as i64);
    }
}

/// Reads `topic` into `set` until `shutdown`.
pub async fn follow(
    k: KafkaConfig,
    topic: String,
    set: Arc<Denylist>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    compacted::follow(k, "denylist", topic, Set { set, metrics }, shutdown).await
}
