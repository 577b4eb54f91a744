//! Memory per tracked token: resident-set growth while the detector tracks
//! 1,000,000 tokens, each with a few requests so its state is populated.
//!
//! `cargo bench --bench memory`

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokenwatch::detect::{Detector, DetectorParams};
use tokenwatch::features::TokenState;
use tokenwatch::geo::GeoHandle;
use tokenwatch::model::{Model, ModelArtifact};
use tokenwatch::telemetry::Event;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm field");
    pages * 4096
}

fn main() {
    const TOKENS: usize = 1_000_000;
    let geo = GeoHandle::open(
        vec![repo("data/geo/demo-city.mmdb")],
        Some(repo("data/geo/demo-asn.mmdb")),
    )
    .unwrap();
    let model = Arc::new(ArcSwap::from_pointee(Model::new(
        ModelArtifact::load(&repo("models/default.json")).unwrap(),
    )));
    let params = DetectorParams {
        max_tokens: std::num::NonZeroUsize::new(TOKENS).unwrap(),
        ..DetectorParams::default()
    };
    let ips = [
        "1.178.90.17",
        "2.3.0.17",
        "1.32.200.17",
        "2001:460:8df0::17",
    ];
    // Records are built first so their buffers are not counted.
    let records: Vec<Vec<u8>> = (0..TOKENS)
        .map(|i| {
            serde_json::to_vec(&serde_json::json!({
                "ts": 1_795_428_000_000i64 + i as i64, "token_id": format!("jti-{i:08}"), "sub": format!("u{}", i % 50_000),
                "ip": ips[i % ips.len()], "method": "GET", "path": "/v1/orders", "status": 200,
                "user_agent": "Mozilla/5.0 Firefox/133.0", "token_exp": 1_795_431_600i64
            }))
            .unwrap()
        })
        .collect();
    let mut d = Detector::new(geo, model, params);
    let before = rss();
    for r in &records {
        d.observe(&Event::parse(r).unwrap());
    }
    let after = rss();
    let tracked = d.stats().tracked;
    println!(
        "size_of::<TokenState>() = {} bytes",
        std::mem::size_of::<TokenState>()
    );
    println!(
        "tracked {tracked} tokens: RSS +{:.1} MiB = {:.0} bytes per tracked token (state, LRU links, hash table, population tables)",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / tracked as f64
    );
}
