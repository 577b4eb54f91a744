//! NGINX access logs read straight off a topic by `serve` (librdkafka's mock
//! cluster, the whole service): a stolen opaque token is flagged from the
//! gateway's own records, a malformed record is dead-lettered with its
//! reason, and the raw token appears in no topic, log line, metric or state.

mod common;

use std::time::Duration;

use common::instance::{self, Instance};
use common::kafka::create_mock_topics;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokenwatch::config::RawConfig;
use tokenwatch::decide::Decision;
use tokenwatch::seal::Sealer;
use tokio::sync::mpsc;

const STOLEN: &str = "stolen-opaque-token-3f9a1c77d2e4";
const OTHER: &str = "other-users-token-b81c0e55aa19";

async fn get_text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn nginx(t_s: i64, ip: &str, token: &str) -> Vec<u8> {
    let ts = time::OffsetDateTime::from_unix_timestamp(1_795_428_000 + t_s).unwrap();
    let time = ts
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    serde_json::to_vec(&serde_json::json!({
        "time": time, "remote_addr": "10.0.0.12", "x_forwarded_for": ip,
        "method": "GET", "uri": "/v1/orders", "status": "200", "bytes": "512",
        "request_time": "0.010", "user_agent": BROWSER, "authorization": format!("Bearer {token}"),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_in_nginx_logs_is_flagged_and_never_leaks() {
    let logs = capture_logs();

    let cluster = MockCluster::new(1).unwrap();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = tokenwatch::respond::Mode::Shadow;
    let key = Sealer::generate_key();
    raw.respond.seal_keys.insert("k1".into(), key);
    raw.gateway.hash_key = "gateway-hash-key-for-tests".into();
    raw.gateway.trusted_proxies = vec!["10.0.0.0/8".into()];
    raw.gateway.inputs = vec![serde_json::from_value(serde_json::json!({
        "topic": "nginx.access", "format": "nginx"
    }))
    .unwrap()];
    raw.http.read_token = READ_TOKEN.into();
    let cfg = raw.validate().unwrap();
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 2);
    cluster.create_topic("nginx.access", 3, 1).unwrap();

    let (dtx, mut drx) = mpsc::unbounded_channel::<Decision>();
    let Instance {
        metrics: _,
        stop,
        task: service,
        http,
        ..
    } = instance::start(cfg.clone(), dtx).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    // Random keys, as a log shipper would: every record to any partition.
    let records = [
        nginx(0, PARIS, STOLEN),
        nginx(30, PARIS, OTHER),
        nginx(600, SINGAPORE, STOLEN),
        br#"{"time":"2026-11-23T10:00:00Z","remote_addr":"81.2.69.142","method":"GET","uri":"/","status":"200","authorization":"bearer"}"#.to_vec(),
    ];
    for (i, r) in records.iter().enumerate() {
        producer
            .send(
                FutureRecord::to("nginx.access")
                    .key(&format!("k{i}"))
                    .partition(0)
                    .payload(r),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let d = tokio::time::timeout(Duration::from_secs(30), drx.recv())
        .await
        .expect("a decision within 30 s")
        .unwrap();
    let stolen_id = tokenwatch::telemetry::keyed_token_id(b"gateway-hash-key-for-tests", STOLEN);
    assert_eq!(d.token_id, stolen_id);
    assert_eq!(d.rule.as_deref(), Some("travel_to_unknown_egress"));
    let handle = d
        .token_handle
        .as_deref()
        .expect("the adapter sealed the token");
    assert_eq!(
        cfg.respond
            .sealer
            .as_ref()
            .unwrap()
            .open(&d.token_id, handle)
            .unwrap(),
        STOLEN
    );

    let dead = topic_json(&k.brokers, &k.deadletter_topic, 1, 20);
    assert_eq!(dead.len(), 1, "the malformed record is dead-lettered");

    // Everything the service exposes or wrote, searched for the raw tokens.
    let client = reqwest::Client::new();
    let metrics_text = get_text(&client, format!("http://{http}/metrics")).await;
    assert!(
        metrics_text.contains("tokenwatch_deadletters_total{reason=\"not_bearer\"} 1"),
        "{metrics_text}"
    );
    let token_view = read_view(&client, format!("http://{http}/v1/tokens/{stolen_id}")).await;
    assert!(token_view.contains("\"requests\":2"), "{token_view}");
    let alerts = read_view(&client, format!("http://{http}/v1/alerts")).await;
    let audit = read_view(&client, format!("http://{http}/v1/audit")).await;
    let mut published = Vec::new();
    for t in [
        &k.telemetry_topic,
        &k.decisions_topic,
        &k.deadletter_topic,
        &k.audit_topic,
    ] {
        published.extend(topic_json(&k.brokers, t, 100, 2));
    }
    stop.cancel();
    let _ = service.await;
    let logs = logs.text();
    assert!(logs.contains("token flagged"), "logs were captured");
    for (what, text) in [
        ("metrics", metrics_text),
        ("token state", token_view),
        ("alerts", alerts),
        ("audit", audit),
        ("topics", serde_json::to_string(&published).unwrap()),
        ("logs", logs),
    ] {
        for raw in [STOLEN, OTHER] {
            assert!(!text.contains(raw), "raw token in {what}");
        }
    }
}
