//! Why a telemetry record was rejected. Each variant becomes the `reason`
//! label of `tokenwatch_events_rejected_total` and the dead-letter header, so
//! the set stays small. No message carries a value from the record: a
//! field may hold a credential, and the error header travels further than
//! the record's first hop.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum TelemetryError {
    #[error("record is not valid telemetry JSON: {0}")]
    Json(#[source] JsonError),
    #[error("required field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is empty")]
    Empty(&'static str),
    #[error("`ts` is not RFC 3339 or epoch milliseconds between 2001 and 2100")]
    Timestamp,
    #[error("`ts` is further ahead of the wall clock than detect.max_clock_skew allows")]
    Future,
    #[error("`ip` is not an IPv4 or IPv6 address")]
    Ip,
    #[error(
        "`token_id` ({len} bytes) looks like a raw bearer token; send the jti or a keyed hash"
    )]
    RawTokenInTokenId { len: usize },
}

/// serde_json's error, shown by its kind and position only: its message can
/// quote the record ("invalid type: string \"…\"").
#[derive(Debug, Error)]
#[error("{} at line {} column {}", kind(.0.classify()), .0.line(), .0.column())]
pub struct JsonError(#[from] serde_json::Error);

fn kind(c: serde_json::error::Category) -> &'static str {
    use serde_json::error::Category;
    match c {
        Category::Io => "I/O error",
        Category::Syntax => "syntax error",
        Category::Data => "a field of the wrong type or value",
        Category::Eof => "unexpected end",
    }
}

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
            TelemetryError::Timestamp => "timestamp",
            TelemetryError::Future => "future",
            TelemetryError::Ip => "ip",
            TelemetryError::RawTokenInTokenId { .. } => "raw_token",
        }
    }
}
