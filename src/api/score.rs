//! `POST /v1/score`: one telemetry record, scored synchronously by the same
//! core as the stream, for gateways that want an inline answer. It needs its
//! own credential (`http.score_token`), and an event time no further ahead
//! than `detect.max_clock_skew`.
//!
//! By default it is a dry run: the answer is what the stream would say, and
//! nothing changes (no state, no population table, no decision), so a caller
//! cannot steer the detector. With `http.score_updates_state` the request
//! counts as the token's traffic, and a token that escalates is flagged
//! exactly as from Kafka: decision log, alert, audit.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::auth::Scorer;
use super::error::ApiError;
use super::AppState;
use crate::clock::now_ms;
use crate::decide;
use crate::decide::alerts::named_features;
use crate::detect::{Action, ExplainedFeature};
use crate::telemetry::{check_not_future, Event};

#[derive(Serialize)]
pub struct ScoreResponse {
    pub token_id: String,
    pub action: Action,
    pub score: f32,
    pub model_score: f32,
    /// True when this request raised the token to `action` (acted on once).
    pub escalated: bool,
    pub rule: Option<&'static str>,
    /// The subject is allowlisted: scored, never acted on.
    pub suppressed: bool,
    pub explanation: String,
    pub top: Vec<ExplainedFeature>,
    pub features: BTreeMap<&'static str, f32>,
    pub model_version: String,
    pub decision_id: Option<String>,
}

pub async fn score(
    _: Scorer,
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ScoreResponse>, ApiError> {
    let body = body?;
    let event =
        Event::parse(&body).map_err(|e| ApiError::bad_request(e.reason(), e.to_string()))?;
    let skew = decide::lock(&s.service.detector).params().max_clock_skew_ms;
    check_not_future(event.ts_ms, now_ms(), skew)
        .map_err(|e| ApiError::bad_request(e.reason(), e.to_string()))?;
    let scored = if s.service.score_updates_state {
        decide::score(&s.service.detector, &event, true)
    } else {
        decide::score_dry(&s.service.detector, &event)
    };
    let v = scored.verdict;
    let explanation = scored.explanation.expect("explain_all was asked");
    let m = &s.metrics;
    m.verdicts.with_label_values(&[v.action.as_str()]).inc();
    m.score.observe(f64::from(v.score.score));
    if let Some(d) = &scored.decision {
        // The token has escalated in the detector; if the decision log is
        // unreachable the caller is told and the escalation is undone, so the
        // token's next request (or a retry) flags it again.
        s.service
            .flagger
            .flag(d, &v, &explanation)
            .await
            .map_err(|e| {
                decide::lock(&s.service.detector).reopen(&v.key, v.action);
                ApiError::unavailable(format!(
                    "scored {} but the decision log did not take the decision: {e}",
                    v.action.as_str()
                ))
            })?;
    }
    Ok(Json(ScoreResponse {
        token_id: event.token_id.to_string(),
        action: v.action,
        score: v.score.score,
        model_score: v.score.model_score,
        escalated: v.escalated,
        rule: explanation.rule,
        suppressed: v.suppressed,
        explanation: explanation.text.clone(),
        top: explanation.top,
        features: named_features(&v),
        model_version: scored.model_version.unwrap_or_default(),
        decision_id: scored.decision.map(|d| d.decision_id),
    }))
}
