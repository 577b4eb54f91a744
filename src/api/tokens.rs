//! `GET /v1/tokens/{token_id}`: what this instance holds about a token.
//! `POST /v1/tokens/{token_id}/revoke` (admin): an operator's revocation,
//! through the decision log like any other, so the revoker acts on it once.
//!
//! In a fleet a token's state lives on the instance that owns its partition;
//! the others answer 404 with `tracked: false`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Reader};
use super::error::ApiError;
use super::AppState;
use crate::clock::now_ms;
use crate::decide;
use crate::decide::Alert;
use crate::decide::Decision;
use crate::detect::Action;
use crate::features::Sighting;
use crate::telemetry::token_key;

#[derive(Serialize)]
pub struct PlaceView {
    pub at_ms: i64,
    pub lat: f32,
    pub lon: f32,
    pub accuracy_km: f32,
    pub country: String,
    pub asn: u32,
}

impl From<&Sighting> for PlaceView {
    fn from(s: &Sighting) -> PlaceView {
        PlaceView {
            at_ms: s.at_ms,
            lat: s.location.lat,
            lon: s.location.lon,
            accuracy_km: s.location.accuracy_km,
            country: s.location.country.as_str().to_owned(),
            asn: s.location.asn,
        }
    }
}

#[derive(Serialize)]
pub struct StateView {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub requests: u32,
    pub iat_ms: Option<i64>,
    pub exp_ms: Option<i64>,
    pub rate_short_per_min: f32,
    pub rate_long_per_min: f32,
    pub max_velocity_kmh: f32,
    pub distinct_countries: u8,
    pub distinct_asns: u8,
    pub distinct_user_agents: u8,
    pub distinct_ips_estimate: f32,
    pub last_place: Option<PlaceView>,
    pub other_place: Option<PlaceView>,
    pub last_score: f32,
    /// Highest action taken on the token so far.
    pub flagged: Action,
}

#[derive(Serialize)]
pub struct TokenView {
    pub token_id: String,
    pub tracked: bool,
    pub state: Option<StateView>,
    /// The newest alert for the token, with its features and explanation.
    pub last_alert: Option<Alert>,
}

pub async fn show(
    _: Reader,
    State(s): State<AppState>,
    Path(token_id): Path<String>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    crate::telemetry::check_token_id(&token_id)
        .map_err(|e| ApiError::bad_request("token_id", e.to_string()))?;
    let key = token_key(&token_id);
    let state = decide::lock(&s.service.detector)
        .state(&key)
        .map(|st| StateView {
            first_seen_ms: st.first_ms,
            last_seen_ms: st.last_ms,
            requests: st.requests,
            iat_ms: (st.iat_ms != 0).then_some(st.iat_ms),
            exp_ms: (st.exp_ms != 0).then_some(st.exp_ms),
            rate_short_per_min: st.rate_short,
            rate_long_per_min: st.rate_long,
            max_velocity_kmh: st.max_velocity_kmh,
            distinct_countries: st.countries.distinct,
            distinct_asns: st.asns.distinct,
            distinct_user_agents: st.user_agents.distinct,
            distinct_ips_estimate: st.ips.estimate(),
            last_place: st.last_seen.as_ref().map(PlaceView::from),
            other_place: st.other_place.as_ref().map(PlaceView::from),
            last_score: st.last_score,
            flagged: match st.flagged_level {
                0 => Action::None,
                1 => Action::Alert,
                _ => Action::Revoke,
            },
        });
    let last_alert = s.service.flagger.alerts.latest_for(&token_id);
    let tracked = state.is_some();
    let status = if tracked || last_alert.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok((
        status,
        Json(TokenView {
            token_id,
            tracked,
            state,
            last_alert,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why, in the operator's words (audited, shown in the decision).
    pub reason: String,
    /// The token's subject, for subject-level targets; taken from the
    /// token's latest alert when omitted.
    #[serde(default)]
    pub sub: Option<String>,
    /// The sealed token (`tokenwatch seal`), for an RFC 7009 revocation.
    #[serde(default)]
    pub token_handle: Option<String>,
}

#[derive(Serialize)]
pub struct RevokeAccepted {
    pub decision_id: String,
    pub audit_seq: u64,
}

pub async fn revoke(
    _: Admin,
    State(s): State<AppState>,
    Path(token_id): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<RevokeAccepted>), ApiError> {
    let Json(req) = body?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "`reason` must not be empty",
        ));
    }
    crate::telemetry::check_token_id(&token_id)
        .map_err(|e| ApiError::bad_request("token_id", e.to_string()))?;
    let svc = &s.service;
    let sub = req
        .sub
        .or_else(|| svc.flagger.alerts.latest_for(&token_id).map(|a| a.sub))
        .unwrap_or_default();
    let d = Decision::manual(
        &token_id,
        &sub,
        req.reason.trim(),
        req.token_handle,
        now_ms(),
    );
    svc.flagger
        .outbox
        .publish(&d)
        .await
        .map_err(|e| ApiError::unavailable(format!("decision log: {e}")))?;
    let entry = svc
        .flagger
        .audit
        .record(
            "admin",
            "revoke",
            Some(&token_id),
            serde_json::json!({"decision_id": d.decision_id, "reason": req.reason.trim(), "sub": sub,
                               "with_handle": d.token_handle.is_some()}),
        )
        .await
        .map_err(|e| ApiError::unavailable(format!("audit topic: {e}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RevokeAccepted {
            decision_id: d.decision_id,
            audit_seq: entry.seq,
        }),
    ))
}
