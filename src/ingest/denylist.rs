//! Follows the compacted denylist topic into the in-memory set. Every
//! instance reads every partition from the beginning (no consumer group
//! share: each edge check must see every revoked token), and the set is
//! marked ready once the topic has been read up to where it ended at
//! start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::respond::{DenyEntry, Denylist};

/// Reads `topic` into `set` until `shutdown`. Retries while the topic
/// cannot be read (missing, broker down); the set stays not-ready
/// meanwhile.
pub async fn follow(
    k: KafkaConfig,
    topic: String,
    set: Arc<Denylist>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // A group id is required by the client; nothing is joined or committed.
    let group = format!("{}.denylist.{}", k.group_id, std::process::id());
    let mut delay = Duration::from_millis(200);
    loop {
        match follow_once(&k, &group, &topic, &set, &metrics, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, %topic, "denylist topic not readable yet; the edge check answers 503 until it is");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn follow_once(
    k: &KafkaConfig,
    group: &str,
    topic: &str,
    set: &Denylist,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = super::consumer_config(k, group).create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    // Where each partition ended at start-up: ready once read up to there.
    let mut behind: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > low {
            behind.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    if behind.is_empty() {
        set.mark_ready();
    }
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = prune.tick() => {
                set.prune(now_ms());
                metrics.denylist_entries.set(set.len() as i64);
            }
            m = consumer.recv() => {
                let m = m?;
                let Some(token_id) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                match m.payload() {
                    None => set.remove(token_id),
                    Some(p) => match serde_json::from_slice::<DenyEntry>(p) {
                        Ok(e) => set.insert(&e),
                        Err(e) => tracing::warn!(error = %e, partition = m.partition(), offset = m.offset(), "denylist entry unreadable, skipped"),
                    },
                }
                metrics.denylist_entries.set(set.len() as i64);
                if let Some(&high) = behind.get(&m.partition()) {
                    if m.offset() + 1 >= high {
                        behind.remove(&m.partition());
                        if behind.is_empty() {
                            tracing::info!(entries = set.len(), "denylist loaded");
                            set.mark_ready();
                        }
                    }
                }
            }
        }
    }
}
