//! Feature extraction: one event + the token's state → the feature vector.
//!
//! Pure and allocation-free. Definitions, units and the reasoning behind each
//! feature are in `docs/features.md`; the order here is the model's schema.

use std::net::IpAddr;

use serde::Serialize;

use super::population::{Population, ROUTE_CLASSES};
use super::schema::{idx, N_FEATURES};
use super::state::{Sighting, TokenState};
use crate::geo::{Location, Lookup};
use crate::telemetry::Event;

/// Speeds are capped here: beyond any aircraft, and keeps 1-second deltas
/// across continents from producing numbers that dominate a linear model.
pub const MAX_SPEED_KMH: f64 = 20_000.0;
/// Shortest time delta used for speeds and rates; also covers disorder.
const MIN_DT_S: f64 = 1.0;
/// EWMA time constants for the request rates.
const TAU_SHORT_S: f64 = 60.0;
const TAU_LONG_S: f64 = 1800.0;
/// Token-context features are clamped to a week, in minutes.
const MAX_CONTEXT_MIN: f32 = 7.0 * 24.0 * 60.0;
/// Flips decay with this half-life.
const FLIP_HALF_LIFE_S: f64 = 600.0;

/// Tunables, validated by `config`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureParams {
    /// Above this speed (km/h) travel is impossible; commercial jets cruise
    /// at 900–950 km/h.
    pub plausible_speed_kmh: f64,
    /// Minimum plausible distance (km) before two places count as different
    /// for flips and impossible travel: below it, IP geolocation error and
    /// Wi-Fi/cellular switching explain the difference.
    pub far_km: f64,
    /// Flips only count when the return happens within this window (s).
    pub flip_window_s: f64,
    /// Gateways and partitions deliver slightly out of order: an event up to
    /// this much older than the token's newest is measured by the absolute
    /// delta. Older still, it is "late": scored, but it moves no rate and no
    /// sighting, so a backfill cannot fake a burst or a journey.
    pub disorder_window_ms: i64,
}

impl Default for FeatureParams {
    fn default() -> Self {
        FeatureParams {
            plausible_speed_kmh: 1000.0,
            far_km: 500.0,
            flip_window_s: 1800.0,
            disorder_window_ms: 5_000,
        }
    }
}

/// The feature vector with the context an explanation needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Features {
    pub values: [f32; N_FEATURES],
    /// Where the comparison was made from (for "Paris→Singapore in 38 min").
    #[serde(skip)]
    pub from: Option<Sighting>,
    #[serde(skip)]
    pub to: Option<Location>,
    /// Seconds between `from` and this request.
    pub dt_s: f32,
    /// Older than the disorder window: scored, but moved no rate or sighting.
    pub late: bool,
}

impl Features {
    /// The features of a request that was not scored.
    pub fn none() -> Features {
        Features {
            values: [0.0; N_FEATURES],
            from: None,
            to: None,
            dt_s: 0.0,
            late: false,
        }
    }

    pub fn get(&self, i: usize) -> f32 {
        self.values[i]
    }
}

/// Route class: method + first path segment, hashed into a small fixed set.
fn route_class(method: &str, path: &str) -> usize {
    let seg = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let h =
        xxhash_rust::xxh3::xxh3_64(method.as_bytes()) ^ xxhash_rust::xxh3::xxh3_64(seg.as_bytes());
    (h % ROUTE_CLASSES as u64) as usize
}

/// User-agent family: the browser engine for browsers, else the first
/// product token (`python-requests`, `curl`, `okhttp`…). Versions are ignored
/// so an auto-update is not a new agent.
pub fn ua_family(ua: &str) -> &str {
    for marker in ["Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/"] {
        if ua.contains(marker) {
            return &marker[..marker.len() - 1];
        }
    }
    ua.split(['/', ' ', ';']).next().unwrap_or("")
}

/// Non-browser clients that session-replay tooling uses (Elastic's Okta
/// session-replay rule lists these).
pub fn is_non_browser(ua: &str) -> bool {
    const TOOLS: [&str; 9] = [
        "python-requests",
        "curl",
        "httpx",
        "aiohttp",
        "Go-http-client",
        "Headless",
        "Java/",
        "okhttp",
        "Wget",
    ];
    ua.is_empty() || TOOLS.iter().any(|t| ua.contains(t))
}

pub(super) fn prefix_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()[..3]),
        IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()[..6]) ^ 0x6,
    }
}

fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()),
        IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()),
    }
}

fn decayed(rate: f32, dt_s: f64, tau_s: f64) -> f32 {
    (f64::from(rate) * (-dt_s / tau_s).exp()) as f32
}

/// Updates `state` with `event` (already geolocated as `lookup`) and returns
/// the features of this request.
pub fn observe(
    state: &mut TokenState,
    event: &Event<'_>,
    lookup: Lookup,
    params: &FeatureParams,
    population: &mut Population,
) -> Features {
    let mut v = [0f32; N_FEATURES];
    let first = state.requests == 0;
    let now = event.ts_ms;
    // Disorder: an event older than the last one is measured by the absolute
    // delta, never a negative one.
    let since_last_s = ((now - state.last_ms).abs() as f64 / 1000.0).max(0.0);

    if let Some(exp) = event.token_exp {
        state.exp_ms = exp.saturating_mul(1000);
    }
    if let Some(iat) = event.token_iat {
        state.iat_ms = iat.saturating_mul(1000);
    }

    // --- rates -----------------------------------------------------------
    let late = !first && now < state.last_ms - params.disorder_window_ms;
    let dt_rate = if first { 0.0 } else { since_last_s };
    if !late {
        state.rate_short =
            decayed(state.rate_short, dt_rate, TAU_SHORT_S) + (60.0 / TAU_SHORT_S) as f32;
        state.rate_long =
            decayed(state.rate_long, dt_rate, TAU_LONG_S) + (60.0 / TAU_LONG_S) as f32;
    }
    v[idx::BURST] = if state.requests >= 3 {
        state.rate_short / state.rate_long.max(60.0 / TAU_LONG_S as f32 * 4.0)
    } else {
        0.0
    };
    let class = route_class(&event.method, &event.path);
    v[idx::RATE_VS_POP] = population.observe(class, state.rate_short);

    // --- novelty ------------------------------------------------------------
    // The family is only re-derived when the raw string changes.
    let ua_raw = xxhash_rust::xxh3::xxh3_64(event.user_agent.as_bytes()) as u32;
    let new_ua = if first || ua_raw != state.last_ua_raw {
        state.last_ua_raw = ua_raw;
        let family = xxhash_rust::xxh3::xxh3_64(ua_family(&event.user_agent).as_bytes()) as u32;
        state.user_agents.insert(family)
    } else {
        false
    };
    let prefix = prefix_hash(event.ip);
    let new_prefix = state.prefixes.insert(prefix);
    state.ips.insert(ip_hash(event.ip));
    if !first {
        v[idx::NEW_UA] = f32::from(u8::from(new_ua));
        v[idx::NEW_PREFIX] = f32::from(u8::from(new_prefix));
        v[idx::NON_BROWSER_SWITCH] =
            f32::from(u8::from(new_ua && is_non_browser(&event.user_agent)));
    }

    // --- shared egress -------------------------------------------------------
    // Subject-level state needs a subject: tokens without one never pool
    // into a shared empty subject.
    let subject = (!event.sub.is_empty()).then(|| xxhash_rust::xxh3::xxh3_64(event.sub.as_bytes()));
    let here_excuses = population.observe_egress(prefix, subject, first);
    // Only needed on a far hop or a new place: hashed lazily.
    let token_tag = || xxhash_rust::xxh3::xxh3_64(event.token_id.as_bytes()) as u32;
    // Usually the previous request came from the same prefix: no second probe.
    let prev_excuses = match state.last_seen {
        Some(s) if prefix_hash(s.ip) == prefix => here_excuses,
        Some(s) => population.egress_excuses(s.ip),
        None => false,
    };
    // A hop onto or off a VPN's exit is no evidence; one off a home behind
    // carrier NAT is (`Egress::excuses`).
    let shared = here_excuses || prev_excuses;
    v[idx::SHARED_EGRESS] = f32::from(u8::from(shared));

    // --- geography -----------------------------------------------------------
    let mut from = None;
    let mut dt_s = 0.0f32;
    if let Lookup::Located(loc) = lookup {
        let new_country = loc.country.is_known() && state.countries.insert(loc.country);
        let new_asn = loc.asn != 0 && state.asns.insert(loc.asn);
        if !first {
            v[idx::NEW_COUNTRY] = f32::from(u8::from(new_country));
            v[idx::NEW_ASN] = f32::from(u8::from(new_asn));
        }
        if let Some(prev) = state.last_seen {
            let dt = ((now - prev.at_ms).abs() as f64 / 1000.0).max(MIN_DT_S);
            // Dual-stack and carrier-grade egress: inside one AS the address
            // family or egress city changes without the holder moving.
            let same_asn = loc.asn != 0 && loc.asn == prev.location.asn;
            let km = if same_asn {
                0.0
            } else {
                prev.location.min_plausible_km(&loc)
            };
            let speed = (km / (dt / 3600.0)).min(MAX_SPEED_KMH);
            v[idx::VELOCITY] = speed as f32;
            v[idx::DISTANCE] = km as f32;
            v[idx::COUNTRY_CHANGE] = f32::from(u8::from(
                loc.country.is_known()
                    && prev.location.country.is_known()
                    && loc.country != prev.location.country,
            ));
            v[idx::ASN_CHANGE] = f32::from(u8::from(
                loc.asn != 0 && prev.location.asn != 0 && loc.asn != prev.location.asn,
            ));
            // Moving onto or off shared egress (VPN on/off, corporate proxy)
            // changes the apparent place, not the holder's; so does moving
            // between two places the subject used on its other tokens.
            if km >= params.far_km {
                population.observe_roaming(prev.ip, subject);
                population.observe_roaming(event.ip, subject);
            }
            let far_hop = !shared && km >= params.far_km;
            let familiar = far_hop
                && subject.is_some_and(|subject| {
                    let tag = token_tag();
                    population.familiar.knows(subject, tag, &prev.location)
                        && population.familiar.knows(subject, tag, &loc)
                });
            v[idx::FAMILIAR] = f32::from(u8::from(familiar));
            let impossible = far_hop && !familiar && speed > params.plausible_speed_kmh;
            v[idx::IMPOSSIBLE] = f32::from(u8::from(impossible));
            // Onto a network nobody has signed in from (not a VPN exit, an
            // office or a home), in a place this subject never used on its
            // other tokens: where the token went without its login. A thief
            // cannot earn that network's standing without signing in there
            // as someone.
            // A hop off egress that, this hop counted, looks like a VPN exit
            // its users roam from is left to the model and the alert: the
            // first toggles off a new exit read this way.
            let unknown = impossible
                && !population.egress_established(prefix)
                && !subject.is_some_and(|s| population.familiar.knows(s, token_tag(), &loc))
                && !population.egress_excuses(prev.ip);
            v[idx::UNKNOWN_EGRESS] = f32::from(u8::from(unknown));
            state.max_velocity_kmh = state.max_velocity_kmh.max(speed as f32);
            from = Some(prev);
            dt_s = dt as f32;

            // Flips: back at the other place within the window, far from
            // here and across a border. Within one country a phone's
            // carrier egress flips between cities all day (Wi-Fi ↔
            // cellular); that is left to the model, not counted here.
            state.flips = decayed(state.flips, dt, FLIP_HALF_LIFE_S / std::f64::consts::LN_2);
            let crossed = loc.country.is_known()
                && prev.location.country.is_known()
                && loc.country != prev.location.country;
            if far_hop && !familiar && crossed {
                if let Some(other) = state.other_place {
                    let back = other.location.min_plausible_km(&loc) < params.far_km
                        && ((now - other.at_ms).abs() as f64 / 1000.0) <= params.flip_window_s;
                    if back {
                        state.flips += 1.0;
                    }
                }
                state.other_place = Some(prev);
            }
        }
        state.suspect |= v[idx::IMPOSSIBLE] > 0.0 || state.flips >= 1.0;
        // A token that has shown travel or a flip teaches nothing: its
        // places may be the thief's.
        if let Some(subject) = subject.filter(|_| !population.is_frozen()) {
            if !late && !state.suspect && (first || new_prefix) {
                population.familiar.learn(subject, token_tag(), &loc);
            }
        }
        // A late event is compared, but the newest sighting stays the anchor.
        if state.last_seen.is_none_or(|s| now >= s.at_ms) {
            state.last_seen = Some(Sighting {
                at_ms: now,
                location: loc,
                ip: event.ip,
            });
        }
    }
    v[idx::MAX_VELOCITY] = state.max_velocity_kmh;
    v[idx::FLIPS] = state.flips;
    v[idx::DISTINCT_COUNTRIES] = f32::from(state.countries.distinct);
    v[idx::DISTINCT_IPS] = state.ips.estimate();

    state.requests = state.requests.saturating_add(1);

    // --- token context ---------------------------------------------------------
    let issued = if state.iat_ms > 0 {
        state.iat_ms
    } else {
        state.first_ms
    };
    v[idx::TOKEN_AGE] = ((now - issued).max(0) as f32 / 60_000.0).min(MAX_CONTEXT_MIN);
    // Negative once expired: a gateway that still accepts an expired token
    // is being replayed against, or misconfigured.
    v[idx::TO_EXP] = if state.exp_ms > 0 {
        ((state.exp_ms - now) as f32 / 60_000.0).clamp(-MAX_CONTEXT_MIN, MAX_CONTEXT_MIN)
    } else {
        0.0
    };
    v[idx::REQUESTS] = state.requests as f32;
    state.last_ms = state.last_ms.max(now);
    state.last_ip = Some(event.ip);

    Features {
        values: v,
        from,
        to: lookup.location().copied(),
        dt_s,
        late,
    }
}
