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
use serde::{Deserialize, Serialize};

use crate::detect::DetectorParams;
use crate::features::FeatureParams;
use crate::gateway::{FieldMap, Format, TrustedProxies};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {why}")]
    Invalid { key: String, why: String },
}

mod respond;
pub use respond::{
    RawAlerts, RawBrake, RawDenylist, RawLogout, RawRespond, RawRfc7009, RawWebhook, RespondConfig,
};

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

// ---------------------------------------------------------------------------
// The file as written.

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
    /// Alert events (JSON or Security Event Tokens) for SIEMs.
    pub alerts_topic: String,
    /// Compacted: per-token state, so it follows its partition to another
    /// instance. Empty: no changelog.
    pub state_topic: String,
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
            alerts_topic: "tokenwatch.alerts".into(),
            state_topic: "tokenwatch.state".into(),
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
    pub listen: String,
    /// Bearer credential for the admin routes; empty disables them.
    pub admin_token: String,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:9464".into(),
            admin_token: String::new(),
            max_body_bytes: 64 * 1024,
        }
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
    pub alerts_topic: String,
    /// None: no state changelog.
    pub state_topic: Option<String>,
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
            (self.alerts_topic.as_str(), 1),
        ];
        t.extend(self.state_topic.as_deref().map(|s| (s, 4)));
        t
    }
}

#[derive(Debug, Clone)]
pub struct GeoConfig {
    pub city_db: Vec<PathBuf>,
    pub asn_db: Option<PathBuf>,
}

#[derive(Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// `None`: admin routes are disabled.
    pub admin_token: Option<String>,
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// One gateway topic, its table checked.
#[derive(Debug, Clone)]
pub struct GatewayInput {
    pub topic: String,
    pub format: Format,
    pub map: FieldMap,
}

#[derive(Clone)]
pub struct GatewayConfig {
    pub hash_key: std::sync::Arc<[u8]>,
    pub trusted: TrustedProxies,
    pub jwks_url: Option<String>,
    pub mode: GatewayMode,
    pub inputs: Vec<GatewayInput>,
}

impl GatewayConfig {
    /// The inputs `serve` itself reads.
    pub fn direct_inputs(&self) -> &[GatewayInput] {
        match self.mode {
            GatewayMode::Direct => &self.inputs,
            GatewayMode::Normalize => &[],
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("hash_key", &"<set>")
            .field("trusted", &self.trusted)
            .field("jwks_url", &self.jwks_url)
            .field("mode", &self.mode)
            .field("inputs", &self.inputs)
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
            alerts_topic: non_empty("kafka.alerts_topic", &k.alerts_topic)?,
            state_topic: Some(k.state_topic.trim().to_owned()).filter(|t| !t.is_empty()),
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
        };
        let respond = self.respond.validate()?;
        let h = &self.http;
        let listen = h.listen.parse().map_err(|e: std::net::AddrParseError| {
            invalid("http.listen", format!("{e} (want host:port)"))
        })?;
        let admin_token = match h.admin_token.as_str() {
            "" => None,
            t if t.len() < 16 => {
                return Err(invalid(
                    "http.admin_token",
                    "must be at least 16 characters (or empty to disable the admin routes)",
                ))
            }
            t => Some(t.to_owned()),
        };
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
                admin_token,
                max_body_bytes: h.max_body_bytes,
            },
            allowlist_file: d.allowlist_file.clone(),
            gateway,
        })
    }
}

impl RawGateway {
    fn validate(&self, kafka: &KafkaConfig) -> Result<GatewayConfig, ConfigError> {
        let trusted = self
            .trusted_proxies
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "gateway.trusted_proxies",
                            format!("{c:?} is not a CIDR network"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut inputs = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let topic = non_empty("gateway.inputs.topic", &input.topic)?;
            if topic == kafka.telemetry_topic
                || inputs.iter().any(|x: &GatewayInput| x.topic == topic)
            {
                return Err(invalid(
                    "gateway.inputs.topic",
                    format!("{topic:?} is listed twice (or is kafka.telemetry_topic)"),
                ));
            }
            let map = match (input.format, &input.mapping) {
                (Format::Telemetry, _) => {
                    return Err(invalid(
                        "gateway.inputs.format",
                        format!("input {i}: telemetry topics go in kafka.telemetry_topic"),
                    ))
                }
                (Format::Mapped, Some(m)) => m.clone(),
                (Format::Mapped, None) => {
                    return Err(invalid(
                        "gateway.inputs.mapping",
                        format!("input {i}: format \"mapped\" needs a mapping"),
                    ))
                }
                (f, None) => FieldMap::preset(f).expect("a preset for every gateway format"),
                (_, Some(_)) => {
                    return Err(invalid(
                        "gateway.inputs.mapping",
                        format!("input {i}: only format \"mapped\" takes a mapping"),
                    ))
                }
            };
            map.check()
                .map_err(|why| invalid("gateway.inputs.mapping", format!("input {i}: {why}")))?;
            inputs.push(GatewayInput {
                topic,
                format: input.format,
                map,
            });
        }
        if !inputs.is_empty() && self.hash_key.len() < 16 {
            return Err(invalid(
                "gateway.hash_key",
                "gateway inputs need a hash key of at least 16 bytes to identify opaque tokens",
            ));
        }
        if let Some(u) = &self.jwks_url {
            let url = url::Url::parse(u).map_err(|e| invalid("gateway.jwks_url", e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("gateway.jwks_url", "must be an http(s) URL"));
            }
        }
        Ok(GatewayConfig {
            hash_key: std::sync::Arc::from(self.hash_key.as_bytes()),
            trusted: TrustedProxies(trusted),
            jwks_url: self.jwks_url.clone(),
            mode: self.mode,
            inputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::{LogoutAuth, Mode};
    use crate::seal::Sealer;

    #[test]
    fn response_targets_name_the_failing_key() {
        assert!(err("[[respond.subject_logout]]\nname = \"kc\"\npreset = \"keycloak\"\nbase_url = \"https://kc\"")
            .contains("respond.subject_logout[0].realm"));
        assert!(
            err("[[respond.subject_logout]]\nname = \"x\"\nurl = \"https://idp/users/me\"")
                .contains("respond.subject_logout[0].url"),
            "a template without {{sub}}"
        );
        assert!(err("[[respond.subject_logout]]\nname = \"x\"\nurl = \"https://idp/{sub}\"\nmethod = \"N O\"")
            .contains("respond.subject_logout[0].method"));
        assert!(err(
            "[[respond.webhook]]\nname = \"siem\"\nurl = \"https://siem/hook\"\nsecret = \"short\""
        )
        .contains("respond.webhook[0].secret"));
        assert!(err("[[respond.webhook]]\nname = \"denylist\"\nurl = \"https://siem/hook\"\nsecret = \"0123456789abcdef\"")
            .contains("respond.webhook[0].name"));
        assert!(err("[respond.alerts]\nformat = \"set\"\nset_issuer = \"https://tw\"\nset_key = \"c2hvcnQ=\"")
            .contains("respond.alerts.set_key"));
        assert!(err("[respond.brake]\nmax_active_fraction = 2.0")
            .contains("respond.brake.max_active_fraction"));
        let c = Config::from_toml(
            "[[respond.subject_logout]]\nname = \"kc\"\npreset = \"keycloak\"\nbase_url = \"https://kc.example\"\nrealm = \"acme\"\n[respond.subject_logout.client_credentials]\ntoken_url = \"https://kc.example/realms/acme/protocol/openid-connect/token\"\nclient_id = \"tokenwatch\"\nclient_secret = \"s\"",
        )
        .unwrap();
        let l = &c.respond.logouts[0];
        assert_eq!(
            l.url,
            "https://kc.example/admin/realms/acme/users/{sub}/logout"
        );
        assert!(matches!(l.auth, LogoutAuth::ClientCredentials { .. }));
        assert!(
            c.respond.denylist.is_some() && c.respond.alerts.is_some(),
            "on by default"
        );
    }

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.kafka.telemetry_topic, "tokenwatch.telemetry");
        assert_eq!(c.respond.mode, Mode::Revoke);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("[detect]\nplausible_speed_kmh = 5").contains("detect.plausible_speed_kmh"));
        assert!(err("[detect]\nmax_tokens = 0").contains("detect.max_tokens"));
        assert!(err("[http]\nlisten = \"nonsense\"").contains("http.listen"));
        assert!(err("[http]\nadmin_token = \"short\"").contains("http.admin_token"));
        assert!(err("[http]\nmax_body_bytes = 1").contains("http.max_body_bytes"));
        assert!(
            err("[respond.brake]\nmax_revocations = 0").contains("respond.brake.max_revocations")
        );
        assert!(err("[kafka]\nbrokers = \"\"").contains("kafka.brokers"));
        assert!(err("[kafka.properties]\n\"enable.auto.commit\" = \"true\"")
            .contains("kafka.properties"));
        let typo = err("[kafka]\nbrokrs = \"x\"");
        assert!(typo.contains("brokrs"), "{typo}");
        let wrong_type = err("[detect]\nmax_tokens = \"many\"");
        assert!(wrong_type.contains("max_tokens"), "{wrong_type}");
        assert!(err(
            "[respond.rfc7009]\nurl = \"ftp://x\"\nclient_id = \"a\"\nclient_secret = \"b\""
        )
        .contains("respond.rfc7009.url"));
    }

    #[test]
    fn gateway_inputs_are_checked() {
        let key = "hash_key = \"0123456789abcdef0123\"\n";
        let ok = Config::from_toml(&format!(
            "[gateway]\n{key}trusted_proxies = [\"10.0.0.0/8\"]\n[[gateway.inputs]]\ntopic = \"nginx.access\"\nformat = \"nginx\""
        ))
        .unwrap();
        assert_eq!(ok.gateway.inputs[0].format, Format::Nginx);
        assert!(err("[[gateway.inputs]]\ntopic = \"a\"\nformat = \"envoy\"")
            .contains("gateway.hash_key"));
        assert!(err(&format!(
            "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"mapped\""
        ))
        .contains("gateway.inputs.mapping"));
        assert!(err(&format!(
            "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"mapped\"\n[gateway.inputs.mapping]\nts = \"/t\""
        ))
        .contains("must be mapped"));
        assert!(err("[gateway]\ntrusted_proxies = [\"10.0.0.0/33\"]")
            .contains("gateway.trusted_proxies"));
        assert!(err(&format!(
            "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"apache\""
        ))
        .contains("apache"));
    }

    #[test]
    fn revoke_mode_with_rfc7009_needs_seal_keys() {
        let text = "[respond.rfc7009]\nurl = \"http://127.0.0.1:1/revoke\"\nclient_id = \"tw\"\nclient_secret = \"s\"";
        assert!(err(text).contains("respond.seal_keys"));
        let key = Sealer::generate_key();
        let ok = format!("{text}\n[respond.seal_keys]\nk1 = \"{key}\"");
        assert!(Config::from_toml(&ok).unwrap().respond.sealer.is_some());
    }
}
