//! Evaluation: replays labelled telemetry through the detection core (the
//! shared path of `train` and `eval`) and measures detection per scenario
//! against a fixed-rule baseline.

mod baseline;
mod plot;
mod report;

pub use baseline::TravelRule;
pub use plot::write_plots;
pub use report::{comparison, evaluate, EvalReport, ScenarioMetrics, SystemReport, TokenOutcome};

use std::io::BufRead;
use std::sync::Arc;

use serde::Deserialize;

use crate::detect::{Detector, DetectorParams};
use crate::geo::GeoHandle;
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

/// Feeds every line of a labelled NDJSON file to `sink` with `detector`;
/// the sink decides whether to extract features (train) or score (eval).
/// Returns the SHA-256 of the file's decompressed lines, each with its
/// newline (the same data gives the same hash, gzipped or not).
pub fn replay(
    path: &std::path::Path,
    mut detector: Detector,
    mut sink: impl FnMut(&mut Detector, &Event<'_>, Label),
) -> Result<String, ReplayError> {
    use sha2::Digest;
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Io {
        path: p.clone(),
        source,
    })?;
    // `.gz` files (the committed datasets) are read through gzip.
    let file: Box<dyn std::io::Read> = if p.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut hasher = sha2::Sha256::new();
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
        sink(&mut detector, &event, label);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The training rows of a labelled file: each request's features and truth.
/// Features only: no model is needed, or consulted.
pub fn training_rows(
    path: &std::path::Path,
    geo: Arc<GeoHandle>,
    params: DetectorParams,
) -> Result<(Vec<crate::model::train::Row>, String), ReplayError> {
    let mut rows = Vec::new();
    let detector = Detector::features_only(geo, params);
    let sha = replay(path, detector, |d, event, label| {
        let (token, features, _) = d.extract(event);
        rows.push(crate::model::train::Row {
            token,
            features,
            attacker: label.attacker,
            attacked_token: label.attacked,
        });
    })?;
    Ok((rows, sha))
}
