//! Why a telemetry record was rejected. Each variant becomes the `reason`
//! label of `tokenwatch_events_rejected_total` and the dead-letter header, so
//! the set stays small and no variant ever carries a token value.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum TelemetryError {
    #[error("record is not valid telemetry JSON: {0}")]
    Json(#[source] JsonError),
    #[error("required field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is empty")]
    Empty(&'static str),
    #[error("`ts` is not RFC 3339 or epoch milliseconds between 2001 and 2100: {0}")]
    Timestamp(String),
    #[error("`ip` is not an IPv4 or IPv6 address: {0:?}")]
    Ip(String),
    #[error(
        "`token_id` ({len} bytes) looks like a raw bearer token; send the jti or a keyed hash"
    )]
    RawTokenInTokenId { len: usize },
}

/// serde_json's error compared by message, so tests can match variants.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct JsonError(#[from] serde_json::Error);

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl TelemetryError {
    pub(crate) fn from_json(e: serde_json::Error) -> Self {
        TelemetryError::Json(JsonError(e))
    }

    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TelemetryError::Json(_) => "json",
            TelemetryError::Missing(_) => "missing_field",
            TelemetryError::Empty(_) => "empty_field",
            TelemetryError::Timestamp(_) => "timestamp",
            TelemetryError::Ip(_) => "ip",
            TelemetryError::RawTokenInTokenId { .. } => "raw_token",
        }
    }
}
