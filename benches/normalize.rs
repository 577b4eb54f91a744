//! The normalize stage's parse-and-derive step per gateway format (JSON,
//! token identity with HMAC or JWT decode, client address through proxies,
//! telemetry serialisation), against bare serde_json parsing of the same
//! records in the same run; and what `serve` pays for a gateway record in
//! direct mode.
//!
//! `cargo bench --bench normalize`

#[path = "support/paired.rs"]
mod paired;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokenwatch::gateway::{slot, FieldMap, Format, Normalizer, Plan, Scalar, TrustedProxies};
use tokenwatch::telemetry::Event;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// 2,000 records from the format's sample: distinct opaque tokens (so the
/// keyed hash runs for each) or the sample's JWT, distinct client addresses.
fn records(name: &str, auth_pointer: &str) -> Vec<Vec<u8>> {
    let sample: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo(&format!("data/gateways/{name}.json"))).unwrap(),
    )
    .unwrap();
    (0..2000u32)
        .map(|i| {
            let mut v = sample.clone();
            if i % 2 == 0 {
                *v.pointer_mut(auth_pointer).unwrap() = serde_json::Value::from(format!(
                    "Bearer opaque-{i:08x}-{}",
                    i.wrapping_mul(2654435761)
                ));
            }
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for (name, format, auth) in [
        ("envoy", Format::Envoy, "/authorization"),
        ("nginx", Format::Nginx, "/authorization"),
        ("kong", Format::Kong, "/request/headers/authorization"),
    ] {
        let recs = records(name, auth);
        let n = Normalizer::new(
            FieldMap::preset(format).unwrap(),
            TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]),
            Arc::from(&b"bench-hash-key-0123456789"[..]),
            None,
        );
        let mut g = c.benchmark_group(format!("normalize/{name}"));
        g.throughput(Throughput::Elements(recs.len() as u64));
        g.sample_size(20);
        g.bench_function("serde_json_ignored_any", |b| {
            b.iter(|| {
                for r in &recs {
                    let _: serde::de::IgnoredAny = serde_json::from_slice(r).unwrap();
                }
            })
        });
        g.bench_function("serde_json_value", |b| {
            b.iter(|| {
                for r in &recs {
                    std::hint::black_box(serde_json::from_slice::<serde_json::Value>(r).unwrap());
                }
            })
        });
        // Reading the mapped fields alone: the JSON side of `normalize`.
        g.bench_function("pluck_only", |b| {
            let map = FieldMap::preset(format).unwrap();
            let plan = Plan::new(&map.pointers());
            b.iter(|| {
                for r in &recs {
                    let mut slots: [Option<Scalar<'_>>; slot::COUNT] = Default::default();
                    plan.pluck(std::str::from_utf8(r).unwrap(), &mut slots)
                        .unwrap();
                    std::hint::black_box(&slots);
                }
            })
        });
        g.bench_function("normalize", |b| {
            b.iter(|| {
                for r in &recs {
                    std::hint::black_box(n.normalize(r).unwrap().to_json());
                }
            })
        });
        // Against the bare scan, paired (see support/paired.rs): the whole
        // stage, and parse and derive alone (the event, no JSON written),
        // the step issue 13's goal names.
        let pass = |f: &dyn Fn(&[u8])| {
            let t = Instant::now();
            recs.iter().for_each(|r| f(r));
            t.elapsed()
        };
        let bare = |r: &[u8]| {
            let _: serde::de::IgnoredAny = serde_json::from_slice(r).unwrap();
        };
        let group = format!("normalize/{name}");
        paired::ratio(
            &mut g,
            &group,
            "normalize_paired",
            recs.len(),
            || pass(&bare),
            || pass(&|r| drop(std::hint::black_box(n.normalize(r).unwrap().to_json()))),
        );
        paired::ratio(
            &mut g,
            &group,
            "to_event_paired",
            recs.len(),
            || pass(&bare),
            || pass(&|r| drop(std::hint::black_box(n.normalize(r).unwrap()))),
        );
        // What `serve` pays per gateway record in direct mode: the event
        // alone, and the same through JSON and back as it was read before.
        g.bench_function("to_event", |b| {
            b.iter(|| {
                for r in &recs {
                    std::hint::black_box(n.normalize(r).unwrap());
                }
            })
        });
        g.bench_function("to_event_via_json", |b| {
            b.iter(|| {
                for r in &recs {
                    let json = n.normalize(r).unwrap().to_json();
                    std::hint::black_box(Event::parse(&json).unwrap().ts_ms);
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
