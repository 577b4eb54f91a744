//! The revoking consumer's handler: decision log → revoker. A decision is
//! committed only once settled; while a target is unreachable the same
//! decision is retried (the loop backs off), and only the targets that have
//! not yet succeeded are called again, so an outage delays revocations and
//! loses none.

use std::sync::Arc;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::mpsc;

use super::consumer::{Handled, Handler, Transient};
use super::deadletter;
use crate::decide::Decision;
use crate::journal::Audit;
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::respond::{Revoker, Settled};

pub struct RevocationHandler {
    revoker: Revoker,
    deadletters: TopicWriter,
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
            deadletters: TopicWriter::new(producer, deadletter_topic),
            metrics,
            audit,
            observer,
        }
    }
}

impl Handler for RevocationHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        let decision: Decision = match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(d) => d,
            Err(e) => {
                deadletter::publish(&self.deadletters, msg, "decision_json", &e.to_string())
                    .await
                    .map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
                self.metrics
                    .deadletters
                    .with_label_values(&["decision_json"])
                    .inc();
                return Ok(Handled::Done);
            }
        };
        let settled = self.revoker.settle(decision).await;
        for o in &settled.outcomes {
            self.metrics
                .revocations
                .with_label_values(&[&o.target, o.outcome.label()])
                .inc();
            if o.outcome.pending() || matches!(o.outcome.label(), "rejected" | "bad_handle") {
                tracing::warn!(
                    token_id = %settled.decision.token_id,
                    target = %o.target,
                    outcome = o.outcome.label(),
                    detail = ?o.outcome,
                    "revocation target failed"
                );
            }
        }
        let pending = settled.pending();
        self.metrics
            .revocation_seconds
            .with_label_values(&[if pending { "pending" } else { "settled" }])
            .observe(settled.took.as_secs_f64());
        self.metrics
            .set_brake(self.revoker.controls().brake.status().holding());
        tracing::info!(
            token_id = %settled.decision.token_id,
            revoked = settled.revoked(),
            pending,
            took_ms = settled.took.as_millis() as u64,
            outcomes = %serde_json::to_string(&settled.outcomes).unwrap_or_default(),
            "decision settled"
        );
        let detail = serde_json::json!({
            "decision_id": settled.decision.decision_id,
            "outcomes": settled.outcomes,
            "pending": pending,
            "took_ms": settled.took.as_millis() as u64,
        });
        if let Err(e) = self
            .audit
            .record(
                "revoker",
                if pending { "attempted" } else { "settled" },
                Some(&settled.decision.token_id),
                detail,
            )
            .await
        {
            // The outcome is in the log line above and the metrics; holding
            // the decision back for the audit topic would delay revocations.
            tracing::warn!(error = %e, "audit topic: settled decision not recorded");
        }
        if pending {
            return Err(Transient(format!(
                "decision {} not settled: a target may still succeed",
                settled.decision.decision_id
            )));
        }
        if let Some(o) = &self.observer {
            let _ = o.send(settled);
        }
        Ok(Handled::Done)
    }
}
