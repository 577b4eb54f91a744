//! The truth side file: which tokens were stolen, from when, and how. What
//! an incident log can give (`eval --truth`, `train --truth`), and what
//! `simulate --truth` writes instead of inline labels.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Scenario, SimEvent};

/// One reported theft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    /// RFC 3339 time, or milliseconds since the epoch.
    pub stolen_at: StolenAt,
    /// One of the simulator's attack scenarios; absent: `reported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StolenAt {
    Ms(i64),
    Rfc3339(String),
}

/// Writes the truth of `events` (token id → theft) to `path`, sorted by
/// token id, so the same events give the same bytes.
pub fn write_truth(path: &Path, seed: u64, events: &[SimEvent]) -> std::io::Result<usize> {
    let mut stolen: BTreeMap<String, Reported> = BTreeMap::new();
    for e in events.iter().filter(|e| e.label.attacked) {
        stolen.entry(e.sim_token_id(seed)).or_insert(Reported {
            stolen_at: StolenAt::Ms(e.label.stolen_at_ms),
            scenario: Some(e.label.scenario),
        });
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut w, &stolen)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(stolen.len())
}
