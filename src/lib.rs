//! tokenwatch catches stolen access tokens while they are being used, and
//! shuts them off.
//!
//! The data path, in module order: [`ingest`] (Kafka) → [`telemetry`] →
//! [`geo`] → [`features`] → [`model`] → [`detect`] → [`respond`]; with
//! [`api`], [`metrics`] and [`config`] at the side. [`detect::Detector`] is
//! the pure core every path calls.

pub mod api;
pub mod clock;
pub mod config;
pub mod decide;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod features;
pub mod gateway;
pub mod geo;
pub mod ingest;
pub mod journal;
pub mod kafka;
pub mod metrics;
pub mod model;

pub mod respond;
pub mod seal;
pub mod serve;
pub mod sim;
pub mod telemetry;
