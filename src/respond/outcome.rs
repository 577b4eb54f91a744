//! What a target did with a decision, and the settled decision with every
//! target's outcome. The labels here are the only copy: metrics and the
//! alert events read them from [`Outcome::label`] and [`Outcome::LABELS`].

use std::time::Duration;

use serde::Serialize;

use super::http::CallError;
use crate::decide::Decision;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The authorization server or IdP accepted the revocation.
    Revoked { attempts: u32 },
    /// On the edge denylist: the gateway refuses the token from now on.
    Denied,
    /// The alert event or webhook was delivered.
    Delivered { attempts: u32 },
    /// Policy said not to act (shadow or alert mode, or an alert-level
    /// decision for a revoking target).
    NotActed { mode: &'static str },
    /// The brake against mass revocation held it; an operator reviews it
    /// and revokes by hand (`POST /v1/tokens/{id}/revoke`) if it stands.
    Braked,
    /// The brake held it and the operator's reset dropped it.
    Dropped,
    /// Already acted on (a replayed or duplicate decision, or a subject
    /// already logged out).
    Duplicate,
    /// Nothing here can revoke it (no handle, no endpoint, a template value
    /// the decision lacks).
    Unrevocable { why: String },
    /// The handle would not open (wrong key, tampered, other token id).
    BadHandle { why: String },
    /// The server refused, or retries ran out.
    Failed { why: String, permanent: bool },
}

impl Outcome {
    /// Every value [`Outcome::label`] can take, for creating metric series
    /// at zero.
    pub const LABELS: [&'static str; 11] = [
        "revoked",
        "denied",
        "delivered",
        "not_acted",
        "braked",
        "dropped",
        "duplicate",
        "unrevocable",
        "bad_handle",
        "rejected",
        "gave_up",
    ];

    /// Label for `tokenwatch_revocations_total{outcome}`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Revoked { .. } => "revoked",
            Outcome::Denied => "denied",
            Outcome::Delivered { .. } => "delivered",
            Outcome::NotActed { .. } => "not_acted",
            Outcome::Braked => "braked",
            Outcome::Dropped => "dropped",
            Outcome::Duplicate => "duplicate",
            Outcome::Unrevocable { .. } => "unrevocable",
            Outcome::BadHandle { .. } => "bad_handle",
            Outcome::Failed {
                permanent: true, ..
            } => "rejected",
            Outcome::Failed {
                permanent: false, ..
            } => "gave_up",
        }
    }

    /// Something now stops the token.
    pub fn revoked(&self) -> bool {
        matches!(self, Outcome::Revoked { .. } | Outcome::Denied)
    }

    /// May succeed if tried again later (once a target's retry budget is
    /// spent: given up).
    pub fn pending(&self) -> bool {
        matches!(
            self,
            Outcome::Failed {
                permanent: false,
                ..
            }
        )
    }

    pub(super) fn of_call(result: Result<u32, CallError>, ok: fn(u32) -> Outcome) -> Outcome {
        match result {
            Ok(attempts) => ok(attempts),
            Err(CallError::Impossible(why)) => Outcome::Unrevocable { why },
            Err(e) => Outcome::Failed {
                permanent: !e.retryable(),
                why: e.to_string(),
            },
        }
    }
}

/// What one target did with one decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetOutcome {
    pub target: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The settled decision, with what every target did and how long it took.
#[derive(Clone, Debug, Serialize)]
pub struct Settled {
    pub decision: Decision,
    pub outcomes: Vec<TargetOutcome>,
    pub took: Duration,
    /// Wall-clock time the outcomes were known, ms since the epoch.
    pub settled_at_ms: i64,
}

impl Settled {
    pub fn outcome_of(&self, target: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.target == target)
            .map(|o| &o.outcome)
    }

    /// A target may still succeed if the decision is tried again (or,
    /// from a revoker with a retry budget, gave up).
    pub fn pending(&self) -> bool {
        self.outcomes.iter().any(|o| o.outcome.pending())
    }

    /// Something now stops the token.
    pub fn revoked(&self) -> bool {
        self.outcomes.iter().any(|o| o.outcome.revoked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_listed() {
        let all = [
            Outcome::Revoked { attempts: 1 },
            Outcome::Denied,
            Outcome::Delivered { attempts: 1 },
            Outcome::NotActed { mode: "shadow" },
            Outcome::Braked,
            Outcome::Dropped,
            Outcome::Duplicate,
            Outcome::Unrevocable { why: String::new() },
            Outcome::BadHandle { why: String::new() },
            Outcome::Failed {
                why: String::new(),
                permanent: true,
            },
            Outcome::Failed {
                why: String::new(),
                permanent: false,
            },
        ];
        let labels: Vec<_> = all.iter().map(Outcome::label).collect();
        assert_eq!(labels, Outcome::LABELS);
    }
}
