//! Telemetry: the request record tokenwatch consumes, its validation and the
//! way tokens are identified without being stored.

mod error;
mod identity;
mod record;
mod redact;
mod timestamp;
mod write;

pub use error::{JsonError, TelemetryError};
pub use identity::{keyed_token_id, looks_like_raw_token, token_key, TokenHasher, TokenKey};
pub use record::{
    canonical_ip, check_not_future, check_token_id, check_ts_ms, read_text, without_query, Event,
    MAX_TOKEN_ID_LEN,
};
pub use redact::{redact, redact_value};
pub use timestamp::parse_rfc3339_ms;
