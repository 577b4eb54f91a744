//! The hand-off of a decision: the decision log (the outbox) first, then,
//! once the broker has it, the alert, the audit entry and the metrics.

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tokio::sync::mpsc;

use super::{Alert, Alerts, Decision};
use crate::detect::{Explanation, Verdict};
use crate::journal::Audit;
use crate::kafka::{acknowledged, until_delivered, TopicWriter};
use crate::metrics::Metrics;

/// The decision log.
#[derive(Clone)]
pub struct Outbox(TopicWriter);

impl Outbox {
    pub fn new(producer: FutureProducer, topic: String) -> Outbox {
        Outbox(TopicWriter::new(producer, topic))
    }

    /// Returns once the broker has the decision.
    pub async fn publish(&self, d: &Decision) -> Result<(), KafkaError> {
        acknowledged(self.enqueue(d)?).await
    }

    /// Queues the decision in the producer now (so decisions keep the order
    /// they were made in); the future resolves once the broker has it.
    fn enqueue(&self, d: &Decision) -> Result<DeliveryFuture, KafkaError> {
        let payload = serde_json::to_vec(d).expect("decision serialises");
        self.0.queue(d.token_id.as_bytes(), &payload)
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
        // The audit entry carries the whole alert, so every instance that
        // reads the audit topic lists the same alerts under the same numbers.
        // The decision log already holds the decision durably; a failed
        // audit publish is logged, not retried, so it cannot hold up scoring.
        let alert = Alert::new(d, v, e);
        let mut detail = serde_json::to_value(&alert).expect("an alert serialises");
        if let Some(o) = detail.as_object_mut() {
            o.remove("seq");
        }
        match self
            .audit
            .record("detector", "flagged", Some(&d.token_id), detail)
            .await
        {
            Ok(entry) => self.alerts.insert(entry.seq, alert),
            Err(err) => tracing::warn!(
                error = %err,
                token_id = %d.token_id,
                "audit topic: flag not recorded, nor listed in /v1/alerts (it is on the decision log)"
            ),
        }
        if let Some(o) = &self.observer {
            let _ = o.send(d.clone());
        }
    }
}
