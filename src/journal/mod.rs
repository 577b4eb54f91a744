//! What tokenwatch did, for the people who ask afterwards: recent alerts
//! (`GET /v1/alerts`) and the audit trail (`GET /v1/audit`), each kept in a
//! bounded in-memory ring per instance. The audit trail is also written to
//! the `tokenwatch.audit` topic, which is the durable, fleet-wide record.

pub mod alerts;
mod audit;
mod ring;

pub use alerts::{Alert, Alerts};
pub use audit::{Audit, AuditEntry};
pub use ring::{Page, Ring};
