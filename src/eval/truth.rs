//! Where the truth about a telemetry file comes from: the simulator's inline
//! `label` objects, a side file of reported thefts (`--truth`), or nowhere
//! (production telemetry, for the population model and `backtest`).
//!
//! A truth file is what an incident log gives: which tokens were stolen and
//! from when, not which request the thief made. So with a truth file every
//! request of a stolen token from `stolen_at` on counts as the attacker's;
//! the victim's own later requests count too, which can only make the
//! time-to-detect in requests look longer than it was.

use std::collections::HashMap;
use std::path::Path;

use crate::sim::{Label, Reported, Scenario, StolenAt};

/// Token id → reported theft. Tokens not in it are taken as legitimate.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    stolen: HashMap<String, (i64, Scenario)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source} (expected {{\"<token id>\": {{\"stolen_at\": \"<RFC 3339>\", \"scenario\": \"<optional>\"}}}})")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: token {token}: stolen_at {value:?} is not an RFC 3339 time")]
    Time {
        path: String,
        token: String,
        value: String,
    },
    #[error("{path}: token {token}: scenario {scenario} is not a theft")]
    NotAnAttack {
        path: String,
        token: String,
        scenario: &'static str,
    },
}

impl Truth {
    pub fn load(path: &Path) -> Result<Truth, TruthError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TruthError::Io {
            path: p.clone(),
            source,
        })?;
        let raw: HashMap<String, Reported> =
            serde_json::from_slice(&bytes).map_err(|source| TruthError::Parse {
                path: p.clone(),
                source,
            })?;
        let mut stolen = HashMap::with_capacity(raw.len());
        for (token, r) in raw {
            let ms = match &r.stolen_at {
                StolenAt::Ms(ms) => *ms,
                StolenAt::Rfc3339(s) => rfc3339_ms(s).ok_or_else(|| TruthError::Time {
                    path: p.clone(),
                    token: token.clone(),
                    value: s.clone(),
                })?,
            };
            let scenario = r.scenario.unwrap_or(Scenario::Reported);
            if !scenario.is_attack() {
                return Err(TruthError::NotAnAttack {
                    path: p,
                    token,
                    scenario: scenario.as_str(),
                });
            }
            stolen.insert(token, (ms, scenario));
        }
        Ok(Truth { stolen })
    }

    /// The label of a request of `token_id` at `ts_ms`.
    pub fn label(&self, token_id: &str, ts_ms: i64) -> Label {
        match self.stolen.get(token_id) {
            Some(&(stolen_at_ms, scenario)) => Label {
                scenario,
                attacked: true,
                attacker: ts_ms >= stolen_at_ms,
                stolen_at_ms,
            },
            None => unreported(),
        }
    }
}

/// A request nobody reported: legitimate as far as anyone knows.
pub fn unreported() -> Label {
    Label {
        scenario: Scenario::Unreported,
        attacked: false,
        attacker: false,
        stolen_at_ms: 0,
    }
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Where each request's label comes from.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// Every record carries the simulator's `label`; one without is an error.
    Inline,
    /// A truth file; inline labels are ignored.
    Truth(&'a Truth),
    /// Inline labels where present, otherwise legitimate: production
    /// telemetry, for the population model.
    Unlabelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Truth, TruthError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("truth.json");
        std::fs::write(&p, json).unwrap();
        Truth::load(&p)
    }

    #[test]
    fn a_reported_token_is_the_attackers_from_its_theft_on() {
        let t = load(
            r#"{"a": {"stolen_at": "2026-11-23T08:00:00Z", "scenario": "concurrent"},
                          "b": {"stolen_at": 1795420800000}}"#,
        )
        .unwrap();
        let at = 1_795_420_800_000;
        let before = t.label("a", at - 1);
        assert!(before.attacked && !before.attacker);
        assert_eq!(before.scenario, Scenario::Concurrent);
        assert!(t.label("a", at).attacker);
        assert_eq!(t.label("b", at + 5).scenario, Scenario::Reported);
        assert_eq!(t.label("b", at + 5).stolen_at_ms, at);
        assert!(!t.label("c", at).attacked);
    }

    #[test]
    fn a_bad_truth_file_names_the_token_and_the_field() {
        let e = load(r#"{"x": {"stolen_at": "yesterday"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token x") && e.contains("yesterday"), "{e}");
        let e = load(r#"{"x": {"stolen_at": 1, "scenario": "legit_home"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a theft"), "{e}");
        let e = load(r#"{"x": {"stolen_at": 1, "by": "me"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("by"), "{e}");
    }
}
