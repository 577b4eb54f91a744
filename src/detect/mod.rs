//! The pure core: an event and the token's state in, a verdict out.
//!
//! `Detector::observe` never awaits, never logs, never touches the network;
//! the Kafka consumer, `POST /v1/score`, the simulator, `eval`, `train` and
//! the benches all call it, so what is measured is what runs.

mod allowlist;
mod explain;
mod locate;

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use allowlist::{Allowlist, AllowlistError, AllowlistHandle, Entry, EntryKind};
pub use explain::{explain, ExplainedFeature, Explanation};

use locate::{locate, locate_allowed};

use crate::features::{self, FeatureParams, Features, Population, TokenState, TokenStore};
use crate::geo::{GeoCache, GeoHandle, Lookup};
use crate::model::{ModelArtifact, Rule, Score};
use crate::telemetry::{token_key, Event, TokenKey};

/// What the verdict asks the response side to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    Alert,
    Revoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Alert => "alert",
            Action::Revoke => "revoke",
        }
    }

    fn level(self) -> u8 {
        self as u8
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub key: TokenKey,
    pub score: Score,
    pub action: Action,
    /// True only the first time this token reaches `action`: the response
    /// side acts on these, so a token is acted on once per level.
    pub escalated: bool,
    pub features: Features,
    pub lookup: Lookup,
    /// The subject is allowlisted: scored, never acted on.
    pub suppressed: bool,
    /// Not scored at all: the gateway refused the request (its status is
    /// one of `detect.rejected_statuses`). It moved no state.
    pub rejected: bool,
}

#[derive(Clone, Debug)]
pub struct DetectorParams {
    pub features: FeatureParams,
    pub max_tokens: NonZeroUsize,
    pub idle_ttl_ms: i64,
    pub geo_cache: NonZeroUsize,
    /// Revoke on a single impossible hop, without waiting for the model or a
    /// flip back to agree: faster, and more VPN false flags.
    pub impossible_travel_revokes: bool,
    /// Revoke on an impossible hop onto a network nobody has signed in from
    /// (`Rule::TravelToUnknownEgress`); false: alert, and revoke when the
    /// model agrees. Its false flags are VPN users switching off onto a
    /// home this deployment has not seen them sign in from yet.
    pub unknown_egress_revokes: bool,
    /// Response statuses that mean the gateway refused the credential. Anyone
    /// can send a token-shaped string with any claimed subject and get one:
    /// such a record is counted and moves no state, no population table and
    /// no decision.
    pub rejected_statuses: Vec<u16>,
    /// How far ahead of the wall clock an event time may be. Later records
    /// are refused at every edge (dead-lettered as `future`, or 422 from the
    /// API), so no record can pin the detector's clock in the future.
    pub max_clock_skew_ms: i64,
}

impl Default for DetectorParams {
    fn default() -> Self {
        DetectorParams {
            features: FeatureParams::default(),
            max_tokens: NonZeroUsize::new(1_000_000).expect("non-zero"),
            idle_ttl_ms: 2 * 3600 * 1000,
            geo_cache: NonZeroUsize::new(65_536).expect("non-zero"),
            impossible_travel_revokes: false,
            unknown_egress_revokes: true,
            rejected_statuses: vec![401, 403, 407],
            max_clock_skew_ms: 5 * 60 * 1000,
        }
    }
}

/// Counters the edges export as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Events older than the disorder window (scored, moved no state).
    pub late: u64,
    /// Requests the gateway refused (not scored, moved no state).
    pub rejected: u64,
    pub geo_shortcut_hits: u64,
    pub geo_cache_hits: u64,
    pub geo_cache_misses: u64,
    pub evicted: u64,
    pub expired: u64,
    pub tracked: u64,
}

pub use crate::model::ModelHandle;

pub struct Detector {
    store: TokenStore,
    geo: Arc<GeoHandle>,
    cache: GeoCache,
    population: Population,
    /// None for feature replay (`train`), which never scores.
    model: Option<ModelHandle>,
    allowlist: AllowlistHandle,
    params: DetectorParams,
    shortcut_hits: u64,
    late: u64,
    rejected: u64,
    clock_ms: i64,
    events_since_expiry: u32,
}

impl Detector {
    pub fn new(geo: Arc<GeoHandle>, model: ModelHandle, params: DetectorParams) -> Detector {
        Detector {
            model: Some(model),
            ..Detector::features_only(geo, params)
        }
    }

    /// A detector that tracks tokens and extracts features but cannot score
    /// ([`Detector::extract`] only): training replays data before a model
    /// exists.
    pub fn features_only(geo: Arc<GeoHandle>, params: DetectorParams) -> Detector {
        Detector {
            store: TokenStore::new(params.max_tokens, params.idle_ttl_ms),
            cache: GeoCache::new(params.geo_cache),
            geo,
            population: Population::default(),
            model: None,
            allowlist: AllowlistHandle::default(),
            params,
            shortcut_hits: 0,
            late: 0,
            rejected: 0,
            clock_ms: 0,
            events_since_expiry: 0,
        }
    }

    /// Consults `allowlist` (shared with the admin API) from now on.
    pub fn with_allowlist(mut self, allowlist: AllowlistHandle) -> Detector {
        self.allowlist = allowlist;
        self
    }

    /// Updates the token's state with `event` and returns its features.
    pub fn extract(&mut self, event: &Event<'_>) -> (TokenKey, Features, Lookup) {
        let (key, f, lookup, _) = self.step(event);
        (key, f, lookup)
    }

    /// One event through geo and features, on a single probe of the token
    /// table; returns the state for the caller to finish with.
    fn step(&mut self, event: &Event<'_>) -> (TokenKey, Features, Lookup, &mut TokenState) {
        let key = token_key(&event.token_id);
        self.clock_ms = self.clock_ms.max(event.ts_ms);
        self.events_since_expiry += 1;
        if self.events_since_expiry >= 1024 {
            self.events_since_expiry = 0;
            self.store.expire(self.clock_ms);
        }
        let state = self.store.entry(key, event.ts_ms);
        let lookup = locate_allowed(
            state,
            event.ip,
            (event.tenant.as_deref(), self.clock_ms.max(event.ts_ms)),
            &self.geo,
            &mut self.cache,
            &self.allowlist,
            &mut self.shortcut_hits,
        );
        let f = features::observe(
            state,
            event,
            lookup,
            &self.params.features,
            &mut self.population,
        );
        self.late += u64::from(f.late);
        (key, f, lookup, state)
    }

    /// Resolves `ip` for token `key` (creating its state if new), as the
    /// event path does. Exposed for the geo bench.
    pub fn locate(&mut self, key: TokenKey, ts_ms: i64, ip: std::net::IpAddr) -> Lookup {
        let geo = self.geo.load();
        let state = self.store.entry(key, ts_ms);
        locate(state, &mut self.cache, &geo, ip, &mut self.shortcut_hits)
    }

    /// Scores one event. The heart of tokenwatch.
    pub fn observe(&mut self, event: &Event<'_>) -> Verdict {
        if self.params.rejected_statuses.contains(&event.status) {
            return self.rejected(event);
        }
        let model = self.model().load_full();
        let suppressed = self.suppressed(event);
        let revokes = RuleRevokes::from(&self.params);
        let (key, features, lookup, state) = self.step(event);
        let score = model.score(&features);
        let action = action(&model.artifact, &score, suppressed, revokes);
        state.last_score = score.score;
        let escalated = action.level() > state.flagged_level;
        if escalated {
            state.flagged_level = action.level();
        }
        Verdict {
            key,
            score,
            action,
            escalated,
            features,
            lookup,
            suppressed,
            rejected: false,
        }
    }

    /// Scores one event as [`Detector::observe`] would, and changes nothing:
    /// not the token's state, not the population tables. Never escalates.
    /// For `POST /v1/score`, which an outsider may reach.
    pub fn observe_dry(&mut self, event: &Event<'_>) -> Verdict {
        if self.params.rejected_statuses.contains(&event.status) {
            return self.rejected(event);
        }
        let model = self.model().load_full();
        let suppressed = self.suppressed(event);
        let key = token_key(&event.token_id);
        let mut state = self
            .store
            .get(&key)
            .copied()
            .unwrap_or_else(|| TokenState::new(event.ts_ms));
        let lookup = locate_allowed(
            &mut state,
            event.ip,
            (event.tenant.as_deref(), self.clock_ms.max(event.ts_ms)),
            &self.geo,
            &mut self.cache,
            &self.allowlist,
            &mut self.shortcut_hits,
        );
        let features = self.population.frozen(|population| {
            features::observe(&mut state, event, lookup, &self.params.features, population)
        });
        let score = model.score(&features);
        let action = action(
            &model.artifact,
            &score,
            suppressed,
            RuleRevokes::from(&self.params),
        );
        Verdict {
            key,
            score,
            action,
            escalated: false,
            features,
            lookup,
            suppressed,
            rejected: false,
        }
    }

    fn suppressed(&self, event: &Event<'_>) -> bool {
        let allow = self.allowlist.load();
        // The event clock, as the egress entries use it (`allowlist.rs`).
        let at_ms = self.clock_ms.max(event.ts_ms);
        !allow.is_empty() && allow.is_subject(&event.sub, event.tenant.as_deref(), at_ms)
    }

    /// The verdict on a request the gateway refused: counted, nothing else.
    fn rejected(&mut self, event: &Event<'_>) -> Verdict {
        self.rejected += 1;
        Verdict {
            key: token_key(&event.token_id),
            score: Score::default(),
            action: Action::None,
            escalated: false,
            features: Features::none(),
            lookup: Lookup::Unlocated(crate::geo::Unlocated::NotLooked),
            suppressed: false,
            rejected: true,
        }
    }

    /// Undoes an escalation the caller could not record (the decision log
    /// was unreachable), so the token's next request escalates again rather
    /// than the decision being lost.
    pub fn reopen(&mut self, key: &TokenKey, action: Action) {
        if let Some(state) = self.store.get_mut(key) {
            state.flagged_level = state.flagged_level.min(action.level().saturating_sub(1));
        }
    }

    /// Takes a token's state from the changelog (see `ingest::changelog`).
    pub fn restore(&mut self, key: TokenKey, state: TokenState) -> bool {
        self.store.restore(key, state)
    }

    pub fn state(&self, key: &TokenKey) -> Option<&TokenState> {
        self.store.get(key)
    }

    /// The population tables, for keeping them in a topic (see
    /// `ingest::population`).
    pub fn population_mut(&mut self) -> &mut Population {
        &mut self.population
    }

    pub fn geo(&self) -> &Arc<GeoHandle> {
        &self.geo
    }

    /// The scoring model. Scoring paths build their detector with one.
    pub fn model(&self) -> &ModelHandle {
        self.model
            .as_ref()
            .expect("a scoring detector is built with Detector::new")
    }

    pub fn params(&self) -> &DetectorParams {
        &self.params
    }

    pub fn allowlist(&self) -> &AllowlistHandle {
        &self.allowlist
    }

    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            late: self.late,
            rejected: self.rejected,
            geo_shortcut_hits: self.shortcut_hits,
            geo_cache_hits: self.cache.hits,
            geo_cache_misses: self.cache.misses,
            evicted: self.store.evicted,
            expired: self.store.expired,
            tracked: self.store.len() as u64,
        }
    }
}

/// Which single-hop rules revoke on their own (operator settings).
#[derive(Clone, Copy)]
struct RuleRevokes {
    impossible_travel: bool,
    unknown_egress: bool,
}

impl From<&DetectorParams> for RuleRevokes {
    fn from(p: &DetectorParams) -> Self {
        RuleRevokes {
            impossible_travel: p.impossible_travel_revokes,
            unknown_egress: p.unknown_egress_revokes,
        }
    }
}

/// Concurrent use admits no innocent reading: it revokes whatever threshold
/// the model was calibrated to. A single impossible hop alerts at least, and
/// revokes when the model agrees (or when the operator chose
/// `detect.impossible_travel_revokes`); one onto a network nobody signs in
/// from revokes unless the operator turned `detect.unknown_egress_revokes`
/// off.
fn action(a: &ModelArtifact, score: &Score, suppressed: bool, revokes: RuleRevokes) -> Action {
    let rule_revokes = match score.rule {
        Some(Rule::ConcurrentUse) => true,
        Some(Rule::TravelToUnknownEgress) => revokes.unknown_egress,
        Some(Rule::ImpossibleTravel) => revokes.impossible_travel,
        None => false,
    };
    if suppressed {
        Action::None
    } else if rule_revokes || score.score >= a.revoke_threshold {
        Action::Revoke
    } else if score.rule.is_some() || score.score >= a.alert_threshold {
        Action::Alert
    } else {
        Action::None
    }
}
