//! Scoring: features → calibrated risk in [0, 1], with the features that
//! drove it. Pure and allocation-free; the same code serves Kafka, HTTP, the
//! simulator, `eval` and the benches.

use serde::Serialize;

use super::artifact::ModelArtifact;
use super::rules::{self, Rule};
use crate::features::{idx, Features, FEATURE_NAMES, N_FEATURES};

/// How many contributing features a verdict carries.
pub const TOP_K: usize = 3;

/// One feature's part in a score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: &'static str,
    pub value: f32,
    /// Its term in the logit (weight × standardised value).
    pub weight: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    pub score: f32,
    /// The model's own probability, before rules.
    pub model_score: f32,
    pub rule: Option<Rule>,
    pub top: [Option<Contribution>; TOP_K],
}

/// Variance-stabilising transform applied before standardisation: speeds,
/// distances and rates span orders of magnitude.
pub fn transform(i: usize, x: f32) -> f32 {
    let x = if x.is_finite() { x } else { 0.0 };
    match i {
        idx::VELOCITY
        | idx::MAX_VELOCITY
        | idx::DISTANCE
        | idx::BURST
        | idx::RATE_VS_POP
        | idx::DISTINCT_IPS => x.max(0.0).ln_1p(),
        _ => x,
    }
}

/// A loaded, checked model.
#[derive(Clone, Debug)]
pub struct Model {
    pub artifact: ModelArtifact,
}

impl Model {
    pub fn new(artifact: ModelArtifact) -> Model {
        Model { artifact }
    }

    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    pub fn score(&self, f: &Features) -> Score {
        let a = &self.artifact;
        let mut logit = a.bias;
        let mut terms = [0f32; N_FEATURES];
        for (i, term) in terms.iter_mut().enumerate() {
            let z = (transform(i, f.values[i]) - a.mean[i]) / a.scale[i];
            *term = a.weights[i] * z;
            logit += *term;
        }
        let model_score = sigmoid(logit);
        let rule = rules::fired(f);
        let score = match rule {
            Some(r) => model_score.max(r.floor()),
            None => model_score,
        };
        Score {
            score,
            model_score,
            rule,
            top: top_terms(&terms, f),
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The TOP_K largest positive terms, by insertion into a fixed array.
fn top_terms(terms: &[f32; N_FEATURES], f: &Features) -> [Option<Contribution>; TOP_K] {
    let mut top: [Option<Contribution>; TOP_K] = [None; TOP_K];
    for (i, &t) in terms.iter().enumerate() {
        if t <= 0.0 || !t.is_finite() {
            continue;
        }
        let c = Contribution {
            feature: FEATURE_NAMES[i],
            value: f.values[i],
            weight: t,
        };
        let mut slot = None;
        for (k, s) in top.iter().enumerate() {
            if s.is_none_or(|s| t > s.weight) {
                slot = Some(k);
                break;
            }
        }
        if let Some(k) = slot {
            top[k..].rotate_right(1);
            top[k] = Some(c);
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn top_terms_are_sorted_and_positive_only() {
        let mut terms = [0f32; N_FEATURES];
        terms[2] = 0.5;
        terms[7] = 2.0;
        terms[9] = -3.0;
        terms[11] = 1.0;
        let f = Features {
            values: [1.0; N_FEATURES],
            from: None,
            to: None,
            dt_s: 0.0,
            late: false,
        };
        let top = top_terms(&terms, &f);
        let names: Vec<_> = top.iter().flatten().map(|c| c.feature).collect();
        assert_eq!(
            names,
            [FEATURE_NAMES[7], FEATURE_NAMES[11], FEATURE_NAMES[2]]
        );
    }
}
