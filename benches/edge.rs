//! The edge check (`/v1/check`) per request, without the HTTP server: derive
//! the token id from the Authorization header exactly as the adapters do
//! (keyed HMAC for an opaque token, base64 + JSON for a JWT's jti) and look
//! it up in a denylist of 100,000 revoked tokens. Against a bare lookup of
//! an already-derived id in the same set, in the same run.
//!
//! Then the same check as the gateways meet it: the `tokenwatch edge` role
//! (its real HTTP listener, its denylist read from a topic, librdkafka's
//! mock cluster) under a closed loop of 256 requests in flight over 10,000
//! distinct tokens, 5,000 of them revoked; against an axum server on the
//! same listener setup that answers 200 without looking, in the same run.
//! p50/p99/p99.9 latency per request and requests/s, and their ratios.
//!
//! `cargo bench --bench edge`

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use criterion::{black_box, Criterion, Throughput};
use tokenwatch::api::check::{EdgeCheck, Verdict};
use tokenwatch::respond::{DenyEntry, Denylist};
use tokenwatch::telemetry::{keyed_token_id, TokenHasher};

const KEY: &[u8] = b"bench-hash-key-0123456789";

fn jwt(jti: &str) -> String {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        e(r#"{"alg":"RS256","kid":"k1"}"#),
        e(&format!(
            r#"{{"iss":"https://idp.example","sub":"user-1","aud":"api","iat":1795428000,"exp":1795431600,"jti":"{jti}","scope":"orders"}}"#
        )),
        e(&"s".repeat(342))
    )
}

fn bench(c: &mut Criterion) {
    let denylist = Arc::new(Denylist::default());
    for i in 0..100_000u32 {
        let id = if i % 2 == 0 {
            keyed_token_id(KEY, &format!("opaque-{i}"))
        } else {
            format!("jti-{i}")
        };
        denylist.insert(&DenyEntry {
            decision_id: format!("{id}/revoke"),
            token_id: id,
            revoked_at_ms: 0,
            until_ms: i64::MAX,
            settled: true,
        });
    }
    denylist.mark_ready();
    let edge = EdgeCheck {
        denylist: denylist.clone(),
        hasher: TokenHasher::new(KEY),
        verifier: None,
    };
    let now = 1_795_428_000_000;
    let opaque_denied = "Bearer opaque-42".to_string();
    let opaque_allowed = "Bearer opaque-not-revoked-7f3a".to_string();
    let jwt_denied = format!("Bearer {}", jwt("jti-43"));
    let jwt_allowed = format!("Bearer {}", jwt("jti-fresh"));
    assert_eq!(edge.check([opaque_denied.as_str()], now), Verdict::Denied);
    assert_eq!(edge.check([jwt_denied.as_str()], now), Verdict::Denied);
    assert_eq!(edge.check([opaque_allowed.as_str()], now), Verdict::Allowed);
    assert_eq!(edge.check([jwt_allowed.as_str()], now), Verdict::Allowed);

    let mut g = c.benchmark_group("edge_check");
    g.throughput(Throughput::Elements(1));
    let known = keyed_token_id(KEY, "opaque-42");
    g.bench_function("baseline_lookup_of_a_derived_id", |b| {
        b.iter(|| denylist.is_denied(black_box(&known), now))
    });
    for (name, header) in [
        ("opaque_denied", &opaque_denied),
        ("opaque_allowed", &opaque_allowed),
        ("jwt_denied", &jwt_denied),
        ("jwt_allowed", &jwt_allowed),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| edge.check([black_box(header.as_str())], now))
        });
    }
    g.finish();
}

const TOKENS: usize = 10_000;
const IN_FLIGHT: usize = 256;
const REQUESTS: usize = 200_000;

/// Latencies of `REQUESTS` checks, `IN_FLIGHT` at a time, token `i % TOKENS`
/// each; every answer is checked against `expect(i)`.
async fn load(
    url: &str,
    expect: impl Fn(usize) -> u16 + Send + Sync + 'static,
) -> (Vec<Duration>, Duration) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let expect = Arc::new(expect);
    let started = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (client, url, expect) = (client.clone(), url.to_owned(), expect.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(REQUESTS / IN_FLIGHT + 1);
                for i in (w..REQUESTS).step_by(IN_FLIGHT) {
                    let token = i % TOKENS;
                    let t = Instant::now();
                    let r = client
                        .get(&url)
                        .header("authorization", format!("Bearer opaque-{token}"))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    lat.push(t.elapsed());
                    assert_eq!(status, expect(token), "token {token}");
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(REQUESTS);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let took = started.elapsed();
    all.sort();
    (all, took)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn over_http() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use tokio_util::sync::CancellationToken;

    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut raw = tokenwatch::config::RawConfig::default();
    raw.kafka.brokers = brokers.clone();
    raw.http.listen = "127.0.0.1:0".into();
    raw.gateway.hash_key = String::from_utf8(KEY.to_vec()).unwrap();
    let cfg = raw.validate().unwrap();
    cluster
        .create_topic(&cfg.kafka.denylist_topic, 1, 1)
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let now = tokenwatch::clock::now_ms();
    for i in (0..TOKENS).filter(|i| i % 2 == 0) {
        let id = keyed_token_id(KEY, &format!("opaque-{i}"));
        let entry = DenyEntry {
            decision_id: format!("{id}/revoke"),
            token_id: id.clone(),
            revoked_at_ms: now,
            until_ms: now + 3_600_000,
            settled: true,
        };
        let payload = serde_json::to_vec(&entry).unwrap();
        producer
            .send(
                FutureRecord::to(&cfg.kafka.denylist_topic)
                    .key(&id)
                    .payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let role = tokio::spawn(tokenwatch::serve::edge(
        cfg,
        stop.clone(),
        tokenwatch::serve::EdgeHooks {
            http_bound: Some(tx),
            metrics: None,
        },
    ));
    let addr = rx.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("http://{addr}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the edge never loaded its denylist"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The fastest honest baseline: the same HTTP stack answering 200
    // without reading the header.
    let app = axum::Router::new().route(
        "/v1/check",
        axum::routing::any(|| async { axum::http::StatusCode::OK }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let (b, b_took) = load(&format!("http://{base}/v1/check"), |_| 200).await;
    let (e, e_took) = load(&format!("http://{addr}/v1/check"), |t| {
        if t % 2 == 0 {
            403
        } else {
            200
        }
    })
    .await;
    stop.cancel();
    let _ = role.await;

    println!(
        "edge over HTTP: {REQUESTS} checks, {IN_FLIGHT} in flight, {TOKENS} distinct tokens ({} revoked)",
        TOKENS / 2
    );
    println!("| server | p50 | p99 | p99.9 | checks/s |");
    println!("|---|---|---|---|---|");
    for (name, lat, took) in [
        ("axum answering 200 unread (baseline)", &b, b_took),
        ("`tokenwatch edge` /v1/check", &e, e_took),
    ] {
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.2?} | {:.0} |",
            pct(lat, 0.5),
            pct(lat, 0.99),
            pct(lat, 0.999),
            REQUESTS as f64 / took.as_secs_f64()
        );
    }
    println!(
        "ratio edge/baseline: p99 {:.2}, checks/s {:.2}",
        pct(&e, 0.99).as_secs_f64() / pct(&b, 0.99).as_secs_f64(),
        b_took.as_secs_f64() / e_took.as_secs_f64()
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(over_http());
}
