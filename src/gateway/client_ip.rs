//! The client's address behind proxies. The peer the gateway saw is the
//! client unless it is one of the operator's trusted proxies; only then is
//! the header the input maps read (`X-Forwarded-For`, or RFC 7239
//! `Forwarded` where an input maps it instead; no preset does), from the
//! right, skipping trusted hops. A header the client wrote itself is never believed: its
//! entries sit left of the first untrusted hop, which is where reading stops.

use std::net::IpAddr;

use ipnet::IpNet;

use super::GatewayError;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

use crate::telemetry::canonical_ip as canonical;

/// An address as gateways log it: bare, `v4:port`, `[v6]:port`, or an RFC
/// 7239 node (`"[2001:db8::1]:443"`, quoted).
fn parse_addr(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    // A zone (`fe80::1%eth0`) names an interface of the gateway, not the
    // client: dropped.
    if let Some((addr, _zone)) = t.split_once('%') {
        return parse_addr(addr.trim_start_matches('['));
    }
    // `v4:port`, the commonest form in access logs, without first failing
    // to read it as a bare address.
    if let Some((host, port)) = t.split_once(':') {
        if port.parse::<u16>().is_ok() {
            return host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
        }
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = t.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    t.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|a| a.parse().ok())
        .map(canonical)
}

/// The `for=` nodes of a `Forwarded` header, in order.
fn forwarded_for(header: &str) -> Vec<&str> {
    header
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            })
        })
        .collect()
}

pub fn client_ip(
    remote: &str,
    x_forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &TrustedProxies,
) -> Result<IpAddr, GatewayError> {
    let peer = parse_addr(remote).ok_or(GatewayError::Ip)?;
    if !trusted.contains(peer) {
        return Ok(peer);
    }
    match (forwarded, x_forwarded_for) {
        (Some(f), _) => Ok(walk_back(peer, forwarded_for(f).into_iter().rev(), trusted)),
        (None, Some(x)) => Ok(walk_back(peer, x.rsplit(','), trusted)),
        (None, None) => Ok(peer),
    }
}

/// The first untrusted address among `hops`, read from the right.
fn walk_back<'h>(
    peer: IpAddr,
    hops: impl Iterator<Item = &'h str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut leftmost = peer;
    for hop in hops {
        // An unparseable hop ("unknown", an obfuscated node) ends what can
        // be trusted: the last proxy we trust is the best we know.
        let Some(ip) = parse_addr(hop) else {
            return leftmost;
        };
        if !trusted.contains(ip) {
            return ip;
        }
        leftmost = ip;
    }
    leftmost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let got = client_ip("203.0.113.9:5555", Some("198.51.100.1"), None, &trusted()).unwrap();
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        // Client spoofs 1.1.1.1; the real client 203.0.113.9 reached our
        // load balancer 10.0.0.2, which reached the gateway from 10.0.0.1.
        let got = client_ip(
            "10.0.0.1",
            Some("1.1.1.1, 203.0.113.9, 10.0.0.2"),
            None,
            &trusted(),
        )
        .unwrap();
        assert_eq!(got, ip("203.0.113.9"));
        let got = client_ip(
            "[2001:db8:ffff::1]:443",
            Some("2001:db8::77"),
            None,
            &trusted(),
        )
        .unwrap();
        assert_eq!(got, ip("2001:db8::77"));
        let all_trusted =
            client_ip("10.0.0.1", Some("10.0.0.3, 10.0.0.2"), None, &trusted()).unwrap();
        assert_eq!(all_trusted, ip("10.0.0.3"));
        let unknown =
            client_ip("10.0.0.1", Some("203.0.113.9, unknown"), None, &trusted()).unwrap();
        assert_eq!(unknown, ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_header_and_mapped_addresses() {
        let f = r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711", for=10.0.0.5"#;
        let got = client_ip("10.0.0.1", Some("9.9.9.9"), Some(f), &trusted()).unwrap();
        assert_eq!(
            got,
            ip("2001:db8:cafe::17"),
            "Forwarded wins over X-Forwarded-For"
        );
        assert_eq!(
            client_ip("::ffff:10.0.0.1", Some("198.51.100.4"), None, &trusted()).unwrap(),
            ip("198.51.100.4")
        );
        assert!(client_ip("not-an-ip", None, None, &trusted()).is_err());
    }

    #[test]
    fn addresses_in_every_logged_form() {
        for (text, want) in [
            ("203.0.113.9", Some("203.0.113.9")),
            ("203.0.113.9:443", Some("203.0.113.9")),
            (" \"203.0.113.9:1\" ", Some("203.0.113.9")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("::ffff:198.51.100.4", Some("198.51.100.4")),
            ("203.0.113.9:99999", None),
            ("gateway.local:443", None),
            ("203.0.113.9:", None),
            ("", None),
        ] {
            assert_eq!(parse_addr(text), want.map(ip), "{text:?}");
        }
    }
}
