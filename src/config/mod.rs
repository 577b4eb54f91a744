//! Configuration: one TOML file plus `TOKENWATCH_…` environment overrides
//! (`TOKENWATCH_KAFKA__BROKERS` sets `kafka.brokers`), parsed once and
//! validated into types that cannot hold bad values. Every error names the
//! key. `deploy/config/tokenwatch.toml` documents each key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;

use crate::detect::DetectorParams;
use crate::features::FeatureParams;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {why}")]
    Invalid { key: String, why: String },
}

mod gateway;
mod raw;
mod raw_respond;
mod respond;
pub use gateway::{GatewayConfig, GatewayInput};
pub use raw::{
    GatewayMode, RawConfig, RawDetect, RawGateway, RawGeo, RawHttp, RawInput, RawKafka, RawModel,
};
pub use raw_respond::{
    RawAlertFormat, RawAlerts, RawBrake, RawClientCredentials, RawDenylist, RawLogout, RawRespond,
    RawRetry, RawRfc7009, RawWebhook,
};
pub use respond::RespondConfig;

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

// ---------------------------------------------------------------------------
// The validated configuration.

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub telemetry_topic: String,
    pub deadletter_topic: String,
    pub decisions_topic: String,
    pub audit_topic: String,
    pub denylist_topic: String,
    pub control_topic: String,
    pub alerts_topic: String,
    /// None: no state changelog.
    pub state_topic: Option<String>,
    /// None: population tables kept in memory only.
    pub population_topic: Option<String>,
    pub commit_interval: Duration,
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Every topic tokenwatch reads or writes besides the gateway inputs,
    /// with the partitions a single-broker test cluster gives it (telemetry
    /// is read in parallel, the rest is small). The one list tests, the demo
    /// and benches create topics from.
    pub fn topics(&self) -> Vec<(&str, i32)> {
        let mut t = vec![
            (self.telemetry_topic.as_str(), 4),
            (self.decisions_topic.as_str(), 2),
            (self.deadletter_topic.as_str(), 1),
            (self.audit_topic.as_str(), 1),
            (self.denylist_topic.as_str(), 1),
            (self.control_topic.as_str(), 1),
            (self.alerts_topic.as_str(), 1),
        ];
        t.extend(self.state_topic.as_deref().map(|s| (s, 4)));
        t.extend(self.population_topic.as_deref().map(|s| (s, 1)));
        t
    }
}

#[derive(Debug, Clone)]
pub struct GeoConfig {
    pub city_db: Vec<PathBuf>,
    pub asn_db: Option<PathBuf>,
}

/// Where each audience's routes are served. Listeners left unset share
/// `api`'s address (and then its socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    /// The API (`/v1/...` but the edge check), for operators and tooling.
    pub api: SocketAddr,
    /// `/v1/check`, for the gateways.
    pub edge: Option<SocketAddr>,
    /// `/metrics`, for Prometheus.
    pub metrics: Option<SocketAddr>,
    /// Envoy's gRPC `ext_authz`, for the gateways; None: off.
    pub grpc: Option<SocketAddr>,
}

/// What one connection may cost a listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

#[derive(Clone)]
pub struct HttpConfig {
    pub listen: Listeners,
    pub limits: HttpLimits,
    /// `None`: admin routes are disabled.
    pub admin_token: Option<String>,
    pub read_token: Option<String>,
    /// `None`: `POST /v1/score` is disabled.
    pub score_token: Option<String>,
    pub score_updates_state: bool,
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("limits", &self.limits)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("score_token", &self.score_token.as_ref().map(|_| "<set>"))
            .field("score_updates_state", &self.score_updates_state)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub geo: GeoConfig,
    pub detect: DetectorParams,
    pub model_path: PathBuf,
    pub respond: RespondConfig,
    pub http: HttpConfig,
    pub allowlist_file: Option<PathBuf>,
    pub gateway: GatewayConfig,
}

impl Config {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", f.display()),
                ));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("TOKENWATCH_").split("__"));
        let raw: RawConfig = fig.extract().map_err(Box::new)?;
        raw.validate()
    }

    /// Parses a TOML text (tests, `config check`).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        raw.validate()
    }
}

/// A bearer credential: empty turns its routes off; otherwise at least 16
/// characters.
fn credential(key: &str, v: &str) -> Result<Option<String>, ConfigError> {
    match v {
        "" => Ok(None),
        t if t.len() < 16 => Err(invalid(
            key,
            "must be at least 16 characters (or empty to turn its routes off)",
        )),
        t => Ok(Some(t.to_owned())),
    }
}

fn non_empty(key: &str, v: &str) -> Result<String, ConfigError> {
    if v.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(v.to_owned())
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let k = &self.kafka;
        if k.commit_interval.is_zero() {
            return Err(invalid(
                "kafka.commit_interval",
                "must be greater than zero",
            ));
        }
        for key in k.properties.keys() {
            if matches!(
                key.as_str(),
                "enable.auto.commit"
                    | "enable.auto.offset.store"
                    | "group.id"
                    | "bootstrap.servers"
            ) {
                return Err(invalid(
                    "kafka.properties",
                    format!("`{key}` is managed by tokenwatch and cannot be overridden"),
                ));
            }
        }
        let kafka = KafkaConfig {
            brokers: non_empty("kafka.brokers", &k.brokers)?,
            group_id: non_empty("kafka.group_id", &k.group_id)?,
            telemetry_topic: non_empty("kafka.telemetry_topic", &k.telemetry_topic)?,
            deadletter_topic: non_empty("kafka.deadletter_topic", &k.deadletter_topic)?,
            decisions_topic: non_empty("kafka.decisions_topic", &k.decisions_topic)?,
            audit_topic: non_empty("kafka.audit_topic", &k.audit_topic)?,
            denylist_topic: non_empty("kafka.denylist_topic", &k.denylist_topic)?,
            control_topic: non_empty("kafka.control_topic", &k.control_topic)?,
            alerts_topic: non_empty("kafka.alerts_topic", &k.alerts_topic)?,
            state_topic: Some(k.state_topic.trim().to_owned()).filter(|t| !t.is_empty()),
            population_topic: Some(k.population_topic.trim().to_owned()).filter(|t| !t.is_empty()),
            commit_interval: k.commit_interval,
            properties: k.properties.clone(),
        };
        if self.geo.city_db.is_empty() {
            return Err(invalid("geo.city_db", "list at least one City database"));
        }
        let d = &self.detect;
        if !(d.plausible_speed_kmh.is_finite() && (100.0..=5000.0).contains(&d.plausible_speed_kmh))
        {
            return Err(invalid(
                "detect.plausible_speed_kmh",
                "must be between 100 and 5000 km/h",
            ));
        }
        if !(d.far_km.is_finite() && (0.0..=5000.0).contains(&d.far_km)) {
            return Err(invalid("detect.far_km", "must be between 0 and 5000 km"));
        }
        let max_tokens = NonZeroUsize::new(d.max_tokens)
            .ok_or_else(|| invalid("detect.max_tokens", "must be at least 1"))?;
        let geo_cache = NonZeroUsize::new(d.geo_cache_entries)
            .ok_or_else(|| invalid("detect.geo_cache_entries", "must be at least 1"))?;
        if d.disorder_window > Duration::from_secs(600) {
            return Err(invalid("detect.disorder_window", "must be at most 10m"));
        }
        if d.idle_ttl < Duration::from_secs(1) {
            return Err(invalid("detect.idle_ttl", "must be at least 1s"));
        }
        if let Some(s) = d
            .rejected_statuses
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(invalid(
                "detect.rejected_statuses",
                format!("{s} is not an HTTP status (100-599)"),
            ));
        }
        if d.max_clock_skew < Duration::from_secs(1)
            || d.max_clock_skew > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "detect.max_clock_skew",
                "must be between 1s and 24h",
            ));
        }
        let detect = DetectorParams {
            features: FeatureParams {
                plausible_speed_kmh: d.plausible_speed_kmh,
                far_km: d.far_km,
                flip_window_s: d.flip_window.as_secs_f64(),
                disorder_window_ms: d.disorder_window.as_millis() as i64,
            },
            max_tokens,
            idle_ttl_ms: d.idle_ttl.as_millis() as i64,
            geo_cache,
            impossible_travel_revokes: d.impossible_travel_revokes,
            unknown_egress_revokes: d.unknown_egress_revokes,
            rejected_statuses: d.rejected_statuses.clone(),
            max_clock_skew_ms: d.max_clock_skew.as_millis() as i64,
        };
        let respond = self.respond.validate()?;
        let h = &self.http;
        let listen = h.listeners()?;
        if listen.grpc.is_some() && respond.denylist.is_none() {
            return Err(invalid(
                "http.grpc_listen",
                "the gRPC check answers from the denylist; set respond.denylist.enabled = true",
            ));
        }
        let limits = h.limits()?;
        let admin_token = credential("http.admin_token", &h.admin_token)?;
        let read_token = credential("http.read_token", &h.read_token)?;
        let score_token = credential("http.score_token", &h.score_token)?;
        if score_token.is_some() && (score_token == admin_token || score_token == read_token) {
            return Err(invalid(
                "http.score_token",
                "must differ from the admin and read tokens: whoever scores must not also administer",
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&h.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes",
                "must be between 256 and 16777216",
            ));
        }
        let gateway = self.gateway.validate(&kafka)?;
        Ok(Config {
            kafka,
            geo: GeoConfig {
                city_db: self.geo.city_db.clone(),
                asn_db: self.geo.asn_db.clone(),
            },
            detect,
            model_path: self.model.path.clone(),
            respond,
            http: HttpConfig {
                listen,
                limits,
                admin_token,
                read_token,
                score_token,
                score_updates_state: h.score_updates_state,
                max_body_bytes: h.max_body_bytes,
            },
            allowlist_file: d.allowlist_file.clone(),
            gateway,
        })
    }
}

impl RawHttp {
    fn listeners(&self) -> Result<Listeners, ConfigError> {
        let address = |key: &str, text: &str| {
            text.parse::<SocketAddr>()
                .map_err(|e| invalid(key, format!("{e} (want host:port)")))
        };
        let optional = |key: &str, text: &str| match text.trim() {
            "" => Ok(None),
            t => address(key, t).map(Some),
        };
        let l = Listeners {
            api: address("http.listen", &self.listen)?,
            edge: optional("http.edge_listen", &self.edge_listen)?,
            metrics: optional("http.metrics_listen", &self.metrics_listen)?,
            grpc: optional("http.grpc_listen", &self.grpc_listen)?,
        };
        if let Some(g) = l.grpc {
            let http = [Some(l.api), l.edge, l.metrics];
            if g.port() != 0 && http.contains(&Some(g)) {
                return Err(invalid(
                    "http.grpc_listen",
                    "must differ from the HTTP listeners (gRPC has a socket of its own)",
                ));
            }
        }
        // Port 0 (any free port) never collides.
        let same = |a: Option<SocketAddr>, b: SocketAddr| a == Some(b) && b.port() != 0;
        if same(l.edge, l.api) || l.metrics.is_some_and(|m| same(l.edge, m)) {
            return Err(invalid(
                "http.edge_listen",
                "must differ from http.listen and http.metrics_listen (leave it empty to share http.listen)",
            ));
        }
        if same(l.metrics, l.api) {
            return Err(invalid(
                "http.metrics_listen",
                "must differ from http.listen (leave it empty to share it)",
            ));
        }
        Ok(l)
    }

    fn limits(&self) -> Result<HttpLimits, ConfigError> {
        let bounded = |key: &str, d: Duration| {
            if (Duration::from_millis(10)..=Duration::from_secs(600)).contains(&d) {
                Ok(d)
            } else {
                Err(invalid(key, "must be between 10ms and 10m"))
            }
        };
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(invalid(
                "http.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        Ok(HttpLimits {
            header_read_timeout: bounded("http.header_read_timeout", self.header_read_timeout)?,
            request_timeout: bounded("http.request_timeout", self.request_timeout)?,
            max_connections: self.max_connections,
        })
    }
}

#[cfg(test)]
mod tests;
