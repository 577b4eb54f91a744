//! End to end on a real broker: tokenwatch's scoring consumer (the consumer
//! loop, parse, geo, features, model, decisions, offset commits) reading a
//! topic of 100,000 simulated gateway events, against a bare rdkafka
//! consumer that only reads the same topic, in the same run, on the same
//! broker (`tansu`, memory storage, started here). Goal: tokenwatch at
//! ≥ 0.8 × the bare consumer's events/s.
//!
//! Then, on the same broker, the detection latency: stolen tokens whose
//! impossible second request is produced with the wall-clock time as its
//! event time; from that time to the decision in the decision log (the
//! revoker's input), p50 and p99; and the same through a whole `serve`
//! instance to the revocation call itself (a subject logout received by an
//! admin API on loopback).
//!
//! `scripts/ensure-tansu && cargo bench --bench e2e` (skipped, with a
//! message, when tansu is not installed).

#[path = "../tests/common/tansu.rs"]
#[allow(dead_code)] // pause/resume are for the fault tests
mod tansu;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{Criterion, Throughput};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokenwatch::config::{KafkaConfig, RawConfig};
use tokenwatch::decide::Alerts;
use tokenwatch::decide::{Flagger, Outbox};
use tokenwatch::detect::{Detector, DetectorParams};
use tokenwatch::geo::GeoHandle;
use tokenwatch::ingest::{self, IngestConsumer, IngestContext, Readiness, ScoringHandler};
use tokenwatch::journal::Audit;
use tokenwatch::metrics::Metrics;
use tokenwatch::model::{Model, ModelArtifact};
use tokenwatch::sim::{self, SimParams, World};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 100_000;
const PARTITIONS: i32 = 4;
const STATE: &str = "tokenwatch.state";

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn geo() -> Arc<GeoHandle> {
    GeoHandle::open(
        vec![repo("data/geo/demo-city.mmdb")],
        Some(repo("data/geo/demo-asn.mmdb")),
    )
    .unwrap()
}

/// Simulated gateway traffic with attacks, keyed by token id.
fn records(geo: &GeoHandle) -> Vec<(String, Vec<u8>)> {
    let world = World::from_geo(&geo.load().db);
    let events = sim::generate(
        &world,
        &SimParams {
            users: 2_000,
            span_ms: 6 * 3600 * 1000,
            ..SimParams::default()
        },
    );
    assert!(events.len() >= EVENTS, "{} simulated events", events.len());
    events
        .iter()
        .take(EVENTS)
        .map(|e| {
            let id = e.sim_token_id(11);
            let json = serde_json::to_vec(&e.to_wire(&id, None, false)).unwrap();
            (id, json)
        })
        .collect()
}

async fn setup(k: &KafkaConfig, records: &[(String, Vec<u8>)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .create()
        .unwrap();
    let topics = [
        NewTopic::new(&k.telemetry_topic, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&k.decisions_topic, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&k.deadletter_topic, 1, TopicReplication::Fixed(1)),
        NewTopic::new(STATE, PARTITIONS, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
    ];
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let p: FutureProducer = ingest::producer_config(k).create().unwrap();
    for chunk in records.chunks(10_000) {
        let sends = chunk.iter().map(|(key, payload)| {
            p.send(
                FutureRecord::to(&k.telemetry_topic)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.unwrap();
        }
    }
}

static GROUP: Mutex<u32> = Mutex::new(0);

fn fresh_group() -> String {
    let mut g = GROUP.lock().unwrap();
    *g += 1;
    format!("bench-{}-{}", std::process::id(), *g)
}

/// A bare consumer: reads every record of the topic and does nothing else.
async fn bare(k: &KafkaConfig) -> Duration {
    let c: StreamConsumer = ingest::consumer_config(k, &fresh_group()).create().unwrap();
    c.subscribe(&[&k.telemetry_topic]).unwrap();
    let start = Instant::now();
    let mut n = 0usize;
    while n < EVENTS {
        let m = c.recv().await.unwrap();
        std::hint::black_box(rdkafka::Message::payload(&m));
        n += 1;
    }
    start.elapsed()
}

/// tokenwatch's scoring consumer from a fresh group until every record is
/// scored (a fresh detector, so every run sees the same work).
async fn tokenwatch(k: &KafkaConfig, geo: &Arc<GeoHandle>, changelog: bool) -> Duration {
    let group = fresh_group();
    let metrics = Arc::new(Metrics::new());
    let consumer: IngestConsumer = ingest::consumer_config(k, &group)
        .create_with_context(IngestContext {
            readiness: None,
            name: "bench",
            metrics: None,
        })
        .unwrap();
    consumer.subscribe(&[&k.telemetry_topic]).unwrap();
    let producer: FutureProducer = ingest::producer_config(k).create().unwrap();
    let model = Arc::new(ArcSwap::from_pointee(Model::new(
        ModelArtifact::load(&repo("models/default.json")).unwrap(),
    )));
    let detector = Detector::new(geo.clone(), model, DetectorParams::default());
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), k.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        Arc::new(Audit::in_memory(100)),
        metrics.clone(),
        None,
    ));
    let log = changelog.then(|| {
        ingest::changelog::Changelog::new(
            STATE.into(),
            PARTITIONS,
            producer.clone(),
            ingest::consumer_config(k, &format!("{group}.state")),
        )
    });
    let handler = ScoringHandler::new(
        Arc::new(std::sync::Mutex::new(detector)),
        producer,
        k.deadletter_topic.clone(),
        flagger,
        metrics.clone(),
    )
    .with_changelog(log, Arc::new(Readiness::default()));
    let stop = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(ingest::run(
        Arc::new(consumer),
        handler,
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    while (metrics.events_consumed.get() as usize) < EVENTS {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    task.await.unwrap();
    took
}

fn main() {
    if tansu::tansu_binary().is_none() {
        eprintln!("e2e bench skipped: tansu is not installed (scripts/ensure-tansu)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = tansu::Tansu::start();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = broker.brokers.clone();
    let k = raw.validate().unwrap().kafka;
    let geo = geo();
    let records = records(&geo);
    rt.block_on(setup(&k, &records));

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .configure_from_args();
    let mut g = c.benchmark_group("e2e_consume");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("bare_rdkafka_consumer", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(bare(&k))).sum())
    });
    g.bench_function("tokenwatch_scoring_consumer", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(tokenwatch(&k, &geo, false)))
                .sum()
        })
    });
    // The same with the state changelog written at every commit.
    g.bench_function("tokenwatch_scoring_consumer_with_changelog", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(tokenwatch(&k, &geo, true)))
                .sum()
        })
    });
    g.finish();
    c.final_summary();
    rt.block_on(latency(&k, &geo));
    rt.block_on(to_revocation(&broker.brokers));
}

const LATENCY_TOPIC: &str = "bench.latency";
const LATENCY_TOKENS: usize = 200;

/// One subject's tokens (an address shared by many subjects is egress,
/// where travel means nothing).
fn live(token: &str, ts_ms: i64, ip: &str, agent: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ts": ts_ms, "token_id": token, "sub": "victim", "ip": ip, "user_agent": agent,
        "method": "GET", "path": "/v1/orders", "status": 200,
        "token_iat": ts_ms / 1000 - 600, "token_exp": ts_ms / 1000 + 3600,
    }))
    .unwrap()
}

/// Event time of an impossible second request → its decision published.
async fn latency(k: &KafkaConfig, geo: &Arc<GeoHandle>) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .create()
        .unwrap();
    let topic = NewTopic::new(LATENCY_TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    for r in admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let consumer: IngestConsumer = ingest::consumer_config(k, &fresh_group())
        .create_with_context(IngestContext {
            readiness: None,
            name: "latency",
            metrics: None,
        })
        .unwrap();
    consumer.subscribe(&[LATENCY_TOPIC]).unwrap();
    let producer: FutureProducer = ingest::producer_config(k).create().unwrap();
    let model = Arc::new(ArcSwap::from_pointee(Model::new(
        ModelArtifact::load(&repo("models/default.json")).unwrap(),
    )));
    let (tx, mut decisions) = tokio::sync::mpsc::unbounded_channel();
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), k.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        Arc::new(Audit::in_memory(100)),
        metrics.clone(),
        Some(tx),
    ));
    let handler = ScoringHandler::new(
        Arc::new(std::sync::Mutex::new(Detector::new(
            geo.clone(),
            model,
            DetectorParams::default(),
        ))),
        producer.clone(),
        k.deadletter_topic.clone(),
        flagger,
        metrics.clone(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest::run(
        Arc::new(consumer),
        handler,
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    let send = |token: String, record: Vec<u8>| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(LATENCY_TOPIC).key(&token).payload(&record),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    // First requests from Paris, all scored before the second ones start.
    let now = tokenwatch::clock::now_ms();
    for i in 0..LATENCY_TOKENS {
        let t = format!("lat-{i}");
        send(
            t.clone(),
            live(
                &t,
                now - 600_000,
                "1.178.90.17",
                "Mozilla/5.0 Firefox/133.0",
            ),
        )
        .await;
    }
    while (metrics.events_consumed.get() as usize) < LATENCY_TOKENS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Decisions are timestamped as they arrive, while the thief sends.
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < LATENCY_TOKENS {
            match tokio::time::timeout(Duration::from_secs(30), decisions.recv()).await {
                Ok(Some(d)) => seen.push((d.token_id, tokenwatch::clock::now_ms())),
                _ => break,
            }
        }
        seen
    });
    // The thief's requests from Sydney, one every 100 ms, event time = now.
    let mut sent_at = std::collections::HashMap::new();
    for i in 0..LATENCY_TOKENS {
        let t = format!("lat-{i}");
        let ts = tokenwatch::clock::now_ms();
        sent_at.insert(t.clone(), ts);
        send(
            t.clone(),
            live(&t, ts, "1.1.1.17", "python-requests/2.32.3"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ms: Vec<i64> = collector
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(token, at)| Some(at - sent_at.remove(&token)?))
        .collect();
    stop.cancel();
    task.await.unwrap();
    ms.sort_unstable();
    let pct = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    if ms.is_empty() {
        eprintln!("detection latency: no decision");
    } else {
        eprintln!(
            "detection latency, event time -> decision published ({} of {LATENCY_TOKENS} stolen tokens flagged): min {} ms, p50 {} ms, p99 {} ms, max {} ms",
            ms.len(),
            ms[0],
            pct(0.5),
            pct(0.99),
            ms[ms.len() - 1]
        );
    }
}

const REVOKE_TOKENS: usize = 100;

/// A Keycloak-shaped admin API on loopback: when each subject's logout
/// arrived.
async fn logout_api() -> (String, Arc<Mutex<std::collections::HashMap<String, i64>>>) {
    use axum::extract::{Path, State};
    type Seen = Arc<Mutex<std::collections::HashMap<String, i64>>>;
    async fn logout(State(seen): State<Seen>, Path(user): Path<String>) -> axum::http::StatusCode {
        seen.lock()
            .unwrap()
            .entry(user)
            .or_insert_with(tokenwatch::clock::now_ms);
        axum::http::StatusCode::NO_CONTENT
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/admin/realms/acme/users/{user}/logout",
            axum::routing::post(logout),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, seen)
}

/// Event time of an impossible second request → the subject logout call
/// received, through `serve` (scoring consumer, decision log, revoker), with
/// `detect.impossible_travel_revokes` so that one hop revokes.
async fn to_revocation(brokers: &str) {
    let (base, seen) = logout_api().await;
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.group_id = fresh_group();
    let names = [
        "telemetry",
        "decisions",
        "deadletter",
        "audit",
        "denylist",
        "alerts",
    ];
    let topic = |n: &str| format!("bench.revoke.{n}");
    raw.kafka.telemetry_topic = topic("telemetry");
    raw.kafka.decisions_topic = topic("decisions");
    raw.kafka.deadletter_topic = topic("deadletter");
    raw.kafka.audit_topic = topic("audit");
    raw.kafka.denylist_topic = topic("denylist");
    raw.kafka.alerts_topic = topic("alerts");
    raw.kafka.state_topic = String::new();
    raw.http.listen = "127.0.0.1:0".into();
    raw.detect.impossible_travel_revokes = true;
    raw.respond.mode = tokenwatch::respond::Mode::Revoke;
    // 100 revocations in a few seconds are what the brake exists to stop.
    raw.respond.brake.max_revocations = 10 * REVOKE_TOKENS;
    raw.respond
        .subject_logout
        .push(tokenwatch::config::RawLogout {
            name: "keycloak".into(),
            preset: Some(tokenwatch::respond::Preset::Keycloak),
            base_url: base,
            realm: Some("acme".into()),
            bearer_token: Some("bench".into()),
            ..Default::default()
        });
    let cfg = raw.validate().unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let specs: Vec<(String, i32)> = names
        .iter()
        .map(|n| (topic(n), if *n == "telemetry" { PARTITIONS } else { 1 }))
        .collect();
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (btx, brx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(tokenwatch::serve::serve(
        cfg.clone(),
        stop.clone(),
        tokenwatch::serve::Hooks {
            http_bound: Some(btx),
            metrics: Some(metrics.clone()),
            ..Default::default()
        },
    ));
    let http = brx.await.unwrap().api;
    let ready = format!("http://{http}/readyz");
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer: FutureProducer = ingest::producer_config(&cfg.kafka).create().unwrap();
    let send = |token: String, record: Vec<u8>| {
        let (producer, t) = (producer.clone(), cfg.kafka.telemetry_topic.clone());
        async move {
            producer
                .send(
                    FutureRecord::to(&t).key(&token).payload(&record),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    let now = tokenwatch::clock::now_ms();
    for i in 0..REVOKE_TOKENS {
        let t = format!("rev-{i}");
        // Each victim and each thief in a /48 of its own (London, Sydney):
        // an address many subjects share is egress, where travel means
        // nothing.
        let home = format!("2a02:c78:{:x}::17", 0x200 + i);
        let mut rec: serde_json::Value =
            serde_json::from_slice(&live(&t, now - 600_000, &home, "Mozilla/5.0 Firefox/133.0"))
                .unwrap();
        rec["sub"] = format!("victim-{i}").into();
        send(t, serde_json::to_vec(&rec).unwrap()).await;
    }
    while (metrics.events_consumed.get() as usize) < REVOKE_TOKENS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut sent_at = std::collections::HashMap::new();
    for i in 0..REVOKE_TOKENS {
        let t = format!("rev-{i}");
        let ts = tokenwatch::clock::now_ms();
        let mut rec: serde_json::Value = serde_json::from_slice(&live(
            &t,
            ts,
            &format!("2001:201:{:x}::17", i + 1),
            "python-requests/2.32.3",
        ))
        .unwrap();
        rec["sub"] = format!("victim-{i}").into();
        sent_at.insert(format!("victim-{i}"), ts);
        send(t, serde_json::to_vec(&rec).unwrap()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < REVOKE_TOKENS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = task.await;
    let mut ms: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(sub, at)| Some(at - sent_at.get(sub)?))
        .collect();
    ms.sort_unstable();
    if ms.is_empty() {
        eprintln!("detection latency to the revocation call: no call");
        return;
    }
    let pct = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    eprintln!(
        "detection latency, event time -> subject logout received through serve ({} of {REVOKE_TOKENS} stolen tokens): min {} ms, p50 {} ms, p99 {} ms, max {} ms",
        ms.len(),
        ms[0],
        pct(0.5),
        pct(0.99),
        ms[ms.len() - 1]
    );
}
