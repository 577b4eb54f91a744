//! Scoring: features → calibrated risk in [0, 1], with the features that
//! drove it. Pure and allocation-free; the same code serves Kafka, HTTP, the
//! simulator, `eval` and the benches.

use serde::Serialize;

use super::artifact::{Family, ModelArtifact};
use super::rules::{self, Rule};
use crate::features::{idx, Features, FEATURE_NAMES, N_FEATURES};

/// How many contributing features a verdict carries.
pub const TOP_K: usize = 3;

/// One feature's part in a score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: &'static str,
    pub value: f32,
    /// Its term in the logit (weight × standardised value); for the
    /// population family, standard deviations above legitimate traffic's
    /// mean.
    pub weight: f32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    pub score: f32,
    /// The model's own probability, before rules.
    pub model_score: f32,
    pub rule: Option<Rule>,
    pub top: [Option<Contribution>; TOP_K],
}

/// Features that span orders of magnitude (speeds, distances, rates,
/// counts) are log1p-transformed before standardisation.
fn is_log(i: usize) -> bool {
    matches!(
        i,
        idx::VELOCITY
            | idx::MAX_VELOCITY
            | idx::DISTANCE
            | idx::BURST
            | idx::RATE_VS_POP
            | idx::DISTINCT_IPS
            | idx::TOKEN_AGE
            | idx::REQUESTS
    )
}

/// Variance-stabilising transform applied before standardisation.
pub fn transform(i: usize, x: f32) -> f32 {
    let x = if x.is_finite() { x } else { 0.0 };
    if is_log(i) {
        x.max(0.0).ln_1p()
    } else {
        x
    }
}

/// The name under which the population distance appears in explanations.
pub const NOVELTY: &str = "population_novelty";

/// A loaded, checked model.
#[derive(Clone, Debug)]
pub struct Model {
    pub artifact: ModelArtifact,
    /// Per feature, laid out for the scoring loop: whether it is log1p'd,
    /// its mean, 1 ÷ scale and the weight (so scoring multiplies, never
    /// divides).
    log: [bool; N_FEATURES],
    mean: [f32; N_FEATURES],
    inv_scale: [f32; N_FEATURES],
    weight: [f32; N_FEATURES],
    centroids: Vec<[f32; N_FEATURES]>,
}

impl Model {
    /// Takes a checked artifact (`ModelArtifact::load` validates lengths).
    pub fn new(artifact: ModelArtifact) -> Model {
        let mut log = [false; N_FEATURES];
        let mut mean = [0f32; N_FEATURES];
        let mut inv_scale = [1f32; N_FEATURES];
        let mut weight = [0f32; N_FEATURES];
        for i in 0..N_FEATURES {
            log[i] = is_log(i);
            mean[i] = artifact.mean.get(i).copied().unwrap_or(0.0);
            inv_scale[i] = 1.0 / artifact.scale.get(i).copied().unwrap_or(1.0);
            weight[i] = artifact.weights.get(i).copied().unwrap_or(0.0);
        }
        let centroids = artifact
            .population
            .iter()
            .flat_map(|p| &p.centroids)
            .map(|c| {
                let mut a = [0f32; N_FEATURES];
                for (x, v) in a.iter_mut().zip(c) {
                    *x = *v;
                }
                a
            })
            .collect();
        Model {
            artifact,
            log,
            mean,
            inv_scale,
            weight,
            centroids,
        }
    }

    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    pub fn family(&self) -> Family {
        self.artifact.family
    }

    /// The standardised, transformed feature vector.
    pub fn standardise(&self, f: &Features) -> [f32; N_FEATURES] {
        let mut z = [0f32; N_FEATURES];
        for (i, z) in z.iter_mut().enumerate() {
            let x = f.values[i];
            // Most heavy-tailed features are 0 on most requests: skip ln_1p(0).
            let x = if !x.is_finite() || (self.log[i] && x <= 0.0) {
                0.0
            } else if self.log[i] {
                x.ln_1p()
            } else {
                x
            };
            *z = (x - self.mean[i]) * self.inv_scale[i];
        }
        z
    }

    /// Distance from `z` to the nearest centroid, and that centroid's index.
    pub fn novelty(&self, z: &[f32; N_FEATURES]) -> (f32, usize) {
        let mut best = (f32::INFINITY, 0);
        for (k, c) in self.centroids.iter().enumerate() {
            let d2 = lane_sum(|i| (z[i] - c[i]) * (z[i] - c[i]));
            if d2 < best.0 {
                best = (d2, k);
            }
        }
        (best.0.sqrt(), best.1)
    }

    pub fn score(&self, f: &Features) -> Score {
        let z = self.standardise(f);
        let mut terms = [0f32; N_FEATURES + 1];
        let mut distance = 0f32;
        let model_score = match (self.artifact.family, &self.artifact.population) {
            (Family::Population, Some(p)) => {
                let (d, _) = self.novelty(&z);
                // Explained by the values furthest above what legitimate
                // traffic shows (standard deviations above its mean).
                terms[..N_FEATURES].copy_from_slice(&z);
                quantile_of(&p.distance_quantiles, d)
            }
            (family, population) => {
                for i in 0..N_FEATURES {
                    terms[i] = self.weight[i] * z[i];
                }
                let mut logit = self.artifact.bias + lane_sum(|i| terms[i]);
                if let (Family::Combined, Some(p)) = (family, population) {
                    let (d, _) = self.novelty(&z);
                    distance = d;
                    terms[N_FEATURES] = p.weight * (d.ln_1p() - p.mean) / p.scale;
                    logit += terms[N_FEATURES];
                }
                sigmoid(logit)
            }
        };
        let rule = rules::fired(f);
        let score = match rule {
            Some(r) => model_score.max(r.floor()),
            None => model_score,
        };
        Score {
            score,
            model_score,
            rule,
            top: top_terms(&terms, f, distance),
        }
    }
}

/// Where `d` falls among `knots` (ascending values at quantiles 0..1).
fn quantile_of(knots: &[f32], d: f32) -> f32 {
    let n = knots.len();
    if n < 2 || !d.is_finite() {
        return if d.is_finite() { 0.0 } else { 1.0 };
    }
    let i = knots.partition_point(|k| *k <= d);
    if i == 0 {
        return 0.0;
    }
    if i >= n {
        return 1.0;
    }
    let (a, b) = (knots[i - 1], knots[i]);
    let frac = if b > a { (d - a) / (b - a) } else { 0.0 };
    (((i - 1) as f32 + frac) / (n - 1) as f32).clamp(0.0, 1.0)
}

/// Σ term(i) over the features, in eight independent partial sums: one
/// running sum is a chain of dependent additions the CPU cannot overlap,
/// and made the population distance the dearest part of a score.
#[inline]
fn lane_sum(term: impl Fn(usize) -> f32) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    for i in 0..N_FEATURES {
        acc[i % LANES] += term(i);
    }
    acc.iter().sum()
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The TOP_K largest positive terms, by insertion of their indices into a
/// fixed array; contributions are built for the winners only. The last term
/// is the population distance's.
fn top_terms(
    terms: &[f32; N_FEATURES + 1],
    f: &Features,
    distance: f32,
) -> [Option<Contribution>; TOP_K] {
    let mut best = [usize::MAX; TOP_K];
    for (i, &t) in terms.iter().enumerate() {
        if t <= 0.0 || !t.is_finite() {
            continue;
        }
        if let Some(k) = best.iter().position(|&j| j == usize::MAX || t > terms[j]) {
            // By hand: `rotate_right` is an out-of-line call, 5 % of a score.
            for j in (k + 1..TOP_K).rev() {
                best[j] = best[j - 1];
            }
            best[k] = i;
        }
    }
    best.map(|i| {
        (i != usize::MAX).then(|| Contribution {
            feature: FEATURE_NAMES.get(i).copied().unwrap_or(NOVELTY),
            value: f.values.get(i).copied().unwrap_or(distance),
            weight: terms[i],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_scoring_equals_the_artifact_formula() {
        use crate::features::FEATURE_NAMES;
        let a = ModelArtifact {
            format: crate::model::ARTIFACT_FORMAT,
            version: "t".into(),
            feature_schema_version: crate::features::FEATURE_SCHEMA_VERSION,
            family: Family::Supervised,
            feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            mean: (0..N_FEATURES).map(|i| i as f32 * 0.1).collect(),
            scale: (0..N_FEATURES).map(|i| 0.5 + i as f32 * 0.05).collect(),
            weights: (0..N_FEATURES).map(|i| (i as f32 - 8.0) * 0.3).collect(),
            bias: -2.0,
            population: None,
            alert_threshold: 0.5,
            revoke_threshold: 0.9,
            training: Default::default(),
        };
        let mut values = [0f32; N_FEATURES];
        for (i, v) in values.iter_mut().enumerate() {
            *v = (i as f32 * 37.0) % 11.0;
        }
        let f = Features {
            values,
            from: None,
            to: None,
            dt_s: 0.0,
            late: false,
        };
        let mut logit = a.bias;
        for (i, x) in values.iter().enumerate() {
            logit += a.weights[i] * (transform(i, *x) - a.mean[i]) / a.scale[i];
        }
        let got = Model::new(a).score(&f).model_score;
        assert!(
            (got - sigmoid(logit)).abs() < 1e-5,
            "{got} vs {}",
            sigmoid(logit)
        );
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn top_terms_are_sorted_and_positive_only() {
        let mut terms = [0f32; N_FEATURES + 1];
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
        let top = top_terms(&terms, &f, 0.0);
        let names: Vec<_> = top.iter().flatten().map(|c| c.feature).collect();
        assert_eq!(
            names,
            [FEATURE_NAMES[7], FEATURE_NAMES[11], FEATURE_NAMES[2]]
        );
    }
}
