//! The normalized record and the bytes `normalize` publishes. Written by
//! hand rather than through `Serialize`: most fields are ASCII with nothing
//! to escape and are copied whole, where serde_json's escaping loop took
//! 9 % of a record's normalization (perf, benches/normalize.rs).

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;

/// A normalized telemetry record, in the schema of docs/telemetry.md. Text
/// fields borrow from the gateway record where they can, so a record costs
/// few allocations on the way through.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry<'a> {
    pub ts: i64,
    pub token_id: String,
    pub sub: Cow<'a, str>,
    pub ip: IpAddr,
    pub user_agent: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub status: u16,
    pub client_id: Option<String>,
    pub token_iat: Option<i64>,
    pub token_exp: Option<i64>,
    pub bytes: Option<u64>,
    pub latency_ms: Option<f64>,
    pub token_handle: Option<String>,
}

impl Telemetry<'_> {
    /// The record as the telemetry topic carries it: one JSON object, the
    /// optional fields left out when absent.
    pub fn to_json(&self) -> Vec<u8> {
        let text = self.token_id.len()
            + self.sub.len()
            + self.user_agent.len()
            + self.method.len()
            + self.path.len()
            + self.client_id.as_ref().map_or(0, String::len)
            + self.token_handle.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(text + 256);
        let w = &mut out;
        w.extend_from_slice(b"{\"ts\":");
        int(w, self.ts);
        string(w, b",\"token_id\":", &self.token_id);
        string(w, b",\"sub\":", &self.sub);
        w.extend_from_slice(b",\"ip\":\"");
        ip(w, self.ip);
        w.push(b'"');
        string(w, b",\"user_agent\":", &self.user_agent);
        string(w, b",\"method\":", &self.method);
        string(w, b",\"path\":", &self.path);
        w.extend_from_slice(b",\"status\":");
        int(w, self.status);
        if let Some(c) = &self.client_id {
            string(w, b",\"client_id\":", c);
        }
        if let Some(t) = self.token_iat {
            w.extend_from_slice(b",\"token_iat\":");
            int(w, t);
        }
        if let Some(t) = self.token_exp {
            w.extend_from_slice(b",\"token_exp\":");
            int(w, t);
        }
        if let Some(b) = self.bytes {
            w.extend_from_slice(b",\"bytes\":");
            int(w, b);
        }
        // JSON has no NaN or infinity; such a latency is left out, as
        // serde_json would have written null.
        if let Some(l) = self.latency_ms.filter(|l| l.is_finite()) {
            w.extend_from_slice(b",\"latency_ms\":");
            serde_json::to_writer(&mut *w, &l).expect("a number serialises");
        }
        if let Some(h) = &self.token_handle {
            string(w, b",\"token_handle\":", h);
        }
        w.push(b'}');
        out
    }
}

fn int(w: &mut Vec<u8>, n: impl itoa::Integer) {
    w.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `key` then `s` as a JSON string.
fn string(w: &mut Vec<u8>, key: &[u8], s: &str) {
    w.extend_from_slice(key);
    // No branch per byte, so the check vectorises.
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        w.push(b'"');
        w.extend_from_slice(s.as_bytes());
        w.push(b'"');
    } else {
        serde_json::to_writer(&mut *w, s).expect("a string serialises");
    }
}

fn ip(w: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    w.push(b'.');
                }
                int(w, octet);
            }
        }
        IpAddr::V6(v6) => write!(w, "{v6}").expect("writing to a Vec succeeds"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    fn record<'a>(sub: &'a str, ua: &'a str, ip: IpAddr, latency: Option<f64>) -> Telemetry<'a> {
        Telemetry {
            ts: -1_795_428_000_123,
            token_id: "h1:00ff".into(),
            sub: Cow::Borrowed(sub),
            ip,
            user_agent: Cow::Borrowed(ua),
            method: Cow::Borrowed("GET"),
            path: Cow::Borrowed("/v1/x?a=\"b\""),
            status: 200,
            client_id: None,
            token_iat: Some(1),
            token_exp: None,
            bytes: Some(u64::MAX),
            latency_ms: latency,
            token_handle: Some("v1.abc".into()),
        }
    }

    #[test]
    fn writes_the_schema_and_leaves_out_what_is_absent() {
        let t = record("alice", "curl/8", "81.2.69.142".parse().unwrap(), Some(1.5));
        let v: Value = serde_json::from_slice(&t.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"ts": -1_795_428_000_123i64, "token_id": "h1:00ff", "sub": "alice",
                   "ip": "81.2.69.142", "user_agent": "curl/8", "method": "GET",
                   "path": "/v1/x?a=\"b\"", "status": 200, "token_iat": 1,
                   "bytes": u64::MAX, "latency_ms": 1.5, "token_handle": "v1.abc"})
        );
        let nan = record("", "", "::1".parse().unwrap(), Some(f64::NAN));
        let v: Value = serde_json::from_slice(&nan.to_json()).unwrap();
        assert!(v.get("latency_ms").is_none());
        assert_eq!(v["ip"], "::1");
    }

    proptest! {
        /// Any text and any address round-trip through the JSON written.
        #[test]
        fn any_text_and_address_round_trip(
            sub in "\\PC*", ua in any::<String>(), v6 in any::<bool>(),
            a in any::<u128>(), latency in any::<f64>(),
        ) {
            let ip = if v6 {
                IpAddr::V6(a.into())
            } else {
                IpAddr::V4((a as u32).into())
            };
            let t = record(&sub, &ua, ip, Some(latency));
            let v: Value = serde_json::from_slice(&t.to_json()).unwrap();
            prop_assert_eq!(v["sub"].as_str(), Some(sub.as_str()));
            prop_assert_eq!(v["user_agent"].as_str(), Some(ua.as_str()));
            prop_assert_eq!(v["ip"].as_str().unwrap().parse::<IpAddr>().unwrap(), ip);
            if latency.is_finite() {
                // serde_json's reader may miss the last bit (no float_roundtrip).
                let got = v["latency_ms"].as_f64().unwrap();
                prop_assert!((got - latency).abs() <= latency.abs() * 1e-15, "{got} {latency}");
            }
        }
    }
}
