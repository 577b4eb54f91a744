//! Where each telemetry field lives in a gateway's record: JSON pointers
//! (RFC 6901), one table per format.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::GatewayError;

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
                x_forwarded_for: p("/x_forwarded_for"),
                forwarded: p("/forwarded"),
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

    /// Every pointer must be a valid RFC 6901 pointer ("" or starting "/").
    pub fn check(&self) -> Result<(), String> {
        let all = [
            ("ts", &self.ts),
            ("remote_addr", &self.remote_addr),
            ("x_forwarded_for", &self.x_forwarded_for),
            ("forwarded", &self.forwarded),
            ("authorization", &self.authorization),
            ("jwt_payload", &self.jwt_payload),
            ("token_id", &self.token_id),
            ("sub", &self.sub),
            ("token_iat", &self.token_iat),
            ("token_exp", &self.token_exp),
            ("client_id", &self.client_id),
            ("user_agent", &self.user_agent),
            ("method", &self.method),
            ("path", &self.path),
            ("status", &self.status),
            ("bytes", &self.bytes),
            ("latency", &self.latency),
        ];
        for (name, ptr) in all {
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

    /// The value at `ptr`, absent for JSON null and the `-` gateways write
    /// for "no value".
    pub fn get<'v>(&self, v: &'v Value, ptr: &Option<String>) -> Option<&'v Value> {
        let x = v.pointer(ptr.as_deref()?)?;
        match x {
            Value::Null => None,
            Value::String(s) if s.is_empty() || s == "-" => None,
            x => Some(x),
        }
    }

    /// The value at `ptr` as text (numbers written out).
    pub fn text(&self, v: &Value, ptr: &Option<String>) -> Option<String> {
        match self.get(v, ptr)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A number, or a string holding one (gateways often quote numbers).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

pub fn integer(v: &Value) -> Option<i64> {
    number(v)
        .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
        .map(|x| x as i64)
}

/// Event time: RFC 3339 text, NGINX/Apache `23/Nov/2026:10:00:00 +0000`, or
/// an epoch number (milliseconds when ≥ 10^11, else seconds, fractions
/// allowed, as NGINX's `$msec` writes).
pub fn timestamp_ms(v: &Value) -> Result<i64, GatewayError> {
    let bad = || GatewayError::Timestamp(v.to_string().chars().take(40).collect());
    if let Some(x) = number(v) {
        return Ok(if x.abs() >= 1e11 {
            x as i64
        } else {
            (x * 1000.0).round() as i64
        });
    }
    let Value::String(s) = v else {
        return Err(bad());
    };
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let clf = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    time::OffsetDateTime::parse(s, &clf)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| bad())
}
