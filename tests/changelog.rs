//! Per-token state follows its partition: instance A sees a token's first
//! request and goes away; instance B, newly assigned the partition, reads
//! the state changelog back and flags the impossible second request. Without
//! the changelog B sees a first request and says nothing, which is what
//! proves the changelog did it.

mod common;

use std::time::{Duration, Instant};

use common::instance::{self, Instance};
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::decide::Decision;
use tokenwatch::respond::Mode;
use tokio::sync::mpsc;

fn config(brokers: &str, state_topic: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.kafka.state_topic = state_topic.into();
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Shadow;
    raw.validate().unwrap()
}

/// A request by the victim's token `ago_s` seconds ago.
fn live(token: &str, ago_s: i64, ip: &str, agent: &str) -> Vec<u8> {
    common::live(token, "victim", ago_s, ip, agent)
}

/// An instance (the shared fixture) with its decisions, once ready.
async fn start(cfg: &Config) -> (Instance, mpsc::UnboundedReceiver<Decision>) {
    let (dtx, decisions) = mpsc::unbounded_channel();
    let i = instance::start(cfg.clone(), dtx).await;
    wait_ready(i.http).await;
    (i, decisions)
}

async fn send(brokers: &str, topic: &str, token: &str, record: Vec<u8>) {
    produce(brokers, topic, &[(token.to_owned(), record)]).await;
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
    create_mock_topics(&cluster, &k, 2);
    if state_topic.is_empty() {
        // The same topics as with the changelog, so only its use differs.
        cluster.create_topic("tokenwatch.state", 2, 1).unwrap();
    }

    let t = Instant::now();
    let (a, _) = start(&cfg).await;
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
    let (b, mut decisions) = start(&cfg).await;
    eprintln!("B ready in {:?}", t.elapsed());
    send(
        &brokers,
        &k.telemetry_topic,
        "stolen",
        live("stolen", 0, SYDNEY, TOOL),
    )
    .await;
    let t = Instant::now();
    // B must have scored the request: a B that read nothing would also
    // decide nothing, and prove nothing about the changelog.
    wait_until("B scored the second request", 20, || {
        b.metrics.events_consumed.get() >= 1
    })
    .await;
    let d = tokio::time::timeout(Duration::from_secs(5), decisions.recv())
        .await
        .ok()
        .flatten();
    eprintln!("B scored and decided in {:?}", t.elapsed());
    b.stop.cancel();
    (cluster, b, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_spanning_a_failover_is_made_from_the_changelog() {
    let (_cluster, b, d) = failover("tokenwatch.state").await;
    let d = d.expect("B flags the token whose first request A saw");
    assert_eq!(d.token_id, "stolen");
    assert_eq!(d.rule.as_deref(), Some("travel_to_unknown_egress"), "{d:?}");
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
    create_mock_topics(&cluster, &k, 2);
    let token = |i: usize| format!("moving-{i}");
    let (a, mut a_decisions) = start(&cfg).await;
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
    let (b, mut b_decisions) = start(&cfg).await;
    for i in 0..TOKENS {
        let t = token(i);
        send(&brokers, &k.telemetry_topic, &t, live(&t, 0, SYDNEY, TOOL)).await;
    }
    let mut decided = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while decided.len() < TOKENS && Instant::now() < deadline {
        tokio::select! {
            Some(d) = a_decisions.recv() => { decided.insert(d.token_id, "A"); }
            Some(d) = b_decisions.recv() => { decided.insert(d.token_id, "B"); }
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
