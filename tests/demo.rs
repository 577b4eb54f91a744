//! `tokenwatch demo` end to end: mock Kafka cluster, loopback authorization
//! server, simulated traffic with stolen tokens, the real serve path. A
//! stolen token must be detected and really revoked, and a /metrics scrape
//! during the run must show the pipeline working.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwatch::demo::{run, DemoArgs};
use tokio_util::sync::CancellationToken;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn counter(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_catches_and_revokes_a_stolen_token_with_metrics_live() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args = DemoArgs {
        duration: Duration::from_secs(12),
        rate: 100,
        seed: 11,
        listen,
        attack_share: 0.05,
        model: repo("models/default.json"),
        city_db: repo("data/geo/demo-city.mmdb"),
        asn_db: repo("data/geo/demo-asn.mmdb"),
    };
    let last_scrape = Arc::new(Mutex::new(String::new()));
    let scrape = last_scrape.clone();
    let scraper = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..60 {
            if let Ok(r) = client.get(format!("http://{listen}/metrics")).send().await {
                if let Ok(body) = r.text().await {
                    *scrape.lock().unwrap() = body;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let summary = run(args, CancellationToken::new())
        .await
        .expect("demo runs");
    scraper.abort();

    assert!(summary.attacked_tokens > 0);
    assert!(summary.revoked_attacks >= 1, "{summary:?}");
    assert!(summary.revocations_confirmed >= summary.revoked_attacks as u64);
    assert_eq!(
        summary.edge_check,
        Some((403, 200)),
        "the edge check refuses a revoked token and passes a legitimate one"
    );
    // A VPN toggled before two of its users have been seen switching it on
    // or off (the demo starts cold and lasts seconds) can still trip: the
    // price of not excusing hops off every home behind carrier NAT
    // (docs/model-card.md, schema 6). 5 of 193 legitimate tokens measured.
    assert!(summary.flagged_legit <= 6, "false flags: {summary:?}");
    assert!(
        summary.latencies_ms.iter().all(|ms| *ms < 5_000),
        "{:?}",
        summary.latencies_ms
    );

    let body = last_scrape.lock().unwrap().clone();
    assert!(
        counter(&body, "tokenwatch_events_consumed_total") > 0.0,
        "{body}"
    );
    assert!(counter(&body, "tokenwatch_tokens_flagged_total") > 0.0);
    assert!(
        counter(
            &body,
            "tokenwatch_revocations_total{outcome=\"revoked\",target=\"rfc7009\"}"
        ) > 0.0
    );
}
