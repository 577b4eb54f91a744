//! Ingest: the Kafka edge. Consumers in a group, at-least-once, offsets
//! committed only after a record is fully handled; dead letters for what
//! cannot be handled; commits on rebalance and shutdown.

pub mod changelog;
mod consumer;
mod context;
mod deadletter;
pub mod denylist;
mod kafka;
mod normalize;
mod revoke;
mod score;
mod window;

pub use consumer::{run, Handled, Handler, IngestConsumer, LoopStats, Transient};
pub use context::{IngestContext, Readiness};
pub use deadletter::{redact, redact_value};
pub use kafka::{consumer_config, producer_config, until_delivered};
pub use normalize::NormalizeHandler;
pub use revoke::RevocationHandler;
pub use score::ScoringHandler;
pub use window::InFlight;
