/// Why a gateway record could not become telemetry. `reason()` is the
/// dead-letter and metric label; no message ever carries a credential.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error("not a JSON record")]
    Json,
    #[error("missing field: {0}")]
    Missing(&'static str),
    #[error("unreadable timestamp")]
    Timestamp,
    #[error("the event time is further ahead of the wall clock than detect.max_clock_skew allows")]
    Future,
    #[error("unreadable client address")]
    Ip,
    #[error("the Authorization header is not a bearer credential")]
    NotBearer,
    #[error("no bearer token, verified payload or token id in the record")]
    NoToken,
    #[error("the token id derived from the record is not a valid id")]
    BadTokenId,
}

impl GatewayError {
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::Json => "json",
            GatewayError::Missing(_) => "missing_field",
            GatewayError::Timestamp => "timestamp",
            GatewayError::Future => "future",
            GatewayError::Ip => "ip",
            GatewayError::NotBearer => "not_bearer",
            GatewayError::NoToken => "no_token",
            GatewayError::BadTokenId => "bad_token_id",
        }
    }
}
