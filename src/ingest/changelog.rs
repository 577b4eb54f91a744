//! The state changelog: per-token state follows its partition across
//! instances. The scoring consumer writes the state of every token it
//! touched to a compacted topic (`kafka.state_topic`) just before each
//! offset commit, into the partition of the telemetry record it came from.
//! An instance that is newly assigned a telemetry partition first reads that
//! partition of the changelog back, so a detection that spans a failover
//! (first request on A, the impossible second on B after A died) is still
//! made.
//!
//! Best effort by design: writes are acknowledged in the background, and a
//! failed one is counted and retried at the next commit but never holds
//! offsets back, so the changelog can lag the telemetry by about one commit
//! interval but never stops the consumer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::decide;
use crate::decide::SharedDetector;
use crate::features::TokenState;
use crate::metrics::Metrics;
use crate::telemetry::TokenKey;

/// Token keys are already uniform hashes: fold, don't hash again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A batch's outcome: how many were acknowledged, and which failed.
type Acked = (usize, Vec<(TokenKey, i32)>);

/// One changelog record's value.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The token key, hex (also the record key, for compaction).
    key: String,
    state: TokenState,
}

pub struct Changelog {
    topic: String,
    partitions: i32,
    producer: FutureProducer,
    /// Settings for the short-lived consumer that reads a partition back.
    reader: ClientConfig,
    /// Tokens touched since the last write, with the telemetry partition
    /// they came from.
    dirty: HashMap<TokenKey, i32, BuildHasherDefault<KeyHasher>>,
    /// Telemetry partitions whose state has been read back since the last
    /// rebalance (a handful: a scan beats hashing).
    restored: Vec<i32>,
    generation: u64,
    /// The batch being acknowledged: resolves to the tokens that failed.
    inflight: Option<tokio::task::JoinHandle<Acked>>,
}

impl Changelog {
    /// `partitions`: the changelog topic's partition count (telemetry
    /// partition p maps to p mod that count, so a mismatch costs memory,
    /// not correctness).
    pub fn new(
        topic: String,
        partitions: i32,
        producer: FutureProducer,
        reader: ClientConfig,
    ) -> Changelog {
        Changelog {
            topic,
            partitions: partitions.max(1),
            producer,
            reader,
            dirty: HashMap::default(),
            restored: Vec::new(),
            generation: 0,
            inflight: None,
        }
    }

    pub fn touched(&mut self, key: TokenKey, partition: i32) {
        self.dirty.insert(key, partition);
    }

    /// Reads `partition`'s changelog into the detector if it has not been
    /// since the rebalance numbered `generation`.
    pub async fn ensure_restored(
        &mut self,
        partition: i32,
        generation: u64,
        detector: &SharedDetector,
        metrics: &Metrics,
    ) {
        if generation != self.generation {
            self.generation = generation;
            self.restored.clear();
        }
        if self.restored.contains(&partition) {
            return;
        }
        self.restored.push(partition);
        let p = partition % self.partitions;
        match self.read_back(p, detector).await {
            Ok((read, taken)) => {
                metrics.state_restored.inc_by(taken as u64);
                tracing::info!(
                    topic = %self.topic,
                    partition = p,
                    read,
                    taken,
                    "token state restored from the changelog"
                );
            }
            Err(e) => {
                metrics
                    .state_writes
                    .with_label_values(&["restore_error"])
                    .inc();
                tracing::warn!(topic = %self.topic, partition = p, error = %e, "cannot read the state changelog; tokens of this partition start afresh");
            }
        }
    }

    async fn read_back(
        &self,
        partition: i32,
        detector: &SharedDetector,
    ) -> Result<(usize, usize), rdkafka::error::KafkaError> {
        let consumer: StreamConsumer = self.reader.create()?;
        let (topic, reader) = (self.topic.clone(), consumer);
        // Watermarks are a blocking call.
        let (low, high, reader) = tokio::task::spawn_blocking(move || {
            let w = reader.fetch_watermarks(&topic, partition, Duration::from_secs(5));
            w.map(|(l, h)| (l, h, reader))
        })
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        if high <= low {
            return Ok((0, 0));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Beginning)?;
        reader.assign(&tpl)?;
        let (mut read, mut taken) = (0, 0);
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), reader.recv())
                .await
                .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
            read += 1;
            if let Some(e) = msg
                .payload()
                .and_then(|p| serde_json::from_slice::<Entry>(p).ok())
            {
                if let Ok(key) = u128::from_str_radix(&e.key, 16) {
                    taken += usize::from(decide::lock(detector).restore(key, e.state));
                }
            }
            if msg.offset() + 1 >= high {
                return Ok((read, taken));
            }
        }
    }

    /// Writes the state of every token touched since the last call. The
    /// sends are acknowledged in the background: the previous batch's
    /// failures are counted, and their tokens marked dirty again, here.
    pub async fn write(&mut self, detector: &SharedDetector, metrics: &Metrics) {
        self.flush(metrics).await;
        if self.dirty.is_empty() {
            return;
        }
        let batch: Vec<(TokenKey, i32, Vec<u8>)> = {
            let d = decide::lock(detector);
            self.dirty
                .drain()
                .filter_map(|(key, partition)| {
                    let state = *d.state(&key)?;
                    let entry = Entry {
                        key: format!("{key:032x}"),
                        state,
                    };
                    Some((key, partition, serde_json::to_vec(&entry).ok()?))
                })
                .collect()
        };
        let (producer, topic, partitions) =
            (self.producer.clone(), self.topic.clone(), self.partitions);
        self.inflight = Some(tokio::spawn(async move {
            let sends = batch.iter().map(|(key, partition, value)| {
                let k = format!("{key:032x}");
                let (producer, topic) = (&producer, &topic);
                async move {
                    producer
                        .send(
                            FutureRecord::to(topic)
                                .key(&k)
                                .payload(value)
                                .partition(partition % partitions),
                            Duration::from_secs(5),
                        )
                        .await
                        .is_ok()
                }
            });
            let results = futures::future::join_all(sends).await;
            let failed: Vec<(TokenKey, i32)> = batch
                .iter()
                .zip(&results)
                .filter(|(_, ok)| !**ok)
                .map(|((key, partition, _), _)| (*key, *partition))
                .collect();
            (batch.len() - failed.len(), failed)
        }));
    }

    /// Waits for the batch in flight; counts it and marks its failures
    /// dirty again.
    pub async fn flush(&mut self, metrics: &Metrics) {
        let Some(previous) = self.inflight.take() else {
            return;
        };
        let (ok, failed) = previous.await.unwrap_or_default();
        metrics
            .state_writes
            .with_label_values(&["ok"])
            .inc_by(ok as u64);
        if !failed.is_empty() {
            metrics
                .state_writes
                .with_label_values(&["error"])
                .inc_by(failed.len() as u64);
            tracing::warn!(topic = %self.topic, failed = failed.len(), "state changelog writes failed; retried at the next commit");
            self.dirty.extend(failed);
        }
    }
}

/// A changelog topic's partition count, or None (with the reason logged)
/// when it cannot be used; `what` names the feature it disables.
pub async fn partitions(cfg: ClientConfig, topic: String, what: &'static str) -> Option<i32> {
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = match cfg.create() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "{what} disabled");
                return None;
            }
        };
        match consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
            Ok(md) => {
                let n = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len() as i32);
                if n == 0 {
                    tracing::warn!(%topic, "topic missing: {what} disabled");
                    None
                } else {
                    Some(n)
                }
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "{what} disabled");
                None
            }
        }
    })
    .await
    .ok()
    .flatten()
}
