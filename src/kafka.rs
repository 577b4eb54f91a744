//! The one way tokenwatch writes to a Kafka topic. Every producer (decision
//! log, dead letters, audit, denylist, alerts, normalized telemetry, the
//! simulator) goes through [`TopicWriter`], so the delivery timeout, the
//! wait for room in a full local queue, and the retry of an output nobody
//! else will retry are written once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// How long one send may wait for the broker before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a record may carry besides its key and payload.
#[derive(Default)]
pub struct Extra {
    pub headers: Option<OwnedHeaders>,
    /// Otherwise the producer's partitioner picks by key.
    pub partition: Option<i32>,
    /// Otherwise [`DELIVERY_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// One topic and the producer that writes to it. Cheap to clone.
#[derive(Clone)]
pub struct TopicWriter {
    producer: FutureProducer,
    topic: Arc<str>,
}

impl TopicWriter {
    pub fn new(producer: FutureProducer, topic: impl Into<Arc<str>>) -> TopicWriter {
        TopicWriter {
            producer,
            topic: topic.into(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn record<'a>(
        &'a self,
        key: Option<&'a [u8]>,
        payload: &'a [u8],
    ) -> FutureRecord<'a, [u8], [u8]> {
        let mut r = FutureRecord::to(&self.topic).payload(payload);
        if let Some(k) = key {
            r = r.key(k);
        }
        r
    }

    /// Queues the record in the producer now (so records keep the order
    /// they were written in); the future resolves once the broker has it.
    pub fn queue(&self, key: &[u8], payload: &[u8]) -> Result<DeliveryFuture, KafkaError> {
        self.producer
            .send_result(self.record(Some(key), payload))
            .map_err(|(e, _)| e)
    }

    /// Queues the record, waiting while the local queue is full: for bulk
    /// writers (the simulator, the demo) that must not drop a record.
    pub async fn queue_when_room(
        &self,
        key: &[u8],
        payload: &[u8],
    ) -> Result<DeliveryFuture, KafkaError> {
        let mut record = self.record(Some(key), payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Returns once the broker has the record, or with the error.
    pub async fn send(&self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), KafkaError> {
        self.send_with(key, payload, Extra::default())
            .await
            .map(|_| ())
    }

    /// Returns once the broker has the record, with where it landed
    /// (partition, offset).
    pub async fn send_with(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        extra: Extra,
    ) -> Result<(i32, i64), KafkaError> {
        let mut record = self.record(key, payload);
        if let Some(h) = extra.headers {
            record = record.headers(h);
        }
        if let Some(p) = extra.partition {
            record = record.partition(p);
        }
        self.producer
            .send(record, extra.timeout.unwrap_or(DELIVERY_TIMEOUT))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
    }

    /// Queues the record now and returns a future that sees it acknowledged,
    /// sending it again with backoff while it fails: for outputs left in
    /// flight while a consumer reads on, which nobody else will retry.
    pub fn deliver(
        &self,
        key: Vec<u8>,
        payload: Vec<u8>,
        what: &'static str,
    ) -> impl Future<Output = ()> + Send + 'static {
        let queued = self.queue(&key, &payload);
        let writer = self.clone();
        async move {
            until_delivered(queued, || writer.send(Some(&key), &payload), what).await;
        }
    }
}

/// Waits for a queued record's acknowledgement and, while it fails, sends
/// it `again` with backoff. Gives up only when its task is aborted.
pub async fn until_delivered<F, Fut>(
    queued: Result<DeliveryFuture, KafkaError>,
    mut again: F,
    what: &'static str,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), KafkaError>>,
{
    let mut result = match queued {
        Ok(delivery) => acknowledged(delivery).await,
        Err(e) => Err(e),
    };
    let mut backoff = Duration::from_millis(50);
    while let Err(error) = result {
        tracing::warn!(%error, topic = what, "not acknowledged yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
        result = again().await;
    }
}

/// The broker's answer to a queued record.
pub async fn acknowledged(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}
