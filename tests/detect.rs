//! The pure core on real geolocation data: attacks are flagged at once, and
//! the legitimate patterns users complain about elsewhere are not.

mod common;

use common::*;
use tokenwatch::detect::{Action, Detector, DetectorParams};
use tokenwatch::features::idx;
use tokenwatch::model::Rule;
use tokenwatch::telemetry::Event;

fn observe(
    d: &mut Detector,
    token: &str,
    t_s: f64,
    ip: &str,
    ua: &str,
) -> tokenwatch::detect::Verdict {
    let buf = record(token, t_s, ip, ua);
    d.observe(&Event::parse(&buf).expect("valid record"))
}

#[test]
fn impossible_travel_is_flagged_within_one_request() {
    let mut d = detector();
    for i in 0..5 {
        let v = observe(&mut d, "t1", f64::from(i) * 30.0, PARIS, BROWSER);
        assert_eq!(v.action, Action::None, "request {i} from home");
    }
    // 38 minutes later from Singapore: ~10,700 km.
    let v = observe(
        &mut d,
        "t1",
        150.0 + 38.0 * 60.0,
        SINGAPORE,
        "python-requests/2.32.3",
    );
    assert_eq!(v.action, Action::Revoke, "{v:?}");
    assert!(v.escalated);
    // Nobody has signed in from that network: the token arrived there
    // without its login.
    assert_eq!(v.score.rule, Some(Rule::TravelToUnknownEgress));
    let geo = d.geo().load();
    let e = tokenwatch::detect::explain(&v, SINGAPORE.parse().unwrap(), &geo.db);
    assert!(
        e.text.contains("nobody signs in from")
            && e.text.contains("Paris, FR → Singapore, SG in 38 min"),
        "{}",
        e.text
    );
}

#[test]
fn a_token_is_escalated_once_however_often_it_scores_high() {
    let mut d = detector();
    observe(&mut d, "t2", 0.0, PARIS, BROWSER);
    let first = observe(&mut d, "t2", 60.0, SYDNEY, TOOL);
    assert!(
        first.escalated && first.action == Action::Revoke,
        "{first:?}"
    );
    let again = observe(&mut d, "t2", 120.0, PARIS, BROWSER);
    assert!(!again.escalated, "no second decision for the same token");
}

#[test]
fn ipv4_ipv6_switch_in_one_city_is_not_travel() {
    let mut d = detector();
    for i in 0..20 {
        let ip = if i % 2 == 0 { PARIS } else { PARIS_V6 };
        let v = observe(&mut d, "t3", f64::from(i) * 20.0, ip, BROWSER);
        assert_eq!(v.action, Action::None, "request {i}: {v:?}");
    }
}

#[test]
fn wifi_cellular_flips_within_a_country_are_not_theft() {
    // A phone in Lyon whose carrier egress geolocates to Marseille (~280 km).
    let mut d = detector();
    for i in 0..30 {
        let ip = if i % 3 == 0 { MARSEILLE } else { LYON };
        let v = observe(&mut d, "t4", f64::from(i) * 15.0, ip, BROWSER);
        assert_ne!(v.action, Action::Revoke, "request {i}: {v:?}");
    }
}

#[test]
fn a_real_flight_is_not_impossible_travel() {
    // Paris → New York (~5,840 km) in 8 h 30 min gate to gate: ~690 km/h.
    let mut d = detector();
    observe(&mut d, "t5", 0.0, PARIS, BROWSER);
    let v = observe(&mut d, "t5", 8.5 * 3600.0, NEW_YORK, BROWSER);
    assert!(v.score.rule.is_none(), "{v:?}");
    assert!(v.features.values[idx::VELOCITY] < 1000.0);
}

#[test]
fn unlocated_and_out_of_order_events_produce_finite_features() {
    let mut d = detector();
    observe(&mut d, "t6", 10.0, PARIS, BROWSER);
    for (t, ip) in [
        (9.0, "10.1.2.3"),
        (10.0, "100.64.1.1"),
        (8.0, LYON),
        (10.0, PARIS),
    ] {
        let v = observe(&mut d, "t6", t, ip, BROWSER);
        assert!(v.features.values.iter().all(|x| x.is_finite()), "{v:?}");
        assert!(v.score.score.is_finite());
    }
}

/// Alice flips between her home in Paris and her company's VPN egress in
/// Singapore: same browser, one holder.
fn vpn_toggling(d: &mut Detector) -> Vec<tokenwatch::detect::Verdict> {
    (0..12)
        .map(|i| {
            let ip = if i % 2 == 0 { PARIS } else { "1.32.200.99" };
            let buf = record_for(
                "alice-tok",
                "alice",
                600.0 + f64::from(i) * 60.0,
                ip,
                BROWSER,
            );
            d.observe(&Event::parse(&buf).unwrap())
        })
        .collect()
}

/// Colleagues who sign in behind the VPN's egress prefix in Singapore and
/// later switch it off at home, each elsewhere (`away`, or Paris when
/// `None`).
fn colleagues_on_the_vpn(d: &mut Detector, away: Option<&[&str]>) {
    let homes = away.unwrap_or(&[PARIS, LYON, MARSEILLE, NEW_YORK, SYDNEY]);
    for (i, who) in ["bob", "carol", "dave", "erin", "frank"].iter().enumerate() {
        let tok = format!("{who}-tok");
        let on = record_for(
            &tok,
            who,
            i as f64,
            &format!("1.32.200.{}", 10 + i),
            BROWSER,
        );
        d.observe(&Event::parse(&on).unwrap());
        let off = record_for(
            &tok,
            who,
            3600.0 + i as f64,
            homes[i % homes.len()],
            BROWSER,
        );
        d.observe(&Event::parse(&off).unwrap());
    }
}

#[test]
fn a_corporate_vpn_shared_by_many_users_is_not_travel() {
    let mut d = detector();
    // Colleagues behind the same egress prefix, who leave it for their
    // homes far away: the population learns a VPN exit.
    colleagues_on_the_vpn(&mut d, None);
    for (i, v) in vpn_toggling(&mut d).iter().enumerate() {
        assert_eq!(v.action, Action::None, "request {i}: {v:?}");
        assert!(v.score.rule.is_none());
    }
}

#[test]
fn before_the_egress_is_learned_a_vpn_toggle_still_reads_as_travel() {
    // The documented cold-start gap (docs/features.md): with no colleagues
    // seen behind the prefix, the same toggling trips the rule.
    let mut d = detector();
    assert!(vpn_toggling(&mut d)
        .iter()
        .any(|v| v.action == Action::Revoke));
}

#[test]
fn a_thief_far_from_a_home_behind_carrier_nat_is_travel() {
    // Twenty neighbours sign in behind the same carrier-grade NAT /24 in
    // Singapore and stay there: shared egress, but nobody roams away from
    // it. Before, a hop off any shared egress was excused, so every token
    // stolen from such a home was replayed unseen.
    let mut d = detector();
    for i in 0..20 {
        let who = format!("neighbour-{i}");
        let buf = record_for(
            &format!("{who}-tok"),
            &who,
            i as f64,
            &format!("1.32.200.{}", 10 + i),
            BROWSER,
        );
        d.observe(&Event::parse(&buf).unwrap());
    }
    let home = "1.32.200.99";
    let at = |d: &mut Detector, t: f64, ip: &str| {
        d.observe(&Event::parse(&record_for("victim-tok", "victim", t, ip, BROWSER)).unwrap())
    };
    at(&mut d, 600.0, home);
    // The thief, in Paris with the victim's own browser string, and the
    // victim at home again.
    let thief = at(&mut d, 660.0, PARIS);
    assert_eq!(thief.features.get(idx::SHARED_EGRESS), 0.0, "{thief:?}");
    assert_eq!(
        thief.score.rule,
        Some(Rule::TravelToUnknownEgress),
        "{thief:?}"
    );
    let back = at(&mut d, 720.0, home);
    assert_eq!(back.features.get(idx::SHARED_EGRESS), 0.0, "{back:?}");
    let again = at(&mut d, 780.0, PARIS);
    assert_eq!(again.action, Action::Revoke, "two holders: {again:?}");
}

#[test]
fn colleagues_who_never_leave_the_egress_do_not_make_it_a_vpn() {
    // The same five colleagues, but each "home" is the egress itself: the
    // prefix is shared, not roamed away from, so Alice's toggling to Paris
    // and back is still travel (the cold-start gap of docs/features.md).
    let mut d = detector();
    colleagues_on_the_vpn(&mut d, Some(&["1.32.200.50"]));
    assert!(vpn_toggling(&mut d)
        .iter()
        .any(|v| v.action != Action::None));
}

fn alice(d: &mut Detector, token: &str, t_s: f64, ip: &str) -> tokenwatch::detect::Verdict {
    d.observe(&Event::parse(&record_for(token, "alice", t_s, ip, BROWSER)).unwrap())
}

/// Alice's earlier tokens: one used only at home, one only on the VPN.
fn alice_history(d: &mut Detector) {
    for i in 0..3 {
        alice(d, "alice-home", f64::from(i) * 60.0, PARIS);
        alice(d, "alice-vpn", 3600.0 + f64::from(i) * 60.0, "1.32.200.99");
    }
}

#[test]
fn places_the_subject_used_on_other_tokens_are_not_travel() {
    // No colleague behind the VPN prefix: only Alice's own history helps.
    let mut d = detector();
    alice_history(&mut d);
    for i in 0..12 {
        let ip = if i % 2 == 0 { PARIS } else { "1.32.200.99" };
        let v = alice(&mut d, "alice-3", 7200.0 + f64::from(i) * 60.0, ip);
        assert_eq!(v.action, Action::None, "request {i}: {v:?}");
        assert!(v.score.rule.is_none(), "request {i}: {v:?}");
        if i > 0 {
            assert_eq!(v.features.get(idx::FAMILIAR), 1.0, "request {i}");
        }
    }
}

#[test]
fn the_victims_history_does_not_excuse_a_thief_elsewhere() {
    let mut d = detector();
    alice_history(&mut d);
    alice(&mut d, "alice-3", 7200.0, PARIS);
    let v = alice(&mut d, "alice-3", 7260.0, SYDNEY);
    assert_eq!(v.score.rule, Some(Rule::TravelToUnknownEgress), "{v:?}");
    assert_eq!(v.features.get(idx::FAMILIAR), 0.0);
    assert_ne!(v.action, Action::None);
    // Back and forth: two holders.
    let verdicts: Vec<_> = [PARIS, SYDNEY, PARIS]
        .iter()
        .enumerate()
        .map(|(i, ip)| alice(&mut d, "alice-3", 7320.0 + 60.0 * i as f64, ip))
        .collect();
    assert!(
        verdicts
            .iter()
            .any(|v| v.score.rule == Some(Rule::ConcurrentUse) && v.action == Action::Revoke),
        "{verdicts:?}"
    );
}

#[test]
fn a_token_that_travelled_teaches_its_subject_nothing() {
    // The stolen token's thief place must not become familiar for the
    // victim's next token.
    let mut d = detector();
    alice(&mut d, "alice-1", 0.0, PARIS);
    alice(&mut d, "alice-1", 60.0, SYDNEY);
    for i in 0..3 {
        alice(&mut d, "alice-1", 120.0 + f64::from(i) * 60.0, SYDNEY);
    }
    alice(&mut d, "alice-2", 3600.0, PARIS);
    let v = alice(&mut d, "alice-2", 3660.0, SYDNEY);
    assert_eq!(v.score.rule, Some(Rule::TravelToUnknownEgress), "{v:?}");
    assert_eq!(v.features.get(idx::FAMILIAR), 0.0, "{v:?}");
}

#[test]
fn a_single_impossible_hop_in_the_victims_browser_alerts_and_a_flip_back_revokes() {
    let mut d = detector();
    // Someone signs in from the network in Singapore: a hop there could be
    // anyone's VPN or hotel, so one hop alone only alerts.
    observe(&mut d, "local", 0.0, "1.32.200.40", BROWSER);
    observe(&mut d, "t9", 0.0, PARIS, BROWSER);
    let hop = observe(&mut d, "t9", 600.0, SINGAPORE, BROWSER);
    assert_eq!(hop.score.rule, Some(Rule::ImpossibleTravel));
    assert!(hop.action >= Action::Alert, "{hop:?}");
    let back = observe(&mut d, "t9", 660.0, PARIS, BROWSER);
    let again = observe(&mut d, "t9", 720.0, SINGAPORE, BROWSER);
    assert!(
        [back.action, again.action].contains(&Action::Revoke),
        "{back:?} {again:?}"
    );
}

#[test]
fn the_operator_can_make_a_single_impossible_hop_revoke() {
    let mut d = detector_with(DetectorParams {
        impossible_travel_revokes: true,
        ..DetectorParams::default()
    });
    observe(&mut d, "t10", 0.0, PARIS, BROWSER);
    let hop = observe(&mut d, "t10", 600.0, SINGAPORE, BROWSER);
    assert_eq!(hop.action, Action::Revoke, "{hop:?}");
}

#[test]
fn one_server_replaying_many_victims_tokens_is_caught_every_time() {
    // Five victims sign in at home, each somewhere else; one thief replays
    // their tokens, in turn, from the same two servers in Sydney and
    // Singapore, with each victim's own browser string. The servers carry
    // more and more subjects, none of whom signed in there. Before, a single
    // hop only alerted, and the third victim on a server made it shared
    // egress.
    let mut d = detector();
    let homes = [PARIS, LYON, MARSEILLE, NEW_YORK, "1.178.90.40"];
    let servers = [SYDNEY, SINGAPORE];
    for (i, home) in homes.iter().enumerate() {
        let (who, tok) = (format!("victim-{i}"), format!("victim-{i}-tok"));
        let t = i as f64 * 600.0;
        let at = |d: &mut Detector, t: f64, ip: &str| {
            d.observe(&Event::parse(&record_for(&tok, &who, t, ip, BROWSER)).unwrap())
        };
        at(&mut d, t, home);
        let v = at(&mut d, t + 120.0, servers[i % 2]);
        assert_eq!(v.action, Action::Revoke, "theft {i}: {v:?}");
        assert_eq!(v.score.rule, Some(Rule::TravelToUnknownEgress), "theft {i}");
        assert_eq!(v.features.get(idx::SHARED_EGRESS), 0.0, "theft {i}");
    }
}

#[test]
fn the_operator_can_make_a_hop_onto_an_unknown_network_only_alert() {
    // `detect.unknown_egress_revokes = false`: the same thief's first hop
    // alerts and waits for the model or a flip back, as a hop onto a known
    // network does.
    let mut d = detector_with(DetectorParams {
        unknown_egress_revokes: false,
        ..DetectorParams::default()
    });
    observe(&mut d, "t11", 0.0, PARIS, BROWSER);
    let hop = observe(&mut d, "t11", 600.0, SINGAPORE, BROWSER);
    assert_eq!(hop.score.rule, Some(Rule::TravelToUnknownEgress), "{hop:?}");
    assert_eq!(hop.action, Action::Alert, "{hop:?}");
    // The default revokes on the same hop.
    let mut strict = detector();
    observe(&mut strict, "t11", 0.0, PARIS, BROWSER);
    let v = observe(&mut strict, "t11", 600.0, SINGAPORE, BROWSER);
    assert_eq!(v.action, Action::Revoke, "{v:?}");
    let back = observe(&mut d, "t11", 660.0, PARIS, BROWSER);
    let again = observe(&mut d, "t11", 720.0, SINGAPORE, BROWSER);
    assert!(
        [hop.action, back.action, again.action].contains(&Action::Revoke),
        "two holders revoke whatever the setting: {back:?} {again:?}"
    );
}
