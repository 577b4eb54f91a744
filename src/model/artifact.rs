//! The model file: what `train` writes under `models/` and `serve` loads.
//! JSON, versioned, self-describing: the feature schema it was trained on, the
//! scaling, the weights, the thresholds and the evidence behind them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::features::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};

pub const ARTIFACT_FORMAT: u32 = 1;

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

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingInfo {
    pub data_sha256: String,
    pub data_rows: u64,
    pub positive_rows: u64,
    pub linfa_version: String,
    pub alpha: f64,
    pub max_iterations: u64,
    pub holdout: HoldoutMetrics,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelArtifact {
    pub format: u32,
    /// Shown in verdicts, metrics and the API: which model decided.
    pub version: String,
    pub feature_schema_version: u32,
    pub feature_names: Vec<String>,
    /// Standardisation of the transformed features.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
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
