//! Flagging: one verdict that escalates becomes a decision in the decision
//! log (the outbox), an alert and an audit entry. The Kafka path and
//! `POST /v1/score` both come through here, so a token flagged either way is
//! treated the same.

use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use super::Decision;
use crate::clock::now_ms;
use crate::detect::{explain, Action, Detector, Explanation, Verdict};
use crate::ingest::until_delivered;
use crate::journal::{Alerts, Audit};
use crate::metrics::Metrics;
use crate::telemetry::Event;

/// The detector as the Kafka consumer and the HTTP API share it. The lock is
/// held for one `observe` (about a microsecond) and never across an await.
pub type SharedDetector = Arc<Mutex<Detector>>;

pub fn lock(d: &SharedDetector) -> std::sync::MutexGuard<'_, Detector> {
    // The core does not panic on any input (property-tested); if it ever
    // did, the state is still consistent per token, so carry on.
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// What scoring one event produced.
pub struct Scored {
    pub verdict: Verdict,
    /// Present when `explain_all` was asked for, or the token escalated.
    pub explanation: Option<Explanation>,
    /// Present when the token escalated to alert or revoke.
    pub decision: Option<Decision>,
    /// Present with the explanation (not read on the quiet path: it would
    /// cost an allocation per event).
    pub model_version: Option<String>,
}

/// Scores `event` under the detector's lock and, if the token escalates,
/// writes the decision (not yet published).
pub fn score(detector: &SharedDetector, event: &Event<'_>, explain_all: bool) -> Scored {
    let mut det = lock(detector);
    let verdict = det.observe(event);
    let flag = verdict.escalated && verdict.action != Action::None;
    let (explanation, model_version) = if flag || explain_all {
        let geo = det.geo().load();
        let version = det.model().load().version().to_owned();
        (Some(explain(&verdict, event.ip, &geo.db)), Some(version))
    } else {
        (None, None)
    };
    drop(det);
    let decision = flag.then(|| {
        Decision::from_explained(
            event,
            &verdict,
            explanation.as_ref().expect("explained when flagged"),
            model_version.as_deref().expect("read when flagged"),
            now_ms(),
        )
    });
    Scored {
        verdict,
        explanation,
        decision,
        model_version,
    }
}

/// The decision log.
#[derive(Clone)]
pub struct Outbox {
    producer: FutureProducer,
    topic: String,
}

impl Outbox {
    pub fn new(producer: FutureProducer, topic: String) -> Outbox {
        Outbox { producer, topic }
    }

    /// Returns once the broker has the decision.
    pub async fn publish(&self, d: &Decision) -> Result<(), KafkaError> {
        match self.enqueue(d)?.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        }
    }

    /// Queues the decision in the producer now (so decisions keep the order
    /// they were made in); the future resolves once the broker has it.
    fn enqueue(&self, d: &Decision) -> Result<DeliveryFuture, KafkaError> {
        let payload = serde_json::to_vec(d).expect("decision serialises");
        let record = FutureRecord::to(&self.topic)
            .key(d.token_id.as_bytes())
            .payload(&payload);
        self.producer.send_result(record).map_err(|(e, _)| e)
    }
}

pub struct Flagger {
    pub outbox: Outbox,
    pub alerts: Arc<Alerts>,
    pub audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    observer: Option<mpsc::UnboundedSender<Decision>>,
}

impl Flagger {
    pub fn new(
        outbox: Outbox,
        alerts: Arc<Alerts>,
        audit: Arc<Audit>,
        metrics: Arc<Metrics>,
        observer: Option<mpsc::UnboundedSender<Decision>>,
    ) -> Flagger {
        Flagger {
            outbox,
            alerts,
            audit,
            metrics,
            observer,
        }
    }

    /// Publishes the decision; only once the broker has it, records the
    /// alert and the audit entry. An error means nothing was recorded and
    /// the caller may retry with the same decision.
    pub async fn flag(&self, d: &Decision, v: &Verdict, e: &Explanation) -> Result<(), KafkaError> {
        self.outbox.publish(d).await?;
        self.published(d, v, e).await;
        Ok(())
    }

    /// Queues the decision now and returns a task that sees it acknowledged
    /// (re-publishing it until the broker has it) and then records the
    /// alert and the audit entry: the consumer reads on meanwhile.
    pub fn flag_in_background(
        self: &Arc<Self>,
        d: Decision,
        v: Verdict,
        e: Explanation,
    ) -> tokio::task::JoinHandle<bool> {
        let queued = self.outbox.enqueue(&d);
        let flagger = self.clone();
        tokio::spawn(async move {
            let outbox = flagger.outbox.clone();
            until_delivered(queued, || outbox.publish(&d), "decision log").await;
            flagger.published(&d, &v, &e).await;
            true
        })
    }

    async fn published(&self, d: &Decision, v: &Verdict, e: &Explanation) {
        let reason = d.rule.as_deref().unwrap_or("model");
        self.metrics
            .tokens_flagged
            .with_label_values(&[d.action.as_str(), reason])
            .inc();
        self.metrics
            .decisions_published
            .with_label_values(&[d.action.as_str()])
            .inc();
        tracing::info!(
            token_id = %d.token_id,
            action = d.action.as_str(),
            score = d.score,
            why = %d.explanation,
            "token flagged"
        );
        self.alerts.record(d, v, e);
        // The decision log already holds the decision durably; a failed
        // audit publish is logged, not retried, so it cannot hold up scoring.
        let detail = serde_json::json!({
            "decision_id": d.decision_id,
            "action": d.action,
            "score": d.score,
            "rule": d.rule,
            "explanation": d.explanation,
            "model_version": d.model_version,
        });
        if let Err(err) = self
            .audit
            .record("detector", "flagged", Some(&d.token_id), detail)
            .await
        {
            tracing::warn!(error = %err, token_id = %d.token_id, "audit topic: flag not recorded");
        }
        if let Some(o) = &self.observer {
            let _ = o.send(d.clone());
        }
    }
}
