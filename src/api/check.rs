//! The edge check: NGINX `auth_request` and Envoy `ext_authz` (HTTP) ask
//! here before letting a request through. The token id is derived from the
//! `Authorization` header exactly as the gateway adapters derive it (JWT
//! `jti`, else the keyed hash), and looked up in the in-memory denylist:
//! 403 for a revoked token, 200 otherwise, in microseconds.
//!
//! A request without a bearer token is not tokenwatch's to judge (200; the
//! upstream authenticates it). Until the denylist has been read to its end
//! at start-up the answer is 503, so the gateway fails closed rather than
//! letting a revoked token through.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::clock::now_ms;
use crate::gateway::{derive_identity, Claims, JwtVerifier};
use crate::respond::Denylist;
use crate::telemetry::TokenHasher;

pub struct EdgeCheck {
    pub denylist: Arc<Denylist>,
    pub hasher: TokenHasher,
    pub verifier: Option<Arc<JwtVerifier>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    NotReady,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::NotReady => "not_ready",
        }
    }
}

impl EdgeCheck {
    /// The answer for one `Authorization` header value at `now_ms`.
    pub fn check(&self, authorization: Option<&str>, now_ms: i64) -> Verdict {
        if !self.denylist.is_ready() {
            return Verdict::NotReady;
        }
        let Some(auth) = authorization else {
            return Verdict::Allowed;
        };
        match derive_identity(
            Some(auth),
            None,
            Claims::default(),
            &self.hasher,
            None,
            self.verifier.as_deref(),
        ) {
            Ok(id) if self.denylist.is_denied(&id.token_id, now_ms) => Verdict::Denied,
            _ => Verdict::Allowed,
        }
    }
}

pub async fn check(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(edge) = &s.service.edge else {
        return (
            StatusCode::NOT_FOUND,
            "the edge check is off (respond.denylist.enabled = false)\n",
        )
            .into_response();
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verdict = edge.check(auth, now_ms());
    s.metrics
        .denylist_checks
        .with_label_values(&[verdict.label()])
        .inc();
    match verdict {
        Verdict::Allowed => StatusCode::OK.into_response(),
        Verdict::Denied => (
            StatusCode::FORBIDDEN,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer error="invalid_token", error_description="token revoked""#,
            )],
            "revoked\n",
        )
            .into_response(),
        Verdict::NotReady => {
            (StatusCode::SERVICE_UNAVAILABLE, "denylist still loading\n").into_response()
        }
    }
}
