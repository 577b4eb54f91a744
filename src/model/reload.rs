//! Model reload: the file is read again and swapped in while scoring goes
//! on; the next event is scored by the new model and none is dropped. On
//! any error the loaded model stays.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Model, ModelArtifact, ModelError};
use crate::metrics::Metrics;

/// The model in use, swappable at run time.
pub type ModelHandle = Arc<ArcSwap<Model>>;

/// Loads the model file again and swaps it in; the next event is scored by
/// the new model, no event is dropped. On error the loaded model stays.
pub fn reload(handle: &ModelHandle, path: &Path, metrics: &Metrics) -> Result<String, ModelError> {
    match ModelArtifact::load(path) {
        Ok(artifact) => {
            let model = Model::new(artifact);
            let version = model.version().to_owned();
            handle.store(Arc::new(model));
            metrics.set_model_version(&version);
            metrics.model_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(%version, "model reloaded");
            Ok(version)
        }
        Err(e) => {
            metrics.model_reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "model reload failed; keeping the loaded model");
            Err(e)
        }
    }
}
