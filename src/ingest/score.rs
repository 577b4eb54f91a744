//! The scoring consumer's handler: telemetry record → verdict → (when a
//! token escalates) a decision in the decision log. Malformed records go to
//! the dead-letter topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio::sync::mpsc;

use super::consumer::{Handler, Transient};
use super::deadletter;
use crate::detect::{explain, Action, Detector};
use crate::metrics::Metrics;
use crate::respond::Decision;
use crate::telemetry::Event;

pub struct ScoringHandler {
    detector: Detector,
    producer: FutureProducer,
    deadletter_topic: String,
    decisions_topic: String,
    metrics: Arc<Metrics>,
    /// A decision made but not yet acknowledged by the broker, with the
    /// record it came from. The detector has already escalated the token, so
    /// a retry must resend this decision rather than score the record again.
    pending: Option<((i32, i64), Decision)>,
    /// Decisions as they are logged (the demo prints them).
    observer: Option<mpsc::UnboundedSender<Decision>>,
    since_stats: u32,
}

impl ScoringHandler {
    pub fn new(
        detector: Detector,
        producer: FutureProducer,
        deadletter_topic: String,
        decisions_topic: String,
        metrics: Arc<Metrics>,
        observer: Option<mpsc::UnboundedSender<Decision>>,
    ) -> ScoringHandler {
        ScoringHandler {
            detector,
            producer,
            deadletter_topic,
            decisions_topic,
            metrics,
            pending: None,
            observer,
            since_stats: 0,
        }
    }

    async fn publish(&self, d: &Decision) -> Result<(), Transient> {
        let payload = serde_json::to_vec(d).expect("decision serialises");
        let record = FutureRecord::to(&self.decisions_topic)
            .key(d.token_id.as_bytes())
            .payload(&payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| Transient(format!("decision log: {e}")))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Handler for ScoringHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), Transient> {
        let at = (msg.partition(), msg.offset());
        if let Some((pos, d)) = &self.pending {
            if *pos == at {
                self.publish(d).await?;
                self.metrics
                    .decisions_published
                    .with_label_values(&[d.action.as_str()])
                    .inc();
                let (_, d) = self.pending.take().expect("checked above");
                if let Some(o) = &self.observer {
                    let _ = o.send(d);
                }
                return Ok(());
            }
        }
        let start = Instant::now();
        let payload = msg.payload().unwrap_or_default();
        let event = match Event::parse(payload) {
            Ok(e) => e,
            Err(e) => {
                let reason = e.reason();
                deadletter::publish(
                    &self.producer,
                    &self.deadletter_topic,
                    msg,
                    reason,
                    &e.to_string(),
                )
                .await
                .map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
                self.metrics
                    .events_rejected
                    .with_label_values(&[reason])
                    .inc();
                self.metrics.deadletters.with_label_values(&[reason]).inc();
                tracing::debug!(
                    partition = at.0,
                    offset = at.1,
                    reason,
                    "record dead-lettered"
                );
                return Ok(());
            }
        };
        let verdict = self.detector.observe(&event);
        let m = &self.metrics;
        m.events_consumed.inc();
        m.verdicts
            .with_label_values(&[verdict.action.as_str()])
            .inc();
        m.score.observe(f64::from(verdict.score.score));
        m.detection_latency_seconds
            .observe(((now_ms() - event.ts_ms).max(0) as f64) / 1000.0);
        if verdict.escalated && verdict.action != Action::None {
            let decision = {
                let geo = self.detector.geo().load();
                let model = self.detector.model().load();
                let expl = explain(&verdict, event.ip, &geo.db);
                Decision::from_explained(&event, &verdict, &expl, model.version(), now_ms())
            };
            let reason = decision.rule.as_deref().unwrap_or("model");
            m.tokens_flagged
                .with_label_values(&[verdict.action.as_str(), reason])
                .inc();
            tracing::info!(
                token_id = %decision.token_id,
                action = verdict.action.as_str(),
                score = verdict.score.score,
                why = %decision.explanation,
                "token flagged"
            );
            self.pending = Some((at, decision));
            m.processing_seconds.observe(start.elapsed().as_secs_f64());
            let (_, d) = self.pending.as_ref().expect("just set");
            self.publish(d).await?;
            m.decisions_published
                .with_label_values(&[verdict.action.as_str()])
                .inc();
            let (_, d) = self.pending.take().expect("just set");
            if let Some(o) = &self.observer {
                let _ = o.send(d);
            }
        } else {
            m.processing_seconds.observe(start.elapsed().as_secs_f64());
        }
        self.since_stats += 1;
        if self.since_stats >= 256 {
            self.tick();
        }
        Ok(())
    }

    fn tick(&mut self) {
        self.since_stats = 0;
        self.metrics.observe_detector(self.detector.stats());
    }
}
