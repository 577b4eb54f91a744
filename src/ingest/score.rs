//! The scoring consumer's handler: telemetry record → verdict → (when a
//! token escalates) a decision in the decision log. Malformed records go to
//! the dead-letter topic.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

use super::consumer::{Handler, Transient};
use super::deadletter;
use crate::clock::now_ms;
use crate::detect::{Explanation, Verdict};
use crate::metrics::Metrics;
use crate::respond::{self, Decision, Flagger, SharedDetector};
use crate::telemetry::Event;

pub struct ScoringHandler {
    detector: SharedDetector,
    producer: FutureProducer,
    deadletter_topic: String,
    flagger: Arc<Flagger>,
    metrics: Arc<Metrics>,
    /// A decision made but not yet acknowledged by the broker, with the
    /// record it came from. The detector has already escalated the token, so
    /// a retry must resend this decision rather than score the record again.
    pending: Option<Pending>,
    since_stats: u32,
}

struct Pending {
    at: (i32, i64),
    decision: Decision,
    verdict: Verdict,
    explanation: Explanation,
}

impl ScoringHandler {
    pub fn new(
        detector: SharedDetector,
        producer: FutureProducer,
        deadletter_topic: String,
        flagger: Arc<Flagger>,
        metrics: Arc<Metrics>,
    ) -> ScoringHandler {
        ScoringHandler {
            detector,
            producer,
            deadletter_topic,
            flagger,
            metrics,
            pending: None,
            since_stats: 0,
        }
    }

    async fn flag_pending(&mut self) -> Result<(), Transient> {
        let p = self.pending.as_ref().expect("caller checked");
        self.flagger
            .flag(&p.decision, &p.verdict, &p.explanation)
            .await
            .map_err(|e| Transient(format!("decision log: {e}")))?;
        self.pending = None;
        Ok(())
    }
}

impl Handler for ScoringHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), Transient> {
        let at = (msg.partition(), msg.offset());
        if self.pending.as_ref().is_some_and(|p| p.at == at) {
            return self.flag_pending().await;
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
        let scored = respond::score(&self.detector, &event, false);
        let verdict = scored.verdict;
        let m = &self.metrics;
        m.events_consumed.inc();
        m.verdicts
            .with_label_values(&[verdict.action.as_str()])
            .inc();
        m.score.observe(f64::from(verdict.score.score));
        m.detection_latency_seconds
            .observe(((now_ms() - event.ts_ms).max(0) as f64) / 1000.0);
        m.processing_seconds.observe(start.elapsed().as_secs_f64());
        if let (Some(decision), Some(explanation)) = (scored.decision, scored.explanation) {
            self.pending = Some(Pending {
                at,
                decision,
                verdict,
                explanation,
            });
            self.flag_pending().await?;
        }
        self.since_stats += 1;
        if self.since_stats >= 256 {
            self.tick();
        }
        Ok(())
    }

    fn tick(&mut self) {
        self.since_stats = 0;
        let stats = respond::lock(&self.detector).stats();
        self.metrics.observe_detector(stats);
    }
}
