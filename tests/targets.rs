//! Targets that fail alone, through a whole `serve` instance (librdkafka's
//! mock cluster, a real RFC 7009 endpoint and webhook receiver on
//! loopback): with the SIEM's webhook answering 500 for a minute, 100
//! decisions are revoked at the authorization server and put on the edge
//! denylist within a second each, and once the webhook is back it receives
//! each decision exactly once.
//!
//! `cargo test --test targets -- --ignored --nocapture` (about 70 s; in
//! `.ci/run`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::idp::{idp, HOOK_SECRET};
use common::instance;
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use tokenwatch::config::{RawConfig, RawWebhook};
use tokenwatch::decide::Decision;
use tokenwatch::respond::Mode;
use tokenwatch::seal::Sealer;

const OUTAGE: Duration = Duration::from_secs(60);
const STOLEN: usize = 100;
const HASH_KEY: &str = "targets-test-hash-key-0123456789abcdef";

fn decision(i: usize, sealer: &Sealer) -> (String, Decision) {
    let raw = format!("raw-opaque-token-{i:03}");
    // As the gateway adapters and the edge check derive it.
    let token_id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), &raw);
    let d = Decision {
        subject_verified: true,
        token_handle: Some(sealer.seal(&token_id, &raw)),
        ..revoke_decision(&token_id, &format!("victim-{i:03}"))
    };
    (raw, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute-long webhook outage; run by .ci/run"]
async fn a_siem_down_for_a_minute_delays_no_revocation_and_hears_of_each_once_after() {
    let cluster = MockCluster::new(1).unwrap();
    let (base, idp) = idp().await;
    idp.hook_down.store(true, Ordering::SeqCst);

    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Revoke;
    // Many revocations in a minute is what this test is about.
    raw.respond.brake.max_revocations = 10_000;
    let key = Sealer::generate_key();
    raw.respond.seal_keys.insert("k1".into(), key.clone());
    raw.respond.rfc7009 = Some(
        serde_json::from_value(serde_json::json!({
            "url": format!("{base}/revoke"), "client_id": "tw", "client_secret": "x",
        }))
        .unwrap(),
    );
    raw.respond.denylist.enabled = true;
    raw.respond.webhook.push(RawWebhook {
        name: "siem".into(),
        url: format!("{base}/hook"),
        secret: String::from_utf8(HOOK_SECRET.to_vec()).unwrap(),
        timeout: Some(Duration::from_secs(2)),
        max_retries: Some(1),
    });
    raw.gateway.hash_key = HASH_KEY.into();
    raw.respond.retry.max_backoff = Duration::from_secs(5);
    let cfg = raw.validate().unwrap();
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 4);
    let sealer = Sealer::new([("k1", key.as_str())]).unwrap();

    let (dtx, _decisions) = tokio::sync::mpsc::unbounded_channel();
    let tw = instance::start(cfg, dtx).await;
    wait_ready(tw.http).await;

    let (raws, records): (Vec<String>, Vec<(String, Vec<u8>)>) = (0..STOLEN)
        .map(|i| {
            let (raw, d) = decision(i, &sealer);
            (raw, (d.token_id.clone(), serde_json::to_vec(&d).unwrap()))
        })
        .unzip();
    let sent = Instant::now();
    produce(&k.brokers, &k.decisions_topic, &records).await;

    // Every token revoked at the authorization server and refused at the
    // edge, each within a second, while the webhook answers 500.
    wait_until("every token revoked at the IdP", 10, || {
        idp.revoked_at.lock().unwrap().len() == STOLEN
    })
    .await;
    let at_idp: Vec<Duration> = {
        let at = idp.revoked_at.lock().unwrap();
        raws.iter().map(|r| at[r].duration_since(sent)).collect()
    };
    let slowest = *at_idp.iter().max().unwrap();
    let check = reqwest::Client::new();
    let mut refused = 0;
    for raw in &raws {
        let r = check
            .get(format!("http://{}/v1/check", tw.bound.edge))
            .bearer_auth(raw)
            .send()
            .await
            .unwrap();
        refused += usize::from(r.status() == reqwest::StatusCode::FORBIDDEN);
    }
    let denied_by = sent.elapsed();
    eprintln!(
        "RFC 7009: slowest {slowest:?} after the decisions were published; \
         denylist: {refused}/{STOLEN} refused at the edge {denied_by:?} after; \
         webhook attempts so far {}",
        idp.hook_attempts.load(Ordering::SeqCst)
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest at the IdP: {slowest:?}"
    );
    assert_eq!(refused, STOLEN, "every token refused at the edge");
    assert!(denied_by < Duration::from_secs(2), "{denied_by:?}");
    // The webhook is tried for every decision (16 calls at a time) and
    // holds each one, retrying, while nothing else waits for it.
    wait_until("the webhook to hold every decision", 20, || {
        tw.metrics.target_pending.with_label_values(&["siem"]).get() == STOLEN as i64
    })
    .await;
    assert!(idp.hook_attempts.load(Ordering::SeqCst) >= STOLEN as u32);
    assert!(idp.hooks.lock().unwrap().is_empty());

    // The SIEM comes back after a minute: each decision delivered once.
    tokio::time::sleep(OUTAGE.saturating_sub(sent.elapsed())).await;
    idp.hook_down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    wait_until("the webhook to receive all 100", 30, || {
        idp.hooks.lock().unwrap().len() >= STOLEN
    })
    .await;
    eprintln!("webhook caught up {:?} after it came back", back.elapsed());
    // A moment for any duplicate to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_decision: BTreeMap<String, usize> = BTreeMap::new();
    for h in idp.hooks.lock().unwrap().iter() {
        *per_decision
            .entry(h["decision_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_decision.len(), STOLEN, "every decision heard of");
    assert!(
        per_decision.values().all(|&n| n == 1),
        "each once: {per_decision:?}"
    );
    assert_eq!(
        idp.revocations.lock().unwrap().len(),
        STOLEN,
        "revoked once each"
    );
    wait_until("nothing pending", 10, || {
        tw.metrics.target_pending.with_label_values(&["siem"]).get() == 0
    })
    .await;
    tw.stop.cancel();
    tw.task.await.unwrap().unwrap();
}
