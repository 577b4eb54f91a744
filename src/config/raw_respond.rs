//! `[respond]` as written: the policy and every target the revoker may
//! call, with defaults; `RawRespond::validate` (in `respond.rs`) checks it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::respond::{BrakeLimits, ClientAuth, Mode, Persistence, Preset, RetryPolicy};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRespond {
    pub mode: Mode,
    /// Key id → base64 of a 32-byte key; `seal_key_order[0]` seals.
    pub seal_keys: BTreeMap<String, String>,
    pub seal_key_order: Vec<String>,
    pub rfc7009: Option<RawRfc7009>,
    pub subject_logout: Vec<RawLogout>,
    pub denylist: RawDenylist,
    pub alerts: RawAlerts,
    pub webhook: Vec<RawWebhook>,
    pub brake: RawBrake,
    pub retry: RawRetry,
    /// Tenant → mode, for tenants that should be treated more cautiously
    /// than `mode` (a pilot in shadow, say).
    pub tenant_modes: BTreeMap<String, Mode>,
    /// client_id → mode, the same per client; before the tenant's.
    pub client_modes: BTreeMap<String, Mode>,
}

/// How long each target keeps retrying one decision on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        let d = Persistence::default();
        RawRetry {
            budget: d.budget,
            max_backoff: d.max_backoff,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBrake {
    /// Revocations allowed in `window` before the brake engages.
    pub max_revocations: usize,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Revocations allowed per tenant in `window`; 0: no per-tenant limit.
    pub per_tenant: usize,
    /// At most this fraction of the tracked tokens in `window`; 0: off.
    pub max_active_fraction: f64,
}

impl Default for RawBrake {
    fn default() -> Self {
        let d = BrakeLimits::default();
        RawBrake {
            max_revocations: d.max_revocations,
            window: d.window,
            per_tenant: 0,
            max_active_fraction: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRfc7009 {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default = "default_auth")]
    pub auth: ClientAuth,
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub max_retries: usize,
}

fn default_auth() -> ClientAuth {
    ClientAuth::ClientSecretBasic
}
fn default_timeout() -> Duration {
    RetryPolicy::default().timeout
}
fn default_retries() -> usize {
    RetryPolicy::default().max_retries
}

/// One subject-logout action: a preset (`keycloak`, `okta`, `graph`) with
/// `base_url`, or a `method` and `url` of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogout {
    pub name: String,
    pub preset: Option<Preset>,
    pub base_url: String,
    pub realm: Option<String>,
    pub method: Option<String>,
    pub url: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// A static bearer credential for the admin API.
    pub bearer_token: Option<String>,
    /// OAuth 2.0 client credentials for the admin API.
    pub client_credentials: Option<RawClientCredentials>,
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    pub max_retries: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDenylist {
    /// Publish revoked token ids to `kafka.denylist_topic` and serve the
    /// edge check.
    pub enabled: bool,
    /// How long to deny a token whose expiry the telemetry did not carry.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for RawDenylist {
    fn default() -> Self {
        RawDenylist {
            enabled: true,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAlertFormat {
    #[default]
    Json,
    Set,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    /// Publish every flag to `kafka.alerts_topic`.
    pub enabled: bool,
    /// `json`, or `set`: an RFC 8417 Security Event Token (HS256).
    pub format: RawAlertFormat,
    pub set_issuer: String,
    pub set_audience: Option<String>,
    /// Base64 of the HS256 key (at least 32 bytes).
    pub set_key: String,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            enabled: true,
            format: RawAlertFormat::Json,
            set_issuer: String::new(),
            set_audience: None,
            set_key: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhook {
    pub name: String,
    pub url: String,
    /// The HMAC-SHA256 signing secret (at least 16 bytes).
    pub secret: String,
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    pub max_retries: Option<usize>,
}
