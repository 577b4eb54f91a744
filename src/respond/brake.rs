//! The brake against mass revocation: a flood of revoke decisions is more
//! likely a bad model, a bad geo database or a bad feed than a real mass
//! theft, and revoking thousands of legitimate sessions is an outage. Past
//! `limit` revocations in `window`, the brake engages and holds every further
//! revocation (recorded, audited, alert still published) until an operator
//! resets it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug)]
pub struct Brake {
    limit: usize,
    window_ms: i64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Times (ms) of the revocations allowed inside the window.
    recent: VecDeque<i64>,
    engaged_at_ms: Option<i64>,
    held: u64,
}

/// The brake as the API and metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BrakeStatus {
    pub engaged: bool,
    pub engaged_at_ms: Option<i64>,
    /// Revocations held back since the brake last engaged.
    pub held: u64,
    pub limit: usize,
    pub window_s: u64,
    pub recent: usize,
}

/// 50 revocations in 5 minutes: far above what the evaluation flags at
/// the default thresholds for a fleet of 100k tokens, far below an outage.
pub const DEFAULT_LIMIT: usize = 50;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

impl Default for Brake {
    fn default() -> Self {
        Brake::new(DEFAULT_LIMIT, DEFAULT_WINDOW)
    }
}

impl Brake {
    pub fn new(limit: usize, window: Duration) -> Brake {
        Brake {
            limit,
            window_ms: window.as_millis() as i64,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to revoke one token at `now_ms`; false when the brake holds it.
    pub fn allow(&self, now_ms: i64) -> bool {
        let mut s = self.lock();
        if s.engaged_at_ms.is_some() {
            s.held += 1;
            return false;
        }
        while s
            .recent
            .front()
            .is_some_and(|&t| t <= now_ms - self.window_ms)
        {
            s.recent.pop_front();
        }
        if s.recent.len() >= self.limit {
            s.engaged_at_ms = Some(now_ms);
            s.held = 1;
            return false;
        }
        s.recent.push_back(now_ms);
        true
    }

    /// Releases the brake; the window starts empty again.
    pub fn reset(&self) -> BrakeStatus {
        {
            let mut s = self.lock();
            *s = Inner::default();
        }
        self.status()
    }

    pub fn status(&self) -> BrakeStatus {
        let s = self.lock();
        BrakeStatus {
            engaged: s.engaged_at_ms.is_some(),
            engaged_at_ms: s.engaged_at_ms,
            held: s.held,
            limit: self.limit,
            window_s: (self.window_ms / 1000) as u64,
            recent: s.recent.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_past_the_limit_and_stays_engaged_until_reset() {
        let b = Brake::new(3, Duration::from_secs(60));
        assert!(b.allow(0) && b.allow(1_000) && b.allow(2_000));
        assert!(!b.allow(3_000), "fourth within the window is held");
        // Even once the window has passed, an engaged brake holds.
        assert!(!b.allow(600_000));
        let s = b.status();
        assert!(s.engaged);
        assert_eq!(s.held, 2);
        assert!(!b.reset().engaged);
        assert!(b.allow(600_001));
    }

    #[test]
    fn a_steady_trickle_under_the_limit_never_engages() {
        let b = Brake::new(3, Duration::from_secs(60));
        for i in 0..100 {
            assert!(b.allow(i * 30_000), "request {i}");
        }
        assert!(!b.status().engaged);
    }
}
