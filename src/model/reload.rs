//! Model reload and the fleet's pin. The file is read again and swapped in
//! while scoring goes on; the next event is scored by the new model and none
//! is dropped. On any error the loaded model stays.
//!
//! A pin (set through the control topic, `ingest/control.rs`) names the
//! version every instance of the fleet must score with: an instance whose
//! file holds another version keeps the model it has, reports the mismatch
//! (`tokenwatch_model_pin_mismatch`, `/v1/policy`) and tries its file again
//! until it holds the pinned version, so a ConfigMap rolled out pod by pod
//! never leaves the fleet scoring with two models unnoticed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{Model, ModelArtifact, ModelError};
use crate::metrics::Metrics;

/// The model in use, swappable at run time.
pub type ModelHandle = Arc<ArcSwap<Model>>;

/// Loads the model file again and swaps it in; the next event is scored by
/// the new model, no event is dropped. On error the loaded model stays.
pub fn reload(handle: &ModelHandle, path: &Path, metrics: &Metrics) -> Result<String, ModelError> {
    let artifact = load(path, metrics)?;
    Ok(swap(handle, artifact, metrics))
}

fn load(path: &Path, metrics: &Metrics) -> Result<ModelArtifact, ModelError> {
    ModelArtifact::load(path).inspect_err(|e| {
        metrics.model_reloads.with_label_values(&["error"]).inc();
        tracing::error!(error = %e, "model reload failed; keeping the loaded model");
    })
}

fn swap(handle: &ModelHandle, artifact: ModelArtifact, metrics: &Metrics) -> String {
    let model = Model::new(artifact);
    let version = model.version().to_owned();
    handle.store(Arc::new(model));
    metrics.set_model_version(&version);
    metrics.model_reloads.with_label_values(&["ok"]).inc();
    tracing::info!(%version, "model reloaded");
    version
}

/// The model in use, the file it comes from and the fleet's pin.
pub struct ModelSource {
    pub handle: ModelHandle,
    pub path: PathBuf,
    pin: Mutex<Option<String>>,
}

impl ModelSource {
    pub fn new(handle: ModelHandle, path: PathBuf) -> ModelSource {
        ModelSource {
            handle,
            path,
            pin: Mutex::new(None),
        }
    }

    pub fn loaded_version(&self) -> String {
        self.handle.load().version().to_owned()
    }

    pub fn pin(&self) -> Option<String> {
        self.pin.lock().expect("pin lock").clone()
    }

    /// No pin, or the loaded model is the pinned one.
    pub fn in_force(&self) -> bool {
        self.pin().is_none_or(|p| p == self.loaded_version())
    }

    fn report(&self, metrics: &Metrics) {
        metrics.model_pin_mismatch.set(i64::from(!self.in_force()));
    }

    /// Reads the file again and swaps it in, unless the fleet pinned
    /// another version: then the loaded model stays (`NotPinned`).
    pub fn reload(&self, metrics: &Metrics) -> Result<String, ModelError> {
        let artifact = load(&self.path, metrics)?;
        if let Some(pin) = self.pin().filter(|p| *p != artifact.version) {
            self.report(metrics);
            return Err(ModelError::NotPinned {
                path: self.path.display().to_string(),
                found: artifact.version,
                pinned: pin,
            });
        }
        let version = swap(&self.handle, artifact, metrics);
        self.report(metrics);
        Ok(version)
    }

    /// Reads the file and swaps it in whatever its version, then pins the
    /// fleet to it (the caller publishes the pin): an operator's reload.
    pub fn reload_and_pin(&self, metrics: &Metrics) -> Result<String, ModelError> {
        let version = swap(&self.handle, load(&self.path, metrics)?, metrics);
        *self.pin.lock().expect("pin lock") = Some(version.clone());
        self.report(metrics);
        Ok(version)
    }

    /// Applies the fleet's pin (None: unpinned): if the loaded model is not
    /// the pinned version, the file is read and swapped in when it holds it.
    pub fn set_pin(&self, pin: Option<String>, metrics: &Metrics) {
        *self.pin.lock().expect("pin lock") = pin.clone();
        self.enforce(metrics);
    }

    /// With a pin the loaded model is not, tries the file again (the
    /// periodic task calls this); logs a mismatch that remains.
    pub fn enforce(&self, metrics: &Metrics) {
        if !self.in_force() {
            match self.reload(metrics) {
                Ok(v) => tracing::info!(version = %v, "pinned model now in force"),
                Err(e) => tracing::warn!(
                    error = %e,
                    loaded = %self.loaded_version(),
                    "the fleet's pinned model is not in force here"
                ),
            }
        }
        self.report(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, version: &str) -> ModelSource {
        let path = dir.join("m.json");
        write(&path, version);
        let model = Model::new(ModelArtifact::load(&path).unwrap());
        ModelSource::new(Arc::new(ArcSwap::from_pointee(model)), path)
    }

    fn write(path: &Path, version: &str) {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
        )
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["version"] = version.into();
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    #[test]
    fn a_pin_the_file_does_not_hold_keeps_the_loaded_model_until_the_file_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::default();
        let src = source(dir.path(), "v1");
        write(&src.path, "v2");
        src.set_pin(Some("v3".into()), &m);
        assert_eq!(src.loaded_version(), "v1", "v2 is not the pinned model");
        assert!(!src.in_force());
        assert_eq!(m.model_pin_mismatch.get(), 1);
        assert!(matches!(src.reload(&m), Err(ModelError::NotPinned { .. })));
        write(&src.path, "v3");
        src.enforce(&m);
        assert_eq!(src.loaded_version(), "v3");
        assert_eq!(m.model_pin_mismatch.get(), 0);
        src.set_pin(None, &m);
        write(&src.path, "v4");
        assert_eq!(src.reload(&m).unwrap(), "v4", "unpinned: any version");
    }

    #[test]
    fn an_operators_reload_pins_the_version_it_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::default();
        let src = source(dir.path(), "v1");
        src.set_pin(Some("v1".into()), &m);
        write(&src.path, "v2");
        assert_eq!(src.reload_and_pin(&m).unwrap(), "v2");
        assert_eq!(src.pin().as_deref(), Some("v2"));
        assert!(src.in_force());
    }
}
