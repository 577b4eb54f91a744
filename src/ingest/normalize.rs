//! The normalize stage's handler: one raw gateway record → one telemetry
//! record on the telemetry topic, keyed by token id, the raw token gone (or
//! sealed). The raw offset moves only once the broker has the telemetry
//! record (the loop reads on while records are in flight); a record that
//! cannot be read is dead-lettered, its credential fields removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

use super::consumer::{Handled, Handler, Transient};
use super::deadletter;
use crate::clock::now_ms;
use crate::gateway::{GatewayError, Normalizer};
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::telemetry::{check_not_future, Event};

pub struct NormalizeHandler {
    gateways: HashMap<String, Normalizer>,
    telemetry: TopicWriter,
    deadletters: TopicWriter,
    metrics: Arc<Metrics>,
    /// `detect.max_clock_skew`: later event times are dead-lettered here,
    /// at the first hop.
    max_skew_ms: i64,
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
            telemetry: TopicWriter::new(producer.clone(), telemetry_topic),
            deadletters: TopicWriter::new(producer, deadletter_topic),
            metrics,
            max_skew_ms: crate::detect::DetectorParams::default().max_clock_skew_ms,
        }
    }

    pub fn with_max_clock_skew_ms(mut self, ms: i64) -> NormalizeHandler {
        self.max_skew_ms = ms;
        self
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
        let normalized = n.normalize_all(payload).and_then(|t| {
            check_not_future(t.event.ts_ms, now_ms(), self.max_skew_ms)
                .map(|()| t)
                .map_err(|_| GatewayError::Future)
        });
        match normalized {
            Ok(t) => {
                // A request carrying several bearer tokens is the traffic of
                // each, keyed by each.
                let deliver = |e: Event<'_>| {
                    let json = e.to_json();
                    self.telemetry
                        .deliver(e.token_id.as_bytes().to_vec(), json, "telemetry")
                };
                let first = deliver(t.event);
                // Empty, and so no allocation, for the usual request.
                let more: Vec<_> = t.others.into_iter().map(deliver).collect();
                self.metrics
                    .normalize_seconds
                    .observe(start.elapsed().as_secs_f64());
                let metrics = self.metrics.clone();
                Ok(Handled::InFlight(tokio::spawn(async move {
                    first.await;
                    for d in more {
                        d.await;
                    }
                    metrics.records_normalized.inc();
                    true
                })))
            }
            Err(e) => {
                let reason = e.reason();
                let safe = n.redact(payload);
                deadletter::publish_payload(&self.deadletters, msg, &safe, reason, &e.to_string())
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
