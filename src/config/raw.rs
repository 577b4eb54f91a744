//! The configuration file as written: every key with its default, parsed
//! by serde and checked by nothing yet (`RawConfig::validate` in the parent
//! turns it into [`super::Config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RawRespond;
use crate::detect::DetectorParams;
use crate::features::FeatureParams;
use crate::gateway::{FieldMap, Format};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub kafka: RawKafka,
    pub geo: RawGeo,
    pub detect: RawDetect,
    pub model: RawModel,
    pub respond: RawRespond,
    pub http: RawHttp,
    pub gateway: RawGateway,
}

/// Topics of gateway access logs read directly (single-instance setups; a
/// fleet puts `tokenwatch normalize` in front, see docs/gateways.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    /// Secret of the keyed hash that identifies opaque tokens (at least 16
    /// bytes); the same as every producer's that derives ids.
    pub hash_key: String,
    /// Proxies whose X-Forwarded-For / Forwarded is believed (CIDR).
    pub trusted_proxies: Vec<String>,
    /// The issuer's JWKS: when set, a JWT is known by its `jti` only if its
    /// signature verifies (else by the keyed hash of its value).
    pub jwks_url: Option<String>,
    /// `direct`: `serve` reads the inputs itself (one instance). `normalize`:
    /// a `tokenwatch normalize` stage republishes them keyed by token id and
    /// `serve` reads only the telemetry topic (a fleet).
    pub mode: GatewayMode,
    pub inputs: Vec<RawInput>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    #[default]
    Direct,
    Normalize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    pub topic: String,
    pub format: Format,
    /// For `format = "mapped"`: JSON pointers to each field.
    #[serde(default)]
    pub mapping: Option<FieldMap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKafka {
    pub brokers: String,
    pub group_id: String,
    pub telemetry_topic: String,
    pub deadletter_topic: String,
    pub decisions_topic: String,
    pub audit_topic: String,
    /// Compacted: revoked token ids for the edge check, read whole by
    /// every instance.
    pub denylist_topic: String,
    /// The fleet's control plane (mode, brake, allowlist), compacted.
    pub control_topic: String,
    /// Alert events (JSON or Security Event Tokens) for SIEMs.
    pub alerts_topic: String,
    /// Compacted: per-token state, so it follows its partition to another
    /// instance. Empty: no changelog.
    pub state_topic: String,
    /// Compacted: the population tables (shared egress, each subject's
    /// familiar places, the rate baseline), so a restart or another
    /// instance starts from what the fleet has learned. Empty: in memory
    /// only.
    pub population_topic: String,
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Extra librdkafka properties (security.protocol, sasl.*, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: "localhost:9092".into(),
            group_id: "tokenwatch".into(),
            telemetry_topic: "tokenwatch.telemetry".into(),
            deadletter_topic: "tokenwatch.deadletter".into(),
            decisions_topic: "tokenwatch.decisions".into(),
            audit_topic: "tokenwatch.audit".into(),
            denylist_topic: "tokenwatch.denylist".into(),
            control_topic: "tokenwatch.control".into(),
            alerts_topic: "tokenwatch.alerts".into(),
            state_topic: "tokenwatch.state".into(),
            population_topic: "tokenwatch.population".into(),
            commit_interval: Duration::from_secs(1),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGeo {
    pub city_db: Vec<PathBuf>,
    pub asn_db: Option<PathBuf>,
}

impl Default for RawGeo {
    fn default() -> Self {
        RawGeo {
            city_db: vec![PathBuf::from("data/geo/demo-city.mmdb")],
            asn_db: Some(PathBuf::from("data/geo/demo-asn.mmdb")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetect {
    pub plausible_speed_kmh: f64,
    pub far_km: f64,
    #[serde(with = "humantime_serde")]
    pub flip_window: Duration,
    #[serde(with = "humantime_serde")]
    pub disorder_window: Duration,
    pub max_tokens: usize,
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    pub geo_cache_entries: usize,
    /// Revoke on a single impossible hop instead of alerting until the model
    /// or a flip back agrees.
    pub impossible_travel_revokes: bool,
    /// Revoke on an impossible hop onto a network nobody has signed in
    /// from (`unknown_egress`); false: alert, and revoke when the model
    /// agrees.
    pub unknown_egress_revokes: bool,
    /// Statuses that mean the gateway refused the request: counted, never
    /// scored, never moving state.
    pub rejected_statuses: Vec<u16>,
    /// How far ahead of the wall clock an event time may be before the
    /// record is refused (`future`).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Where the operator's allowlist is kept (read at start, rewritten on
    /// every change through the admin API). None: in memory only.
    pub allowlist_file: Option<PathBuf>,
}

impl Default for RawDetect {
    fn default() -> Self {
        let f = FeatureParams::default();
        let d = DetectorParams::default();
        RawDetect {
            plausible_speed_kmh: f.plausible_speed_kmh,
            far_km: f.far_km,
            flip_window: Duration::from_secs_f64(f.flip_window_s),
            disorder_window: Duration::from_millis(f.disorder_window_ms as u64),
            max_tokens: d.max_tokens.get(),
            idle_ttl: Duration::from_millis(d.idle_ttl_ms as u64),
            geo_cache_entries: d.geo_cache.get(),
            impossible_travel_revokes: d.impossible_travel_revokes,
            unknown_egress_revokes: d.unknown_egress_revokes,
            rejected_statuses: d.rejected_statuses.clone(),
            max_clock_skew: Duration::from_millis(d.max_clock_skew_ms as u64),
            allowlist_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawModel {
    pub path: PathBuf,
}

impl Default for RawModel {
    fn default() -> Self {
        RawModel {
            path: PathBuf::from("models/default.json"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// The API (`/v1/...`) and probes; also `/v1/check` and `/metrics`
    /// unless they have listeners of their own.
    pub listen: String,
    /// `/v1/check` (and probes) alone, for the gateways; empty: on `listen`.
    pub edge_listen: String,
    /// `/metrics` (and probes) alone, for Prometheus; empty: on `listen`.
    pub metrics_listen: String,
    /// Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization`),
    /// the edge check for a `grpc_service`; empty: off.
    pub grpc_listen: String,
    /// A connection that has not sent a whole request head in this long
    /// (idle keep-alive included) is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request not answered in this long (a slow body included) gets 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open connections per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Bearer credential for the admin routes; empty disables them.
    pub admin_token: String,
    /// Bearer credential for the read routes (tokens, alerts, audit,
    /// policy); the admin token also reads. Empty: only the admin token.
    pub read_token: String,
    /// Bearer credential for `POST /v1/score`; empty disables it.
    pub score_token: String,
    /// `POST /v1/score` feeds the token's state and may flag it, instead of
    /// scoring without changing anything. Only for callers as trusted as
    /// the telemetry topic's producers.
    pub score_updates_state: bool,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:9464".into(),
            edge_listen: String::new(),
            metrics_listen: String::new(),
            grpc_listen: String::new(),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            admin_token: String::new(),
            read_token: String::new(),
            score_token: String::new(),
            score_updates_state: false,
            max_body_bytes: 64 * 1024,
        }
    }
}
