//! Everything the revoker may call, and the reserved names of the targets
//! that are not configured by name (configuration refuses them as names of
//! logout targets and webhooks).

use std::sync::Arc;
use std::time::Duration;

use super::denylist::Denylist;
use super::http::CallError;
use super::logout::SubjectLogout;
use super::rfc7009::Rfc7009Client;
use super::webhook::Webhook;
use crate::kafka::TopicWriter;

pub const RFC7009: &str = "rfc7009";
pub const DENYLIST: &str = "denylist";
pub const ALERTS: &str = "alerts";

/// Target names configuration may not give to a logout target or webhook.
pub const RESERVED: [&str; 5] = [RFC7009, DENYLIST, ALERTS, DECISION, POLICY];
/// Names the outcome of a decision already settled (a duplicate).
pub const DECISION: &str = "decision";
/// Names the outcome of a decision policy kept from every target (shadow).
pub const POLICY: &str = "policy";

/// Sends `payload` to a target's topic; a failure is a transport error the
/// revoker retries.
pub(super) async fn send(writer: &TopicWriter, key: &str, payload: &[u8]) -> Result<(), CallError> {
    writer
        .send(Some(key.as_bytes()), payload)
        .await
        .map_err(|e| CallError::Transport(format!("topic {}: {e}", writer.topic())))
}

pub struct DenylistTarget {
    pub writer: TopicWriter,
    pub set: Arc<Denylist>,
    /// How long to deny a token whose expiry is unknown.
    pub max_ttl: Duration,
}

#[derive(Clone)]
pub enum AlertFormat {
    Json,
    /// RFC 8417 Security Event Token, HS256-signed.
    Set {
        issuer: String,
        audience: Option<String>,
        key: Vec<u8>,
    },
}

pub struct AlertsTarget {
    pub writer: TopicWriter,
    pub format: AlertFormat,
}

/// Everything the revoker may call; any may be absent.
#[derive(Default)]
pub struct Targets {
    pub rfc7009: Option<Rfc7009Client>,
    pub logouts: Vec<SubjectLogout>,
    pub denylist: Option<DenylistTarget>,
    pub alerts: Option<AlertsTarget>,
    pub webhooks: Vec<Webhook>,
}

impl Targets {
    /// Just RFC 7009 (tests and tools).
    pub fn rfc7009(client: Option<Rfc7009Client>) -> Targets {
        Targets {
            rfc7009: client,
            ..Targets::default()
        }
    }
}
