//! Population baselines, shared by every token an instance holds: the
//! typical request rate per route class, and which network prefixes are
//! shared egress. Read and written by feature extraction; frozen for dry
//! runs.

use std::net::IpAddr;

use super::extract::prefix_hash;
use super::familiar::Familiar;
use super::state::Sketch64;

/// Population baselines, shared by every token an instance holds: the
/// typical short-window rate per route class, and which network prefixes are
/// shared egress (VPN concentrators, corporate proxies, carrier NAT) because
/// many different subjects come from them.
pub struct Population {
    pub(super) rate: [f32; ROUTE_CLASSES],
    /// Prefix hash → distinct subjects seen behind it. Bounded: the coldest
    /// prefixes are forgotten first.
    pub(super) egress: lru::LruCache<u64, Egress>,
    /// Prefixes whose entry changed since the last `take_changes`, when
    /// the tables are kept in a topic (`track_changes`).
    pub(super) changed_egress: Option<std::collections::HashSet<u64>>,
    /// Places each subject has used on its other tokens.
    pub familiar: Familiar,
    /// Read, never written: a dry run (`Detector::observe_dry`) learns
    /// nothing from what an outsider sends.
    frozen: bool,
}

pub(super) const ROUTE_CLASSES: usize = 64;
/// Weight of one token-event in the population mean.
const POP_ALPHA: f32 = 1.0 / 4096.0;
/// Prior for the population rate (requests/min) before it has been learned.
const POP_PRIOR: f32 = 2.0;
/// Prefixes remembered for shared-egress learning.
pub(super) const EGRESS_PREFIXES: usize = 262_144;
/// Distinct subjects behind one prefix that make it shared egress.
pub const SHARED_EGRESS_SUBJECTS: f32 = 3.0;

impl Default for Population {
    fn default() -> Self {
        Population {
            rate: [POP_PRIOR; ROUTE_CLASSES],
            // Grows with use; the cap is enforced on insert.
            egress: lru::LruCache::unbounded(),
            changed_egress: None,
            familiar: Familiar::default(),
            frozen: false,
        }
    }
}

impl Population {
    pub(super) fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Runs `f` with the tables read-only.
    pub fn frozen<R>(&mut self, f: impl FnOnce(&mut Population) -> R) -> R {
        self.frozen = true;
        let r = f(self);
        self.frozen = false;
        r
    }

    pub(super) fn observe(&mut self, class: usize, rate: f32) -> f32 {
        let mean = &mut self.rate[class];
        let ratio = rate / mean.max(0.1);
        if !self.frozen {
            *mean += POP_ALPHA * (rate - *mean);
        }
        ratio
    }

    /// Records `subject` behind `prefix` (`started`: its token's first
    /// request); returns whether the prefix is egress that excuses a hop
    /// (see [`Egress::excuses`]). A request without a subject (an opaque
    /// token the gateway logged no subject for) is nobody in particular: it
    /// is not counted.
    pub(super) fn observe_egress(
        &mut self,
        prefix: u64,
        subject: Option<u64>,
        started: bool,
    ) -> bool {
        let (Some(subject), false) = (subject, self.frozen) else {
            return self.egress.peek(&prefix).is_some_and(Egress::excuses);
        };
        if self.egress.len() >= EGRESS_PREFIXES && !self.egress.contains(&prefix) {
            self.egress.pop_lru();
        }
        let e = self.egress.get_or_insert_mut(prefix, Egress::default);
        let mut changed = e.all.insert(subject);
        if started {
            changed |= e.started.insert(subject);
        }
        let excuses = e.excuses();
        if changed {
            self.touched(prefix);
        }
        excuses
    }

    fn touched(&mut self, prefix: u64) {
        if let Some(c) = &mut self.changed_egress {
            c.insert(prefix);
        }
    }

    /// Records that `subject`'s token moved far onto or off `ip`'s prefix.
    pub(super) fn observe_roaming(&mut self, ip: IpAddr, subject: Option<u64>) {
        if let (Some(subject), false) = (subject, self.frozen) {
            let prefix = prefix_hash(ip);
            if let Some(e) = self.egress.peek_mut(&prefix) {
                if e.roamed.insert(subject) {
                    self.touched(prefix);
                }
            }
        }
    }

    /// Whether anyone has started a token behind `prefix`: people sign in
    /// from home, from the office, from a VPN. A server that replays stolen
    /// tokens starts none; each was first used by its victim, elsewhere.
    pub(super) fn egress_established(&self, prefix: u64) -> bool {
        self.egress
            .peek(&prefix)
            .is_some_and(|e| e.started.estimate() >= 1.0)
    }

    /// Whether `ip`'s prefix is egress that excuses a hop onto or off it.
    pub fn egress_excuses(&self, ip: IpAddr) -> bool {
        self.egress
            .peek(&prefix_hash(ip))
            .is_some_and(Egress::excuses)
    }
}

/// Who has been seen behind one network prefix.
#[derive(Clone, Copy, Default)]
pub(super) struct Egress {
    /// Distinct subjects with any request from here.
    pub(super) all: Sketch64,
    /// Distinct subjects whose token's first request came from here.
    pub(super) started: Sketch64,
    /// Distinct subjects whose token moved between here and somewhere far.
    pub(super) roamed: Sketch64,
}

impl Egress {
    /// A hop onto or off this prefix is no evidence of a second holder only
    /// when it is shared egress its subjects roam to and from: a VPN's exit
    /// or an anonymiser, geolocated far from where its users are, which
    /// they switch on and off from somewhere far (at least two of them, and
    /// a quarter of all). Carrier-grade and office NAT are shared too, but
    /// their subjects stay near them: excusing hops off those excused every
    /// theft of a token used at home.
    fn excuses(&self) -> bool {
        let roamed = self.roamed.estimate();
        self.shared_subjects() >= SHARED_EGRESS_SUBJECTS
            && roamed >= 2.0
            && 4.0 * roamed >= self.all.estimate()
    }

    /// The prefix is shared egress (VPN, office NAT, carrier NAT) by all its
    /// subjects only while at least half of them started a token here:
    /// people sign in behind such egress. A server replaying stolen tokens
    /// starts none (each was first used by its victim, elsewhere), so
    /// however many victims it replays it earns no exemption, unless its
    /// owner signs in as many accounts of their own there.
    fn shared_subjects(&self) -> f32 {
        let (all, started) = (self.all.estimate(), self.started.estimate());
        if started >= 1.0 && 2.0 * started >= all {
            all
        } else {
            0.0
        }
    }
}
