//! How long each target keeps trying one decision on its own, before it is
//! given up and dead-lettered. Each target of each decision keeps its own
//! backoff: a SIEM answering 500 retries its webhook while the IdP's
//! revocation, the denylist and every later decision go ahead.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Persistence {
    /// How long a target keeps retrying one decision after its first
    /// attempt; zero: one attempt (each with the target's own in-call
    /// retries), then the outcome stands.
    pub budget: Duration,
    /// The longest wait between two attempts; waits start at 1 s (or this,
    /// if shorter) and double.
    pub max_backoff: Duration,
}

impl Persistence {
    /// One attempt per target and call; a pending outcome is reported as
    /// such (the caller tries the decision again). Tools and unit tests.
    pub const ONCE: Persistence = Persistence {
        budget: Duration::ZERO,
        max_backoff: Duration::from_secs(1),
    };

    pub(super) fn first_backoff(&self) -> Duration {
        self.max_backoff.min(Duration::from_secs(1))
    }
}

impl Default for Persistence {
    /// An hour covers the IdP outages operators report and a restart of the
    /// SIEM; past it a person should look (the dead letter says which
    /// target, which decision and why).
    fn default() -> Self {
        Persistence {
            budget: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(30),
        }
    }
}
