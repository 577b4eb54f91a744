//! Where each telemetry field lives in a gateway's record: JSON pointers
//! (RFC 6901), one table per format.

use serde::{Deserialize, Serialize};

use super::pluck::Scalar;
use super::GatewayError;

/// Where each field lands when a record is plucked.
pub mod slot {
    pub const TS: usize = 0;
    pub const REMOTE_ADDR: usize = 1;
    pub const X_FORWARDED_FOR: usize = 2;
    pub const FORWARDED: usize = 3;
    pub const AUTHORIZATION: usize = 4;
    pub const JWT_PAYLOAD: usize = 5;
    pub const TOKEN_ID: usize = 6;
    pub const SUB: usize = 7;
    pub const TOKEN_IAT: usize = 8;
    pub const TOKEN_EXP: usize = 9;
    pub const CLIENT_ID: usize = 10;
    pub const USER_AGENT: usize = 11;
    pub const METHOD: usize = 12;
    pub const PATH: usize = 13;
    pub const STATUS: usize = 14;
    pub const BYTES: usize = 15;
    pub const LATENCY: usize = 16;
    pub const COUNT: usize = 17;

    /// Each slot's field name, as configuration and dead letters call it.
    pub const NAMES: [&str; COUNT] = [
        "ts",
        "remote_addr",
        "x_forwarded_for",
        "forwarded",
        "authorization",
        "jwt_payload",
        "token_id",
        "sub",
        "token_iat",
        "token_exp",
        "client_id",
        "user_agent",
        "method",
        "path",
        "status",
        "bytes",
        "latency",
    ];
}

/// The input formats a topic can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// tokenwatch's own telemetry (docs/telemetry.md).
    #[default]
    Telemetry,
    /// Envoy access log with the `json_format` in docs/gateways.md.
    Envoy,
    /// NGINX `log_format … escape=json` as in docs/gateways.md.
    Nginx,
    /// Kong `http-log` / `kafka-log` plugin payloads.
    Kong,
    /// AWS API Gateway access logs (`$context.*` JSON, JWT authorizer claims).
    AwsApiGateway,
    /// Traefik JSON access logs with the Authorization header kept.
    Traefik,
    /// A user's own table (`mapping`).
    Mapped,
}

/// JSON pointers to each field; `None` where the format has no such field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMap {
    pub ts: Option<String>,
    /// The peer address the gateway saw (may carry a port).
    pub remote_addr: Option<String>,
    pub x_forwarded_for: Option<String>,
    /// RFC 7239 `Forwarded` header.
    pub forwarded: Option<String>,
    /// The `Authorization` request header.
    pub authorization: Option<String>,
    /// A verified JWT payload object the gateway already decoded.
    pub jwt_payload: Option<String>,
    /// Claims the gateway logs as fields of their own.
    pub token_id: Option<String>,
    pub sub: Option<String>,
    pub token_iat: Option<String>,
    pub token_exp: Option<String>,
    pub client_id: Option<String>,
    pub user_agent: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<String>,
    pub bytes: Option<String>,
    pub latency: Option<String>,
    /// Multiplier from the format's latency unit to milliseconds.
    pub latency_to_ms: f64,
    /// The claim fields (`token_id`, `sub`, …) are logged by the gateway
    /// after it verified the token (an authorizer's claims): their subject
    /// may be logged out. Claims decoded from an unverified JWT never are.
    pub claims_verified: bool,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            ts: None,
            remote_addr: None,
            x_forwarded_for: None,
            forwarded: None,
            authorization: None,
            jwt_payload: None,
            token_id: None,
            sub: None,
            token_iat: None,
            token_exp: None,
            client_id: None,
            user_agent: None,
            method: None,
            path: None,
            status: None,
            bytes: None,
            latency: None,
            latency_to_ms: 1.0,
            claims_verified: false,
        }
    }
}

fn p(s: &str) -> Option<String> {
    Some(s.to_owned())
}

impl FieldMap {
    /// The table of a preset format; `None` for `telemetry` and `mapped`.
    pub fn preset(format: Format) -> Option<FieldMap> {
        let d = FieldMap::default();
        Some(match format {
            Format::Envoy => FieldMap {
                ts: p("/start_time"),
                remote_addr: p("/downstream_remote_address"),
                x_forwarded_for: p("/x_forwarded_for"),
                authorization: p("/authorization"),
                jwt_payload: p("/jwt_payload"),
                user_agent: p("/user_agent"),
                method: p("/method"),
                path: p("/path"),
                status: p("/response_code"),
                bytes: p("/bytes_sent"),
                latency: p("/duration"),
                ..d
            },
            Format::Nginx => FieldMap {
                ts: p("/time"),
                remote_addr: p("/remote_addr"),
                // Only the header the proxies in front append to. NGINX
                // passes a client's own `Forwarded` on untouched.
                x_forwarded_for: p("/x_forwarded_for"),
                authorization: p("/authorization"),
                user_agent: p("/user_agent"),
                method: p("/method"),
                path: p("/uri"),
                status: p("/status"),
                bytes: p("/bytes"),
                latency: p("/request_time"),
                latency_to_ms: 1000.0,
                ..d
            },
            // Kong resolves the client address itself (trusted_ips,
            // real_ip_header), so client_ip is taken as the peer.
            Format::Kong => FieldMap {
                ts: p("/started_at"),
                remote_addr: p("/client_ip"),
                authorization: p("/request/headers/authorization"),
                client_id: p("/consumer/username"),
                user_agent: p("/request/headers/user-agent"),
                method: p("/request/method"),
                path: p("/request/uri"),
                status: p("/response/status"),
                bytes: p("/response/size"),
                latency: p("/latencies/request"),
                ..d
            },
            // API Gateway cannot log the Authorization header; with a JWT
            // authorizer it logs the verified claims.
            Format::AwsApiGateway => FieldMap {
                ts: p("/requestTimeEpoch"),
                remote_addr: p("/ip"),
                token_id: p("/jti"),
                sub: p("/sub"),
                token_iat: p("/iat"),
                token_exp: p("/exp"),
                client_id: p("/clientId"),
                user_agent: p("/userAgent"),
                method: p("/httpMethod"),
                path: p("/path"),
                status: p("/status"),
                bytes: p("/responseLength"),
                latency: p("/responseLatency"),
                claims_verified: true,
                ..d
            },
            Format::Traefik => FieldMap {
                ts: p("/StartUTC"),
                remote_addr: p("/ClientAddr"),
                x_forwarded_for: p("/request_X-Forwarded-For"),
                authorization: p("/request_Authorization"),
                user_agent: p("/request_User-Agent"),
                method: p("/RequestMethod"),
                path: p("/RequestPath"),
                status: p("/DownstreamStatus"),
                bytes: p("/DownstreamContentSize"),
                latency: p("/Duration"),
                latency_to_ms: 1e-6,
                ..d
            },
            Format::Telemetry | Format::Mapped => return None,
        })
    }

    /// The pointers in slot order (see the `slot` constants).
    pub fn pointers(&self) -> [Option<&str>; slot::COUNT] {
        [
            self.ts.as_deref(),
            self.remote_addr.as_deref(),
            self.x_forwarded_for.as_deref(),
            self.forwarded.as_deref(),
            self.authorization.as_deref(),
            self.jwt_payload.as_deref(),
            self.token_id.as_deref(),
            self.sub.as_deref(),
            self.token_iat.as_deref(),
            self.token_exp.as_deref(),
            self.client_id.as_deref(),
            self.user_agent.as_deref(),
            self.method.as_deref(),
            self.path.as_deref(),
            self.status.as_deref(),
            self.bytes.as_deref(),
            self.latency.as_deref(),
        ]
    }

    /// Every pointer must be a valid RFC 6901 pointer ("" or starting "/").
    pub fn check(&self) -> Result<(), String> {
        for (name, ptr) in slot::NAMES.iter().zip(self.pointers()) {
            if let Some(ptr) = ptr {
                if !ptr.starts_with('/') {
                    return Err(format!(
                        "`{name}` = {ptr:?} is not a JSON pointer (want \"/field/sub\")"
                    ));
                }
            }
        }
        for (name, ptr) in [
            ("ts", &self.ts),
            ("remote_addr", &self.remote_addr),
            ("method", &self.method),
            ("path", &self.path),
            ("status", &self.status),
        ] {
            if ptr.is_none() {
                return Err(format!("`{name}` must be mapped"));
            }
        }
        if self.authorization.is_none() && self.token_id.is_none() && self.jwt_payload.is_none() {
            return Err(
                "map `authorization`, `jwt_payload` or `token_id`: the token must be identified"
                    .into(),
            );
        }
        if !(self.latency_to_ms.is_finite() && self.latency_to_ms > 0.0) {
            return Err("`latency_to_ms` must be a positive number".into());
        }
        Ok(())
    }
}

/// Event time: RFC 3339 text, NGINX/Apache `23/Nov/2026:10:00:00 +0000`, or
/// an epoch number (milliseconds when ≥ 10^11, else seconds, fractions
/// allowed, as NGINX's `$msec` writes).
pub fn timestamp_ms(v: &Scalar<'_>) -> Result<i64, GatewayError> {
    let bad = || GatewayError::Timestamp;
    if let Some(x) = v.number() {
        return Ok(if x.abs() >= 1e11 {
            x as i64
        } else {
            (x * 1000.0).round() as i64
        });
    }
    let Scalar::Str(s) = v else {
        return Err(bad());
    };
    if let Ok(ms) = crate::telemetry::parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    let clf = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    time::OffsetDateTime::parse(s, &clf)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| bad())
}
