//! The alert event every flag becomes on `tokenwatch.alerts` and in
//! webhooks: the decision (without the sealed handle, which only the
//! revoker needs) and what each target did. Optionally a Security Event
//! Token (RFC 8417): a CAEP `session-revoked` event when a target really
//! revoked something, a tokenwatch event otherwise.

use serde::Serialize;
use serde_json::json;

use super::outcome::TargetOutcome;
use crate::decide::Decision;

/// CAEP 1.0 `session-revoked`.
pub const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// A flag that revoked nothing (alert-level, shadowed, braked or failed).
pub const TOKENWATCH_FLAGGED: &str = "urn:tokenwatch:secevent:token-flagged";

#[derive(Serialize)]
pub struct AlertEvent<'a> {
    pub decision_id: &'a str,
    pub token_id: &'a str,
    pub sub: &'a str,
    pub tenant: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub action: &'static str,
    pub score: f32,
    pub rule: Option<&'a str>,
    pub explanation: &'a str,
    pub model_version: &'a str,
    pub event_ts_ms: i64,
    pub decided_at_ms: i64,
    pub mode: &'static str,
    /// True when at least one revoking target succeeded.
    pub revoked: bool,
    pub outcomes: &'a [TargetOutcome],
}

impl<'a> AlertEvent<'a> {
    pub fn new(d: &'a Decision, mode: &'static str, outcomes: &'a [TargetOutcome]) -> Self {
        AlertEvent {
            decision_id: &d.decision_id,
            token_id: &d.token_id,
            sub: &d.sub,
            tenant: d.tenant.as_deref(),
            client_id: d.client_id.as_deref(),
            action: d.action.as_str(),
            score: d.score,
            rule: d.rule.as_deref(),
            explanation: &d.explanation,
            model_version: &d.model_version,
            event_ts_ms: d.event_ts_ms,
            decided_at_ms: d.decided_at_ms,
            mode,
            revoked: outcomes.iter().any(|o| o.outcome.revoked()),
            outcomes,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("alert event serialises")
    }

    /// The SET claims (RFC 8417 §2.2), subject as an SSF subject identifier.
    pub fn set_claims(
        &self,
        issuer: &str,
        audience: Option<&str>,
        now_ms: i64,
    ) -> serde_json::Value {
        let user = json!({"format": "opaque", "id": self.sub});
        let sub_id = match self.tenant {
            Some(t) => json!({
                "format": "complex",
                "user": user,
                "tenant": {"format": "opaque", "id": t},
            }),
            None => user,
        };
        let (uri, body) = if self.revoked {
            (
                CAEP_SESSION_REVOKED,
                json!({
                    "event_timestamp": now_ms / 1000,
                    "initiating_entity": "policy",
                    "reason_admin": {"en": self.explanation},
                    "token_id": self.token_id,
                    "score": self.score,
                }),
            )
        } else {
            (
                TOKENWATCH_FLAGGED,
                json!({
                    "event_timestamp": now_ms / 1000,
                    "action": self.action,
                    "mode": self.mode,
                    "reason_admin": {"en": self.explanation},
                    "token_id": self.token_id,
                    "score": self.score,
                    "outcomes": self.outcomes,
                }),
            )
        };
        let mut claims = json!({
            "iss": issuer,
            "iat": now_ms / 1000,
            "jti": format!("{}@{}", self.decision_id, now_ms),
            "txn": self.decision_id,
            "sub_id": sub_id,
            "events": { uri: body },
        });
        if let Some(aud) = audience {
            claims["aud"] = json!(aud);
        }
        claims
    }
}

/// Signs SET claims as a compact JWS (HS256, `typ: secevent+jwt`).
pub fn sign_set(claims: &serde_json::Value, key: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("secevent+jwt".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("HS256 signing cannot fail")
}
