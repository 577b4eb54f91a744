//! The operator's allowlist: what tokenwatch must not read as theft.
//!
//! - `network` and `asn` entries name shared egress (a corporate VPN, a
//!   security proxy, a cloud desktop): requests from them are scored as
//!   location-less, so neither that request nor the next one can make
//!   impossible travel or concurrent use out of the egress's location. The
//!   token's other signals still count.
//! - `subject` entries (test accounts, monitors) are scored but never acted on.
//!
//! An entry may be limited to one tenant's traffic (`tenant`) and to a time
//! (`expires_at_ms`, compared with the detector's event clock, so a replay
//! decides as the first pass did): "this office's VPN, for the two weeks of
//! the offsite" must not outlive the offsite. An expired entry stays listed
//! (the operator removes it) but excuses nothing.
//!
//! The list is small and changes rarely; it is swapped whole (`ArcSwap`),
//! and an empty list costs the event path one length check.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Network,
    Asn,
    Subject,
}

/// One entry as the API and the allowlist file hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    pub value: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub created_at_ms: i64,
    /// Only this tenant's traffic; absent: every tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Excuses nothing from this time (ms) on; absent: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

/// Where and until when an entry applies.
#[derive(Clone, Debug, Default)]
struct Scope {
    tenant: Option<String>,
    expires_at_ms: Option<i64>,
}

impl Scope {
    fn of(e: &Entry) -> Scope {
        Scope {
            tenant: e.tenant.clone(),
            expires_at_ms: e.expires_at_ms,
        }
    }

    fn covers(&self, tenant: Option<&str>, at_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|x| at_ms < x)
            && self.tenant.as_deref().is_none_or(|t| Some(t) == tenant)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowlistError {
    #[error("`value` {0:?} is not a network in CIDR form (e.g. 203.0.113.0/24)")]
    Network(String),
    #[error("`value` {0:?} is not an AS number (e.g. 64500 or AS64500)")]
    Asn(String),
    #[error("`value` must not be empty")]
    Empty,
    #[error("an entry with id {0:?} already exists")]
    DuplicateId(String),
}

/// The entries, with their values parsed for matching.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
    networks: Vec<(IpNet, Scope)>,
    asns: Vec<(u32, Scope)>,
    subjects: Vec<(String, Scope)>,
}

pub type AllowlistHandle = Arc<ArcSwap<Allowlist>>;

fn parse_asn(v: &str) -> Option<u32> {
    let digits = v
        .strip_prefix("AS")
        .or_else(|| v.strip_prefix("as"))
        .unwrap_or(v);
    digits.parse().ok().filter(|&n| n != 0)
}

/// Checks an entry's value; a network is normalised to its prefix
/// (`10.1.2.3/8` → `10.0.0.0/8`).
pub fn validate(kind: EntryKind, value: &str) -> Result<String, AllowlistError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AllowlistError::Empty);
    }
    match kind {
        EntryKind::Network => value
            .parse::<IpNet>()
            .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
            .map(|n| n.trunc().to_string())
            .map_err(|_| AllowlistError::Network(value.to_owned())),
        EntryKind::Asn => parse_asn(value)
            .map(|n| format!("AS{n}"))
            .ok_or_else(|| AllowlistError::Asn(value.to_owned())),
        EntryKind::Subject => Ok(value.to_owned()),
    }
}

impl Allowlist {
    pub fn new(entries: Vec<Entry>) -> Result<Allowlist, AllowlistError> {
        let mut list = Allowlist::default();
        for e in entries {
            list.insert(e)?;
        }
        Ok(list)
    }

    fn insert(&mut self, mut e: Entry) -> Result<(), AllowlistError> {
        if self.entries.iter().any(|x| x.id == e.id) {
            return Err(AllowlistError::DuplicateId(e.id));
        }
        e.value = validate(e.kind, &e.value)?;
        if e.tenant.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(AllowlistError::Empty);
        }
        let scope = Scope::of(&e);
        match e.kind {
            EntryKind::Network => self
                .networks
                .push((e.value.parse().expect("validated above"), scope)),
            EntryKind::Asn => self
                .asns
                .push((parse_asn(&e.value).expect("validated"), scope)),
            EntryKind::Subject => self.subjects.push((e.value.clone(), scope)),
        }
        self.entries.push(e);
        Ok(())
    }

    /// A copy with `e` added.
    pub fn with(&self, e: Entry) -> Result<Allowlist, AllowlistError> {
        let mut next = self.clone();
        next.insert(e)?;
        Ok(next)
    }

    /// A copy without entry `id`, or `None` if there is no such entry.
    pub fn without(&self, id: &str) -> Option<Allowlist> {
        let rest: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.id != id)
            .cloned()
            .collect();
        (rest.len() < self.entries.len()).then(|| Allowlist::new(rest).expect("entries were valid"))
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shared egress: the address or its AS is listed for `tenant`'s
    /// traffic at `at_ms`.
    pub fn is_egress(&self, ip: IpAddr, asn: u32, tenant: Option<&str>, at_ms: i64) -> bool {
        (asn != 0
            && self
                .asns
                .iter()
                .any(|(a, s)| *a == asn && s.covers(tenant, at_ms)))
            || self
                .networks
                .iter()
                .any(|(n, s)| n.contains(&ip) && s.covers(tenant, at_ms))
    }

    pub fn is_subject(&self, sub: &str, tenant: Option<&str>, at_ms: i64) -> bool {
        self.subjects
            .iter()
            .any(|(x, s)| x == sub && s.covers(tenant, at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, kind: EntryKind, value: &str) -> Entry {
        Entry {
            id: id.into(),
            kind,
            value: value.into(),
            note: String::new(),
            created_at_ms: 0,
            tenant: None,
            expires_at_ms: None,
        }
    }

    #[test]
    fn an_entry_limited_to_a_tenant_and_a_time_excuses_nothing_outside_them() {
        let mut vpn = entry("vpn", EntryKind::Network, "203.0.113.0/24");
        vpn.tenant = Some("acme".into());
        vpn.expires_at_ms = Some(1_000);
        let mut monitor = entry("mon", EntryKind::Subject, "probe");
        monitor.expires_at_ms = Some(500);
        let l = Allowlist::new(vec![vpn, monitor]).unwrap();
        let ip = "203.0.113.9".parse().unwrap();
        assert!(l.is_egress(ip, 0, Some("acme"), 999));
        assert!(!l.is_egress(ip, 0, Some("acme"), 1_000), "expired");
        assert!(!l.is_egress(ip, 0, Some("globex"), 10), "another tenant");
        assert!(!l.is_egress(ip, 0, None, 10), "no tenant on the event");
        assert!(l.is_subject("probe", Some("globex"), 499), "every tenant");
        assert!(!l.is_subject("probe", None, 500));
        let mut blank = entry("b", EntryKind::Asn, "AS1");
        blank.tenant = Some(" ".into());
        assert_eq!(
            Allowlist::new(vec![blank]).unwrap_err(),
            AllowlistError::Empty
        );
    }

    #[test]
    fn matches_networks_asns_and_subjects() {
        let l = Allowlist::new(vec![
            entry("a", EntryKind::Network, "203.0.113.7/24"),
            entry("b", EntryKind::Asn, "AS64500"),
            entry("c", EntryKind::Subject, "monitor@example.com"),
        ])
        .unwrap();
        assert_eq!(l.entries()[0].value, "203.0.113.0/24");
        assert!(l.is_egress("203.0.113.200".parse().unwrap(), 0, None, 0));
        assert!(!l.is_egress("203.0.114.1".parse().unwrap(), 0, None, 0));
        assert!(l.is_egress("198.51.100.1".parse().unwrap(), 64500, None, 0));
        assert!(!l.is_egress("198.51.100.1".parse().unwrap(), 64501, None, 0));
        assert!(l.is_subject("monitor@example.com", Some("t"), 0));
        assert!(!l.is_subject("alice", None, 0));
        let l = l.without("a").unwrap();
        assert!(!l.is_egress("203.0.113.200".parse().unwrap(), 0, None, 0));
        assert!(l.without("a").is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        assert_eq!(
            validate(EntryKind::Network, "10.0.0.0/99"),
            Err(AllowlistError::Network("10.0.0.0/99".into()))
        );
        assert!(validate(EntryKind::Asn, "ASx").is_err());
        assert!(validate(EntryKind::Asn, "0").is_err());
        assert_eq!(validate(EntryKind::Asn, "as13335").unwrap(), "AS13335");
        assert_eq!(
            validate(EntryKind::Network, "2001:db8::1").unwrap(),
            "2001:db8::1/128"
        );
        assert_eq!(
            validate(EntryKind::Subject, "  "),
            Err(AllowlistError::Empty)
        );
        let l = Allowlist::new(vec![entry("a", EntryKind::Asn, "1")]).unwrap();
        assert!(matches!(
            l.with(entry("a", EntryKind::Asn, "2")),
            Err(AllowlistError::DuplicateId(_))
        ));
    }
}
