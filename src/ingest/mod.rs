//! Ingest: the Kafka edge. Consumers in a group, at-least-once, offsets
//! committed only after a record is fully handled; dead letters for what
//! cannot be handled; commits on rebalance and shutdown.

pub mod changelog;
mod client;
mod compacted;
mod consumer;
mod context;
pub mod control;
mod deadletter;
pub mod denylist;
pub mod journal;
mod normalize;
pub mod orphans;
pub mod population;
mod revoke;
mod score;
mod window;

pub use consumer::{run, Handled, Handler, IngestConsumer, LoopStats, Transient};
pub use context::{IngestContext, Readiness};

pub use client::{consumer_config, producer_config};
pub use normalize::NormalizeHandler;
pub use revoke::RevocationHandler;
pub use score::ScoringHandler;
pub use window::InFlight;
