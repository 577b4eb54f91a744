//! The revoking consumer's handler: decision log → revoker. Each decision
//! is settled by a task of its own while the consumer reads on, so a target
//! that is down (a SIEM answering 500, an IdP outage) delays neither the
//! other targets of that decision nor any later decision. A decision's
//! offset is stored only once every target is done with it and every
//! earlier decision is too (`window.rs`); a crash replays from the oldest
//! unfinished decision, and the targets already done are recognised.
//!
//! A target that spends its retry budget is given up: the decision goes to
//! the dead-letter topic with the target and the reason (without the sealed
//! handle), a metric counts it, and the consumer goes on.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::consumer::{Handled, Handler, Transient};
use super::deadletter::{self, Source};
use crate::decide::Decision;
use crate::journal::Audit;
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::respond::{Revoker, Settled};

/// What every decision's task shares.
struct Shared {
    revoker: Revoker,
    deadletters: TopicWriter,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    observer: Option<mpsc::UnboundedSender<Settled>>,
}

pub struct RevocationHandler {
    shared: Arc<Shared>,
    /// Cancelled when the handler is dropped (the loop returned or was
    /// aborted): tasks still retrying stop, their decisions uncommitted.
    stop: CancellationToken,
    _guard: DropGuard,
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
        let stop = CancellationToken::new();
        RevocationHandler {
            shared: Arc::new(Shared {
                revoker,
                deadletters: TopicWriter::new(producer, deadletter_topic),
                metrics,
                audit,
                observer,
            }),
            _guard: stop.clone().drop_guard(),
            stop,
        }
    }
}

impl Handler for RevocationHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        let s = &self.shared;
        let decision: Decision = match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(d) => d,
            Err(e) => {
                deadletter::publish(&s.deadletters, msg, "decision_json", &e.to_string())
                    .await
                    .map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
                s.metrics
                    .deadletters
                    .with_label_values(&["decision_json"])
                    .inc();
                return Ok(Handled::Done);
            }
        };
        let (shared, stop, source) = (self.shared.clone(), self.stop.clone(), Source::of(msg));
        Ok(Handled::InFlight(tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => false,
                () = shared.settle(decision, source) => true,
            }
        })))
    }
}

impl Shared {
    async fn settle(&self, decision: Decision, source: Source) {
        let settled = self.revoker.settle(decision).await;
        self.report(&settled).await;
        for o in settled.outcomes.iter().filter(|o| o.outcome.pending()) {
            self.give_up(&settled.decision, &o.target, &o.outcome, &source)
                .await;
        }
        if let Some(o) = &self.observer {
            let _ = o.send(settled);
        }
    }

    /// Metrics, the log line and the audit record of a settled decision.
    async fn report(&self, settled: &Settled) {
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
        let gave_up = settled.pending();
        self.metrics
            .revocation_seconds
            .with_label_values(&[if gave_up { "gave_up" } else { "settled" }])
            .observe(settled.took.as_secs_f64());
        self.metrics
            .set_brake(self.revoker.controls().brake.status().holding());
        tracing::info!(
            token_id = %settled.decision.token_id,
            revoked = settled.revoked(),
            gave_up,
            took_ms = settled.took.as_millis() as u64,
            outcomes = %serde_json::to_string(&settled.outcomes).unwrap_or_default(),
            "decision settled"
        );
        let detail = serde_json::json!({
            "decision_id": settled.decision.decision_id,
            "outcomes": settled.outcomes,
            "gave_up": gave_up,
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
    }

    /// The decision, without its sealed handle, to the dead-letter topic
    /// with the target that gave up; retried until it lands (the decision
    /// is not committed before).
    async fn give_up(
        &self,
        d: &Decision,
        target: &str,
        outcome: &crate::respond::Outcome,
        source: &Source,
    ) {
        let mut safe = d.clone();
        safe.token_handle = None;
        let payload = serde_json::to_vec(&safe).expect("a decision serialises");
        let why = match outcome {
            crate::respond::Outcome::Failed { why, .. } => why.as_str(),
            _ => "",
        };
        let error = format!("{target}: {why}");
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = deadletter::publish_from(
            &self.deadletters,
            source,
            &payload,
            "target_gave_up",
            &error,
        )
        .await
        {
            tracing::warn!(error = %e, "dead-letter topic: retrying a given-up decision");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        self.metrics
            .deadletters
            .with_label_values(&["target_gave_up"])
            .inc();
    }
}
