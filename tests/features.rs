//! Feature extraction under arbitrary input: any sequence of times (zero,
//! negative, huge deltas), places (located or not) and agents yields finite
//! features; state stays bounded under an adversarial stream of token ids.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;

use proptest::prelude::*;
use tokenwatch::features::{
    idx, observe, FeatureParams, Population, TokenState, TokenStore, MAX_SPEED_KMH, N_FEATURES,
};
use tokenwatch::geo::{Country, Location, Lookup, Unlocated};
use tokenwatch::telemetry::Event;

const PLACES: [(f32, f32, &str, u32); 5] = [
    (48.86, 2.35, "FR", 3215),
    (45.76, 4.84, "FR", 3215),
    (1.35, 103.82, "SG", 9506),
    (-33.87, 151.21, "AU", 1221),
    (40.71, -74.01, "US", 7922),
];
const AGENTS: [&str; 3] = ["Mozilla/5.0 (X11) Firefox/133.0", "curl/8.10.1", ""];

fn event(ts_ms: i64, ip: IpAddr, ua: &'static str) -> Event<'static> {
    Event {
        ts_ms,
        token_id: Cow::Borrowed("t"),
        sub: Cow::Borrowed("alice"),
        sub_verified: false,
        ip,
        user_agent: Cow::Borrowed(ua),
        method: Cow::Borrowed("GET"),
        path: Cow::Borrowed("/v1/orders"),
        status: 200,
        tenant: None,
        client_id: None,
        token_exp: Some(1_795_431_600),
        token_iat: Some(1_795_428_000),
        bytes: None,
        latency_ms: None,
        token_handle: None,
    }
}

fn lookup(place: usize, accuracy: f32) -> Lookup {
    match PLACES.get(place) {
        Some(&(lat, lon, cc, asn)) => Lookup::Located(Location {
            lat,
            lon,
            accuracy_km: accuracy,
            country: Country::from_code(cc),
            asn,
        }),
        None => Lookup::Unlocated(Unlocated::NotInDatabase),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn features_are_finite_for_any_sequence(
        steps in prop::collection::vec((-20_000i64..7_200_000, 0usize..6, 0u8..4, 0usize..3, 0f32..1000.0), 1..60)
    ) {
        let params = FeatureParams::default();
        let mut pop = Population::default();
        let mut state = TokenState::new(1_795_428_000_000);
        let mut t = 1_795_428_000_000i64;
        for (dt, place, host, ua, acc) in steps {
            t += dt;
            let ip = IpAddr::V4(Ipv4Addr::new(81, 2, place as u8, host));
            let f = observe(&mut state, &event(t, ip, AGENTS[ua]), lookup(place, acc), &params, &mut pop);
            prop_assert_eq!(f.values.len(), N_FEATURES);
            for (i, v) in f.values.iter().enumerate() {
                prop_assert!(v.is_finite(), "feature {} = {}", i, v);
            }
            prop_assert!(f.values[idx::VELOCITY] >= 0.0 && f64::from(f.values[idx::VELOCITY]) <= MAX_SPEED_KMH);
            prop_assert!(state.rate_short >= 0.0 && state.rate_long >= 0.0);
        }
    }

    #[test]
    fn same_place_repeated_never_travels(n in 2usize..50, dt in 0i64..120_000) {
        let (params, mut pop) = (FeatureParams::default(), Population::default());
        let mut state = TokenState::new(0);
        let ip = IpAddr::V4(Ipv4Addr::new(81, 2, 0, 1));
        for i in 0..n {
            let f = observe(&mut state, &event(1_795_428_000_000 + i as i64 * dt, ip, AGENTS[0]), lookup(0, 50.0), &params, &mut pop);
            prop_assert_eq!(f.values[idx::VELOCITY], 0.0);
            prop_assert_eq!(f.values[idx::IMPOSSIBLE], 0.0, "never impossible");
        }
    }
}

#[test]
fn zero_and_negative_deltas_do_not_explode_or_fake_a_burst() {
    let (params, mut pop) = (FeatureParams::default(), Population::default());
    let mut state = TokenState::new(0);
    let ip = IpAddr::V4(Ipv4Addr::new(81, 2, 0, 1));
    let t = 1_795_428_000_000;
    observe(
        &mut state,
        &event(t, ip, AGENTS[0]),
        lookup(0, 50.0),
        &params,
        &mut pop,
    );
    // Same millisecond, from Singapore: distance over the 1 s floor, capped.
    let f = observe(
        &mut state,
        &event(t, ip, AGENTS[0]),
        lookup(2, 50.0),
        &params,
        &mut pop,
    );
    assert_eq!(f64::from(f.values[idx::VELOCITY]), MAX_SPEED_KMH);
    // An hour-old event is late: scored, but it moves no rate.
    let before = state.rate_short;
    let f = observe(
        &mut state,
        &event(t - 3_600_000, ip, AGENTS[0]),
        lookup(0, 50.0),
        &params,
        &mut pop,
    );
    assert!(f.late);
    assert_eq!(state.rate_short, before);
    assert!(f.values.iter().all(|v| v.is_finite()));
}

#[test]
fn token_context_reports_age_expiry_and_count() {
    let (params, mut pop) = (FeatureParams::default(), Population::default());
    let mut state = TokenState::new(0);
    let ip = IpAddr::V4(Ipv4Addr::new(81, 2, 0, 1));
    // iat 10:00, exp 11:00; requests at 10:30 and at 11:10.
    let f = observe(
        &mut state,
        &event(1_795_429_800_000, ip, AGENTS[0]),
        lookup(0, 50.0),
        &params,
        &mut pop,
    );
    assert_eq!(
        (
            f.values[idx::TOKEN_AGE],
            f.values[idx::TO_EXP],
            f.values[idx::REQUESTS]
        ),
        (30.0, 30.0, 1.0)
    );
    let f = observe(
        &mut state,
        &event(1_795_432_200_000, ip, AGENTS[0]),
        lookup(0, 50.0),
        &params,
        &mut pop,
    );
    assert_eq!(
        (
            f.values[idx::TOKEN_AGE],
            f.values[idx::TO_EXP],
            f.values[idx::REQUESTS]
        ),
        (70.0, -10.0, 2.0)
    );
}

#[test]
fn state_stays_bounded_under_an_adversarial_key_stream() {
    let mut store = TokenStore::new(NonZeroUsize::new(1000).unwrap(), 3_600_000);
    for k in 0..100_000u128 {
        // Keys chosen to collide in their low bits, as an attacker might try.
        store.entry(k << 64, 0);
        assert!(store.len() <= 1000);
    }
    assert_eq!(store.len(), 1000);
    assert_eq!(store.evicted, 99_000);
}
