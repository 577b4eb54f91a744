//! The simulator's contract: deterministic for a seed, labels consistent,
//! time ordered, legitimate flights no faster than an airliner, and labels
//! invisible to the detector.

mod common;

use std::collections::HashMap;

use common::*;
use tokenwatch::detect::Action;
use tokenwatch::geo::haversine_km;
use tokenwatch::sim::{generate, Scenario, SimParams, World};
use tokenwatch::telemetry::Event;

fn world() -> World {
    World::from_geo(&geo().load().db)
}

fn params(seed: u64) -> SimParams {
    SimParams {
        seed,
        users: 120,
        span_ms: 3 * 3600 * 1000,
        attack_share: 0.05,
        ..SimParams::default()
    }
}

fn bytes(seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for e in generate(&world(), &params(seed)) {
        let id = e.sim_token_id(seed);
        serde_json::to_writer(&mut out, &e.to_wire(&id, None, true)).unwrap();
        out.push(b'\n');
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = bytes(7);
    assert!(!a.is_empty());
    assert_eq!(a, bytes(7));
    assert_ne!(a, bytes(8));
}

#[test]
fn labels_and_times_are_consistent() {
    let events = generate(&world(), &params(3));
    assert!(
        events.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
        "sorted by time"
    );
    let mut scenarios = std::collections::BTreeSet::new();
    for e in &events {
        let l = &e.label;
        scenarios.insert(l.scenario);
        assert_eq!(l.attacked, l.scenario.is_attack(), "{l:?}");
        if l.attacker {
            assert!(
                l.attacked && e.ts_ms > l.stolen_at_ms,
                "attacker requests come after the theft: {l:?}"
            );
        }
        if !l.attacked {
            assert_eq!(l.stolen_at_ms, 0);
        }
        assert!(
            e.ts_ms / 1000 >= e.token_iat_s && e.ts_ms / 1000 <= e.token_exp_s,
            "used within the token's life"
        );
    }
    for s in [
        Scenario::LegitHome,
        Scenario::LegitMobile,
        Scenario::LegitVpn,
        Scenario::ReplayForeign,
    ] {
        assert!(scenarios.contains(&s), "{s:?} present");
    }
}

#[test]
fn legitimate_flights_are_never_faster_than_an_airliner() {
    let db = geo();
    let db = &db.load().db;
    let events = generate(
        &world(),
        &SimParams {
            p_flight: 0.5,
            span_ms: 24 * 3600 * 1000,
            ..params(5)
        },
    );
    let mut last: HashMap<u32, (i64, f64, f64)> = HashMap::new();
    let mut flights = 0;
    for e in events
        .iter()
        .filter(|e| e.label.scenario == Scenario::LegitFlight && !e.label.attacker)
    {
        let loc = *db
            .lookup(e.ip)
            .location()
            .expect("simulated addresses geolocate");
        let (lat, lon) = (f64::from(loc.lat), f64::from(loc.lon));
        if let Some((t, plat, plon)) = last.insert(e.sub, (e.ts_ms, lat, lon)) {
            let km = haversine_km(plat, plon, lat, lon);
            if km > 100.0 {
                flights += 1;
                let kmh = km / ((e.ts_ms - t) as f64 / 3_600_000.0);
                assert!(kmh < 900.0, "{km:.0} km at {kmh:.0} km/h");
            }
        }
    }
    assert!(flights > 0, "some users flew");
}

#[test]
fn the_label_is_not_read_by_the_detector() {
    // One detector is fed the labelled records, another the same records
    // without labels: every verdict must be the same. The stream holds
    // thefts the detector acts on, so a detector that read the label (or a
    // parser that passed it on) would score some request differently.
    let events = generate(&world(), &params(9));
    let (mut with, mut without) = (detector(), detector());
    let mut acted = 0;
    for e in &events {
        let id = e.sim_token_id(9);
        let labelled = serde_json::to_vec(&e.to_wire(&id, None, true)).unwrap();
        let bare = serde_json::to_vec(&e.to_wire(&id, None, false)).unwrap();
        assert_ne!(labelled, bare);
        let a = with.observe(&Event::parse(&labelled).unwrap());
        let b = without.observe(&Event::parse(&bare).unwrap());
        assert_eq!(
            (a.action, a.score.score, a.features.values),
            (b.action, b.score.score, b.features.values)
        );
        acted += usize::from(a.action != Action::None);
    }
    assert!(
        acted > 0,
        "no verdict in the stream would show a difference"
    );
}

/// /24 of an address (IPv4 only; the CGNAT pools are IPv4).
fn prefix24(ip: std::net::IpAddr) -> Option<[u8; 3]> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some([o[0], o[1], o[2]])
        }
        std::net::IpAddr::V6(_) => None,
    }
}

#[test]
fn consumer_scale_traffic_shares_networks_and_attacker_servers() {
    let knobs = SimParams::from_file(&repo("data/sim/consumer-scale.toml")).unwrap();
    let p = SimParams {
        seed: 11,
        users: 600,
        span_ms: 3 * 3600 * 1000,
        attack_share: 0.1,
        ..knobs
    };
    let events = generate(&world(), &p);
    // Carrier-grade NAT: some residential /24 carries ten or more subjects.
    let mut subjects: HashMap<[u8; 3], std::collections::HashSet<u32>> = HashMap::new();
    let mut tokens_of_server: HashMap<std::net::IpAddr, std::collections::HashSet<u32>> =
        HashMap::new();
    let (mut thefts, mut copied) = (std::collections::HashSet::new(), 0usize);
    let mut ua_of_victim: HashMap<u32, &str> = HashMap::new();
    for e in &events {
        if !e.label.attacker {
            ua_of_victim.insert(e.token_seq, e.user_agent);
            if let Some(p) = prefix24(e.ip) {
                subjects.entry(p).or_default().insert(e.sub);
            }
        }
    }
    for e in events.iter().filter(|e| e.label.attacker) {
        tokens_of_server
            .entry(e.ip)
            .or_default()
            .insert(e.token_seq);
        if thefts.insert(e.token_seq) && ua_of_victim.get(&e.token_seq) == Some(&e.user_agent) {
            copied += 1;
        }
    }
    let busiest = subjects.values().map(|s| s.len()).max().unwrap();
    assert!(busiest >= 10, "busiest residential /24: {busiest} subjects");
    // Infrastructure reuse: one server replays several victims' tokens.
    let reused = tokens_of_server.values().map(|t| t.len()).max().unwrap();
    assert!(
        reused >= 3,
        "most tokens from one attacker address: {reused}"
    );
    // About half the thefts (and more: some scenarios copy it anyway) use
    // the victim's exact browser string.
    let share = copied as f64 / thefts.len() as f64;
    assert!(
        share >= 0.4,
        "{copied} of {} thefts copy the UA",
        thefts.len()
    );
    // Knobs off, as in the default: none of it.
    let plain = generate(&world(), &params(11));
    let most = plain
        .iter()
        .filter(|e| e.label.attacker)
        .fold(
            HashMap::<_, std::collections::HashSet<u32>>::new(),
            |mut m, e| {
                m.entry(e.ip).or_default().insert(e.token_seq);
                m
            },
        )
        .into_values()
        .map(|t| t.len())
        .max()
        .unwrap_or(0);
    assert!(most <= 1, "without reuse every theft has its own address");
}

#[test]
fn a_traffic_file_with_an_unknown_knob_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "p_cgnatt = 0.5\n").unwrap();
    let err = SimParams::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("p_cgnatt"), "{err}");
}
