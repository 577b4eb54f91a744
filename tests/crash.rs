//! Real crashes: the `tokenwatch serve` binary on a real broker (tansu),
//! killed with SIGKILL mid-stream, twice (the second time while the identity
//! provider is answering one of its calls), and started again in the same
//! group. Compared with an uninterrupted run of the same binary over the
//! same telemetry on a broker of its own:
//! - every record is scored at least once (the processes' own counters sum
//!   to at least the topic's records);
//! - the same tokens are revoked (the decision log of each run, by token),
//!   up to the run-to-run variation of an uninterrupted run (population
//!   tables learn in arrival order across partitions), and no legitimate
//!   token is revoked because of a crash;
//! - every target acts once per decision: the loopback RFC 7009 endpoint,
//!   subject logout and webhook count the calls of each `Idempotency-Key`
//!   (one key per target and decision); a call cut by the kill is sent
//!   again under the same key, so a target that honours the key acts once;
//!   a decision both runs made reached every target in both under the
//!   same key.
//!
//! No aborted task, no in-process drop: the process dies as a pod's does on
//! an OOM kill, with whatever librdkafka had not committed.
//!
//! `cargo test --test crash -- --ignored --nocapture` (about 9 min; in
//! `.ci/run`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::idp::{idp, Idp, ADMIN_AT, HOOK_SECRET};
use common::kafka::{committed_and_high, create_topics, produce};
use common::tansu::Tansu;
use common::*;
use tokenwatch::config::Config;
use tokenwatch::respond::http::idempotency_value;
use tokenwatch::seal::Sealer;

const SEED: u64 = 907;
const USERS: &str = "5000";
const SEAL_KEY_ID: &str = "k1";
const PARTITIONS: i32 = 4;

/// Simulated telemetry as a gateway that verifies JWTs and seals each
/// token would publish it: the subject verified, a sealed handle of the
/// (made-up) raw token, no labels.
fn telemetry(dir: &Path, sealer: &Sealer) -> (Vec<(String, Vec<u8>)>, BTreeSet<String>) {
    let out = dir.join("telemetry.ndjson");
    let truth = dir.join("truth.json");
    let ok = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["simulate", "--seed", &SEED.to_string(), "--users", USERS])
        .args(["--span", "3h", "-o"])
        .arg(&out)
        .arg("--truth")
        .arg(&truth)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "simulate");
    let stolen: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let records = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let token_id = v["token_id"].as_str().unwrap().to_owned();
            v["sub_verified"] = true.into();
            v["token_handle"] = sealer.seal(&token_id, &raw_token(&token_id)).into();
            v.as_object_mut().unwrap().remove("label");
            (token_id, serde_json::to_vec(&v).unwrap())
        })
        .collect();
    (records, stolen.keys().cloned().collect())
}

fn raw_token(token_id: &str) -> String {
    format!("raw-{token_id}")
}

fn config_file(dir: &Path, brokers: &str, idp: &str, port: u16, seal_key: &str) -> PathBuf {
    let path = dir.join(format!("serve-{port}.toml"));
    let secret = String::from_utf8(HOOK_SECRET.to_vec()).unwrap();
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "crash"
commit_interval = "200ms"
[http]
listen = "127.0.0.1:{port}"
[respond]
mode = "revoke"
[respond.seal_keys]
{SEAL_KEY_ID} = "{seal_key}"
[respond.brake]
max_revocations = 100000
[respond.denylist]
enabled = true
[respond.retry]
max_backoff = "2s"
[respond.rfc7009]
url = "{idp}/revoke"
client_id = "tw"
client_secret = "x"
[[respond.subject_logout]]
name = "keycloak"
preset = "keycloak"
base_url = "{idp}"
realm = "acme"
bearer_token = "{ADMIN_AT}"
[[respond.webhook]]
name = "siem"
url = "{idp}/hook"
secret = "{secret}"
"#
        ),
    )
    .unwrap();
    // The file is what the process will read: it must be valid.
    Config::load(Some(&path)).unwrap();
    path
}

/// One `tokenwatch serve` process.
struct Serve {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl Serve {
    /// Starts the process; its log goes to `log` (kept under target/ so a
    /// failed run can be read afterwards).
    fn start(config: &Path, port: u16, name: &str) -> Serve {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info,rdkafka=info")
            .args(["--log-json", "serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            log,
        }
    }

    /// The last lines of the process's log, for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        format!(
            "{} (last 40 of {} lines):\n{}",
            self.log.display(),
            lines.len(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// A counter's value summed over its labels, from /metrics; None while
    /// the process does not answer.
    async fn counter(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        Some(
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    async fn consumed(&self) -> u64 {
        self.counter("tokenwatch_events_consumed_total")
            .await
            .unwrap_or(0.0) as u64
    }

    fn kill9(mut self) {
        let ok = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -KILL");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status:?}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the process has consumed `n` records and every target has
/// been quiet (no new call) for three seconds.
async fn run_out(s: &Serve, n: usize, idp: &Idp) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while s.consumed().await < n as u64 {
        assert!(Instant::now() < deadline, "not every record consumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut calls = usize::MAX;
    let mut quiet = Instant::now();
    loop {
        let now = idp.keyed.lock().unwrap().len();
        if now != calls {
            (calls, quiet) = (now, Instant::now());
        } else if quiet.elapsed() > Duration::from_secs(3) {
            return;
        }
        assert!(Instant::now() < deadline, "targets never went quiet");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one run did: the tokens it decided to revoke, and each target's
/// calls per idempotency key.
struct Run {
    revoked: BTreeSet<String>,
    calls: BTreeMap<&'static str, BTreeMap<String, u32>>,
    consumed: u64,
}

fn revoked(brokers: &str, topic: &str) -> BTreeSet<String> {
    topic_records(brokers, topic, 1, usize::MAX, 10)
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<serde_json::Value>(&v?).ok())
        .filter(|d| d["action"] == "revoke")
        .map(|d| d["token_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn calls(idp: &Idp) -> BTreeMap<&'static str, BTreeMap<String, u32>> {
    ["revoke", "logout", "hook"]
        .into_iter()
        .map(|r| (r, idp.calls_per_key(r)))
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    records: Vec<(String, Vec<u8>)>,
    seal_key: String,
}

/// A fresh broker with the telemetry on it, a loopback IdP answering each
/// logout after 150 ms (so a kill can land mid-call), a config.
async fn prepare(s: &Setup) -> (Tansu, Arc<Idp>, PathBuf, u16) {
    let broker = Tansu::start();
    let (base, idp) = idp().await;
    *idp.logout_delay.lock().unwrap() = Duration::from_millis(150);
    let port = free_port();
    let path = config_file(s.dir.path(), &broker.brokers, &base, port, &s.seal_key);
    let cfg = Config::load(Some(&path)).unwrap();
    create_topics(&cfg.kafka, PARTITIONS).await;
    for chunk in s.records.chunks(50_000) {
        produce(&broker.brokers, &cfg.kafka.telemetry_topic, chunk).await;
    }
    (broker, idp, path, port)
}

async fn uninterrupted(s: &Setup) -> Run {
    let (broker, idp, path, port) = prepare(s).await;
    let cfg = Config::load(Some(&path)).unwrap();
    let serve = Serve::start(&path, port, "uninterrupted");
    run_out(&serve, s.records.len(), &idp).await;
    let consumed = serve.consumed().await;
    drop(serve);
    Run {
        revoked: revoked(&broker.brokers, &cfg.kafka.decisions_topic),
        calls: calls(&idp),
        consumed,
    }
}

async fn killed_twice(s: &Setup) -> Run {
    let (broker, idp, path, port) = prepare(s).await;
    let cfg = Config::load(Some(&path)).unwrap();
    let n = s.records.len() as u64;
    let mut consumed = 0;

    // First kill: a third of the way through the topic.
    let serve = Serve::start(&path, port, "killed-1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen < n / 3 {
        assert!(
            Instant::now() < deadline,
            "no progress before the first kill"
        );
        seen = serve.consumed().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill9();
    consumed += seen;
    eprintln!("first SIGKILL after {seen} records scored");

    // Second kill: past two thirds of the topic, while a logout call is
    // unanswered. The counter is this process's own: it began about a third
    // of the way in, so another third is two thirds.
    let serve = Serve::start(&path, port, "killed-2");
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "no call in flight to kill during"
        );
        seen = serve.consumed().await.max(seen);
        let started = idp.attempts.load(Ordering::SeqCst) as usize;
        let answered = idp.logouts.lock().unwrap().len();
        if seen >= n / 3 && started > answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cut = idp.attempts.load(Ordering::SeqCst) as usize - idp.logouts.lock().unwrap().len();
    serve.kill9();
    consumed += seen;
    eprintln!("second SIGKILL after {seen} records scored, {cut} logout call(s) unanswered");

    let serve = Serve::start(&path, port, "killed-3");
    // The third process consumed what the others left uncommitted.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let lag = lag(&broker.brokers, &cfg.kafka.telemetry_topic);
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{lag} records never committed; {}",
            serve.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run_out(&serve, 0, &idp).await;
    consumed += serve.consumed().await;
    // tansu can settle the group with the restarted process holding
    // nothing (ingest/orphans.rs); it rejoins instead of idling forever.
    let rejoins = serve
        .counter("tokenwatch_consumer_rejoins_total")
        .await
        .unwrap_or(0.0) as u64;
    eprintln!("third process: {rejoins} rejoin(s) of a group that left partitions unowned");
    drop(serve);
    Run {
        revoked: revoked(&broker.brokers, &cfg.kafka.decisions_topic),
        calls: calls(&idp),
        consumed,
    }
}

/// Records of the telemetry topic the group has not committed past.
fn lag(brokers: &str, topic: &str) -> i64 {
    committed_and_high(brokers, "crash", topic, PARTITIONS)
        .into_iter()
        .map(|(at, high)| high - at.max(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu) and about 9 minutes; run by .ci/run"]
async fn serve_killed_twice_mid_stream_scores_everything_and_acts_once_per_decision_as_an_uninterrupted_run(
) {
    let dir = tempfile::tempdir().unwrap();
    let seal_key = Sealer::generate_key();
    let sealer = Sealer::new([(SEAL_KEY_ID, seal_key.as_str())]).unwrap();
    let (records, stolen) = telemetry(dir.path(), &sealer);
    let n = records.len();
    eprintln!("{n} records, {} stolen tokens (seed {SEED})", stolen.len());
    let s = Setup {
        dir,
        records,
        seal_key,
    };

    let t = Instant::now();
    let calm = uninterrupted(&s).await;
    eprintln!(
        "uninterrupted: {} revoked, {} records scored, {:?}",
        calm.revoked.len(),
        calm.consumed,
        t.elapsed()
    );
    let t = Instant::now();
    let hit = killed_twice(&s).await;
    eprintln!(
        "killed twice: {} revoked, {} records scored ({} twice), {:?}",
        hit.revoked.len(),
        hit.consumed,
        hit.consumed as i64 - n as i64,
        t.elapsed()
    );

    assert!(calm.consumed >= n as u64);
    assert!(
        hit.consumed >= n as u64,
        "every record scored at least once"
    );
    assert!(!calm.revoked.is_empty(), "the run revoked something");
    let only_calm: Vec<_> = calm.revoked.difference(&hit.revoked).collect();
    let only_hit: Vec<_> = hit.revoked.difference(&calm.revoked).collect();
    eprintln!("revoked only without the kills: {only_calm:?}; only with them: {only_hit:?}");
    // A crash must not make a false flag: a legitimate token revoked only
    // because the process restarted (cold population tables did that to
    // 149 tokens before they were persisted).
    let legit_added: Vec<_> = only_hit.iter().filter(|t| !stolen.contains(**t)).collect();
    assert!(
        legit_added.is_empty(),
        "the kills revoked legitimate tokens: {legit_added:?}"
    );
    // Not equality: population tables learn from all partitions in arrival
    // order, so two uninterrupted runs already differ by a borderline stolen
    // token or two (measured: 388, 389 and 390 revoked). The kills may
    // differ by a few such tokens (2 %), not by the 45 % they did when the
    // population tables started cold.
    let differ = only_calm.len() + only_hit.len();
    assert!(
        differ <= calm.revoked.len() / 50,
        "the kills changed {differ} of {} revocations",
        calm.revoked.len()
    );

    // Each target's calls, by idempotency key (one per target and
    // decision). A decision both runs made reached every target in both,
    // under the same key; the runs' decisions differ only as the
    // revocations above do (and the alerts on those borderline tokens).
    let both: Vec<&String> = calm.revoked.intersection(&hit.revoked).collect();
    for (target, name) in [("revoke", "rfc7009"), ("logout", "keycloak"), ("hook", "")] {
        let (a, b) = (&calm.calls[target], &hit.calls[target]);
        let keys_a: BTreeSet<_> = a.keys().collect();
        let keys_b: BTreeSet<_> = b.keys().collect();
        let resent: u32 = b.values().map(|c| c - 1).sum();
        let apart = keys_a.symmetric_difference(&keys_b).count();
        eprintln!(
            "{target}: {} decisions' calls without the kills, {} with them ({apart} not in both); {} calls re-sent under the same key",
            keys_a.len(),
            keys_b.len(),
            resent
        );
        assert!(
            !keys_a.contains(&String::new()) && !keys_b.contains(&String::new()),
            "{target}: a call without a key"
        );
        assert!(
            a.values().all(|&c| c == 1),
            "{target}: a call repeated without a crash"
        );
        if name.is_empty() {
            // Webhook keys carry the note's phase; bounded as a whole.
            assert!(
                apart <= (3 * differ).max(keys_a.len() / 50),
                "{target}: {apart} decisions reached it in one run only"
            );
            continue;
        }
        assert!(
            apart <= differ,
            "{target}: {apart} decisions reached it in one run only ({differ} revocations differ)"
        );
        for token in &both {
            let key = idempotency_value(&format!("{name}|{token}/revoke"));
            if a.contains_key(&key) {
                assert!(
                    b.contains_key(&key),
                    "{target}: {token} was revoked in both runs but reached it only without the kills"
                );
            }
        }
    }
}
