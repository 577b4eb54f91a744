//! The edge role (`tokenwatch edge`) keeps answering the gateways while the
//! scoring fleet's consumer group rebalances over and over: it reads the
//! denylist topic and joins no group, so a revoked token is refused and
//! others are let through, with no other answer, throughout a 30 s storm of
//! `serve` instances joining and leaving (librdkafka's mock cluster). The
//! same check over Envoy's gRPC `ext_authz` protocol, called by the
//! protocol's own client (no Envoy binary is installable here: no Debian
//! package, no network), hostile calls included.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::instance;
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::respond::DenyEntry;
use tokenwatch::serve::{edge, EdgeHooks};
use tokio_util::sync::CancellationToken;

use envoy_types::ext_authz::v3::pb::{CheckRequest, HeaderValue};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use tokenwatch::api::ext_authz::http_status;

const HASH_KEY: &str = "edge-role-hash-key-0123456789abcdef";
const STORM: Duration = Duration::from_secs(30);

fn config(brokers: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.gateway.hash_key = HASH_KEY.into();
    raw.validate().unwrap()
}

/// The edge role, ready, with `stolen` on the denylist topic.
async fn edge_with_revoked(
    cfg: &Config,
    stolen: &str,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tokenwatch::serve::ServeError>>,
    std::net::SocketAddr,
) {
    let token_id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), stolen);
    let now = tokenwatch::clock::now_ms();
    let entry = DenyEntry {
        token_id: token_id.clone(),
        decision_id: format!("{token_id}/revoke"),
        revoked_at_ms: now,
        until_ms: now + 3_600_000,
        settled: true,
    };
    produce(
        &cfg.kafka.brokers,
        &cfg.kafka.denylist_topic,
        &[(token_id, serde_json::to_vec(&entry).unwrap())],
    )
    .await;
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let role = tokio::spawn(edge(
        cfg.clone(),
        stop.clone(),
        EdgeHooks {
            http_bound: Some(tx),
            metrics: None,
        },
    ));
    let addr = rx.await.unwrap();
    wait_ready(addr).await;
    (stop, role, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_answers_through_a_rebalance_storm_and_refuses_a_revoked_token_throughout() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers);
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 4);
    let stolen = "opaque-stolen-token-edge";
    let (stop, role, addr) = edge_with_revoked(&cfg, stolen).await;

    // The gateways' traffic: the stolen token and a clean one, without
    // pause, counting every answer.
    let storming = Arc::new(AtomicBool::new(true));
    let gateway = tokio::spawn({
        let storming = storming.clone();
        async move {
            let client = reqwest::Client::new();
            let url = format!("http://{addr}/v1/check");
            let (mut refused, mut allowed, mut other) = (0u32, 0u32, Vec::new());
            while storming.load(Ordering::Relaxed) {
                for (token, want) in [(stolen, 403), ("opaque-clean-token-edge", 200)] {
                    match client.get(&url).bearer_auth(token).send().await {
                        Ok(r) if r.status().as_u16() == want && want == 403 => refused += 1,
                        Ok(r) if r.status().as_u16() == want => allowed += 1,
                        Ok(r) => other.push(format!("{token}: {}", r.status())),
                        Err(e) => other.push(format!("{token}: {e}")),
                    }
                }
            }
            (refused, allowed, other)
        }
    });

    // The storm: scoring instances join and leave the group, each arrival
    // and departure a rebalance.
    let start = Instant::now();
    let mut fleet = std::collections::VecDeque::new();
    let mut joins = 0;
    while start.elapsed() < STORM {
        let (dtx, _drx) = tokio::sync::mpsc::unbounded_channel();
        fleet.push_back(instance::start(cfg.clone(), dtx).await);
        joins += 1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if fleet.len() > 2 {
            let old = fleet.pop_front().unwrap();
            old.stop.cancel();
            old.task.await.unwrap().unwrap();
        }
    }
    storming.store(false, Ordering::Relaxed);
    let (refused, allowed, other) = gateway.await.unwrap();
    eprintln!(
        "{joins} instances joined in {:?}; edge answered {refused} × 403 and {allowed} × 200",
        start.elapsed()
    );
    assert!(other.is_empty(), "answers other than 200/403: {other:?}");
    assert!(refused > 100 && allowed > 100, "{refused} / {allowed}");
    assert!(joins >= 10, "a storm: {joins} joins");

    for i in fleet {
        i.stop.cancel();
        i.task.await.unwrap().unwrap();
    }
    stop.cancel();
    role.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_edge_role_refuses_to_start_without_the_denylist() {
    let mut raw = RawConfig::default();
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.denylist.enabled = false;
    let err = edge(
        raw.validate().unwrap(),
        CancellationToken::new(),
        EdgeHooks::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("respond.denylist.enabled"),
        "{err}"
    );
}

/// A `CheckRequest` as Envoy sends it: the `Authorization` values in the
/// headers map (Envoy joins repeated ones with ",") and, when it encodes raw
/// headers, in `header_map`.
fn check_request(headers: &[(&str, &str)], raw: &[(&str, &[u8])]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/orders".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    header_map: (!raw.is_empty()).then(|| HeaderMap {
                        headers: raw
                            .iter()
                            .map(|(k, v)| HeaderValue {
                                key: k.to_string(),
                                raw_value: v.to_vec(),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_grpc_ext_authz_refuses_a_revoked_token_lets_others_through_and_survives_garbage() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut cfg = config(&brokers);
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    cfg.http.listen.grpc = Some(grpc);
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 1);
    let stolen = "opaque-stolen-token-grpc";
    let (stop, role, _) = edge_with_revoked(&cfg, stolen).await;

    let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .max_encoding_message_size(4 << 20);
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, CheckRequest, u16)> = vec![
        (
            "revoked",
            check_request(&[("authorization", &bearer(stolen))], &[]),
            403,
        ),
        (
            "clean",
            check_request(&[("authorization", &bearer("opaque-clean-grpc"))], &[]),
            200,
        ),
        ("no credential", check_request(&[], &[]), 200),
        (
            "revoked, raw header form",
            check_request(&[], &[("authorization", bearer(stolen).as_bytes())]),
            403,
        ),
        (
            "two different tokens joined by Envoy",
            check_request(
                &[(
                    "authorization",
                    &format!("{},{}", bearer("a"), bearer(stolen)),
                )],
                &[],
            ),
            403,
        ),
        (
            "not text",
            check_request(&[], &[("authorization", b"Bearer \xff\x00")]),
            403,
        ),
        (
            "not visible ASCII",
            check_request(&[("authorization", "Bearer caf\u{e9}")], &[]),
            403,
        ),
        (
            "another header only",
            check_request(&[("x-authorization", &bearer(stolen))], &[]),
            200,
        ),
    ];
    for (what, req, want) in cases {
        let r = client.check(req).await.unwrap().into_inner();
        assert_eq!(http_status(&r), want, "{what}: {r:?}");
        let code = r.status.as_ref().map(|s| s.code).unwrap_or(-1);
        assert_eq!(code == 0, want == 200, "{what}: gRPC status {code}");
    }

    // Larger than any header set: refused as a call, and the listener goes
    // on answering.
    let huge = "x".repeat(1 << 20);
    let err = client
        .check(check_request(&[("authorization", &bearer(&huge))], &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    let r = client
        .check(check_request(&[("authorization", &bearer(stolen))], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 403);

    // Bytes that are not HTTP/2 at all: the connection is dropped, the
    // listener is not.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(grpc).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).await.unwrap();
        s.write_all(&vec![0u8; 64 * 1024]).await.unwrap_or(());
    }
    let mut fresh = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let r = fresh
        .check(check_request(&[("authorization", &bearer(stolen))], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 403);

    stop.cancel();
    role.await.unwrap().unwrap();
}
