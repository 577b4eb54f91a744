//! The model file: what `train` writes under `models/` and `serve` loads.
//! JSON, versioned, self-describing: the feature schema it was trained on, the
//! scaling, the weights, the thresholds and the evidence behind them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::features::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};

pub const ARTIFACT_FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model {path} is not a valid artifact: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("model {path} has artifact format {found}, this build reads {ARTIFACT_FORMAT}")]
    Format { path: String, found: u32 },
    #[error("model {path} was trained on feature schema {found}, this build computes schema {FEATURE_SCHEMA_VERSION}; retrain it with `tokenwatch train`")]
    Schema { path: String, found: u32 },
    #[error("model {path} is inconsistent: {what}")]
    Inconsistent { path: String, what: String },
    #[error("model {path} is version {found:?}; the fleet is pinned to {pinned:?}, so the loaded model stays")]
    NotPinned {
        path: String,
        found: String,
        pinned: String,
    },
    #[error("training failed: {0}")]
    Train(String),
}

/// Hold-out figures recorded at training time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HoldoutMetrics {
    pub legit_tokens: u64,
    pub attacked_tokens: u64,
    pub token_recall: f64,
    pub token_precision: f64,
    pub false_flags_per_100k: f64,
    pub threshold: f32,
}

/// Which models a score combines.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Logistic regression on labelled attacks.
    Supervised,
    /// Distance to the nearest k-means centroid of legitimate traffic,
    /// calibrated to its quantile among legitimate requests: needs no labels.
    Population,
    /// The logistic regression with the population distance as one more
    /// input.
    #[default]
    Combined,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Family, String> {
        match s {
            "supervised" => Ok(Family::Supervised),
            "population" => Ok(Family::Population),
            "combined" => Ok(Family::Combined),
            other => Err(format!(
                "unknown model family `{other}` (supervised, population or combined)"
            )),
        }
    }
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Supervised => "supervised",
            Family::Population => "population",
            Family::Combined => "combined",
        }
    }
}

/// A k-means density model of legitimate requests, in the standardised
/// feature space of the artifact.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PopulationModel {
    pub centroids: Vec<Vec<f32>>,
    /// Nearest-centroid distance at evenly spaced quantiles (0 to 1) of the
    /// legitimate hold-out requests: the calibration of `population`.
    pub distance_quantiles: Vec<f32>,
    /// In `combined`: weight of the standardised `ln(1 + distance)` in the
    /// logit, with its mean and scale.
    pub weight: f32,
    pub mean: f32,
    pub scale: f32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingInfo {
    pub data_sha256: String,
    pub data_rows: u64,
    pub positive_rows: u64,
    pub linfa_version: String,
    pub alpha: f64,
    pub max_iterations: u64,
    /// k-means clusters of the population model (0: none).
    #[serde(default)]
    pub clusters: usize,
    pub holdout: HoldoutMetrics,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelArtifact {
    pub format: u32,
    /// Shown in verdicts, metrics and the API: which model decided.
    pub version: String,
    pub feature_schema_version: u32,
    pub family: Family,
    pub feature_names: Vec<String>,
    /// Standardisation of the transformed features.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Present for `population` and `combined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<PopulationModel>,
    /// Score at or above which a token is flagged for alerting / revoking.
    pub alert_threshold: f32,
    pub revoke_threshold: f32,
    pub training: TrainingInfo,
}

impl ModelArtifact {
    pub fn load(path: &Path) -> Result<ModelArtifact, ModelError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: p.clone(),
            source,
        })?;
        let a: ModelArtifact = serde_json::from_str(&text).map_err(|source| ModelError::Parse {
            path: p.clone(),
            source,
        })?;
        a.check(&p)?;
        Ok(a)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = serde_json::to_string_pretty(self).expect("artifact serialises");
        text.push('\n');
        std::fs::write(path, text)
    }

    fn check(&self, p: &str) -> Result<(), ModelError> {
        if self.format != ARTIFACT_FORMAT {
            return Err(ModelError::Format {
                path: p.into(),
                found: self.format,
            });
        }
        if self.feature_schema_version != FEATURE_SCHEMA_VERSION {
            return Err(ModelError::Schema {
                path: p.into(),
                found: self.feature_schema_version,
            });
        }
        let bad = |what: String| {
            Err(ModelError::Inconsistent {
                path: p.into(),
                what,
            })
        };
        if self
            .feature_names
            .iter()
            .map(String::as_str)
            .ne(FEATURE_NAMES.iter().copied())
        {
            return bad("feature names differ from this build's schema".into());
        }
        for (name, v) in [
            ("mean", &self.mean),
            ("scale", &self.scale),
            ("weights", &self.weights),
        ] {
            if v.len() != N_FEATURES {
                return bad(format!(
                    "{name} has {} values, expected {N_FEATURES}",
                    v.len()
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return bad(format!("{name} holds a non-finite value"));
            }
        }
        match (&self.population, self.family) {
            (None, Family::Population | Family::Combined) => {
                return bad(format!(
                    "family {} needs a population model",
                    self.family.as_str()
                ))
            }
            (Some(p), _) => {
                if p.centroids.is_empty()
                    || p.centroids.iter().any(|c| c.len() != N_FEATURES)
                    || p.centroids.iter().flatten().any(|x| !x.is_finite())
                {
                    return bad(format!(
                        "population centroids must be non-empty rows of {N_FEATURES} finite values"
                    ));
                }
                if p.distance_quantiles.len() < 2
                    || p.distance_quantiles.iter().any(|x| !x.is_finite())
                    || p.distance_quantiles.windows(2).any(|w| w[0] > w[1])
                {
                    return bad(
                        "population distance_quantiles must be ascending, at least 2".into(),
                    );
                }
                if !(p.scale > 0.0 && p.weight.is_finite() && p.mean.is_finite()) {
                    return bad(
                        "population weight, mean and scale must be finite, scale positive".into(),
                    );
                }
            }
            (None, Family::Supervised) => {}
        }
        if self.scale.iter().any(|s| *s <= 0.0) {
            return bad("scale must be positive".into());
        }
        for (name, t) in [
            ("alert_threshold", self.alert_threshold),
            ("revoke_threshold", self.revoke_threshold),
        ] {
            if !(0.0..=1.0).contains(&t) {
                return bad(format!("{name} {t} is outside [0, 1]"));
            }
        }
        Ok(())
    }
}
