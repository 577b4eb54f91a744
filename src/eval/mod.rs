//! Replays labelled telemetry through the detection core: the shared path
//! of `train` and `eval`.

use std::io::BufRead;
use std::sync::Arc;

use serde::Deserialize;

use crate::detect::{Detector, DetectorParams, ModelHandle};
use crate::geo::GeoHandle;
use crate::model::train::Row;
use crate::sim::Label;
use crate::telemetry::Event;

#[derive(Deserialize)]
struct LabelOnly {
    label: Option<Label>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Record {
        path: String,
        line: usize,
        source: crate::telemetry::TelemetryError,
    },
    #[error("{path} line {line} has no `label`; train and eval need labelled telemetry")]
    NoLabel { path: String, line: usize },
}

/// One replayed request.
pub struct Replayed {
    pub row: Row,
    pub label: Label,
    pub ts_ms: i64,
}

/// Feeds every line of a labelled NDJSON file through a detector and hands
/// each request's features and label to `sink`. Returns the SHA-256 of the
/// file's bytes.
pub fn replay(
    path: &std::path::Path,
    geo: Arc<GeoHandle>,
    model: ModelHandle,
    params: DetectorParams,
    mut sink: impl FnMut(&mut Detector, Replayed),
) -> Result<String, ReplayError> {
    use sha2::Digest;
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Io {
        path: p.clone(),
        source,
    })?;
    let mut hasher = sha2::Sha256::new();
    let mut detector = Detector::new(geo, model, params);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReplayError::Io {
            path: p.clone(),
            source,
        })?;
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        if line.trim().is_empty() {
            continue;
        }
        let event = Event::parse(line.as_bytes()).map_err(|source| ReplayError::Record {
            path: p.clone(),
            line: i + 1,
            source,
        })?;
        let label = serde_json::from_str::<LabelOnly>(&line)
            .ok()
            .and_then(|l| l.label)
            .ok_or(ReplayError::NoLabel {
                path: p.clone(),
                line: i + 1,
            })?;
        let (key, features, _) = detector.extract(&event);
        let row = Row {
            token: key,
            features,
            attacker: label.attacker,
            attacked_token: label.attacked,
        };
        let ts_ms = event.ts_ms;
        sink(&mut detector, Replayed { row, label, ts_ms });
    }
    Ok(format!("{:x}", hasher.finalize()))
}
