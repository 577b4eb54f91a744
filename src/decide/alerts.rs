//! Recent flags with everything an analyst needs to judge them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Decision;
use crate::detect::{Action, ExplainedFeature, Explanation, Verdict};
use crate::features::FEATURE_NAMES;
use crate::journal::{Page, Ring};

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub seq: u64,
    pub decision_id: String,
    pub token_id: String,
    pub sub: String,
    pub action: Action,
    pub score: f32,
    pub rule: Option<String>,
    pub explanation: String,
    pub top: Vec<ExplainedFeature>,
    pub features: BTreeMap<&'static str, f32>,
    pub model_version: String,
    pub event_ts_ms: i64,
    pub decided_at_ms: i64,
}

/// Feature values by name, for people and JSON.
pub fn named_features(v: &Verdict) -> BTreeMap<&'static str, f32> {
    FEATURE_NAMES
        .iter()
        .zip(v.features.values)
        .map(|(n, x)| (*n, x))
        .collect()
}

pub struct Alerts(Ring<Alert>);

impl Default for Alerts {
    fn default() -> Self {
        Alerts::new(10_000)
    }
}

impl Alerts {
    pub fn new(cap: usize) -> Alerts {
        Alerts(Ring::new(cap))
    }

    /// Records a flag. The decision's sealed handle is not kept.
    pub fn record(&self, d: &Decision, v: &Verdict, e: &Explanation) -> u64 {
        self.0.push_with(|seq| Alert {
            seq,
            decision_id: d.decision_id.clone(),
            token_id: d.token_id.clone(),
            sub: d.sub.clone(),
            action: d.action,
            score: d.score,
            rule: d.rule.clone(),
            explanation: d.explanation.clone(),
            top: e.top.clone(),
            features: named_features(v),
            model_version: d.model_version.clone(),
            event_ts_ms: d.event_ts_ms,
            decided_at_ms: d.decided_at_ms,
        })
    }

    pub fn page(&self, before: Option<u64>, limit: usize, token_id: Option<&str>) -> Page<Alert> {
        self.0
            .page(before, limit, |a| token_id.is_none_or(|t| a.token_id == t))
    }

    pub fn latest_for(&self, token_id: &str) -> Option<Alert> {
        self.0.latest(|a| a.token_id == token_id)
    }
}
