//! Admin routes take `Authorization: Bearer <http.admin_token>`. Both sides
//! are hashed before a constant-time comparison, so neither the content nor
//! the length of the credential leaks through timing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// The configured credential, kept only as its digest.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&d).into()
    }
}

/// Proof that the request carried the admin credential.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Admin, ApiError> {
        let Some(token) = &s.service.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "admin routes are disabled: set http.admin_token",
            ));
        };
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "admin routes need `Authorization: Bearer <http.admin_token>`",
                )
            })?;
        if token.matches(presented.trim()) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer credential is not the admin token",
            ))
        }
    }
}
