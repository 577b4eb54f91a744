//! What tokenwatch did, for the people who ask afterwards: the audit trail
//! (`GET /v1/audit`), kept in a bounded in-memory ring per instance and
//! written to the `tokenwatch.audit` topic, which is the durable, fleet-wide
//! record. The ring also holds recent alerts (`decide::Alerts`).

mod audit;
mod ring;

pub use audit::{topic_seq, Audit, AuditEntry};
pub use ring::{Page, Ring};
