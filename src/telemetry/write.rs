//! An event as the telemetry topic carries it: what `normalize` publishes,
//! and what `Event::parse` reads back. Written by hand rather than through
//! `Serialize`: most fields are ASCII with nothing to escape and are copied
//! whole, where serde_json's escaping loop took 9 % of a record's
//! normalization (perf, benches/normalize.rs).

use std::io::Write;
use std::net::IpAddr;

use super::Event;

impl Event<'_> {
    /// The record as the telemetry topic carries it: one JSON object, the
    /// optional fields left out when absent.
    pub fn to_json(&self) -> Vec<u8> {
        let optional = |s: &Option<std::borrow::Cow<'_, str>>| s.as_ref().map_or(0, |s| s.len());
        let text = self.token_id.len()
            + self.sub.len()
            + self.user_agent.len()
            + self.method.len()
            + self.path.len()
            + optional(&self.tenant)
            + optional(&self.client_id)
            + optional(&self.token_handle);
        let mut out = Vec::with_capacity(text + 256);
        let w = &mut out;
        w.extend_from_slice(b"{\"ts\":");
        int(w, self.ts_ms);
        string(w, b",\"token_id\":", &self.token_id);
        string(w, b",\"sub\":", &self.sub);
        if self.sub_verified {
            w.extend_from_slice(b",\"sub_verified\":true");
        }
        w.extend_from_slice(b",\"ip\":\"");
        ip(w, self.ip);
        w.push(b'"');
        string(w, b",\"user_agent\":", &self.user_agent);
        string(w, b",\"method\":", &self.method);
        string(w, b",\"path\":", &self.path);
        w.extend_from_slice(b",\"status\":");
        int(w, self.status);
        if let Some(t) = &self.tenant {
            string(w, b",\"tenant\":", t);
        }
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
        // JSON has no NaN or infinity: such a latency is left out, and reads
        // back as none. Gateways mostly log whole milliseconds, which
        // `itoa` writes in a fraction of a float's time.
        if let Some(l) = self.latency_ms.filter(|l| l.is_finite()) {
            w.extend_from_slice(b",\"latency_ms\":");
            if l.fract() == 0.0 && l.abs() < 1e15 {
                int(w, l as i64);
            } else {
                serde_json::to_writer(&mut *w, &l).expect("a number serialises");
            }
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
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;

    fn event<'a>(sub: &'a str, ua: &'a str, ip: IpAddr, latency: Option<f64>) -> Event<'a> {
        Event {
            ts_ms: 1_795_428_000_123,
            token_id: Cow::Borrowed("h1:00ff"),
            sub: Cow::Borrowed(sub),
            sub_verified: true,
            ip,
            user_agent: Cow::Borrowed(ua),
            method: Cow::Borrowed("GET"),
            path: Cow::Borrowed("/v1/x\"b\""),
            status: 200,
            tenant: Some(Cow::Borrowed("acme")),
            client_id: None,
            token_exp: None,
            token_iat: Some(1),
            bytes: Some(u64::MAX),
            latency_ms: latency,
            token_handle: Some(Cow::Borrowed("v1.abc")),
        }
    }

    #[test]
    fn reads_back_as_the_same_event() {
        let e = event("alice", "curl/8", "81.2.69.142".parse().unwrap(), Some(1.5));
        let json = e.to_json();
        assert_eq!(Event::parse(&json).unwrap(), e);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(v.get("client_id").is_none() && v.get("token_exp").is_none());
        // JSON has no NaN: such a latency is left out.
        let nan = event("", "", "::1".parse().unwrap(), Some(f64::NAN));
        let back = nan.to_json();
        assert_eq!(Event::parse(&back).unwrap().latency_ms, None);
        // Whole milliseconds are written as integers and read back the same.
        for l in [18.0, 0.0, -3.0, 9.5e14] {
            let e = event("", "", "::1".parse().unwrap(), Some(l));
            let json = e.to_json();
            let text = String::from_utf8(json.clone()).unwrap();
            assert!(
                text.contains(&format!("\"latency_ms\":{}", l as i64)),
                "{text}"
            );
            assert_eq!(Event::parse(&json).unwrap(), e);
        }
        let e = event("", "", "::1".parse().unwrap(), Some(2.5e15));
        assert_eq!(Event::parse(&e.to_json()).unwrap(), e);
    }

    proptest! {
        /// Any text and any address read back as written.
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
            let e = event(&sub, &ua, ip, Some(latency));
            let json = e.to_json();
            let back = Event::parse(&json).unwrap();
            prop_assert_eq!(&back.sub, &e.sub);
            prop_assert_eq!(&back.user_agent, &e.user_agent);
            prop_assert_eq!(back.ip, ip);
            if latency.is_finite() {
                // serde_json's reader may miss the last bit (no float_roundtrip).
                let got = back.latency_ms.unwrap();
                prop_assert!((got - latency).abs() <= latency.abs() * 1e-15, "{got} {latency}");
            }
        }
    }
}
