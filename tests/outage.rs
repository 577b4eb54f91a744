//! The revocation API down for a minute under a fleet of two instances
//! (librdkafka's mock cluster, a real HTTP admin API on loopback): tokens
//! stolen during the outage are flagged at once, their revocations wait,
//! the revoker's lag on the decision log rises and shows in
//! `tokenwatch_consumer_lag_messages`, and when the API is back every
//! subject is logged out, each exactly once, and the lag drains to zero.
//!
//! `cargo test --test outage -- --ignored --nocapture` (in `.ci/run`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::idp::{idp, ADMIN_AT};
use common::instance::{self, Instance};
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use tokenwatch::config::{Config, RawConfig, RawLogout};
use tokenwatch::respond::{Mode, Preset};
use tokio::sync::mpsc;

const OUTAGE: Duration = Duration::from_secs(60);
const STOLEN: usize = 6;

fn config(brokers: &str, idp: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    // Lag statistics often enough to watch them move.
    raw.kafka
        .properties
        .insert("statistics.interval.ms".into(), "500".into());
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Revoke;
    raw.respond.subject_logout.push(RawLogout {
        name: "keycloak".into(),
        preset: Some(Preset::Keycloak),
        base_url: idp.to_owned(),
        realm: Some("acme".into()),
        bearer_token: Some(ADMIN_AT.into()),
        timeout: Some(Duration::from_secs(2)),
        max_retries: Some(1),
        ..RawLogout::default()
    });
    raw.validate().unwrap()
}

/// Each stolen token: the owner in Paris, a script in Sydney five minutes
/// later, the owner in Paris again a minute after that (two parties at
/// once: a revocation, not just an alert).
fn thefts() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..STOLEN {
        let (t, sub) = (format!("stolen-{i}"), format!("victim-{i}"));
        out.push((t.clone(), live(&t, &sub, 600, PARIS, BROWSER)));
        out.push((t.clone(), live(&t, &sub, 300, SYDNEY, TOOL)));
        out.push((t.clone(), live(&t, &sub, 240, PARIS, BROWSER)));
    }
    out
}

async fn start(
    cfg: &Config,
    decisions: mpsc::UnboundedSender<tokenwatch::decide::Decision>,
) -> Instance {
    let i = instance::start(cfg.clone(), decisions).await;
    wait_ready(i.http).await;
    i
}

/// The decision log's lag as the fleet reports it (the instance holding
/// the partition reports it; the other reports nothing).
fn decision_lag(fleet: &[Instance], cfg: &Config) -> i64 {
    fleet
        .iter()
        .map(|i| {
            i.metrics
                .consumer_lag
                .with_label_values(&[cfg.kafka.decisions_topic.as_str(), "0"])
                .get()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute-long outage (90 s in all); run by .ci/run"]
async fn a_revocation_api_down_for_a_minute_delays_revocations_and_loses_none() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let (base, api) = idp().await;
    api.down.store(true, Ordering::SeqCst);
    let cfg = config(&brokers, &base);
    let k = &cfg.kafka;
    create_mock_topics(&cluster, k, 4);
    let (dtx, mut decisions) = mpsc::unbounded_channel();
    let fleet = vec![start(&cfg, dtx.clone()).await, start(&cfg, dtx).await];

    let outage = Instant::now();
    produce(&brokers, &k.telemetry_topic, &thefts()).await;
    let mut revoke = Vec::new();
    while revoke.len() < STOLEN {
        let d = tokio::time::timeout(Duration::from_secs(30), decisions.recv())
            .await
            .expect("every stolen token flagged during the outage")
            .unwrap();
        if d.action == tokenwatch::detect::Action::Revoke {
            revoke.push(d.token_id);
        }
    }
    eprintln!("{STOLEN} revoke decisions in {:?}", outage.elapsed());

    let shown = tokio::time::timeout(Duration::from_secs(30), async {
        while decision_lag(&fleet, &cfg) < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if shown.is_err() {
        for i in &fleet {
            for l in i.metrics.render().lines().filter(|l| l.contains("lag")) {
                eprintln!("{l}");
            }
        }
        panic!(
            "the revoker's lag on the decision log never showed; {} attempts",
            api.attempts.load(Ordering::SeqCst)
        );
    }
    let lag_during = decision_lag(&fleet, &cfg);
    let remaining = OUTAGE.saturating_sub(outage.elapsed());
    tokio::time::sleep(remaining).await;
    let attempts = api.attempts.load(Ordering::SeqCst);
    assert!(attempts >= 2, "the revoker kept trying ({attempts} calls)");
    assert!(
        api.logouts.lock().unwrap().is_empty(),
        "nothing succeeds while the API is down"
    );
    let retries: u64 = fleet
        .iter()
        .map(|i| {
            i.metrics
                .target_retries
                .with_label_values(&["keycloak"])
                .get()
        })
        .sum();
    assert!(retries >= 1, "failed attempts are counted");
    let held: i64 = fleet
        .iter()
        .map(|i| {
            i.metrics
                .target_pending
                .with_label_values(&["keycloak"])
                .get()
        })
        .sum();
    assert_eq!(
        held, STOLEN as i64,
        "the logout target holds every decision"
    );
    eprintln!(
        "outage of {:?}: {attempts} attempts, {retries} retries counted, decision-log lag {lag_during}",
        outage.elapsed()
    );

    api.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    wait_until("every victim logged out once the API is back", 60, || {
        api.logout_counts().len() == STOLEN
    })
    .await;
    eprintln!(
        "all {STOLEN} logged out {:?} after the API came back",
        back.elapsed()
    );
    wait_until("the lag drains", 30, || decision_lag(&fleet, &cfg) == 0).await;
    // A moment for any duplicate call to show before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logouts = api.logout_counts();
    let expected: BTreeMap<String, u32> = (0..STOLEN).map(|i| (format!("victim-{i}"), 1)).collect();
    assert_eq!(logouts, expected, "each victim logged out exactly once");

    for i in &fleet {
        i.stop.cancel();
    }
    for i in fleet {
        i.task.await.unwrap().unwrap();
    }
}
