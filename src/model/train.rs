//! Training: labelled feature rows → an artifact (linfa): a logistic
//! regression on attacks, a k-means density model of legitimate traffic, or
//! both combined; standardisation learned from the data and thresholds chosen
//! on a held-out split for a stated false-flag budget.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, Axis};

use super::artifact::{
    Family, HoldoutMetrics, ModelArtifact, ModelError, PopulationModel, TrainingInfo,
    ARTIFACT_FORMAT,
};
use super::score::{transform, Model};
use crate::features::{Features, FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};

/// One request's features, with whose token it was and whether the attacker
/// made it.
#[derive(Clone, Debug)]
pub struct Row {
    pub token: u128,
    pub features: Features,
    pub attacker: bool,
    /// The token was stolen at some point (its legitimate requests too).
    pub attacked_token: bool,
}

#[derive(Clone, Debug)]
pub struct TrainParams {
    pub family: Family,
    /// L2 penalty.
    pub alpha: f64,
    pub max_iterations: u64,
    /// k-means clusters of the population model.
    pub clusters: usize,
    /// Share of tokens held out for threshold choice and the recorded figures.
    pub holdout: f64,
    /// False flags per 100k legitimate tokens allowed at the revoke threshold.
    pub revoke_budget_per_100k: f64,
    /// The same for the (lower) alert threshold.
    pub alert_budget_per_100k: f64,
    /// Keep at most this many legitimate rows per attacker row when fitting.
    pub negatives_per_positive: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            family: Family::default(),
            alpha: 1e-3,
            max_iterations: 300,
            clusters: 8,
            holdout: 0.3,
            revoke_budget_per_100k: 1.0,
            alert_budget_per_100k: 50.0,
            negatives_per_positive: 20,
        }
    }
}

/// Legitimate rows the population model is fitted on, at most.
const POPULATION_ROWS: usize = 20_000;
/// Knots of the population model's calibration.
const QUANTILE_KNOTS: usize = 201;

fn in_holdout(token: u128, share: f64) -> bool {
    ((token >> 64) as u64 % 10_000) < (share * 10_000.0) as u64
}

/// Every k-th row, so that at most `max` remain: deterministic thinning.
fn thin<'a>(rows: &[&'a Row], max: usize) -> Vec<&'a Row> {
    let step = rows.len().div_ceil(max.max(1)).max(1);
    rows.iter().copied().step_by(step).collect()
}

fn transformed(rows: &[&Row]) -> Array2<f64> {
    let mut x = Array2::<f64>::zeros((rows.len(), N_FEATURES));
    for (r, row) in rows.iter().enumerate() {
        for i in 0..N_FEATURES {
            x[[r, i]] = f64::from(transform(i, row.features.values[i]));
        }
    }
    x
}

/// Fits the model. `data_sha256` and the row count describe the input file.
pub fn train(
    rows: &[Row],
    params: &TrainParams,
    data_sha256: &str,
    version: &str,
) -> Result<ModelArtifact, ModelError> {
    let (train_rows, hold_rows): (Vec<&Row>, Vec<&Row>) = rows
        .iter()
        .partition(|r| !in_holdout(r.token, params.holdout));
    let legit: Vec<&Row> = train_rows
        .iter()
        .copied()
        .filter(|r| !r.attacked_token)
        .collect();
    let positives: Vec<&Row> = train_rows.iter().copied().filter(|r| r.attacker).collect();
    let supervised = params.family != Family::Population;
    if supervised && positives.is_empty() {
        return Err(ModelError::Train(
            "no attacker rows in the training split".into(),
        ));
    }
    if legit.is_empty() {
        return Err(ModelError::Train(
            "no legitimate rows in the training split".into(),
        ));
    }
    // The supervised fit sees every attack and a thinned sample of the rest;
    // the population model only legitimate traffic.
    let fit_rows: Vec<&Row> = if supervised {
        let negatives: Vec<&Row> = train_rows.iter().copied().filter(|r| !r.attacker).collect();
        positives
            .iter()
            .copied()
            .chain(thin(
                &negatives,
                positives.len() * params.negatives_per_positive,
            ))
            .collect()
    } else {
        thin(&legit, POPULATION_ROWS)
    };
    let mut x = transformed(&fit_rows);
    let mean = x.mean_axis(Axis(0)).expect("non-empty");
    let mut scale = x.std_axis(Axis(0), 0.0);
    scale.mapv_inplace(|s| if s < 1e-6 { 1.0 } else { s });
    for mut row in x.rows_mut() {
        row -= &mean;
        row /= &scale;
    }

    let mut artifact = ModelArtifact {
        format: ARTIFACT_FORMAT,
        version: version.to_owned(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        family: params.family,
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        mean: mean.iter().map(|v| *v as f32).collect(),
        scale: scale.iter().map(|v| *v as f32).collect(),
        weights: vec![0.0; N_FEATURES],
        bias: 0.0,
        population: None,
        alert_threshold: 0.5,
        revoke_threshold: 0.5,
        training: TrainingInfo {
            data_sha256: data_sha256.to_owned(),
            data_rows: rows.len() as u64,
            positive_rows: rows.iter().filter(|r| r.attacker).count() as u64,
            linfa_version: "0.8".into(),
            alpha: params.alpha,
            max_iterations: params.max_iterations,
            clusters: 0,
            holdout: HoldoutMetrics::default(),
        },
    };

    if params.family != Family::Supervised {
        artifact.population = Some(fit_population(&artifact, &legit, &hold_rows, params)?);
        artifact.training.clusters = params.clusters;
    }

    if supervised {
        let mut columns = N_FEATURES;
        if params.family == Family::Combined {
            // The population distance as one more, standardised, input.
            let scorer = Model::new(artifact.clone());
            let d: Array1<f64> = fit_rows
                .iter()
                .map(|r| f64::from(scorer.novelty(&scorer.standardise(&r.features)).0.ln_1p()))
                .collect();
            let (m, sd) = (d.mean().unwrap_or(0.0), d.std(0.0).max(1e-6));
            let p = artifact.population.as_mut().expect("fitted above");
            p.mean = m as f32;
            p.scale = sd as f32;
            let col = d.mapv(|v| (v - m) / sd);
            x.push_column(col.view())
                .map_err(|e| ModelError::Train(e.to_string()))?;
            columns += 1;
        }
        let y: Array1<bool> = fit_rows.iter().map(|r| r.attacker).collect();
        let fitted = LogisticRegression::default()
            .alpha(params.alpha)
            .max_iterations(params.max_iterations)
            .fit(&Dataset::new(x, y))
            .map_err(|e| ModelError::Train(e.to_string()))?;
        // linfa's positive class is the larger label; make the weights point
        // at "attacker" whatever it chose.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        let w: Vec<f32> = fitted.params().iter().map(|w| (sign * w) as f32).collect();
        debug_assert_eq!(w.len(), columns);
        artifact.weights = w[..N_FEATURES].to_vec();
        if let Some(p) = artifact.population.as_mut() {
            p.weight = w.get(N_FEATURES).copied().unwrap_or(0.0);
        }
        artifact.bias = (sign * fitted.intercept()) as f32;
    }

    let per_token = token_max_scores(&Model::new(artifact.clone()), &hold_rows);
    artifact.revoke_threshold = threshold_for_budget(&per_token, params.revoke_budget_per_100k);
    artifact.alert_threshold = threshold_for_budget(&per_token, params.alert_budget_per_100k)
        .min(artifact.revoke_threshold);
    artifact.training.holdout = holdout_metrics(&per_token, artifact.revoke_threshold);
    Ok(artifact)
}

/// k-means (linfa-clustering) over legitimate training rows, calibrated on
/// the legitimate hold-out rows' distances.
fn fit_population(
    artifact: &ModelArtifact,
    legit: &[&Row],
    hold_rows: &[&Row],
    params: &TrainParams,
) -> Result<PopulationModel, ModelError> {
    let scorer = Model::new(artifact.clone());
    let sample = thin(legit, POPULATION_ROWS);
    let mut z = Array2::<f64>::zeros((sample.len(), N_FEATURES));
    for (r, row) in sample.iter().enumerate() {
        for (i, v) in scorer.standardise(&row.features).iter().enumerate() {
            z[[r, i]] = f64::from(*v);
        }
    }
    let k = params.clusters.clamp(1, sample.len());
    // A fixed seed: the same data gives the same centroids.
    let kmeans = KMeans::params(k)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&DatasetBase::from(z))
        .map_err(|e| ModelError::Train(format!("k-means: {e}")))?;
    let centroids: Vec<Vec<f32>> = kmeans
        .centroids()
        .rows()
        .into_iter()
        .map(|c| c.iter().map(|v| *v as f32).collect())
        .collect();
    let mut population = PopulationModel {
        centroids,
        distance_quantiles: vec![0.0, 1.0],
        weight: 0.0,
        mean: 0.0,
        scale: 1.0,
    };
    let with_centroids = Model::new(ModelArtifact {
        population: Some(population.clone()),
        ..artifact.clone()
    });
    let mut d: Vec<f32> = hold_rows
        .iter()
        .filter(|r| !r.attacked_token)
        .map(|r| {
            with_centroids
                .novelty(&with_centroids.standardise(&r.features))
                .0
        })
        .collect();
    if d.is_empty() {
        return Err(ModelError::Train(
            "no legitimate rows in the hold-out split to calibrate the population model".into(),
        ));
    }
    d.sort_by(f32::total_cmp);
    population.distance_quantiles = (0..QUANTILE_KNOTS)
        .map(|q| d[(q * (d.len() - 1)) / (QUANTILE_KNOTS - 1)])
        .collect();
    Ok(population)
}

/// Per token: the highest model score its *attacker* requests got (attacked
/// tokens) or its highest overall (legitimate tokens). The model's own
/// score, before rules: the thresholds bound what the model flags, and a
/// rule acts on its own (a legitimate token a rule floors at 0.995 would
/// otherwise push the revoke threshold above every theft the model sees).
pub fn token_max_scores(model: &Model, rows: &[&Row]) -> Vec<(bool, f32)> {
    let mut by_token: std::collections::HashMap<u128, (bool, f32)> =
        std::collections::HashMap::new();
    for r in rows {
        let s = model.score(&r.features).model_score;
        let e = by_token.entry(r.token).or_insert((r.attacked_token, 0.0));
        if !r.attacked_token || r.attacker {
            e.1 = e.1.max(s);
        }
    }
    let mut v: Vec<_> = by_token.into_values().collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v
}

/// The lowest threshold whose false flags on legitimate tokens stay within
/// `budget` per 100k. With fewer than 100k legitimate tokens a budget below
/// one token means none may be flagged.
pub fn threshold_for_budget(per_token: &[(bool, f32)], budget_per_100k: f64) -> f32 {
    let mut legit: Vec<f32> = per_token.iter().filter(|t| !t.0).map(|t| t.1).collect();
    legit.sort_by(|a, b| b.total_cmp(a));
    let allowed = (budget_per_100k * legit.len() as f64 / 100_000.0).floor() as usize;
    let t = legit.get(allowed).copied().unwrap_or(0.0);
    // Just above the highest legitimate score that must not be flagged.
    (t + 1e-4).clamp(0.05, 0.9999)
}

pub fn holdout_metrics(per_token: &[(bool, f32)], threshold: f32) -> HoldoutMetrics {
    let legit = per_token.iter().filter(|t| !t.0).count() as u64;
    let attacked = per_token.iter().filter(|t| t.0).count() as u64;
    let tp = per_token.iter().filter(|t| t.0 && t.1 >= threshold).count() as f64;
    let fp = per_token
        .iter()
        .filter(|t| !t.0 && t.1 >= threshold)
        .count() as f64;
    HoldoutMetrics {
        legit_tokens: legit,
        attacked_tokens: attacked,
        token_recall: if attacked > 0 {
            tp / attacked as f64
        } else {
            0.0
        },
        token_precision: if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 },
        false_flags_per_100k: if legit > 0 {
            fp * 100_000.0 / legit as f64
        } else {
            0.0
        },
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_respects_the_budget() {
        let mut v: Vec<(bool, f32)> = (0..1000).map(|i| (false, i as f32 / 1000.0)).collect();
        v.push((true, 0.9995));
        let t = threshold_for_budget(&v, 1.0);
        assert!(t > 0.999, "{t}");
        let m = holdout_metrics(&v, t);
        assert_eq!(m.false_flags_per_100k, 0.0);
        assert_eq!(m.token_recall, 1.0);
        // 1000 per 100k over 1000 tokens allows 10 false flags.
        let loose = threshold_for_budget(&v, 1000.0);
        assert!((loose - 0.9891).abs() < 1e-3, "{loose}");
    }
}
