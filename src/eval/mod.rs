//! Evaluation: replays labelled telemetry through the detection core (the
//! shared path of `train` and `eval`) and measures detection per scenario
//! against a fixed-rule baseline.

mod backtest;
mod baseline;
mod plot;
mod report;
mod truth;

pub use backtest::{backtest, BacktestReport, Day, Tally, WouldRevoke};
pub use baseline::TravelRule;
pub use plot::write_plots;
pub use report::{comparison, evaluate, EvalReport, ScenarioMetrics, SystemReport, TokenOutcome};
pub use truth::{Labels, Truth, TruthError};

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
    #[error("{path} line {line} has no `label`: give the labels as a side file (--truth), or train --family population, which needs none")]
    NoLabel { path: String, line: usize },
}

/// Feeds every line of an NDJSON telemetry file to `sink` with `detector`
/// and the line's label from `labels`; the sink decides whether to extract
/// features (train) or score (eval, backtest).
/// Returns the SHA-256 of the file's decompressed lines, each with its
/// newline (the same data gives the same hash, gzipped or not).
pub fn replay(
    path: &std::path::Path,
    mut detector: Detector,
    labels: Labels<'_>,
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
        let inline = || {
            serde_json::from_str::<LabelOnly>(&line)
                .ok()
                .and_then(|l| l.label)
        };
        let label = match labels {
            Labels::Truth(t) => t.label(&event.token_id, event.ts_ms),
            Labels::Unlabelled => inline().unwrap_or_else(truth::unreported),
            Labels::Inline => inline().ok_or(ReplayError::NoLabel {
                path: p.clone(),
                line: i + 1,
            })?,
        };
        sink(&mut detector, &event, label);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The training rows of a file: each request's features and truth.
/// Features only: no model is needed, or consulted.
pub fn training_rows(
    path: &std::path::Path,
    geo: Arc<GeoHandle>,
    params: DetectorParams,
    labels: Labels<'_>,
) -> Result<(Vec<crate::model::train::Row>, String), ReplayError> {
    let mut rows = Vec::new();
    let detector = Detector::features_only(geo, params);
    let sha = replay(path, detector, labels, |d, event, label| {
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
