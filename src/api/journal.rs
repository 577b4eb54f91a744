//! `GET /v1/alerts` and `GET /v1/audit`: newest first, paged with
//! `before` (the `next_before` of the previous page) and `limit`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Reader;
use super::error::ApiError;
use super::AppState;
use crate::decide::Alert;
use crate::journal::{AuditEntry, Page};

pub const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    pub before: Option<u64>,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub token_id: Option<String>,
}

fn default_limit() -> usize {
    50
}

fn checked(q: Result<Query<PageQuery>, QueryRejection>) -> Result<PageQuery, ApiError> {
    let Query(q) = q?;
    if q.limit == 0 || q.limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "limit",
            format!("`limit` must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(q)
}

pub async fn alerts(
    _: Reader,
    State(s): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let q = checked(q)?;
    Ok(Json(s.service.flagger.alerts.page(
        q.before,
        q.limit,
        q.token_id.as_deref(),
    )))
}

pub async fn audit(
    _: Reader,
    State(s): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let q = checked(q)?;
    Ok(Json(s.service.flagger.audit.page(
        q.before,
        q.limit,
        q.token_id.as_deref(),
    )))
}
