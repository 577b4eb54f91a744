//! Addresses that must never be given a position: private, loopback, CGNAT,
//! link-local, documentation and other special-purpose ranges. A request from
//! one of these is "unlocated", never (0, 0) — a null island would read as
//! travel to the Gulf of Guinea.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Why an address has no location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlocated {
    Private,
    Loopback,
    /// RFC 6598 shared address space (carrier-grade NAT).
    Cgnat,
    /// Link-local, multicast, documentation, unspecified, reserved.
    Reserved,
    /// A public address the database does not cover.
    NotInDatabase,
    /// An operator listed the address, or its network, as shared egress (a
    /// VPN or proxy): where it geolocates says nothing about the user.
    Allowlisted,
    /// Not looked up: the request was not scored (the gateway rejected it).
    NotLooked,
}

/// Classifies special-purpose addresses; `None` for a public address.
pub fn special_purpose(ip: IpAddr) -> Option<Unlocated> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            special_v6(v6)
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Unlocated> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some(Unlocated::Loopback)
    } else if ip.is_private() {
        Some(Unlocated::Private)
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some(Unlocated::Cgnat)
    } else if ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        Some(Unlocated::Reserved)
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<Unlocated> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some(Unlocated::Loopback)
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some(Unlocated::Private) // unique local fc00::/7
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xffc0) == 0xfe80
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || (seg[0] & 0xe000) != 0x2000
    {
        // Only 2000::/3 is globally routed unicast.
        Some(Unlocated::Reserved)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<Unlocated> {
        special_purpose(s.parse().unwrap())
    }

    #[test]
    fn special_ranges_are_unlocated() {
        assert_eq!(class("10.1.2.3"), Some(Unlocated::Private));
        assert_eq!(class("192.168.0.1"), Some(Unlocated::Private));
        assert_eq!(class("127.0.0.1"), Some(Unlocated::Loopback));
        assert_eq!(class("100.64.0.1"), Some(Unlocated::Cgnat));
        assert_eq!(class("100.127.255.255"), Some(Unlocated::Cgnat));
        assert_eq!(class("169.254.1.1"), Some(Unlocated::Reserved));
        assert_eq!(class("::1"), Some(Unlocated::Loopback));
        assert_eq!(class("fd00::1"), Some(Unlocated::Private));
        assert_eq!(class("fe80::1"), Some(Unlocated::Reserved));
        assert_eq!(class("2001:db8::1"), Some(Unlocated::Reserved));
        assert_eq!(class("::ffff:10.0.0.1"), Some(Unlocated::Private));
    }

    #[test]
    fn public_addresses_are_not_special() {
        assert_eq!(class("81.2.69.142"), None);
        assert_eq!(class("100.128.0.1"), None);
        assert_eq!(class("2a01:e0a::1"), None);
    }
}
