//! One fleet, one policy: three `serve` instances in one group share the
//! mode, the brake and the allowlist through the control topic. A change
//! made through any one is in force on all three within a second; the brake
//! counts the fleet's revocations against one limit, and a trip holds
//! revocations on all; a restarted instance keeps an engaged brake engaged;
//! a control record signed by anyone but the fleet changes nothing.
//!
//! Each runs on librdkafka's mock cluster (`cargo test`) and on a real
//! broker, tansu (ignored; `.ci/run`).

mod common;

use std::time::{Duration, Instant};

use common::instance::{self, Instance};
use common::kafka::{
    create_mock_topics, create_mock_topics_with, create_topics, create_topics_with, produce,
};
use common::tansu::Tansu;
use common::*;
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};
use tokenwatch::config::{Config, RawConfig};
use tokenwatch::respond::{Change, ControlKey, Mode, Signed};

const ADMIN: &str = "fleet-admin-token-0123456789";

fn config(brokers: &str, brake: usize) -> Config {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.http.admin_token = ADMIN.into();
    raw.respond.mode = Mode::Revoke;
    raw.respond.brake.max_revocations = brake;
    // What acted shows on the denylist topic.
    raw.respond.denylist.enabled = true;
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

/// Token ids on the denylist topic after reading up to `n` records for at
/// most `secs`.
async fn denied(brokers: &str, topic: &str, n: usize, secs: u64) -> Vec<String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut ids: Vec<String> = topic_records(&brokers, &topic, 1, n, secs)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    })
    .await
    .unwrap()
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
    // One revocation per window: the second trips the brake.
    let cfg = config(&brokers, 1);
    create_mock_topics(&cluster, &cfg.kafka, 4);
    changes_reach_the_fleet(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn on_a_real_broker_a_change_through_any_instance_is_in_force_on_all_and_survives_a_restart()
{
    let tansu = Tansu::start();
    let cfg = config(&tansu.brokers, 1);
    create_topics(&cfg.kafka, 4).await;
    changes_reach_the_fleet(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brake_trips_at_the_fleet_wide_count() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = config(&brokers, 3);
    create_mock_topics_with(&cluster, &cfg.kafka, 4, 6);
    brake_counts_the_fleet(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn on_a_real_broker_the_brake_trips_at_the_fleet_wide_count() {
    let tansu = Tansu::start();
    let cfg = config(&tansu.brokers, 3);
    create_topics_with(&cfg.kafka, 4, 6).await;
    brake_counts_the_fleet(&cfg).await;
}

/// Three instances, a limit of three revocations per window: six stolen
/// tokens on a decision log of six partitions, spread over the three revokers and a
/// quarter second apart (ten times the control topic's round trip), are
/// three revoked and three held, not six revoked as three separate
/// brakes of three would allow.
async fn brake_counts_the_fleet(cfg: &Config) {
    let k = cfg.kafka.clone();
    let fleet = [start(cfg).await, start(cfg).await, start(cfg).await];
    let refs: Vec<&Instance> = fleet.iter().collect();
    // Let the revokers' group settle with all three (each joining member
    // makes the others rejoin at their next heartbeat, 3 s apart), so the
    // log is shared; the mock cluster cannot describe groups, and the
    // spread is asserted below.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Keys on partitions 0, 2, 4, 1, 3, 5 in turn (librdkafka's crc32
    // partitioner), so consecutive decisions reach different revokers.
    let tokens = ["tok-4", "tok-6", "tok-5", "tok-1", "tok-9", "tok-8"].map(String::from);
    for t in &tokens {
        let d = revoke_decision(t, &format!("victim-{t}"));
        produce(
            &k.brokers,
            &k.decisions_topic,
            &[(t.clone(), serde_json::to_vec(&d).unwrap())],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    on_all(&refs, "brake engaged", |p| p["brake"]["engaged"] == true).await;
    wait_until("three decisions held across the fleet", 20, || {
        fleet
            .iter()
            .map(|i| i.metrics.brake_held.get())
            .sum::<i64>()
            == 3
    })
    .await;
    let acted: Vec<usize> = fleet
        .iter()
        .map(|i| {
            i.metrics
                .revocations
                .with_label_values(&["denylist", "denied"])
                .get() as usize
        })
        .collect();
    let on_list = denied(&k.brokers, &k.denylist_topic, 6, 3).await;
    eprintln!("revoked by each instance: {acted:?}; on the denylist: {on_list:?}");
    assert_eq!(
        on_list.len(),
        3,
        "the fleet's limit, not each instance's: {on_list:?}"
    );
    assert!(
        acted.iter().filter(|&&n| n > 0).count() >= 2,
        "the revocations were spread over instances, so the count was shared: {acted:?}"
    );
    // The flood was not real: dropped through one, on all.
    call(
        &fleet[2],
        reqwest::Method::POST,
        "/v1/policy/brake/reset",
        Some(json!({"held": "drop"})),
    )
    .await;
    // A held decision leaves the gauge before its outcome is counted: wait
    // for the outcomes.
    let dropped = || -> u64 {
        fleet
            .iter()
            .map(|i| {
                i.metrics
                    .revocations
                    .with_label_values(&["denylist", "dropped"])
                    .get()
            })
            .sum()
    };
    wait_until("the held decisions dropped", 20, || dropped() >= 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dropped(), 3, "each held decision dropped once");
    let held: i64 = fleet.iter().map(|i| i.metrics.brake_held.get()).sum();
    assert_eq!(held, 0, "nothing still held");
    assert_eq!(denied(&k.brokers, &k.denylist_topic, 6, 3).await.len(), 3);
    for i in fleet {
        i.stop.cancel();
        i.task.await.unwrap().unwrap();
    }
}

async fn changes_reach_the_fleet(cfg: &Config) {
    let cfg = cfg.clone();
    let k = cfg.kafka.clone();
    let brokers = k.brokers.clone();
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

    // One tenant's mode, set through one and lifted through another.
    call(
        &a,
        reqwest::Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": "shadow", "tenant": "pilot"})),
    )
    .await;
    let took = on_all(&[&a, &b, &c], "tenant mode", |p| {
        p["tenant_modes"]["pilot"] == "shadow" && p["mode"] == "alert"
    })
    .await;
    eprintln!("a tenant's mode in force on all three after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    call(
        &c,
        reqwest::Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": null, "tenant": "pilot"})),
    )
    .await;
    on_all(&[&a, &b, &c], "tenant mode lifted", |p| {
        p["tenant_modes"].get("pilot").is_none()
    })
    .await;

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

    // Only the admitted revocation acted (whichever instance's revoker got
    // to its decision first); two are held, across the restart.
    let first = denied(&brokers, &k.denylist_topic, 6, 3).await;
    assert!(
        first.len() == 1 && ["tok-1", "tok-2", "tok-3"].contains(&first[0].as_str()),
        "{first:?}"
    );
    wait_until("two decisions to wait for the reset", 20, || {
        [&a, &b2, &c]
            .iter()
            .map(|i| i.metrics.brake_held.get())
            .sum::<i64>()
            == 2
    })
    .await;

    // Reset through one: released on all, the restarted one included.
    call(
        &a,
        reqwest::Method::POST,
        "/v1/policy/brake/reset",
        Some(json!({"held": "release"})),
    )
    .await;
    let took = on_all(&[&a, &b2, &c], "brake released", |p| {
        p["brake"]["engaged"] == false
    })
    .await;
    eprintln!("brake reset on all three after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The two revocations the brake held (across the restart) are acted on
    // once the reset says release: all three tokens end up on the denylist.
    let denied_after = denied(&brokers, &k.denylist_topic, 6, 20).await;
    assert_eq!(denied_after, ["tok-1", "tok-2", "tok-3"]);

    // The audit trail reads the same through any of them, the restarted
    // one included: each lists the audit topic, not what it did itself.
    let audit = |i| call(i, reqwest::Method::GET, "/v1/audit?limit=100", None);
    let start_audit = Instant::now();
    loop {
        let (pa, pb, pc) = (audit(&a).await, audit(&b2).await, audit(&c).await);
        let actions: Vec<&str> = pa["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        if pa == pb
            && pb == pc
            && actions.contains(&"allowlist_add")
            && actions.contains(&"brake_reset")
        {
            eprintln!(
                "the same audit trail ({} entries) through all three",
                actions.len()
            );
            break;
        }
        assert!(
            start_audit.elapsed() < Duration::from_secs(10),
            "audit trails differ: {pa}\n{pb}\n{pc}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for i in [a, b2, c] {
        i.stop.cancel();
        i.task.await.unwrap().unwrap();
    }
}

/// A copy of the default model under `version`, at `path`.
fn model_file(path: &std::path::Path, version: &str) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
    )
    .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["version"] = version.into();
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_through_one_instance_pins_the_fleet_to_its_model_and_a_pod_with_another_file_says_so(
) {
    let cluster = MockCluster::new(1).unwrap();
    let base = config(&cluster.bootstrap_servers(), 10);
    create_mock_topics(&cluster, &base.kafka, 4);
    let dir = tempfile::tempdir().unwrap();
    // Each pod reads its own copy of the model file, as each mounts the
    // ConfigMap: a rollout reaches them one by one.
    let with_model = |name: &str| {
        let path = dir.path().join(name);
        model_file(&path, "m-1");
        let mut cfg = base.clone();
        cfg.model_path = path.clone();
        (cfg, path)
    };
    let ((cfg_a, file_a), (cfg_b, file_b)) = (with_model("a.json"), with_model("b.json"));
    let (a, b) = (start(&cfg_a).await, start(&cfg_b).await);

    // The new model reached a's file only; an operator reloads through a.
    model_file(&file_a, "m-2");
    let r = call(&a, reqwest::Method::POST, "/v1/model/reload", None).await;
    assert_eq!(r["version"], "m-2");
    on_all(&[&a, &b], "the pin", |p| p["model_pin"] == "m-2").await;
    let (pa, pb) = (policy(&a).await, policy(&b).await);
    assert_eq!(pa["model_version"], "m-2");
    assert_eq!(pa["model_pin_in_force"], true, "{pa}");
    // b keeps the model it has and says it is not the fleet's.
    assert_eq!(pb["model_version"], "m-1");
    assert_eq!(pb["model_pin_in_force"], false, "{pb}");
    assert_eq!(b.metrics.model_pin_mismatch.get(), 1);

    // A restarted pod whose file is still the old one says so too.
    let c = start(&cfg_b).await;
    let pc = policy(&c).await;
    assert_eq!(
        (&pc["model_pin"], &pc["model_pin_in_force"]),
        (&json!("m-2"), &json!(false)),
        "{pc}"
    );

    // Once b's file holds the pinned version, b loads it by itself.
    model_file(&file_b, "m-2");
    let t = Instant::now();
    wait_until("b to load the pinned model", 15, || {
        b.metrics.model_pin_mismatch.get() == 0 && c.metrics.model_pin_mismatch.get() == 0
    })
    .await;
    eprintln!(
        "pinned model in force on b and c {:?} after their file had it",
        t.elapsed()
    );
    assert_eq!(policy(&b).await["model_version"], "m-2");

    // A SIGHUP-style reload of a file with another version is refused
    // while pinned; the pin lifted through b, a's reload of it is not.
    model_file(&file_a, "m-3");
    let r = reqwest::Client::new()
        .put(format!("http://{}/v1/model/pin", b.http))
        .bearer_auth(ADMIN)
        .json(&json!({"version": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "an empty pin");
    call(
        &b,
        reqwest::Method::PUT,
        "/v1/model/pin",
        Some(json!({"version": null})),
    )
    .await;
    on_all(&[&a, &b, &c], "no pin", |p| {
        p["model_pin"].is_null() && p["model_pin_in_force"] == true
    })
    .await;
    let r = call(&a, reqwest::Method::POST, "/v1/model/reload", None).await;
    assert_eq!(r["version"], "m-3");
}
