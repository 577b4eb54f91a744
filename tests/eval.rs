//! Evaluation figures computed right, on a hand-made file whose answers are
//! known: one theft, one desk user, one phone flipping between two cities.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tokenwatch::detect::DetectorParams;
use tokenwatch::eval::{evaluate, Labels};

fn line(token: &str, t_s: i64, ip: &str, ua: &str, label: serde_json::Value) -> String {
    let v = serde_json::json!({
        "ts": 1_795_428_000_000i64 + t_s * 1000, "token_id": token, "sub": token, "ip": ip, "user_agent": ua,
        "method": "GET", "path": "/v1/orders", "status": 200, "label": label,
    });
    format!("{v}\n")
}

fn legit(scenario: &str) -> serde_json::Value {
    serde_json::json!({"scenario": scenario, "attacked": false, "attacker": false, "stolen_at_ms": 0})
}

fn stolen(attacker: bool) -> serde_json::Value {
    serde_json::json!({"scenario": "replay_foreign", "attacked": true, "attacker": attacker,
        "stolen_at_ms": 1_795_428_000_000i64 + 100_000})
}

#[test]
fn metrics_on_a_tiny_labelled_file() {
    let mut text = String::new();
    // Desk user in Paris, every minute for 10 minutes.
    for i in 0..10 {
        text += &line("desk", i * 60, PARIS, BROWSER, legit("legit_home"));
    }
    // A phone: Lyon and Marseille (~280 km) a minute apart, same country.
    for i in 0..10 {
        let ip = if i % 2 == 0 { LYON } else { MARSEILLE };
        text += &line("phone", i * 60 + 5, ip, BROWSER, legit("legit_mobile"));
    }
    // Stolen at t=100 s; the victim used it from Paris, the thief from Sydney
    // at 160 s and 220 s.
    text += &line("victim", 10, PARIS, BROWSER, stolen(false));
    text += &line("victim", 70, PARIS, BROWSER, stolen(false));
    text += &line("victim", 160, SYDNEY, "curl/8.10.1", stolen(true));
    text += &line("victim", 220, SYDNEY, "curl/8.10.1", stolen(true));
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"]
            .as_i64()
            .unwrap()
    });
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }

    let r = evaluate(
        f.path(),
        geo(),
        model(),
        DetectorParams::default(),
        Duration::ZERO,
        Labels::Inline,
    )
    .unwrap();
    assert_eq!((r.requests, r.legit_tokens, r.attacked_tokens), (24, 2, 1));

    let tw = &r.tokenwatch;
    assert_eq!(
        (tw.recall, tw.precision, tw.false_flags_per_100k),
        (1.0, 1.0, 0.0)
    );
    let theft = &tw.per_scenario["replay_foreign"];
    assert_eq!(
        theft.ttd_requests_median,
        Some(1.0),
        "caught at the thief's first request"
    );
    assert_eq!(theft.ttd_seconds_median, Some(60.0), "60 s after the theft");
    assert_eq!(
        tw.per_scenario["legit_mobile"].false_flags_per_100k,
        Some(0.0)
    );

    // The 500 mph rule catches the thief too, and flags the phone.
    let b = &r.baseline;
    assert_eq!(b.recall, 1.0);
    assert_eq!(b.per_scenario["legit_mobile"].flagged, 1);
    assert_eq!(
        b.false_flags_per_100k, 50_000.0,
        "one of two legitimate tokens"
    );
    assert_eq!(b.precision, 0.5);

    // The table shows both systems side by side.
    let table = r.table();
    assert!(
        table.contains("| replay_foreign | 1 | 1.000 | 1.000 |"),
        "{table}"
    );

    // Plots are written as PNG files.
    let dir = tempfile::tempdir().unwrap();
    for p in tokenwatch::eval::write_plots(&r, dir.path()).unwrap() {
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
    }
}
