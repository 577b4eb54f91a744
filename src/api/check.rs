//! The edge check: NGINX `auth_request` and Envoy `ext_authz` (HTTP) ask
//! here before letting a request through. The token id is derived from the
//! `Authorization` header exactly as the gateway adapters derive it (JWT
//! `jti`, else the keyed hash), and looked up in the in-memory denylist:
//! 403 for a revoked token, 200 otherwise, in microseconds.
//!
//! The header is read as the scorer reads it (`gateway::read_authorization`):
//! any case, spaces or tabs, repeated headers. A revoked token is refused
//! under its derived id and, while its signature cannot be verified, under
//! its unverified `jti` too. A request with different bearer tokens, or a
//! bearer credential that cannot be read, is refused (403): the upstream
//! might read it otherwise. A request without a bearer token is not
//! tokenwatch's to judge (200; the upstream authenticates it). Until the denylist has been read to its end
//! at start-up the answer is 503, so the gateway fails closed rather than
//! letting a revoked token through.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::clock::now_ms;
use crate::gateway::{read_authorization, token_ids, Authorization, JwtVerifier};
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
    /// The `Authorization` header could not be read as one bearer token
    /// (several different ones, or a malformed bearer credential): refused,
    /// since the upstream might read it differently.
    Unreadable,
    NotReady,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Unreadable => "unreadable",
            Verdict::NotReady => "not_ready",
        }
    }
}

impl EdgeCheck {
    /// The answer for one request's `Authorization` header values at
    /// `now_ms`. Repeated headers are read together, as the gateways that
    /// join them with ", " would pass them on.
    pub fn check<'h>(
        &self,
        authorization: impl IntoIterator<Item = &'h str>,
        now_ms: i64,
    ) -> Verdict {
        if !self.denylist.is_ready() {
            return Verdict::NotReady;
        }
        let mut token = None;
        for value in authorization {
            match (read_authorization(value), token) {
                (Authorization::Other, _) => {}
                (Authorization::Bearer(t), None) => token = Some(t),
                (Authorization::Bearer(t), Some(first)) if t == first => {}
                (Authorization::Bearer(_) | Authorization::Ambiguous(_), _) => {
                    return Verdict::Unreadable
                }
            }
        }
        let Some(token) = token else {
            return Verdict::Allowed;
        };
        let (id, unverified_jti) = token_ids(token, &self.hasher, self.verifier.as_deref());
        let denied = |id: &str| self.denylist.is_denied(id, now_ms);
        if denied(&id) || unverified_jti.as_deref().is_some_and(denied) {
            Verdict::Denied
        } else {
            Verdict::Allowed
        }
    }
}

impl EdgeCheck {
    /// `check` now, timed and counted (both listeners, HTTP and gRPC).
    pub fn judge<'h>(
        &self,
        authorization: impl IntoIterator<Item = &'h str>,
        metrics: &crate::metrics::Metrics,
    ) -> Verdict {
        let started = std::time::Instant::now();
        let verdict = self.check(authorization, now_ms());
        metrics
            .check_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .denylist_checks
            .with_label_values(&[verdict.label()])
            .inc();
        verdict
    }
}

/// What the check needs: the denylist and its reader, and the metrics.
#[derive(Clone)]
pub struct EdgeState {
    pub edge: Option<Arc<EdgeCheck>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub async fn check(State(s): State<EdgeState>, headers: HeaderMap) -> Response {
    let Some(edge) = &s.edge else {
        return (
            StatusCode::NOT_FOUND,
            "the edge check is off (respond.denylist.enabled = false)\n",
        )
            .into_response();
    };
    // A value that is not visible ASCII is no credential tokenwatch issued
    // a verdict on; it is read as empty, and a bearer scheme around it as
    // unreadable.
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.to_str().unwrap_or("Bearer"));
    let verdict = edge.judge(values, &s.metrics);
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
        Verdict::Unreadable => (
            StatusCode::FORBIDDEN,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer error="invalid_request", error_description="ambiguous Authorization header""#,
            )],
            "unreadable credential\n",
        )
            .into_response(),
        Verdict::NotReady => {
            (StatusCode::SERVICE_UNAVAILABLE, "denylist still loading\n").into_response()
        }
    }
}
