//! Per-event cost of the detection core on a realistic stream (the
//! simulator's, over the demo geo database), against bare serde_json parsing
//! of the same bytes in the same run.
//!
//! `cargo bench --bench core`

#[path = "support/paired.rs"]
mod paired;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokenwatch::detect::{Detector, DetectorParams};
use tokenwatch::geo::GeoHandle;
use tokenwatch::model::{Model, ModelArtifact};
use tokenwatch::sim::{self, SimParams, World};
use tokenwatch::telemetry::Event;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn stream() -> (Arc<GeoHandle>, Vec<Vec<u8>>) {
    let geo = GeoHandle::open(
        vec![repo("data/geo/demo-city.mmdb")],
        Some(repo("data/geo/demo-asn.mmdb")),
    )
    .unwrap();
    let world = World::from_geo(&geo.load().db);
    let events = sim::generate(
        &world,
        &SimParams {
            users: 200,
            span_ms: 2 * 3600 * 1000,
            ..SimParams::default()
        },
    );
    let records = events
        .iter()
        .take(20_000)
        .map(|e| serde_json::to_vec(&e.to_wire(&e.sim_token_id(7), None, false)).unwrap())
        .collect();
    (geo, records)
}

/// The same record deserialised by serde_json into plain borrowed fields,
/// with no validation: the "bare parse" baseline.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Plain<'a> {
    ts: &'a str,
    token_id: &'a str,
    sub: &'a str,
    ip: &'a str,
    user_agent: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    client_id: &'a str,
    token_iat: i64,
    token_exp: i64,
}

fn bench(c: &mut Criterion) {
    let (geo, records) = stream();
    let model = Arc::new(ArcSwap::from_pointee(Model::new(
        ModelArtifact::load(&repo("models/default.json")).unwrap(),
    )));
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(20);
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| {
            for r in &records {
                let _: serde::de::IgnoredAny = serde_json::from_slice(r).unwrap();
            }
        })
    });
    g.bench_function("serde_json_plain_struct", |b| {
        b.iter(|| {
            for r in &records {
                std::hint::black_box(serde_json::from_slice::<Plain>(r).unwrap());
            }
        })
    });
    g.bench_function("parse_event", |b| {
        b.iter(|| {
            for r in &records {
                std::hint::black_box(Event::parse(r).unwrap());
            }
        })
    });
    // The same records with `ts` as epoch milliseconds: what the RFC 3339
    // timestamp costs.
    let epoch: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_slice(r).unwrap();
            v["ts"] = serde_json::json!(Event::parse(r).unwrap().ts_ms);
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    g.bench_function("parse_event_epoch_ms", |b| {
        b.iter(|| {
            for r in &epoch {
                std::hint::black_box(Event::parse(r).unwrap());
            }
        })
    });
    // What issue 4's goal names: parse, geo and features, without the model.
    g.bench_function("parse_geo_features", |b| {
        b.iter_batched(
            || Detector::new(geo.clone(), model.clone(), DetectorParams::default()),
            |mut d| {
                for r in &records {
                    let e = Event::parse(r).unwrap();
                    std::hint::black_box(d.extract(&e));
                }
                d
            },
            BatchSize::LargeInput,
        )
    });
    // The same ratio, paired (see support/paired.rs): the figure issue 4's
    // goal is judged by.
    let detector = || Detector::new(geo.clone(), model.clone(), DetectorParams::default());
    paired::ratio(
        &mut g,
        "per_event",
        "parse_geo_features_paired",
        records.len(),
        || {
            let t = Instant::now();
            for r in &records {
                std::hint::black_box(serde_json::from_slice::<Plain>(r).unwrap());
            }
            t.elapsed()
        },
        || {
            let mut d = detector();
            let t = Instant::now();
            for r in &records {
                let e = Event::parse(r).unwrap();
                std::hint::black_box(d.extract(&e));
            }
            t.elapsed()
        },
    );
    g.bench_function("parse_geo_features_score", |b| {
        b.iter_batched(
            || Detector::new(geo.clone(), model.clone(), DetectorParams::default()),
            |mut d| {
                for r in &records {
                    let e = Event::parse(r).unwrap();
                    std::hint::black_box(d.observe(&e));
                }
                d // dropped outside the timing
            },
            BatchSize::LargeInput,
        )
    });
    // The Kafka path as it runs: the detector behind the lock it shares with
    // the HTTP API, through `respond::score`.
    g.bench_function("parse_score_shared_detector", |b| {
        b.iter_batched(
            || {
                Arc::new(std::sync::Mutex::new(Detector::new(
                    geo.clone(),
                    model.clone(),
                    DetectorParams::default(),
                )))
            },
            |d| {
                for r in &records {
                    let e = Event::parse(r).unwrap();
                    std::hint::black_box(tokenwatch::decide::score(&d, &e, false));
                }
                d
            },
            BatchSize::LargeInput,
        )
    });
    // The model alone, per family, on the features of the same stream.
    let features: Vec<_> = {
        let mut d = Detector::new(geo.clone(), model.clone(), DetectorParams::default());
        records
            .iter()
            .map(|r| d.extract(&Event::parse(r).unwrap()).1)
            .collect()
    };
    for family in ["supervised", "combined", "population"] {
        let file = if family == "combined" {
            "models/default.json".to_owned()
        } else {
            format!("models/{family}.json")
        };
        let m = Model::new(ModelArtifact::load(&repo(&file)).unwrap());
        g.bench_function(format!("model_score_{family}"), |b| {
            b.iter(|| {
                for f in &features {
                    std::hint::black_box(m.score(f));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
