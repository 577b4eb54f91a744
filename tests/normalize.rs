//! The normalize stage in front of a fleet: raw NGINX logs published with
//! random keys to different partitions are republished keyed by token id, so
//! two scoring instances in one consumer group still see a token's requests
//! in one place and make the impossible-travel detection, once. No raw token
//! reaches the telemetry topic.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::instance;
use common::kafka::create_mock_topics;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::decide::Decision;
use tokenwatch::metrics::Metrics;
use tokenwatch::respond::Mode;
use tokenwatch::serve::{normalize, NormalizeHooks};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const RAW: &str = "nginx.access";
const STOLEN: &str = "opaque-stolen-7c1d55e0a9b3";
const HASH_KEY: &str = "normalize-test-hash-key";

fn config(brokers: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Shadow;
    raw.gateway.hash_key = HASH_KEY.into();
    raw.gateway.trusted_proxies = vec!["10.0.0.0/8".into()];
    raw.gateway.mode = tokenwatch::config::GatewayMode::Normalize;
    raw.gateway.inputs =
        vec![serde_json::from_value(serde_json::json!({"topic": RAW, "format": "nginx"})).unwrap()];
    raw.validate().unwrap()
}

fn nginx(t_s: i64, ip: &str, token: &str) -> Vec<u8> {
    let ts = time::OffsetDateTime::from_unix_timestamp(1_795_428_000 + t_s).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "time": ts.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "remote_addr": "10.0.0.12", "x_forwarded_for": ip, "method": "GET", "uri": "/v1/orders",
        "status": "200", "user_agent": BROWSER, "authorization": format!("Bearer {token}"),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_normalize_detect_a_split_impossible_pair_once() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers);
    let k = cfg.kafka.clone();
    cluster.create_topic(RAW, 3, 1).unwrap();
    create_mock_topics(&cluster, &k, 4);
    let stop = CancellationToken::new();

    let (ntx, nrx) = oneshot::channel();
    let nmetrics = Arc::new(Metrics::new());
    let norm = tokio::spawn(normalize(
        cfg.clone(),
        stop.clone(),
        NormalizeHooks {
            http_bound: Some(ntx),
            metrics: Some(nmetrics.clone()),
        },
    ));
    let (dtx, mut drx) = mpsc::unbounded_channel::<Decision>();
    let mut instances = Vec::new();
    let mut addrs = vec![nrx.await.unwrap()];
    for _ in 0..2 {
        let i = instance::start(cfg.clone(), dtx.clone()).await;
        addrs.push(i.http);
        instances.push(i);
    }
    for a in &addrs {
        wait_ready(*a).await;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    // The pair's two requests go to different raw partitions; other users'
    // traffic is sprinkled over all three.
    let mut records = vec![
        (0, nginx(0, PARIS, STOLEN)),
        (2, nginx(600, SINGAPORE, STOLEN)),
    ];
    for i in 0..12 {
        records.push((
            i % 3,
            nginx(i64::from(i) * 20, LYON, &format!("opaque-user-{i}")),
        ));
    }
    for (partition, r) in &records {
        let key = format!("random-{}", rand::random::<u32>());
        producer
            .send(
                FutureRecord::to(RAW)
                    .partition(*partition)
                    .key(&key)
                    .payload(r),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let d = tokio::time::timeout(Duration::from_secs(30), drx.recv())
        .await
        .expect("detected")
        .unwrap();
    let stolen_id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), STOLEN);
    assert_eq!(d.token_id, stolen_id);
    assert_eq!(d.rule.as_deref(), Some("travel_to_unknown_egress"));
    // Once: no second instance flags it from half the story.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), drx.recv())
            .await
            .is_err(),
        "flagged more than once"
    );
    assert_eq!(nmetrics.records_normalized.get(), records.len() as u64);

    let telemetry = topic_json_all(&brokers, &k.telemetry_topic, 4, records.len(), 10);
    assert_eq!(telemetry.len(), records.len());
    let text = serde_json::to_string(&telemetry).unwrap();
    assert!(
        !text.contains(STOLEN) && !text.contains("opaque-user-"),
        "raw token on the telemetry topic"
    );
    stop.cancel();
    let _ = norm.await;
    for i in instances {
        i.stop.cancel();
        let _ = i.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_commits_all_that_was_normalized_and_a_restart_publishes_none_of_it_again() {
    // Tens of thousands of records read back to back. Before, a finished
    // delivery polled once by a loop that had spent its cooperative budget
    // read as "given up": no offset was stored after it, so the stop
    // committed almost nothing and a restart re-published nearly all.
    const N: usize = 20_000;
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers);
    let k = cfg.kafka.clone();
    cluster.create_topic(RAW, 2, 1).unwrap();
    create_mock_topics(&cluster, &k, 2);
    let records: Vec<(String, Vec<u8>)> = (0..N)
        .map(|i| {
            (
                format!("k{i}"),
                nginx(i as i64 / 50, LYON, &format!("opaque-user-{}", i % 500)),
            )
        })
        .collect();
    common::kafka::produce(&brokers, RAW, &records).await;

    let run = |metrics: Arc<Metrics>| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(normalize(
            cfg.clone(),
            stop.clone(),
            NormalizeHooks {
                http_bound: None,
                metrics: Some(metrics),
            },
        ));
        (stop, task)
    };
    let metrics = Arc::new(Metrics::new());
    let (stop, task) = run(metrics.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while metrics.records_normalized.get() < N as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} normalized",
            metrics.records_normalized.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(stats.handled, N as u64);

    let group = format!("{}.normalize", k.group_id);
    for (p, (committed, high)) in common::kafka::committed_and_high(&brokers, &group, RAW, 2)
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            committed, high,
            "partition {p}: committed {committed} of {high}"
        );
    }
    // A restart in the same group has nothing left to read.
    let again = Arc::new(Metrics::new());
    let (stop, task) = run(again.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    let _ = task.await;
    assert_eq!(
        again.records_normalized.get(),
        0,
        "published again after a clean stop"
    );
    let telemetry = topic_records(&brokers, &k.telemetry_topic, 2, N + 1, 10);
    assert_eq!(
        telemetry.len(),
        N,
        "every record once on the telemetry topic"
    );
}
