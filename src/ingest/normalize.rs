//! The normalize stage's handler: one raw gateway record → one telemetry
//! record on the telemetry topic, keyed by token id, the raw token gone (or
//! sealed). The raw offset moves only once the broker has the telemetry
//! record (the loop reads on while records are in flight); a record that
//! cannot be read is dead-lettered, its credential fields removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use super::consumer::{Handled, Handler, Transient};
use super::deadletter;
use super::kafka::until_delivered;
use crate::gateway::Normalizer;
use crate::metrics::Metrics;

pub struct NormalizeHandler {
    gateways: HashMap<String, Normalizer>,
    producer: FutureProducer,
    // Shared with every record's delivery task: a count, not a copy.
    telemetry_topic: Arc<str>,
    deadletter_topic: String,
    metrics: Arc<Metrics>,
}

impl NormalizeHandler {
    pub fn new(
        gateways: HashMap<String, Normalizer>,
        producer: FutureProducer,
        telemetry_topic: String,
        deadletter_topic: String,
        metrics: Arc<Metrics>,
    ) -> NormalizeHandler {
        NormalizeHandler {
            gateways,
            producer,
            telemetry_topic: telemetry_topic.into(),
            deadletter_topic,
            metrics,
        }
    }
}

impl Handler for NormalizeHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        let start = Instant::now();
        let payload = msg.payload().unwrap_or_default();
        let Some(n) = self.gateways.get(msg.topic()) else {
            // Subscribed topics are exactly the configured inputs.
            return Err(Transient(format!("no adapter for topic {}", msg.topic())));
        };
        match n.normalize(payload) {
            Ok(t) => {
                let json = t.to_json();
                self.metrics
                    .normalize_seconds
                    .observe(start.elapsed().as_secs_f64());
                let record = FutureRecord::to(&self.telemetry_topic)
                    .key(t.token_id.as_bytes())
                    .payload(&json);
                let queued = self.producer.send_result(record).map_err(|(e, _)| e);
                let (producer, topic, metrics) = (
                    self.producer.clone(),
                    self.telemetry_topic.clone(),
                    self.metrics.clone(),
                );
                let key = t.token_id.into_owned();
                Ok(Handled::InFlight(tokio::spawn(async move {
                    let again = || {
                        producer
                            .send(
                                FutureRecord::to(&topic).key(key.as_bytes()).payload(&json),
                                Duration::from_secs(30),
                            )
                            .map(|r| r.map(|_| ()).map_err(|(e, _)| e))
                    };
                    until_delivered(queued, again, "telemetry").await;
                    metrics.records_normalized.inc();
                    true
                })))
            }
            Err(e) => {
                let reason = e.reason();
                let safe = n.redact(payload);
                deadletter::publish_payload(
                    &self.producer,
                    &self.deadletter_topic,
                    msg,
                    &safe,
                    reason,
                    &e.to_string(),
                )
                .await
                .map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
                self.metrics
                    .normalize_rejected
                    .with_label_values(&[reason])
                    .inc();
                self.metrics.deadletters.with_label_values(&[reason]).inc();
                Ok(Handled::Done)
            }
        }
    }
}
