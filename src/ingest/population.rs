//! The population tables (shared egress, each subject's familiar places,
//! the rate baseline) in a compacted topic (`kafka.population_topic`), so a
//! restart starts from what the fleet had learned instead of cold, and every
//! instance learns from every partition, not only its own.
//!
//! Written at each offset commit, after the records before it are scored,
//! and acknowledged before the offsets are committed: what a restart reads
//! back covers at least every record it will not read again. Every instance
//! follows the whole topic and merges what the others wrote (a union: see
//! `features/population_sync.rs`); until it has read it to its end, scoring
//! waits, as it would otherwise score against empty tables.
//!
//! The topic is an input like any other: a record that does not parse or
//! that no instance would write is refused and counted. Who may write it is
//! a matter of ACLs, as for the state changelog (docs/security.md).

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::compacted::{self, Apply};
use crate::config::KafkaConfig;
use crate::decide::{self, SharedDetector};
use crate::features::PopulationRecord;
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;

/// A record as the topic carries it: which instance wrote it (its own are
/// not merged back), and the entry.
#[derive(Serialize, Deserialize)]
struct Envelope {
    instance: String,
    #[serde(flatten)]
    record: PopulationRecord,
}

/// Writes this instance's changes.
pub struct PopulationLog {
    writer: TopicWriter,
    instance: String,
}

impl PopulationLog {
    /// A writer, and the follower that must run beside it (same instance).
    pub fn new(
        writer: TopicWriter,
        detector: SharedDetector,
        metrics: std::sync::Arc<Metrics>,
    ) -> (PopulationLog, Follower) {
        let instance = format!("{:016x}", rand::random::<u64>());
        decide::lock(&detector).population_mut().track_changes();
        let (loaded, _) = watch::channel(false);
        let follower = Follower {
            detector,
            instance: instance.clone(),
            metrics,
            loaded,
            seeding: true,
        };
        (PopulationLog { writer, instance }, follower)
    }

    /// Writes every entry changed since the last call and waits for the
    /// broker. One that did not land is marked changed again, for the next
    /// commit.
    pub async fn write(&self, detector: &SharedDetector, metrics: &Metrics) {
        let records = decide::lock(detector).population_mut().take_changes();
        if records.is_empty() {
            return;
        }
        let sends = records.iter().map(|record| async move {
            let key = record.key();
            let env = Envelope {
                instance: self.instance.clone(),
                record: record.clone(),
            };
            let payload = serde_json::to_vec(&env).expect("a record serialises");
            self.writer.send(Some(key.as_bytes()), &payload).await
        });
        let results = join_all(sends).await;
        let mut failed = 0;
        {
            let mut d = decide::lock(detector);
            for (record, r) in records.iter().zip(&results) {
                if r.is_err() {
                    failed += 1;
                    d.population_mut().mark_changed(record);
                }
            }
        }
        let c = &metrics.population_records;
        c.with_label_values(&["written"])
            .inc_by((records.len() - failed) as u64);
        if failed > 0 {
            c.with_label_values(&["write_error"]).inc_by(failed as u64);
            tracing::warn!(
                topic = self.writer.topic(),
                failed,
                "population records not written; retried at the next commit"
            );
        }
    }
}

/// Merges what the fleet (and this instance before a restart) wrote.
pub struct Follower {
    detector: SharedDetector,
    instance: String,
    metrics: std::sync::Arc<Metrics>,
    loaded: watch::Sender<bool>,
    /// Still reading the topic at start: the rate baseline is taken too.
    seeding: bool,
}

impl Follower {
    /// Resolves true once the topic has been read to its end.
    pub fn loaded(&self) -> watch::Receiver<bool> {
        self.loaded.subscribe()
    }
}

impl Apply for Follower {
    fn record(&mut self, _key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let Some(payload) = payload else { return };
        let refuse = |why: &str| {
            self.metrics
                .population_records
                .with_label_values(&["refused"])
                .inc();
            tracing::warn!(partition, offset, error = why, "population record refused");
        };
        let env: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => return refuse(&e.to_string()),
        };
        if env.instance == self.instance {
            return;
        }
        let merged = decide::lock(&self.detector)
            .population_mut()
            .merge(&env.record, self.seeding);
        match merged {
            Ok(()) => self
                .metrics
                .population_records
                .with_label_values(&["applied"])
                .inc(),
            Err(e) => refuse(&e.to_string()),
        }
    }

    fn caught_up(&mut self) {
        self.seeding = false;
        tracing::info!("population tables loaded");
        self.loaded.send_replace(true);
    }
}

/// Reads `topic` into the detector's population tables until `shutdown`.
pub async fn follow(k: KafkaConfig, topic: String, f: Follower, shutdown: CancellationToken) {
    compacted::follow(k, "population", topic, f, shutdown).await
}
