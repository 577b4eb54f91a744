//! One fleet, one policy: three `serve` instances in one group (librdkafka's
//! mock cluster) share the mode, the brake and the allowlist through the
//! control topic. A change made through any one is in force on all three
//! within a second; a brake one instance trips holds revocations on all;
//! a restarted instance keeps an engaged brake engaged; a control record
//! signed by anyone but the fleet changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::instance::{self, Instance};
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::respond::{Change, ControlKey, Mode, Signed};

const ADMIN: &str = "fleet-admin-token-0123456789";

fn config(brokers: &str) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.http.admin_token = ADMIN.into();
    raw.respond.mode = Mode::Revoke;
    // One revocation per window: the second trips the brake.
    raw.respond.brake.max_revocations = 1;
    raw.validate().unwrap()
}

async fn start(cfg: &Config) -> Instance {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let i = instance::start(cfg.clone(), tx).await;
    wait_ready(i.http).await;
    i
}

async fn call(i: &Instance, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = reqwest::Client::new()
        .request(method, format!("http://{}{path}", i.http))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn policy(i: &Instance) -> Value {
    call(i, reqwest::Method::GET, "/v1/policy", None).await
}

/// Waits until `f` holds for every instance; returns how long it took.
async fn on_all(fleet: &[&Instance], what: &str, f: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for i in fleet {
            all &= f(&policy(i).await);
        }
        if all {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: not on every instance after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn revoke(token_id: &str) -> (String, Vec<u8>) {
    let d = revoke_decision(token_id, "victim");
    // One key: one partition, one revoker, so its second decision trips.
    ("same-partition".into(), serde_json::to_vec(&d).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_any_instance_is_in_force_on_all_and_survives_a_restart() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers);
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 4);
    let (a, b, c) = (start(&cfg).await, start(&cfg).await, start(&cfg).await);

    // The mode, switched through one.
    let after = call(
        &a,
        reqwest::Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": "alert"})),
    )
    .await;
    let version = after["control_version"].as_i64().unwrap();
    assert!(version > 0 && after["fleet"] == true, "{after}");
    let took = on_all(&[&a, &b, &c], "mode alert", |p| {
        p["mode"] == "alert" && p["control_version"] == version
    })
    .await;
    eprintln!("mode switch in force on all three after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // An allowlist entry, added through another.
    call(
        &b,
        reqwest::Method::POST,
        "/v1/allowlist",
        Some(json!({"id": "corp-vpn", "kind": "network", "value": "1.32.200.0/24"})),
    )
    .await;
    let start_al = Instant::now();
    for i in [&a, &c] {
        loop {
            let list = call(i, reqwest::Method::GET, "/v1/allowlist", None).await;
            if list
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == "corp-vpn")
            {
                break;
            }
            assert!(start_al.elapsed() < Duration::from_secs(10), "allowlist");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "allowlist entry on all three after {:?}",
        start_al.elapsed()
    );
    assert!(start_al.elapsed() < Duration::from_secs(1));

    // Back to revoke; one instance's revoker trips the brake: all hold.
    call(
        &c,
        reqwest::Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": "revoke"})),
    )
    .await;
    on_all(&[&a, &b, &c], "mode revoke", |p| p["mode"] == "revoke").await;
    produce(
        &brokers,
        &k.decisions_topic,
        &[revoke("tok-1"), revoke("tok-2"), revoke("tok-3")],
    )
    .await;
    let took = on_all(&[&a, &b, &c], "brake engaged", |p| {
        p["brake"]["engaged"] == true
    })
    .await;
    eprintln!("brake engaged on all three {took:?} after the trip was visible");

    // A restarted instance keeps the fleet's brake engaged.
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
    let b2 = start(&cfg).await;
    let p = policy(&b2).await;
    assert_eq!(p["brake"]["engaged"], true, "{p}");
    assert_eq!(p["mode"], "revoke");

    // A record signed by anyone else is refused everywhere.
    let forged = ControlKey::from_admin_token("a-guess").seal(&Signed {
        change: Change::Mode { mode: Mode::Shadow },
        at_ms: tokenwatch::clock::now_ms(),
        by: "intruder".into(),
    });
    produce(&brokers, &k.control_topic, &[("mode".into(), forged)]).await;
    for i in [&a, &b2, &c] {
        wait_until("the forged record to be refused", 10, || {
            i.metrics
                .control_refused
                .with_label_values(&["signature"])
                .get()
                >= 1
        })
        .await;
        assert_eq!(
            policy(i).await["mode"],
            "revoke",
            "the forgery changed nothing"
        );
    }

    // Reset through one: released on all, the restarted one included.
    call(&a, reqwest::Method::POST, "/v1/policy/brake/reset", None).await;
    let took = on_all(&[&a, &b2, &c], "brake released", |p| {
        p["brake"]["engaged"] == false
    })
    .await;
    eprintln!("brake reset on all three after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    for i in [a, b2, c] {
        i.stop.cancel();
        i.task.await.unwrap().unwrap();
    }
}
