//! Fills `GET /v1/audit` and `GET /v1/alerts` from the audit topic, so every
//! instance lists the same entries under the same numbers (their place in
//! the topic) and a page cursor from one instance is good on any other.
//! Each instance reads the last records of the topic at start (as many as
//! its rings keep) and follows it. Its own entries come back too; the rings
//! keep one per number.
//!
//! The topic is an input: a record that does not parse is counted and
//! skipped, and a `flagged` entry whose alert does not parse or names
//! features this build does not have is kept in the audit list only. Nothing read here acts on a token; it is what the API lists.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::compacted::{self, Apply};
use crate::config::KafkaConfig;
use crate::decide::{Alert, Alerts};
use crate::journal::{topic_seq, Audit, AuditEntry};
use crate::metrics::Metrics;

/// Records read at start from each partition: what the rings keep.
pub const TAIL: i64 = 10_000;

pub struct JournalFollower {
    pub audit: Arc<Audit>,
    pub alerts: Arc<Alerts>,
    pub metrics: Arc<Metrics>,
}

impl JournalFollower {
    fn count(&self, result: &str) {
        self.metrics
            .audit_records
            .with_label_values(&[result])
            .inc();
    }
}

impl Apply for JournalFollower {
    fn record(&mut self, _key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let Some(payload) = payload else { return };
        let mut entry: AuditEntry = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                self.count("refused");
                tracing::warn!(partition, offset, error = %e, "audit record refused");
                return;
            }
        };
        entry.seq = topic_seq(partition, offset);
        if entry.actor == "detector" && entry.action == "flagged" {
            // Listed as an alert only if it is one this build can show; the
            // audit entry stands either way (an older release wrote less).
            match Alert::from_audit(&entry.detail) {
                Ok(alert) => self.alerts.insert(entry.seq, alert),
                Err(e) => {
                    self.count("not_an_alert");
                    tracing::warn!(partition, offset, error = %e, "flag not listed as an alert");
                }
            }
        }
        self.audit.insert(entry);
        self.count("applied");
    }

    fn caught_up(&mut self) {
        tracing::info!("audit and alerts read from the audit topic");
    }
}

/// Reads the tail of `topic` into the rings until `shutdown`.
pub async fn follow(
    k: KafkaConfig,
    topic: String,
    f: JournalFollower,
    shutdown: CancellationToken,
) {
    compacted::follow_tail(k, "audit", topic, TAIL, f, shutdown).await
}
