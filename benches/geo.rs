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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
