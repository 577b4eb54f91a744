//! Follows a compacted topic from its beginning into memory: every instance
//! reads every partition (no consumer-group share, nothing committed), and
//! the reader is told once the topic has been read up to where it ended at
//! start-up. The denylist and the control plane are read this way; the
//! audit topic too, from its last records only (`follow_tail`).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;

/// What a follower does with the topic.
pub trait Apply: Send {
    /// One record; `payload` None is a tombstone.
    fn record(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64);
    /// The topic has been read up to where it ended at start-up.
    fn caught_up(&mut self);
    /// Every minute (expiry).
    fn tick(&mut self) {}
}

/// Reads `topic` into `apply` until `shutdown`. Retries while the topic
/// cannot be read (missing, broker down); `caught_up` waits meanwhile.
pub async fn follow<A: Apply>(
    k: KafkaConfig,
    what: &'static str,
    topic: String,
    apply: A,
    shutdown: CancellationToken,
) {
    follow_from(k, what, topic, None, apply, shutdown).await
}

/// The same from the last `last` records of each partition on.
pub async fn follow_tail<A: Apply>(
    k: KafkaConfig,
    what: &'static str,
    topic: String,
    last: i64,
    apply: A,
    shutdown: CancellationToken,
) {
    follow_from(k, what, topic, Some(last), apply, shutdown).await
}

async fn follow_from<A: Apply>(
    k: KafkaConfig,
    what: &'static str,
    topic: String,
    last: Option<i64>,
    mut apply: A,
    shutdown: CancellationToken,
) {
    // A group id is required by the client; nothing is joined or committed.
    let group = format!("{}.{what}.{}", k.group_id, std::process::id());
    let mut delay = Duration::from_millis(200);
    loop {
        match follow_once(&k, &group, &topic, last, &mut apply, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, %topic, what, "topic not readable yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn follow_once<A: Apply>(
    k: &KafkaConfig,
    group: &str,
    topic: &str,
    last: Option<i64>,
    apply: &mut A,
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
    // Where each partition ended at start-up: caught up once read to there.
    let mut behind: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > low {
            behind.insert(p, high);
        }
        let start = match last {
            Some(n) => Offset::Offset(low.max(high - n)),
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, p, start)?;
    }
    consumer.assign(&tpl)?;
    if behind.is_empty() {
        apply.caught_up();
    }
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => apply.tick(),
            m = consumer.recv() => {
                let m = m?;
                apply.record(m.key(), m.payload(), m.partition(), m.offset());
                if let Some(&high) = behind.get(&m.partition()) {
                    if m.offset() + 1 >= high {
                        behind.remove(&m.partition());
                        if behind.is_empty() {
                            apply.caught_up();
                        }
                    }
                }
            }
        }
    }
}
