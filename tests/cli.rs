//! The `tokenwatch` binary as an operator meets it: configuration errors at
//! start-up name the key, and `seal` produces handles the revoker can open.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn tokenwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_BACKTRACE");
    c
}

/// Runs the command and asserts it succeeded, showing its stderr if not.
fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_example_config_is_valid() {
    run_ok(tokenwatch().args(["config", "check", "deploy/config/tokenwatch.toml"]));
}

#[test]
fn config_errors_name_the_key_whether_from_file_or_environment() {
    let out = tokenwatch()
        .args(["config", "check", "deploy/config/tokenwatch.toml"])
        .env("TOKENWATCH_DETECT__MAX_TOKENS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detect.max_tokens"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[kafka]\nbrokrs = \"x\"\n").unwrap();
    let out = tokenwatch()
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("brokrs") && err.contains("kafka"), "{err}");
}

#[test]
fn a_corrupt_geo_database_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let bad = common::invalid_node_count(dir.path());
    let out = tokenwatch()
        .args(["geo", "lookup", "1.178.12.17", "--city-db"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 1 is a clean error; a panic exits 101, an abort or OOM kill worse.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is corrupt") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn seal_produces_a_handle_bound_to_the_token_id() {
    let key = tokenwatch().args(["seal", "--new-key"]).output().unwrap();
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let mut child = tokenwatch()
        .args(["seal", "--token-id", "jti-42", "--key-id", "k1"])
        .env("TOKENWATCH_SEAL_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"raw-opaque-token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let handle = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(handle.starts_with("tw1.k1.") && !handle.contains("raw-opaque"));
    let sealer = tokenwatch::seal::Sealer::new([("k1", key.as_str())]).unwrap();
    assert_eq!(sealer.open("jti-42", &handle).unwrap(), "raw-opaque-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_publishes_the_same_events_to_kafka_keyed_by_token() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("raw", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let args = ["simulate", "--seed", "4", "--users", "15", "--span", "1h"];
    let file = run_ok(tokenwatch().args(args));
    let lines: Vec<serde_json::Value> = String::from_utf8(file.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    run_ok(
        tokenwatch()
            .args(args)
            .args(["--brokers", &brokers, "--topic", "raw"]),
    );

    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["raw"]).unwrap();
    let mut got = 0;
    while got < lines.len() {
        let m = tokio::time::timeout(std::time::Duration::from_secs(20), c.recv())
            .await
            .expect("records arrive")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(
            m.key().unwrap(),
            v["token_id"].as_str().unwrap().as_bytes(),
            "keyed by token id"
        );
        assert!(v.get("label").is_none(), "labels stay out of the topic");
        got += 1;
    }
    assert_eq!(got, lines.len());
}

/// Everything a finished child wrote to its piped stderr.
async fn stderr_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut stderr = String::new();
    let pipe = child.stderr.as_mut().expect("stderr is piped");
    pipe.read_to_string(&mut stderr)
        .await
        .expect("stderr reads");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_scoring_loop_stops_serve_with_a_failure() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut raw = tokenwatch::config::RawConfig::default();
    raw.kafka.brokers = brokers.clone();
    let k = raw.validate().unwrap().kafka;
    common::kafka::create_mock_topics(&cluster, &k, 1);
    // A real process: the panic must end it, not be swallowed by a task.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("serve")
        .env("TOKENWATCH_KAFKA__BROKERS", &brokers)
        .env("TOKENWATCH_KAFKA__COMMIT_INTERVAL", "200ms")
        .env("TOKENWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .env("TW_TEST_FAULT_PANIC_TOKEN", "poisoned")
        .env_remove("RUST_BACKTRACE")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Still running before the poisoned record: it is the record that stops it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    if let Some(status) = child.try_wait().unwrap() {
        let stderr = stderr_of(&mut child).await;
        panic!("serve stopped on its own ({status}): {stderr}");
    }
    let records = [
        (
            "fine".to_owned(),
            common::live("fine", "alice", 5, common::PARIS, common::BROWSER),
        ),
        (
            "poisoned".to_owned(),
            common::live("poisoned", "bob", 1, common::PARIS, common::BROWSER),
        ),
    ];
    common::kafka::produce(&brokers, &k.telemetry_topic, &records).await;
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("serve exits after the scoring task panics")
        .unwrap();
    let stderr = stderr_of(&mut child).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("task `score` panicked"), "{stderr}");
    eprintln!(
        "serve exited {:?} after the poisoned record",
        started.elapsed()
    );
}

/// The offline tools on production-shaped telemetry: no labels in the
/// records, thefts in a side file, as an incident log gives them.
#[test]
fn labels_as_a_side_file_backtest_and_a_population_model_from_unlabelled_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let sim = [
        "simulate",
        "--seed",
        "9",
        "--users",
        "200",
        "--span",
        "26h",
        "--attack-share",
        "0.1",
    ];
    run_ok(
        tokenwatch()
            .args(sim)
            .args(["--out", &p("labelled.ndjson")]),
    );
    run_ok(
        tokenwatch()
            .args(sim)
            .args(["--out", &p("bare.ndjson"), "--truth", &p("truth.json")]),
    );
    let bare = std::fs::read_to_string(p("bare.ndjson")).unwrap();
    assert!(!bare.contains("\"label\""), "no labels in the telemetry");
    let truth: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(p("truth.json")).unwrap()).unwrap();
    assert!(truth.len() > 10, "{} thefts", truth.len());

    // The same detections whether the labels are inline or on the side.
    let report = |dir: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(format!("{dir}/report.json")).unwrap()).unwrap()
    };
    run_ok(tokenwatch().args([
        "eval",
        "--data",
        &p("labelled.ndjson"),
        "--out",
        &p("inline"),
    ]));
    run_ok(tokenwatch().args([
        "eval",
        "--data",
        &p("bare.ndjson"),
        "--truth",
        &p("truth.json"),
        "--out",
        &p("side"),
    ]));
    let (inline, side) = (report(&p("inline")), report(&p("side")));
    for k in ["recall", "precision", "false_flags_per_100k"] {
        assert_eq!(inline["tokenwatch"][k], side["tokenwatch"][k], "{k}");
    }
    assert_eq!(inline["attacked_tokens"], side["attacked_tokens"]);
    assert!(side["tokenwatch"]["recall"].as_f64().unwrap() > 0.0);

    // Without labels, the supervised model cannot train, and says how to.
    let out = tokenwatch()
        .args([
            "train",
            "--data",
            &p("bare.ndjson"),
            "--out",
            &p("lr.json"),
            "--family",
            "supervised",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--truth"), "{err}");
    // The population model needs none, and `serve` loads what it writes
    // (a smaller file: k-means is slow in a debug build).
    run_ok(
        tokenwatch()
            .args(["simulate", "--seed", "9", "--users", "30", "--span", "2h"])
            .args(["--out", &p("small.ndjson"), "--truth", &p("small.json")]),
    );
    run_ok(tokenwatch().args([
        "train",
        "--data",
        &p("small.ndjson"),
        "--out",
        &p("km.json"),
        "--family",
        "population",
    ]));
    let km = tokenwatch::model::ModelArtifact::load(std::path::Path::new(&p("km.json"))).unwrap();
    assert_eq!(km.family, tokenwatch::model::Family::Population);
    assert_eq!(
        km.training.positive_rows, 0,
        "trained without a single label"
    );

    // Backtest: one row per UTC day, requests adding up, and every token it
    // would revoke listed with its reason.
    let out = run_ok(tokenwatch().args([
        "backtest",
        "--data",
        &p("bare.ndjson"),
        "--out",
        &p("bt.json"),
    ]));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("| 2026-11-23 |") && table.contains("| 2026-11-24 |"),
        "{table}"
    );
    let bt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("bt.json")).unwrap()).unwrap();
    let days = bt["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    let sum: u64 = days.iter().map(|d| d["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, bare.lines().count() as u64);
    let revoked: u64 = days
        .iter()
        .map(|d| d["revocations"].as_u64().unwrap())
        .sum();
    assert!(revoked > 0);
    assert_eq!(bt["would_revoke"].as_array().unwrap().len() as u64, revoked);
    assert!(bt["would_revoke"][0]["explanation"].as_str().unwrap().len() > 5);
    assert!(!bt["top_reasons"].as_array().unwrap().is_empty());
}
