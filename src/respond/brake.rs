//! The brake against mass revocation: a flood of revoke decisions is more
//! likely a bad model, a bad geo database or a bad feed than a real mass
//! theft, and revoking thousands of legitimate sessions is an outage. Past
//! the limit the brake engages and holds every further revocation
//! (recorded, audited, alert still published) until an operator resets it.
//!
//! Three limits, any of which engages it: revocations per window for the
//! whole fleet; the same per tenant (one tenant's bad day holds only that
//! tenant); and a fraction of the tokens this instance tracks, so a small
//! deployment is not allowed the same absolute number as a large one.
//!
//! The fleet-wide count: each instance publishes the times of the
//! revocations it admitted in the window (`Change::BrakeCount`), and every
//! instance counts its peers' with its own, so N pods are allowed the limit,
//! not N times it. Two pods admitting within the same control-topic round
//! trip (tens of milliseconds) can both be admitted: the fleet can overshoot
//! by what its peers admitted in that time, never by a multiple of the limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What an operator's reset does with the revocations the brake held: act
/// on them now (the flood was real) or drop them (it was not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    Release,
    Drop,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Release => "release",
            Held::Drop => "drop",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrakeLimits {
    pub max_revocations: usize,
    pub window: Duration,
    /// Per tenant, in the same window; `None`: no per-tenant limit.
    pub per_tenant: Option<usize>,
    /// At most this fraction of the tracked tokens in the window (the
    /// instance's own share of the fleet); `None`: no such limit.
    pub max_active_fraction: Option<f64>,
}

/// 50 revocations in 5 minutes: far above what the evaluation flags at
/// the default thresholds for a fleet of 100k tokens, far below an outage.
pub const DEFAULT_LIMIT: usize = 50;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

impl Default for BrakeLimits {
    fn default() -> Self {
        BrakeLimits {
            max_revocations: DEFAULT_LIMIT,
            window: DEFAULT_WINDOW,
            per_tenant: None,
            max_active_fraction: None,
        }
    }
}

#[derive(Debug)]
pub struct Brake {
    limits: BrakeLimits,
    inner: Mutex<Inner>,
    /// Each reset: its number and what it said about held revocations.
    resets: watch::Sender<(u64, Held)>,
}

#[derive(Debug, Default)]
struct Window {
    /// Times (ms) of the revocations allowed inside the window.
    recent: VecDeque<i64>,
    engaged_at_ms: Option<i64>,
}

impl Window {
    fn expire(&mut self, now_ms: i64, window_ms: i64) {
        while self
            .recent
            .front()
            .is_some_and(|&t| t <= now_ms - window_ms)
        {
            self.recent.pop_front();
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    global: Window,
    tenants: HashMap<String, Window>,
    /// Other instances' admissions (their clocks, ms), as they last
    /// published them.
    peers: HashMap<String, Vec<i64>>,
    /// The last reset: peers' admissions before it no longer count.
    counted_from_ms: i64,
    held: u64,
    /// The global trip is known to the fleet (published, or read from it).
    announced: bool,
    /// Resets so far (kept across resets).
    resets: u64,
}

/// The brake as the API and metrics show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BrakeStatus {
    /// Held for everyone.
    pub engaged: bool,
    pub engaged_at_ms: Option<i64>,
    /// Tenants whose own limit holds their revocations.
    pub tenants_engaged: Vec<String>,
    /// Revocations held back since the brake was last reset.
    pub held: u64,
    pub limit: usize,
    pub per_tenant_limit: Option<usize>,
    pub max_active_fraction: Option<f64>,
    pub window_s: u64,
    /// Revocations this instance admitted in the window.
    pub recent: usize,
    /// The same for the whole fleet, as last published by each peer.
    pub fleet_recent: usize,
}

impl BrakeStatus {
    /// True when any revocation would be held.
    pub fn holding(&self) -> bool {
        self.engaged || !self.tenants_engaged.is_empty()
    }
}

impl Default for Brake {
    fn default() -> Self {
        Brake::new(BrakeLimits::default())
    }
}

impl Brake {
    pub fn new(limits: BrakeLimits) -> Brake {
        Brake {
            limits,
            inner: Mutex::new(Inner::default()),
            resets: watch::channel((0, Held::Drop)).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instance-wide limit with `active` tokens tracked.
    fn global_limit(limits: &BrakeLimits, active: usize) -> usize {
        match limits.max_active_fraction {
            Some(f) if active > 0 => {
                let by_fraction = ((active as f64) * f).floor().max(1.0) as usize;
                limits.max_revocations.min(by_fraction)
            }
            _ => limits.max_revocations,
        }
    }

    /// Waits for reset number `n` (or a later one) and says what it decided
    /// about held revocations.
    pub async fn until_reset(&self, n: u64) -> Held {
        let mut rx = self.resets.subscribe();
        let held = match rx.wait_for(|(done, _)| *done >= n).await {
            Ok(r) => r.1,
            // The brake is gone (shutdown): nothing may act.
            Err(_) => Held::Drop,
        };
        held
    }

    /// Forgets every trip and count as of `at_ms`; the next reset number is
    /// kept.
    fn clear(&self, s: &mut Inner, at_ms: i64, held: Held) {
        let resets = s.resets + 1;
        *s = Inner {
            resets,
            counted_from_ms: at_ms,
            ..Inner::default()
        };
        self.resets.send_replace((resets, held));
    }

    /// Asks to revoke one token of `tenant` at `now_ms` with `active`
    /// tokens tracked (0: unknown); false when the brake holds it.
    pub fn allow(&self, now_ms: i64, tenant: Option<&str>, active: usize) -> bool {
        self.admit(now_ms, tenant, active).is_none()
    }

    /// The same; when held, the number of the reset it waits for is
    /// returned (see [`Brake::until_reset`]).
    pub fn admit(&self, now_ms: i64, tenant: Option<&str>, active: usize) -> Option<u64> {
        let mut s = self.lock();
        let next = s.resets + 1;
        (!Self::admit_locked(&self.limits, &mut s, now_ms, tenant, active)).then_some(next)
    }

    fn admit_locked(
        limits: &BrakeLimits,
        s: &mut Inner,
        now_ms: i64,
        tenant: Option<&str>,
        active: usize,
    ) -> bool {
        let window_ms = limits.window.as_millis() as i64;
        let limit = Self::global_limit(limits, active);
        if s.global.engaged_at_ms.is_some() {
            s.held += 1;
            return false;
        }
        s.global.expire(now_ms, window_ms);
        let since = (now_ms - window_ms).max(s.counted_from_ms);
        s.peers.retain(|_, times| {
            times.retain(|&t| t > since);
            !times.is_empty()
        });
        let peers: usize = s.peers.values().map(Vec::len).sum();
        if s.global.recent.len() + peers >= limit {
            s.global.engaged_at_ms = Some(now_ms);
            s.held += 1;
            tracing::error!(
                limit,
                window_s = window_ms / 1000,
                "brake engaged: revocations held for every tenant until an operator resets it"
            );
            return false;
        }
        if let (Some(per_tenant), Some(t)) = (limits.per_tenant, tenant) {
            let w = s.tenants.entry(t.to_owned()).or_default();
            if w.engaged_at_ms.is_some() {
                s.held += 1;
                return false;
            }
            w.expire(now_ms, window_ms);
            if w.recent.len() >= per_tenant {
                w.engaged_at_ms = Some(now_ms);
                s.held += 1;
                tracing::error!(tenant = t, limit = per_tenant, "brake engaged for one tenant: its revocations held until an operator resets it");
                return false;
            }
            w.recent.push_back(now_ms);
        }
        s.global.recent.push_back(now_ms);
        true
    }

    /// Another instance's admissions in the window, as it published them
    /// (its latest record replaces the one before).
    pub fn peer_admitted(&self, instance: &str, mut admitted: Vec<i64>) {
        let mut s = self.lock();
        let from = s.counted_from_ms;
        admitted.retain(|&t| t > from);
        // Never more than the limit can matter; a signed record is the
        // fleet's own, but a bug elsewhere must not grow memory.
        admitted.truncate(self.limits.max_revocations);
        if admitted.is_empty() {
            s.peers.remove(instance);
        } else {
            s.peers.insert(instance.to_owned(), admitted);
        }
    }

    /// This instance's admissions in the window ending at `now_ms`, for
    /// its peers.
    pub fn admitted(&self, now_ms: i64) -> Vec<i64> {
        let mut s = self.lock();
        s.global
            .expire(now_ms, self.limits.window.as_millis() as i64);
        s.global.recent.iter().copied().collect()
    }

    /// A trip elsewhere in the fleet: hold every revocation here too.
    pub fn engage(&self, at_ms: i64) {
        let mut s = self.lock();
        s.global.engaged_at_ms.get_or_insert(at_ms);
        s.announced = true;
    }

    /// When this instance tripped the brake and the fleet has not been told
    /// yet: the time, once.
    pub fn take_new_trip(&self) -> Option<i64> {
        let mut s = self.lock();
        match s.global.engaged_at_ms {
            Some(at) if !s.announced => {
                s.announced = true;
                Some(at)
            }
            _ => None,
        }
    }

    /// An operator's reset made at `at_ms` elsewhere in the fleet: releases
    /// the brake unless it tripped here after that.
    pub fn release(&self, at_ms: i64, held: Held) {
        let mut s = self.lock();
        if s.global.engaged_at_ms.is_none_or(|t| t <= at_ms) {
            self.clear(&mut s, at_ms, held);
        }
    }

    /// Releases the brake; the windows start empty again, and what waited
    /// is acted on or dropped as `held` says.
    pub fn reset(&self, held: Held) -> BrakeStatus {
        {
            let mut s = self.lock();
            self.clear(&mut s, i64::MIN, held);
        }
        self.status()
    }

    pub fn status(&self) -> BrakeStatus {
        let s = self.lock();
        let mut tenants_engaged: Vec<String> = s
            .tenants
            .iter()
            .filter(|(_, w)| w.engaged_at_ms.is_some())
            .map(|(t, _)| t.clone())
            .collect();
        tenants_engaged.sort();
        BrakeStatus {
            engaged: s.global.engaged_at_ms.is_some(),
            engaged_at_ms: s.global.engaged_at_ms,
            tenants_engaged,
            held: s.held,
            limit: self.limits.max_revocations,
            per_tenant_limit: self.limits.per_tenant,
            max_active_fraction: self.limits.max_active_fraction,
            window_s: self.limits.window.as_secs(),
            recent: s.global.recent.len(),
            fleet_recent: s.global.recent.len() + s.peers.values().map(Vec::len).sum::<usize>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brake(max: usize, per_tenant: Option<usize>, fraction: Option<f64>) -> Brake {
        Brake::new(BrakeLimits {
            max_revocations: max,
            window: Duration::from_secs(60),
            per_tenant,
            max_active_fraction: fraction,
        })
    }

    #[test]
    fn engages_past_the_limit_and_stays_engaged_until_reset() {
        let b = brake(3, None, None);
        assert!(b.allow(0, None, 0) && b.allow(1_000, None, 0) && b.allow(2_000, None, 0));
        assert!(!b.allow(3_000, None, 0), "fourth within the window is held");
        // Even once the window has passed, an engaged brake holds.
        assert!(!b.allow(600_000, None, 0));
        let s = b.status();
        assert!(s.engaged && s.holding());
        assert_eq!(s.held, 2);
        assert!(!b.reset(Held::Drop).holding());
        assert!(b.allow(600_001, None, 0));
    }

    #[test]
    fn a_steady_trickle_under_the_limit_never_engages() {
        let b = brake(3, None, None);
        for i in 0..100 {
            assert!(b.allow(i * 30_000, None, 0), "request {i}");
        }
        assert!(!b.status().holding());
    }

    #[test]
    fn one_tenant_past_its_limit_is_held_and_the_others_are_not() {
        let b = brake(100, Some(2), None);
        assert!(b.allow(0, Some("acme"), 0) && b.allow(1, Some("acme"), 0));
        assert!(!b.allow(2, Some("acme"), 0), "acme's third");
        assert!(b.allow(3, Some("globex"), 0), "another tenant goes on");
        assert!(b.allow(4, None, 0), "no tenant: only the global limit");
        let s = b.status();
        assert!(!s.engaged && s.holding());
        assert_eq!(s.tenants_engaged, vec!["acme".to_string()]);
        assert!(!b.reset(Held::Drop).holding());
        assert!(b.allow(5, Some("acme"), 0));
    }

    #[test]
    fn the_fraction_of_tracked_tokens_tightens_the_limit_for_a_small_fleet() {
        // 1% of 300 tokens is 3, below the absolute 50.
        let b = brake(50, None, Some(0.01));
        for i in 0..3 {
            assert!(b.allow(i, None, 300));
        }
        assert!(!b.allow(3, None, 300));
        // With 1M tokens the absolute limit is the tighter one.
        let b = brake(5, None, Some(0.01));
        for i in 0..5 {
            assert!(b.allow(i, None, 1_000_000));
        }
        assert!(!b.allow(5, None, 1_000_000));
    }

    #[test]
    fn peers_admissions_count_against_the_same_limit() {
        let b = brake(3, None, None);
        b.peer_admitted("pod-b", vec![1_000, 2_000]);
        assert!(b.allow(3_000, None, 0), "two by the peer, one here: three");
        assert!(!b.allow(4_000, None, 0), "the fourth in the fleet is held");
        assert_eq!(b.status().fleet_recent, 3);
        // Once the peers' admissions have left the window they stop counting.
        let b = brake(3, None, None);
        b.peer_admitted("pod-b", vec![1_000, 2_000, 2_500]);
        assert!(!b.allow(30_000, None, 0));
        let b = brake(3, None, None);
        b.peer_admitted("pod-b", vec![1_000, 2_000, 2_500]);
        assert!(
            b.allow(62_000, None, 0),
            "1 s and 2 s are out of a 60 s window at 62 s"
        );
        // A reset forgets what peers admitted before it.
        let b = brake(3, None, None);
        b.peer_admitted("pod-b", vec![1_000, 2_000, 2_500]);
        b.release(2_600, Held::Drop);
        b.peer_admitted("pod-b", vec![1_000, 2_000, 2_500]);
        assert!(b.allow(3_000, None, 0));
        assert_eq!(b.status().fleet_recent, 1);
    }

    #[tokio::test]
    async fn a_held_revocation_waits_for_the_reset_and_learns_its_verdict() {
        let b = std::sync::Arc::new(Brake::new(BrakeLimits {
            max_revocations: 1,
            ..BrakeLimits::default()
        }));
        assert_eq!(b.admit(0, None, 0), None);
        let reset = b.admit(1, None, 0).expect("held");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.until_reset(reset).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits for the operator");
        b.reset(Held::Release);
        assert_eq!(waiting.await.unwrap(), Held::Release);
        // A reset that came before the wait began still answers it.
        assert_eq!(b.admit(2, None, 0), None);
        let next = b.admit(3, None, 0).expect("held again");
        b.reset(Held::Drop);
        assert_eq!(b.until_reset(next).await, Held::Drop);
    }
}
