//! The HTTP listeners of a whole `serve` instance (mock cluster): each
//! audience only where it is configured, and what one connection may cost
//! (header-read and request timeouts, a connection cap). A client that
//! opens connections and sends nothing, or sends a body one byte at a time,
//! must not hold the listener the gateways' edge checks go through.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::instance::{self, Instance};
use common::kafka::create_mock_topics;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokenwatch::config::RawConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SCORE_TOKEN: &str = "test-score-token-0123456789";

struct Rig {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    instance: Instance,
}

async fn rig(tune: impl FnOnce(&mut RawConfig)) -> Rig {
    let cluster = MockCluster::new(1).unwrap();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.http.listen = "127.0.0.1:0".into();
    raw.http.read_token = READ_TOKEN.into();
    raw.http.score_token = SCORE_TOKEN.into();
    raw.respond.denylist.enabled = true;
    tune(&mut raw);
    let cfg = raw.validate().unwrap();
    create_mock_topics(&cluster, &cfg.kafka, 2);
    let (dtx, _drx) = mpsc::unbounded_channel();
    let instance = instance::start(cfg, dtx).await;
    wait_ready(instance.http).await;
    Rig {
        _cluster: cluster,
        instance,
    }
}

impl Rig {
    async fn stop(self) {
        self.instance.stop.cancel();
        let _ = self.instance.task.await;
    }
}

/// The status of `GET path` (with the read credential) at `addr`.
async fn status(addr: SocketAddr, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(READ_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Reads until the peer closes or `within` passes: the bytes read, and
/// whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audience_is_served_only_on_its_own_listener() {
    let r = rig(|raw| {
        raw.http.edge_listen = "127.0.0.1:0".into();
        raw.http.metrics_listen = "127.0.0.1:0".into();
    })
    .await;
    let b = r.instance.bound;
    assert!(b.api != b.edge && b.edge != b.metrics && b.api != b.metrics);

    // The API: reads and scoring, not the edge check or the metrics.
    assert_eq!(status(b.api, "/v1/policy").await, 200);
    assert_eq!(status(b.api, "/v1/check").await, 404);
    assert_eq!(status(b.api, "/metrics").await, 404);
    // The gateways' listener: the edge check alone.
    assert_eq!(status(b.edge, "/v1/check").await, 200);
    assert_eq!(status(b.edge, "/v1/check/orders/7").await, 200);
    assert_eq!(status(b.edge, "/v1/policy").await, 404);
    assert_eq!(status(b.edge, "/v1/alerts").await, 404);
    assert_eq!(status(b.edge, "/metrics").await, 404);
    // Prometheus's: the metrics alone.
    assert_eq!(status(b.metrics, "/metrics").await, 200);
    assert_eq!(status(b.metrics, "/v1/check").await, 404);
    assert_eq!(status(b.metrics, "/v1/policy").await, 404);
    // Every listener can be probed where it is exposed.
    for addr in [b.api, b.edge, b.metrics] {
        assert_eq!(status(addr, "/readyz").await, 200, "{addr}");
    }
    let text = reqwest::get(format!("http://{}/metrics", b.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"tokenwatch_http_connections{listener="edge"}"#),
        "connections are counted per listener"
    );
    // The two edge checks above were timed (and no other route was).
    assert!(
        text.contains("tokenwatch_check_seconds_count 2"),
        "{}",
        text.lines()
            .filter(|l| l.contains("check_seconds"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listeners_of_their_own_every_audience_shares_the_api() {
    let r = rig(|_| {}).await;
    let b = r.instance.bound;
    assert!(b.api == b.edge && b.api == b.metrics);
    for path in ["/v1/policy", "/v1/check", "/metrics"] {
        assert_eq!(status(b.api, path).await, 200, "{path}");
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    let r = rig(|raw| raw.http.header_read_timeout = Duration::from_millis(500)).await;
    let addr = r.instance.http;
    // Slowloris: part of a head, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/policy HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // And a connection that sends nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent head holds its connection open");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "a silent connection is held open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // A client that does send its request is served as before.
    assert_eq!(status(addr, "/v1/policy").await, 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408() {
    let r = rig(|raw| raw.http.request_timeout = Duration::from_millis(500)).await;
    let mut s = TcpStream::connect(r.instance.http).await.unwrap();
    let head = format!(
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCORE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"ts\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body is answered {answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let r = rig(|raw| {
        raw.http.max_connections = 2;
        raw.http.header_read_timeout = Duration::from_millis(1500);
    })
    .await;
    let addr = r.instance.http;
    // wait_ready's client keeps its connection alive until it is dropped;
    // let the listener see it go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let third = tokio::spawn(status(addr, "/healthz"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third connection is served while two are held (cap 2)"
    );
    // The held ones time out; the third is served then, not refused.
    assert_eq!(third.await.unwrap(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(4),
        "served after {waited:?}"
    );
    drop(held);
    r.stop().await;
}
