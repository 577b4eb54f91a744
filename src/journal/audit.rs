//! The audit trail: every flag, every settled decision and every operator
//! action, kept in a ring for `GET /v1/audit`, logged under the `audit`
//! target, and published to the audit topic before the action is reported
//! done.
//!
//! With a topic, an entry's `seq` is its place in the topic
//! (`topic_seq`), and every instance fills its ring from the topic
//! (`ingest::journal`), so `GET /v1/audit` pages the same list through any
//! instance behind a Service.

use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

use super::ring::{Page, Ring};
use crate::kafka::{Extra, TopicWriter};

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
        let mut entry = AuditEntry {
            seq: 0,
            at_ms: crate::clock::now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            token_id: token_id.map(str::to_owned),
            detail,
        };
        tracing::info!(
            target: "audit",
            actor,
            action,
            token_id,
            detail = %entry.detail,
            "audit"
        );
        match &self.sink {
            Some(writer) => {
                // The topic numbers it; the payload's own seq is not read.
                let payload = serde_json::to_vec(&entry).expect("audit entry serialises");
                let (partition, offset) = writer
                    .send_with(token_id.map(str::as_bytes), &payload, Extra::default())
                    .await?;
                entry.seq = topic_seq(partition, offset);
                self.ring.insert(entry.seq, entry.clone());
            }
            None => {
                self.ring.push_with(|seq| {
                    entry.seq = seq;
                    entry.clone()
                });
            }
        }
        Ok(entry)
    }

    /// An entry read from the audit topic (this instance's own included:
    /// the ring keeps one per `seq`).
    pub fn insert(&self, entry: AuditEntry) {
        self.ring.insert(entry.seq, entry);
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

/// The sequence number of the record at `offset` of `partition`: the same on
/// every instance, and above 0. Topics of up to 1024 partitions (the audit
/// topic has one).
pub fn topic_seq(partition: i32, offset: i64) -> u64 {
    (offset.max(0) as u64 + 1) << 10 | (partition.clamp(0, 1023) as u64)
}
