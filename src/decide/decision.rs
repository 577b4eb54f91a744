//! The decision record: what the detector decided about a token, written to
//! `tokenwatch.decisions` before anything acts on it (the outbox). A crash
//! after the write and before the revocation loses nothing: the revoker
//! consumes the topic and commits only once every target is settled.

use serde::{Deserialize, Serialize};

use crate::detect::{Action, Explanation};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// Stable id: token id + action, so replays of the same decision are
    /// recognised as one.
    pub decision_id: String,
    pub token_id: String,
    pub sub: String,
    /// `sub` comes from verified claims (or from an operator): only then may
    /// a target log the subject out. Unverified, the token alone is revoked.
    #[serde(default)]
    pub subject_verified: bool,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    pub action: Action,
    pub score: f32,
    pub model_version: String,
    pub explanation: String,
    #[serde(default)]
    pub rule: Option<String>,
    /// Event time of the request that triggered the decision, ms.
    pub event_ts_ms: i64,
    /// Wall-clock time the decision was made, ms.
    pub decided_at_ms: i64,
    /// The sealed raw token, if the telemetry carried one. Opened only by
    /// the revoker.
    #[serde(default)]
    pub token_handle: Option<String>,
    #[serde(default)]
    pub token_exp: Option<i64>,
}

impl Decision {
    pub fn decision_id(token_id: &str, action: Action) -> String {
        format!("{token_id}/{}", action.as_str())
    }

    pub fn from_explained(
        event: &crate::telemetry::Event<'_>,
        verdict: &crate::detect::Verdict,
        explanation: &Explanation,
        model_version: &str,
        now_ms: i64,
    ) -> Decision {
        Decision {
            decision_id: Decision::decision_id(&event.token_id, verdict.action),
            token_id: event.token_id.to_string(),
            sub: event.sub.to_string(),
            subject_verified: event.sub_verified && !event.sub.is_empty(),
            tenant: event.tenant.as_deref().map(str::to_owned),
            client_id: event.client_id.as_deref().map(str::to_owned),
            action: verdict.action,
            score: verdict.score.score,
            model_version: model_version.to_owned(),
            explanation: explanation.text.clone(),
            rule: explanation.rule.map(str::to_owned),
            event_ts_ms: event.ts_ms,
            decided_at_ms: now_ms,
            token_handle: event.token_handle.as_deref().map(str::to_owned),
            token_exp: event.token_exp,
        }
    }
}

/// `rule` of a decision an operator made by hand.
pub const MANUAL_RULE: &str = "manual";

impl Decision {
    /// An operator's revocation of `token_id` (`POST /v1/tokens/{id}/revoke`).
    /// A decision of its own (its time in the id), so it always acts: after
    /// a period in shadow or alert mode, whose automatic decision was
    /// settled without acting, and again after an automatic revocation when
    /// the operator wants the subject logged out once more.
    pub fn manual(
        token_id: &str,
        sub: &str,
        reason: &str,
        token_handle: Option<String>,
        now_ms: i64,
    ) -> Decision {
        Decision {
            decision_id: format!("{token_id}/{MANUAL_RULE}/{now_ms}"),
            token_id: token_id.to_owned(),
            sub: sub.to_owned(),
            // The operator names the subject; their authority is the proof.
            subject_verified: !sub.is_empty(),
            tenant: None,
            client_id: None,
            action: Action::Revoke,
            score: 1.0,
            model_version: String::new(),
            explanation: format!("revoked by an operator: {reason}"),
            rule: Some(MANUAL_RULE.to_owned()),
            event_ts_ms: now_ms,
            decided_at_ms: now_ms,
            token_handle,
            token_exp: None,
        }
    }
}
