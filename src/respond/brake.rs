//! The brake against mass revocation: a flood of revoke decisions is more
//! likely a bad model, a bad geo database or a bad feed than a real mass
//! theft, and revoking thousands of legitimate sessions is an outage. Past
//! the limit the brake engages and holds every further revocation
//! (recorded, audited, alert still published) until an operator resets it.
//!
//! Three limits, any of which engages it: revocations per window for the
//! whole instance; the same per tenant (one tenant's bad day holds only that
//! tenant); and a fraction of the tokens this instance tracks, so a small
//! deployment is not allowed the same absolute number as a large one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

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
    held: u64,
    /// The global trip is known to the fleet (published, or read from it).
    announced: bool,
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
    pub recent: usize,
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instance-wide limit with `active` tokens tracked.
    fn global_limit(&self, active: usize) -> usize {
        match self.limits.max_active_fraction {
            Some(f) if active > 0 => {
                let by_fraction = ((active as f64) * f).floor().max(1.0) as usize;
                self.limits.max_revocations.min(by_fraction)
            }
            _ => self.limits.max_revocations,
        }
    }

    /// Asks to revoke one token of `tenant` at `now_ms` with `active`
    /// tokens tracked (0: unknown); false when the brake holds it.
    pub fn allow(&self, now_ms: i64, tenant: Option<&str>, active: usize) -> bool {
        let window_ms = self.limits.window.as_millis() as i64;
        let limit = self.global_limit(active);
        let mut s = self.lock();
        let s = &mut *s;
        if s.global.engaged_at_ms.is_some() {
            s.held += 1;
            return false;
        }
        s.global.expire(now_ms, window_ms);
        if s.global.recent.len() >= limit {
            s.global.engaged_at_ms = Some(now_ms);
            s.held += 1;
            tracing::error!(
                limit,
                window_s = window_ms / 1000,
                "brake engaged: revocations held for every tenant until an operator resets it"
            );
            return false;
        }
        if let (Some(per_tenant), Some(t)) = (self.limits.per_tenant, tenant) {
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
    pub fn release(&self, at_ms: i64) {
        let mut s = self.lock();
        if s.global.engaged_at_ms.is_none_or(|t| t <= at_ms) {
            *s = Inner::default();
        }
    }

    /// Releases the brake everywhere; the windows start empty again.
    pub fn reset(&self) -> BrakeStatus {
        *self.lock() = Inner::default();
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
        assert!(!b.reset().holding());
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
        assert!(!b.reset().holding());
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
}
