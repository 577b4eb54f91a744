//! The normalize stage's handler: one raw gateway record → one telemetry
//! record on the telemetry topic, keyed by token id, the raw token gone (or
//! sealed). The raw offset moves only once the broker has the telemetry
//! record; a record that cannot be read is dead-lettered, its credential
//! fields removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use super::consumer::{Handler, Transient};
use super::deadletter;
use crate::gateway::Normalizer;
use crate::metrics::Metrics;

pub struct NormalizeHandler {
    gateways: HashMap<String, Normalizer>,
    producer: FutureProducer,
    telemetry_topic: String,
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
            telemetry_topic,
            deadletter_topic,
            metrics,
        }
    }
}

impl Handler for NormalizeHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), Transient> {
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
                self.producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| Transient(format!("telemetry topic: {e}")))?;
                self.metrics.records_normalized.inc();
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
            }
        }
        Ok(())
    }
}
