//! `[gateway]`: the access-log topics tokenwatch reads, each with its field
//! table checked once, the hash key of opaque tokens and the proxies whose
//! forwarding header is believed.

use super::raw::{GatewayMode, RawGateway};
use super::{invalid, non_empty, ConfigError, KafkaConfig};
use crate::gateway::{FieldMap, Format, TrustedProxies};

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

impl RawGateway {
    pub(super) fn validate(&self, kafka: &KafkaConfig) -> Result<GatewayConfig, ConfigError> {
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
