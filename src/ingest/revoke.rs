//! The revoking consumer's handler: decision log → revoker. A decision is
//! committed only once settled; while the IdP is unreachable the same
//! decision is retried (the loop backs off), so an outage delays revocations
//! and loses none.

use std::sync::Arc;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::mpsc;

use super::consumer::{Handler, Transient};
use super::deadletter;
use crate::journal::Audit;
use crate::metrics::Metrics;
use crate::respond::{Decision, Outcome, Revoker, Settled};

pub struct RevocationHandler {
    revoker: Revoker,
    producer: FutureProducer,
    deadletter_topic: String,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    observer: Option<mpsc::UnboundedSender<Settled>>,
}

impl RevocationHandler {
    pub fn new(
        revoker: Revoker,
        producer: FutureProducer,
        deadletter_topic: String,
        metrics: Arc<Metrics>,
        audit: Arc<Audit>,
        observer: Option<mpsc::UnboundedSender<Settled>>,
    ) -> RevocationHandler {
        RevocationHandler {
            revoker,
            producer,
            deadletter_topic,
            metrics,
            audit,
            observer,
        }
    }
}

impl Handler for RevocationHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), Transient> {
        let decision: Decision = match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(d) => d,
            Err(e) => {
                deadletter::publish(
                    &self.producer,
                    &self.deadletter_topic,
                    msg,
                    "decision_json",
                    &e.to_string(),
                )
                .await
                .map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
                self.metrics
                    .deadletters
                    .with_label_values(&["decision_json"])
                    .inc();
                return Ok(());
            }
        };
        let settled = self.revoker.settle(decision).await;
        let label = settled.outcome.label();
        self.metrics.revocations.with_label_values(&[label]).inc();
        self.metrics
            .revocation_seconds
            .with_label_values(&[label])
            .observe(settled.took.as_secs_f64());
        tracing::info!(
            token_id = %settled.decision.token_id,
            outcome = label,
            took_ms = settled.took.as_millis() as u64,
            detail = ?settled.outcome,
            "decision settled"
        );
        if let Outcome::Failed {
            permanent: false,
            why,
        } = &settled.outcome
        {
            return Err(Transient(format!("revocation not settled: {why}")));
        }
        self.metrics
            .set_brake(&self.revoker.controls().brake.status());
        let detail = serde_json::json!({
            "decision_id": settled.decision.decision_id,
            "outcome": settled.outcome,
            "took_ms": settled.took.as_millis() as u64,
        });
        if let Err(e) = self
            .audit
            .record(
                "revoker",
                "settled",
                Some(&settled.decision.token_id),
                detail,
            )
            .await
        {
            // The outcome is in the log line above and the metrics; holding
            // the decision back for the audit topic would delay revocations.
            tracing::warn!(error = %e, "audit topic: settled decision not recorded");
        }
        if let Some(o) = &self.observer {
            let _ = o.send(settled);
        }
        Ok(())
    }
}
