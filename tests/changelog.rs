//! Per-token state follows its partition: instance A sees a token's first
//! request and goes away; instance B, newly assigned the partition, reads
//! the state changelog back and flags the impossible second request. Without
//! the changelog B sees a first request and says nothing, which is what
//! proves the changelog did it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::decide::Decision;
use tokenwatch::metrics::Metrics;
use tokenwatch::respond::Mode;
use tokenwatch::serve::{serve, Hooks};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

fn config(brokers: &str, state_topic: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.kafka.state_topic = state_topic.into();
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Shadow;
    raw.validate().unwrap()
}

/// A telemetry record at wall-clock time minus `ago_s`, for a live token.
fn live(token: &str, ago_s: i64, ip: &str, agent: &str) -> Vec<u8> {
    let now_ms = tokenwatch::clock::now_ms();
    serde_json::to_vec(&serde_json::json!({
        "ts": now_ms - ago_s * 1000, "token_id": token, "sub": "victim", "ip": ip,
        "user_agent": agent, "method": "GET", "path": "/v1/orders", "status": 200,
        "token_iat": now_ms / 1000 - 3600, "token_exp": now_ms / 1000 + 3600,
    }))
    .unwrap()
}

struct Instance {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<
        Result<tokenwatch::serve::ServeReport, tokenwatch::serve::ServeError>,
    >,
    metrics: Arc<Metrics>,
    decisions: mpsc::UnboundedReceiver<Decision>,
}

async fn start(cfg: &Config) -> Instance {
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let (dtx, decisions) = mpsc::unbounded_channel();
    let (btx, brx) = oneshot::channel();
    let task = tokio::spawn(serve(
        cfg.clone(),
        stop.clone(),
        Hooks {
            decisions: Some(dtx),
            settled: None,
            http_bound: Some(btx),
            metrics: Some(metrics.clone()),
        },
    ));
    wait_ready(brx.await.unwrap()).await;
    Instance {
        stop,
        task,
        metrics,
        decisions,
    }
}

async fn send(brokers: &str, topic: &str, token: &str, record: Vec<u8>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(token).payload(&record),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

/// A's first request, A gone, B's impossible second one: B's decisions.
/// The cluster is returned so that it outlives B's shutdown (a dropped mock
/// cluster leaves B's final commit talking to nobody).
async fn failover(
    state_topic: &str,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Instance,
    Option<Decision>,
) {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers, state_topic);
    let k = cfg.kafka.clone();
    cluster.create_topic(&k.telemetry_topic, 2, 1).unwrap();
    cluster.create_topic("tokenwatch.state", 2, 1).unwrap();
    for t in [&k.decisions_topic, &k.deadletter_topic, &k.audit_topic] {
        cluster.create_topic(t, 1, 1).unwrap();
    }

    let t = Instant::now();
    let a = start(&cfg).await;
    eprintln!("A ready in {:?}", t.elapsed());
    let t = Instant::now();
    send(
        &brokers,
        &k.telemetry_topic,
        "stolen",
        live("stolen", 600, PARIS, BROWSER),
    )
    .await;
    wait_until("A scored the first request", 20, || {
        a.metrics.events_consumed.get() >= 1
    })
    .await;
    if !state_topic.is_empty() {
        wait_until("A wrote the token's state", 20, || {
            a.metrics.state_writes.with_label_values(&["ok"]).get() >= 1
        })
        .await;
    }
    eprintln!("A scored and wrote in {:?}", t.elapsed());
    let t = Instant::now();
    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    eprintln!("A stopped in {:?}", t.elapsed());

    let t = Instant::now();
    let mut b = start(&cfg).await;
    eprintln!("B ready in {:?}", t.elapsed());
    send(
        &brokers,
        &k.telemetry_topic,
        "stolen",
        live("stolen", 0, SYDNEY, TOOL),
    )
    .await;
    let t = Instant::now();
    let d = tokio::time::timeout(Duration::from_secs(10), b.decisions.recv())
        .await
        .ok()
        .flatten();
    eprintln!("B decided in {:?}", t.elapsed());
    b.stop.cancel();
    (cluster, b, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_spanning_a_failover_is_made_from_the_changelog() {
    let (_cluster, b, d) = failover("tokenwatch.state").await;
    let d = d.expect("B flags the token whose first request A saw");
    assert_eq!(d.token_id, "stolen");
    assert_eq!(d.rule.as_deref(), Some("impossible_travel"), "{d:?}");
    assert!(b.metrics.state_restored.get() >= 1);
    let _ = b.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_changelog_the_successor_sees_only_half_the_story() {
    let (_cluster, b, d) = failover("").await;
    assert!(d.is_none(), "flagged without A's state: {d:?}");
    assert_eq!(b.metrics.state_restored.get(), 0);
    let _ = b.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_handed_over_in_a_rebalance_keep_their_tokens_history() {
    const TOKENS: usize = 12;
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut cfg = config(&brokers, "tokenwatch.state");
    // No commit tick between the first requests and the hand-over: what
    // the successor learns, it learns from the rebalance alone.
    cfg.kafka.commit_interval = Duration::from_secs(120);
    let k = cfg.kafka.clone();
    cluster.create_topic(&k.telemetry_topic, 2, 1).unwrap();
    cluster.create_topic("tokenwatch.state", 2, 1).unwrap();
    for t in [&k.decisions_topic, &k.deadletter_topic, &k.audit_topic] {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    let token = |i: usize| format!("moving-{i}");
    let mut a = start(&cfg).await;
    for i in 0..TOKENS {
        let t = token(i);
        send(
            &brokers,
            &k.telemetry_topic,
            &t,
            live(&t, 600, PARIS, BROWSER),
        )
        .await;
    }
    wait_until("A scored every first request", 20, || {
        a.metrics.events_consumed.get() >= TOKENS as u64
    })
    .await;
    // B joins: the group moves one of A's two partitions to it.
    let mut b = start(&cfg).await;
    for i in 0..TOKENS {
        let t = token(i);
        send(&brokers, &k.telemetry_topic, &t, live(&t, 0, SYDNEY, TOOL)).await;
    }
    let mut decided = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while decided.len() < TOKENS && Instant::now() < deadline {
        tokio::select! {
            Some(d) = a.decisions.recv() => { decided.insert(d.token_id, "A"); }
            Some(d) = b.decisions.recv() => { decided.insert(d.token_id, "B"); }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let by_b = decided.values().filter(|w| **w == "B").count();
    eprintln!("{} of {TOKENS} decided, {by_b} by B", decided.len());
    assert!(by_b >= 1, "B took a partition over: {decided:?}");
    assert_eq!(
        decided.len(),
        TOKENS,
        "every token decided, those B took over included: {decided:?}"
    );
    a.stop.cancel();
    b.stop.cancel();
    let _ = a.task.await;
    let _ = b.task.await;
}
