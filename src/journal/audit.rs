//! The audit trail: every flag, every settled decision and every operator
//! action, kept in a ring for `GET /v1/audit`, logged under the `audit`
//! target, and published to the audit topic before the action is reported
//! done.

use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

use super::ring::{Page, Ring};
use crate::kafka::TopicWriter;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: i64,
    /// `detector`, `revoker`, or `admin`.
    pub actor: String,
    /// What happened: `flagged`, `settled`, `revoke`, `allowlist_add`, …
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    pub detail: serde_json::Value,
}

pub struct Audit {
    ring: Ring<AuditEntry>,
    sink: Option<TopicWriter>,
}

impl Audit {
    /// In memory only (tests, tools).
    pub fn in_memory(cap: usize) -> Audit {
        Audit {
            ring: Ring::new(cap),
            sink: None,
        }
    }

    /// Also published to `topic`, keyed by token id.
    pub fn with_topic(cap: usize, producer: FutureProducer, topic: String) -> Audit {
        Audit {
            ring: Ring::new(cap),
            sink: Some(TopicWriter::new(producer, topic)),
        }
    }

    /// Records one entry; returns once the audit topic has it (or at once
    /// with no topic).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        token_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, rdkafka::error::KafkaError> {
        let at_ms = crate::clock::now_ms();
        let mut entry = None;
        self.ring.push_with(|seq| {
            let e = AuditEntry {
                seq,
                at_ms,
                actor: actor.to_owned(),
                action: action.to_owned(),
                token_id: token_id.map(str::to_owned),
                detail,
            };
            entry = Some(e.clone());
            e
        });
        let entry = entry.expect("push_with ran");
        tracing::info!(
            target: "audit",
            actor,
            action,
            token_id,
            detail = %entry.detail,
            "audit"
        );
        if let Some(writer) = &self.sink {
            let payload = serde_json::to_vec(&entry).expect("audit entry serialises");
            writer.send(token_id.map(str::as_bytes), &payload).await?;
        }
        Ok(entry)
    }

    pub fn page(
        &self,
        before: Option<u64>,
        limit: usize,
        token_id: Option<&str>,
    ) -> Page<AuditEntry> {
        self.ring.page(before, limit, |e| {
            token_id.is_none_or(|t| e.token_id.as_deref() == Some(t))
        })
    }
}
