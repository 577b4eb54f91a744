//! Recent flags with everything an analyst needs to judge them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Decision;
use crate::detect::{Action, ExplainedFeature, Explanation, Verdict};
use crate::features::FEATURE_NAMES;
use crate::journal::{Page, Ring};
use crate::model::NOVELTY;

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

impl Alert {
    /// The alert for a flag, not yet numbered. The decision's sealed handle
    /// is not kept.
    pub fn new(d: &Decision, v: &Verdict, e: &Explanation) -> Alert {
        Alert {
            seq: 0,
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
        }
    }

    /// The alert again from the detail of its `flagged` audit entry, as
    /// another instance wrote it. Feature names must be this build's: an
    /// entry naming others (another schema, or forged) is refused.
    pub fn from_audit(detail: &serde_json::Value) -> Result<Alert, String> {
        let w: AlertWire = serde_json::from_value(detail.clone()).map_err(|e| e.to_string())?;
        // Explanations name features, and the population model's novelty.
        let name = |n: &str| {
            FEATURE_NAMES
                .iter()
                .chain([&NOVELTY])
                .find(|f| **f == n)
                .copied()
                .ok_or_else(|| format!("unknown feature `{n}`"))
        };
        let top = w
            .top
            .into_iter()
            .map(|t| {
                Ok(ExplainedFeature {
                    feature: name(&t.feature)?,
                    value: t.value,
                    contribution: t.contribution,
                })
            })
            .collect::<Result<_, String>>()?;
        let features = w
            .features
            .into_iter()
            .map(|(n, x)| Ok((name(&n)?, x)))
            .collect::<Result<_, String>>()?;
        Ok(Alert {
            seq: 0,
            decision_id: w.decision_id,
            token_id: w.token_id,
            sub: w.sub,
            action: w.action,
            score: w.score,
            rule: w.rule,
            explanation: w.explanation,
            top,
            features,
            model_version: w.model_version,
            event_ts_ms: w.event_ts_ms,
            decided_at_ms: w.decided_at_ms,
        })
    }
}

/// `Alert` as JSON carries it (feature names as strings).
#[derive(Deserialize)]
struct AlertWire {
    decision_id: String,
    token_id: String,
    sub: String,
    action: Action,
    score: f32,
    rule: Option<String>,
    explanation: String,
    top: Vec<FeatureWire>,
    features: BTreeMap<String, f32>,
    model_version: String,
    event_ts_ms: i64,
    decided_at_ms: i64,
}

#[derive(Deserialize)]
struct FeatureWire {
    feature: String,
    value: f32,
    contribution: f32,
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

    /// Keeps `alert` under `seq`, the sequence number of its audit entry.
    pub fn insert(&self, seq: u64, alert: Alert) {
        self.0.insert(seq, Alert { seq, ..alert });
    }

    pub fn page(&self, before: Option<u64>, limit: usize, token_id: Option<&str>) -> Page<Alert> {
        self.0
            .page(before, limit, |a| token_id.is_none_or(|t| a.token_id == t))
    }

    pub fn latest_for(&self, token_id: &str) -> Option<Alert> {
        self.0.latest(|a| a.token_id == token_id)
    }
}
