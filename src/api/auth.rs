//! The API's credentials, one per kind of caller: `http.score_token` for
//! `POST /v1/score`, `http.read_token` for the read routes that show
//! subjects, places and decisions, `http.admin_token` for changes (it also
//! reads). Each is sent as `Authorization: Bearer <token>`. Both sides are
//! hashed before a constant-time comparison, so neither the content nor the
//! length of a credential leaks through timing. A route whose credential is
//! not configured is off (403), never open.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// A configured credential, kept only as its digest.
#[derive(Clone)]
pub struct Credential([u8; 32]);

impl Credential {
    pub fn new(token: &str) -> Credential {
        Credential(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&d).into()
    }
}

/// The bearer credential of a request, if any.
fn presented(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks the request against `accepted` (any one may match).
fn authorize(parts: &Parts, accepted: &[Option<&Credential>], key: &str) -> Result<(), ApiError> {
    if accepted.iter().all(Option::is_none) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "route_disabled",
            format!("this route is off: set http.{key}"),
        ));
    }
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("this route needs `Authorization: Bearer <http.{key}>`"),
        )
    };
    let p = presented(parts).ok_or_else(unauthorized)?;
    if accepted.iter().flatten().any(|c| c.matches(p)) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// Proof that the request carried the admin credential.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Admin, ApiError> {
        authorize(parts, &[s.service.admin_token.as_ref()], "admin_token").map(|()| Admin)
    }
}

/// Proof that the request may read subjects, places and decisions.
pub struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Reader, ApiError> {
        let svc = &s.service;
        authorize(
            parts,
            &[svc.read_token.as_ref(), svc.admin_token.as_ref()],
            "read_token",
        )
        .map(|()| Reader)
    }
}

/// Proof that the request may ask for a score.
pub struct Scorer;

impl FromRequestParts<AppState> for Scorer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Scorer, ApiError> {
        authorize(parts, &[s.service.score_token.as_ref()], "score_token").map(|()| Scorer)
    }
}
