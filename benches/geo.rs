//! Geo lookup cost: the bare maxminddb lookup and decode, tokenwatch's
//! lookup through its bounded cache, and the per-token last-IP shortcut
//! (a detector seeing the same address again), on the same addresses.
//!
//! `cargo bench --bench geo`

use std::net::IpAddr;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokenwatch::geo::{GeoCache, GeoHandle};
use tokenwatch::sim::World;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[derive(serde::Deserialize)]
struct Flat {
    #[allow(dead_code)]
    latitude: Option<f64>,
}

fn bench(c: &mut Criterion) {
    let geo = GeoHandle::open(
        vec![repo("data/geo/demo-city.mmdb")],
        Some(repo("data/geo/demo-asn.mmdb")),
    )
    .unwrap();
    let loaded = geo.load();
    let world = World::from_geo(&loaded.db);
    let ips: Vec<IpAddr> = world
        .cities
        .iter()
        .flat_map(|c| c.v4.iter().chain(c.v6.iter()).map(|n| n.network()))
        .take(2000)
        .collect();
    let reader = maxminddb::Reader::open_readfile(repo("data/geo/demo-city.mmdb")).unwrap();
    let mut g = c.benchmark_group("geo_lookup");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("bare_maxminddb_city", |b| {
        b.iter(|| {
            for ip in &ips {
                std::hint::black_box(reader.lookup(*ip).unwrap().decode::<Flat>().unwrap());
            }
        })
    });
    g.bench_function("tokenwatch_city_and_asn_cold", |b| {
        b.iter(|| {
            for ip in &ips {
                std::hint::black_box(loaded.db.lookup(*ip));
            }
        })
    });
    let mut cache = GeoCache::new(std::num::NonZeroUsize::new(65_536).unwrap());
    g.bench_function("tokenwatch_cached", |b| {
        b.iter(|| {
            for ip in &ips {
                std::hint::black_box(cache.lookup(&loaded.db, loaded.generation, *ip));
            }
        })
    });
    // The per-token shortcut: each token's repeat request from the address
    // of its last located request.
    let model = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
        tokenwatch::model::Model::new(
            tokenwatch::model::ModelArtifact::load(&repo("models/default.json")).unwrap(),
        ),
    ));
    let mut d = tokenwatch::detect::Detector::new(geo.clone(), model, Default::default());
    let keys: Vec<(u128, IpAddr)> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let id = format!("tok-{i}");
            let rec = serde_json::json!({"ts": 1_795_428_000_000i64, "token_id": id, "sub": "s", "ip": ip.to_string(),
                "method": "GET", "path": "/", "status": 200});
            let buf = serde_json::to_vec(&rec).unwrap();
            d.extract(&tokenwatch::telemetry::Event::parse(&buf).unwrap());
            (tokenwatch::telemetry::token_key(&id), *ip)
        })
        .collect();
    g.bench_function("tokenwatch_per_token_shortcut", |b| {
        b.iter(|| {
            for (k, ip) in &keys {
                std::hint::black_box(d.locate(*k, 1_795_428_000_000, *ip));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
