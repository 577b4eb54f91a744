//! Follows the control topic (`respond/control.rs`): every instance applies
//! each signed change, the mode, a brake trip or reset, the allowlist, the
//! model pin, as it
//! arrives, and reports the latest it applied. A record that does not open
//! (forged, tampered, unreadable) is refused, counted and logged: nothing
//! written to the topic by an outsider changes what tokenwatch does.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::compacted::{self, Apply};
use crate::config::KafkaConfig;
use crate::detect::{Allowlist, AllowlistHandle};
use crate::metrics::Metrics;
use crate::model::ModelSource;
use crate::respond::{Change, ControlError, ControlKey, Controls, Held, Signed};

pub struct Fleet {
    pub controls: Arc<Controls>,
    pub allowlist: AllowlistHandle,
    pub model: Arc<ModelSource>,
    pub key: ControlKey,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<super::Readiness>,
}

impl Fleet {
    fn refuse(&self, reason: &'static str, why: &str, partition: i32, offset: i64) {
        self.metrics
            .control_refused
            .with_label_values(&[reason])
            .inc();
        tracing::error!(
            reason,
            error = why,
            partition,
            offset,
            "control record refused; not applied"
        );
    }

    /// Applies one change here (also used by the API for its own change,
    /// so the instance that took it does not wait for the read-back).
    pub fn apply(
        controls: &Controls,
        allowlist: &AllowlistHandle,
        model: &ModelSource,
        metrics: &Metrics,
        s: &Signed,
    ) {
        match &s.change {
            Change::Mode { mode } => {
                controls.mode.set(*mode);
                metrics.set_mode(mode.as_str());
            }
            Change::Brake { engaged: true, .. } => controls.brake.engage(s.at_ms),
            Change::Brake {
                engaged: false,
                held,
            } => controls.brake.release(s.at_ms, held.unwrap_or(Held::Drop)),
            Change::BrakeCount { instance, admitted } => {
                if *instance != controls.instance {
                    controls.brake.peer_admitted(instance, admitted.clone());
                }
                // A count is not a policy change: the version stays.
                return;
            }
            // Reads a file of a few kB at most: no need to leave the task.
            Change::ScopedMode { scope, name, mode } => controls.set_scoped(*scope, name, *mode),
            Change::ModelPin { version } => model.set_pin(version.clone(), metrics),
            Change::Allowlist { entries } => match Allowlist::new(entries.clone()) {
                Ok(list) => {
                    metrics.allowlist_entries.set(list.entries().len() as i64);
                    allowlist.store(Arc::new(list));
                }
                Err(e) => {
                    // Validated by the instance that wrote it; a build that
                    // validates differently keeps its list.
                    tracing::error!(error = %e, "allowlist from the control topic refused; keeping the current one");
                    return;
                }
            },
        }
        metrics.set_brake(controls.brake.status().holding());
        controls.applied(s.at_ms);
        metrics
            .control_applied
            .set(controls.version() as f64 / 1000.0);
    }
}

impl Apply for Fleet {
    fn record(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let Some(payload) = payload else {
            return; // a tombstone: nothing to apply
        };
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return self.refuse("key", "no readable key", partition, offset);
        };
        match self.key.open(key, payload) {
            Ok(s) => {
                tracing::info!(change = key, by = %s.by, at_ms = s.at_ms, "fleet control change applied");
                Fleet::apply(
                    &self.controls,
                    &self.allowlist,
                    &self.model,
                    &self.metrics,
                    &s,
                );
            }
            Err(e @ ControlError::BadSignature) => {
                self.refuse("signature", &e.to_string(), partition, offset)
            }
            Err(e @ ControlError::WrongKey { .. }) => {
                self.refuse("key", &e.to_string(), partition, offset)
            }
            Err(e @ ControlError::Malformed(_)) => {
                self.refuse("malformed", &e.to_string(), partition, offset)
            }
        }
    }

    fn caught_up(&mut self) {
        tracing::info!(
            version = self.controls.version(),
            "fleet control topic loaded"
        );
        self.controls.mark_loaded();
        self.readiness
            .control_pending
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Reads `topic` into the controls until `shutdown`.
pub async fn follow(k: KafkaConfig, topic: String, fleet: Fleet, shutdown: CancellationToken) {
    compacted::follow(k, "control", topic, fleet, shutdown).await
}
