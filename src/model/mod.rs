//! The model: a calibrated risk score from the features, with the features
//! that drove it, plus hard rules for the unambiguous cases. Trained by
//! `tokenwatch train` with linfa; scoring is pure.

mod artifact;
mod reload;
mod rules;
mod score;
pub mod train;

pub use artifact::{
    Family, HoldoutMetrics, ModelArtifact, ModelError, PopulationModel, TrainingInfo,
    ARTIFACT_FORMAT,
};
pub use reload::{reload, ModelHandle, ModelSource};
pub use rules::Rule;
pub use score::{transform, Contribution, Model, Score, NOVELTY, TOP_K};
