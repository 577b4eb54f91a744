//! The edge denylist: revoked token ids with their expiry, for JWTs that
//! nothing can revoke before `exp`. The revoker publishes entries to the
//! compacted topic `tokenwatch.denylist`; every instance reads the whole
//! topic into this set, and the check endpoint (NGINX `auth_request`, Envoy
//! `ext_authz`) answers from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// One revoked token, as the topic carries it (key: `token_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenyEntry {
    pub token_id: String,
    pub decision_id: String,
    /// When the revocation was settled, ms since the epoch.
    pub revoked_at_ms: i64,
    /// When the entry may be forgotten, ms since the epoch: the token's own
    /// expiry when known (an expired token is refused by the gateway
    /// anyway), else `revoked_at_ms` plus the configured maximum lifetime.
    pub until_ms: i64,
    /// Every other target of the decision has settled too. The entry is
    /// published first, unsettled, so the gateway refuses the token at
    /// once whatever the IdP does; it is published again, settled, once
    /// the rest is done, and a restarted instance then knows not to act on
    /// that decision again. Entries written before this field existed were
    /// written only once everything had settled.
    #[serde(default = "settled_by_default")]
    pub settled: bool,
}

fn settled_by_default() -> bool {
    true
}

/// What the set keeps per denied token.
#[derive(Debug)]
struct Denied {
    until_ms: i64,
    decision_id: String,
    settled: bool,
}

/// The in-memory set every instance keeps.
#[derive(Debug, Default)]
pub struct Denylist {
    until: RwLock<HashMap<String, Denied>>,
    /// Set once the topic has been read up to its end at start-up; until
    /// then the check endpoint cannot tell and answers 503 (fail closed).
    ready: AtomicBool,
}

impl Denylist {
    pub fn insert(&self, e: &DenyEntry) {
        let mut m = self.until.write().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&e.token_id) {
            // A replayed older entry never shortens a newer one, and an
            // unsettled write never undoes the settled one of its decision.
            Some(v) => {
                v.until_ms = v.until_ms.max(e.until_ms);
                if v.decision_id == e.decision_id {
                    v.settled |= e.settled;
                } else {
                    v.decision_id.clone_from(&e.decision_id);
                    v.settled = e.settled;
                }
            }
            None => {
                m.insert(
                    e.token_id.clone(),
                    Denied {
                        until_ms: e.until_ms,
                        decision_id: e.decision_id.clone(),
                        settled: e.settled,
                    },
                );
            }
        }
    }

    /// Every target of `decision_id` has settled (by this instance or
    /// another, before a restart or after).
    pub fn is_settled(&self, token_id: &str, decision_id: &str) -> bool {
        self.until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_id)
            .is_some_and(|v| v.settled && v.decision_id == decision_id)
    }

    /// A tombstone (null value) on the compacted topic.
    pub fn remove(&self, token_id: &str) {
        self.until
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token_id);
    }

    pub fn is_denied(&self, token_id: &str, now_ms: i64) -> bool {
        self.until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_id)
            .is_some_and(|v| now_ms < v.until_ms)
    }

    /// Forgets entries past their time; returns how many went.
    pub fn prune(&self, now_ms: i64) -> usize {
        let mut m = self.until.write().unwrap_or_else(|p| p.into_inner());
        let before = m.len();
        m.retain(|_, v| now_ms < v.until_ms);
        before - m.len()
    }

    pub fn len(&self) -> usize {
        self.until.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, until_ms: i64) -> DenyEntry {
        DenyEntry {
            token_id: id.into(),
            decision_id: format!("{id}/revoke"),
            revoked_at_ms: 0,
            until_ms,
            settled: true,
        }
    }

    #[test]
    fn denies_until_the_entry_expires_then_forgets_it() {
        let d = Denylist::default();
        d.insert(&entry("a", 1_000));
        assert!(d.is_denied("a", 999));
        assert!(!d.is_denied("a", 1_000));
        assert!(!d.is_denied("b", 0));
        assert_eq!(d.prune(1_000), 1);
        assert!(d.is_empty());
    }

    #[test]
    fn a_replayed_older_entry_does_not_shorten_a_newer_one() {
        let d = Denylist::default();
        d.insert(&entry("a", 5_000));
        d.insert(&entry("a", 1_000));
        assert!(d.is_denied("a", 4_000));
        d.remove("a");
        assert!(!d.is_denied("a", 0));
    }

    #[test]
    fn an_unsettled_entry_denies_at_once_and_a_replay_never_unsettles_it() {
        let d = Denylist::default();
        let mut e = entry("a", 5_000);
        e.settled = false;
        d.insert(&e);
        assert!(d.is_denied("a", 0));
        assert!(!d.is_settled("a", "a/revoke"));
        d.insert(&entry("a", 5_000));
        assert!(d.is_settled("a", "a/revoke"));
        d.insert(&e);
        assert!(d.is_settled("a", "a/revoke"), "a replayed first write");
        assert!(!d.is_settled("a", "a/manual/1"), "another decision");
    }

    #[test]
    fn an_entry_without_the_field_was_written_settled() {
        let e: DenyEntry = serde_json::from_str(
            r#"{"token_id":"a","decision_id":"a/revoke","revoked_at_ms":0,"until_ms":9}"#,
        )
        .unwrap();
        assert!(e.settled);
    }
}
