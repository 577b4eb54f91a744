//! Shared fixtures: the committed demo geo database and model, telemetry
//! builders, and an in-process Kafka cluster (librdkafka's mock cluster).
#![allow(dead_code)]

pub mod idp;
pub mod instance;
pub mod kafka;
pub mod tansu;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokenwatch::detect::{Detector, DetectorParams, ModelHandle};
use tokenwatch::geo::GeoHandle;
use tokenwatch::model::{Model, ModelArtifact};

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn geo() -> Arc<GeoHandle> {
    GeoHandle::open(
        vec![repo("data/geo/demo-city.mmdb")],
        Some(repo("data/geo/demo-asn.mmdb")),
    )
    .expect("demo geo databases load")
}

pub fn model() -> ModelHandle {
    let a = ModelArtifact::load(&repo("models/default.json")).expect("default model loads");
    Arc::new(ArcSwap::from_pointee(Model::new(a)))
}

pub fn detector() -> Detector {
    detector_with(DetectorParams::default())
}

#[allow(dead_code)]
pub fn detector_with(params: DetectorParams) -> Detector {
    Detector::new(geo(), model(), params)
}

/// Addresses the demo database places in known cities (DB-IP Lite).
pub const PARIS: &str = "1.178.90.17";
pub const PARIS_V6: &str = "2001:460:8df0::17";
pub const LYON: &str = "2.3.0.17";
pub const MARSEILLE: &str = "2.16.87.17";
pub const SINGAPORE: &str = "1.32.200.17";
pub const SYDNEY: &str = "1.1.1.17";
pub const NEW_YORK: &str = "2.21.116.17";

/// What replay tooling sends: a thief's client.
#[allow(dead_code)]
pub const TOOL: &str = "python-requests/2.32.3";
pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// A telemetry record as JSON bytes. `t_s` is seconds after a fixed origin.
pub fn record(token: &str, t_s: f64, ip: &str, ua: &str) -> Vec<u8> {
    record_for(token, "alice", t_s, ip, ua)
}

/// The same, for another subject.
pub fn record_for(token: &str, sub: &str, t_s: f64, ip: &str, ua: &str) -> Vec<u8> {
    let ts = 1_795_428_000_000i64 + (t_s * 1000.0) as i64;
    serde_json::to_vec(&serde_json::json!({
        "ts": ts, "token_id": token, "sub": sub, "ip": ip, "user_agent": ua,
        "method": "GET", "path": "/v1/orders", "status": 200,
        "token_iat": 1_795_428_000i64 - 60, "token_exp": 1_795_428_000i64 + 3600,
    }))
    .expect("json")
}

/// A request `ago_s` seconds before now by a token that expires an hour
/// from now (records from the fixed origin of [`record`] belong to tokens
/// long expired by the wall clock, and a running service forgets those).
pub fn live(token: &str, sub: &str, ago_s: i64, ip: &str, ua: &str) -> Vec<u8> {
    live_at(
        token,
        sub,
        tokenwatch::clock::now_ms() - ago_s * 1000,
        ip,
        ua,
    )
}

/// The same at event time `at_ms` (ms since the epoch). The subject is
/// marked verified, as a producer that checked the token's signature marks
/// it (tests/adversarial.rs sends unverified ones).
pub fn live_at(token: &str, sub: &str, at_ms: i64, ip: &str, ua: &str) -> Vec<u8> {
    let now_s = tokenwatch::clock::now_ms() / 1000;
    serde_json::to_vec(&serde_json::json!({
        "ts": at_ms, "token_id": token, "sub": sub, "sub_verified": true, "ip": ip,
        "user_agent": ua, "method": "GET", "path": "/v1/orders", "status": 200,
        "token_iat": now_s - 3600, "token_exp": now_s + 3600,
    }))
    .expect("json")
}

/// Reads `topic` (partition 0) from the beginning until `n` messages or
/// `secs` pass; returns the payloads as JSON.
/// A revoke decision as the detector writes it (impossible travel), with
/// an unverified subject and no handle; tests of the response path set
/// what they need.
pub fn revoke_decision(token_id: &str, sub: &str) -> tokenwatch::decide::Decision {
    use tokenwatch::decide::Decision;
    use tokenwatch::detect::Action;
    Decision {
        decision_id: Decision::decision_id(token_id, Action::Revoke),
        token_id: token_id.into(),
        sub: sub.into(),
        subject_verified: false,
        tenant: None,
        client_id: None,
        action: Action::Revoke,
        score: 0.99,
        model_version: "test".into(),
        explanation: "impossible travel".into(),
        rule: Some("impossible_travel".into()),
        event_ts_ms: 0,
        decided_at_ms: 0,
        token_handle: None,
        token_exp: None,
    }
}

pub fn topic_json(brokers: &str, topic: &str, n: usize, secs: u64) -> Vec<serde_json::Value> {
    topic_json_all(brokers, topic, 1, n, secs)
}

/// Reads every partition of `topic` from the beginning until `n` messages
/// or `secs` pass.
pub fn topic_json_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    secs: u64,
) -> Vec<serde_json::Value> {
    topic_records(brokers, topic, partitions, n, secs)
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v.unwrap_or_default()).expect("json"))
        .collect()
}

/// Keys and payloads (`None`: a tombstone) of every partition of `topic`,
/// from the beginning, until `n` messages or `secs` pass.
pub fn topic_records(
    brokers: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    secs: u64,
) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader-all")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(std::time::Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            out.push((key, m.payload().map(<[u8]>::to_vec)));
        }
    }
    out
}

/// The demo City database with its metadata's `node_count` raised past the
/// end of the file: the corruption of MaxMind's own
/// `GeoIP2-City-Test-Invalid-Node-Count.mmdb`, on which maxminddb's lookup
/// panics.
pub fn invalid_node_count(dir: &std::path::Path) -> std::path::PathBuf {
    let mut b = std::fs::read(repo("data/geo/demo-city.mmdb")).unwrap();
    let marker = b"\xab\xcd\xefMaxMind.com";
    let meta = b
        .windows(marker.len())
        .rposition(|w| w == marker)
        .expect("metadata marker");
    let key = b[meta..]
        .windows(10)
        .position(|w| w == b"node_count")
        .expect("node_count key")
        + meta
        + 10;
    // A 2-byte uint32 (0xC2) in the demo file; made 65535.
    assert_eq!(b[key], 0xc2);
    b[key + 1] = 0xff;
    b[key + 2] = 0xff;
    let path = dir.join("invalid-node-count.mmdb");
    std::fs::write(&path, b).unwrap();
    path
}

/// The read credential the instance tests configure (`http.read_token`).
pub const READ_TOKEN: &str = "test-read-token-0123456789";

/// A read route of a running instance, with the read credential.
pub async fn read_view(client: &reqwest::Client, url: String) -> String {
    client
        .get(url)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("reachable")
        .text()
        .await
        .expect("text")
}

/// A loopback port nothing listens on yet.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every log line the process writes from now on (JSON, DEBUG and up), for
/// tests that prove what never appears in logs. Once per test binary.
#[allow(dead_code)]
pub fn capture_logs() -> Logs {
    let logs = Logs::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .init();
    logs
}

#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    #[allow(dead_code)]
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `f` every 50 ms until it holds; fails the test after `secs`.
pub async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits (up to 60 s) until the service at `addr` answers `/readyz` with 2xx.
#[allow(dead_code)]
pub async fn wait_ready(addr: std::net::SocketAddr) {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
