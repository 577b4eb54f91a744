//! tokenwatch as a fleet on a real Kafka-compatible broker: `tansu` (memory
//! storage) on loopback, started by this test. Several instances in one
//! consumer group share the partitions and an impossible pair is detected
//! once; a graceful shutdown commits and leaves the group promptly; an
//! instance aborted mid-stream leaves no record unscored; a broker that
//! stops answering for five seconds loses nothing; a `normalize` process
//! stopped by SIGTERM mid-stream hands over exactly where it stopped.
//!
//! Needs the `tansu` binary: `scripts/ensure-tansu` installs it
//! (`cargo install tansu --features dynostore --locked`), and `.ci/run` runs
//! this with `cargo test --test broker -- --ignored --test-threads 1`.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{create_topics, produce};
use common::tansu::Tansu;
use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};
use tokenwatch::config::{Config, KafkaConfig, RawConfig};
use tokenwatch::decide::Alerts;
use tokenwatch::decide::{Flagger, Outbox};
use tokenwatch::ingest::{
    self, Handled, Handler, IngestConsumer, IngestContext, ScoringHandler, Transient,
};
use tokenwatch::journal::Audit;
use tokenwatch::metrics::Metrics;
use tokenwatch::respond::Mode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

/// Logs to the test output when `RUST_LOG` asks for them.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(brokers: &str, group: &str) -> Config {
    logs();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.group_id = group.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Shadow;
    raw.validate().unwrap()
}

/// `n` tokens × `per` requests each from Lyon, Marseille or New York over
/// the last half hour, keyed by token id, plus a stolen token used in Paris
/// then, ten minutes later, in Sydney by a script. (Not all from one address: the
/// detector rightly treats an address shared by hundreds of tokens as a
/// NAT or VPN egress, where travel means nothing.)
fn traffic(n: usize, per: usize) -> Vec<(String, Vec<u8>)> {
    let base = tokenwatch::clock::now_ms() - 30 * 60 * 1000;
    let mut out = Vec::new();
    for r in 0..per {
        for t in 0..n {
            let token = format!("fleet-{t:04}");
            let at = base + ((r * 60 + t % 50) * 1000) as i64;
            let ip = [LYON, MARSEILLE, NEW_YORK][t % 3];
            out.push((
                token.clone(),
                live_at(&token, &format!("u{t}"), at, ip, BROWSER),
            ));
        }
    }
    out.push((
        "stolen-1".into(),
        live_at("stolen-1", "victim", base, PARIS, BROWSER),
    ));
    out.push((
        "stolen-1".into(),
        live_at("stolen-1", "victim", base + 600_000, SYDNEY, TOOL),
    ));
    out
}

async fn ready(http: std::net::SocketAddr) -> bool {
    match reqwest::get(format!("http://{http}/readyz")).await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn two_instances_share_the_partitions_and_detect_an_impossible_pair_once() {
    let broker = Tansu::start();
    let cfg = config(&broker.brokers, "fleet");
    create_topics(&cfg.kafka, PARTITIONS).await;
    let (dtx, mut drx) = mpsc::unbounded_channel();
    let a = instance::start(cfg.clone(), dtx.clone()).await;
    let b = instance::start(cfg.clone(), dtx).await;
    let (ha, hb) = (a.http, b.http);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(ready(ha).await && ready(hb).await) {
        assert!(
            Instant::now() < deadline,
            "both instances hold partitions within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let records = traffic(200, 5);
    let total = records.len() as u64;
    produce(&broker.brokers, &cfg.kafka.telemetry_topic, &records).await;
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    wait_until("every record scored by the fleet", 120, || {
        ma.events_consumed.get() + mb.events_consumed.get() >= total
    })
    .await;
    let (ca, cb) = (
        a.metrics.events_consumed.get(),
        b.metrics.events_consumed.get(),
    );
    println!("instance a scored {ca}, instance b scored {cb} of {total}");
    assert!(ca > 0 && cb > 0, "both instances took a share: {ca} / {cb}");
    assert_eq!(ca + cb, total, "each record scored once when nothing fails");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut stolen = Vec::new();
    while let Ok(d) = drx.try_recv() {
        if d.token_id == "stolen-1" {
            stolen.push(d);
        }
    }
    assert_eq!(
        stolen.len(),
        1,
        "detected once, by the instance that owns its partition"
    );
    for i in [a, b] {
        i.stop.cancel();
        i.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn a_graceful_shutdown_commits_and_hands_the_partitions_over_at_once() {
    let broker = Tansu::start();
    let cfg = config(&broker.brokers, "handover");
    create_topics(&cfg.kafka, PARTITIONS).await;
    let records = traffic(50, 4);
    let total = records.len() as u64;
    produce(&broker.brokers, &cfg.kafka.telemetry_topic, &records).await;

    let (dtx, _drx) = mpsc::unbounded_channel();
    let a = instance::start(cfg.clone(), dtx.clone()).await;
    let ma = a.metrics.clone();
    wait_until("instance a scores everything", 120, || {
        ma.events_consumed.get() >= total
    })
    .await;
    let stopping = Instant::now();
    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    let shutdown = stopping.elapsed();
    println!("graceful shutdown took {} ms", shutdown.as_millis());
    assert!(shutdown < Duration::from_secs(10), "{shutdown:?}");

    // A successor in the same group: it gets the partitions without waiting
    // out a session timeout (a left the group), and re-scores nothing
    // (a committed what it handled).
    let started = Instant::now();
    let b = instance::start(cfg.clone(), dtx).await;
    let hb = b.http;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(hb).await {
        assert!(Instant::now() < deadline, "successor assigned within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handover = started.elapsed();
    println!(
        "successor held the partitions after {} ms",
        handover.as_millis()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.metrics.events_consumed.get(),
        0,
        "nothing re-scored after a clean handover"
    );
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}

/// Scores through the real handler and records which offsets it handled.
struct Recording {
    inner: ScoringHandler,
    seen: Seen,
}

impl Handler for Recording {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        let handled = self.inner.handle(msg).await?;
        self.seen
            .lock()
            .unwrap()
            .insert((msg.partition(), msg.offset()));
        Ok(handled)
    }
}

fn consumer_in_group(k: &KafkaConfig) -> Arc<IngestConsumer> {
    let c: IngestConsumer = ingest::consumer_config(k, &k.group_id)
        .create_with_context(IngestContext {
            readiness: None,
            name: "test",
            metrics: None,
        })
        .unwrap();
    c.subscribe(&[&k.telemetry_topic]).unwrap();
    Arc::new(c)
}

type Seen = Arc<Mutex<BTreeSet<(i32, i64)>>>;

/// One scoring instance in the group: the consumer loop with a recording
/// handler, until `stop` (or until aborted).
fn scorer(
    k: &KafkaConfig,
    seen: &Seen,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<ingest::LoopStats> {
    tokio::spawn(ingest::run(
        consumer_in_group(k),
        recording(k, seen),
        k.commit_interval,
        stop.clone(),
        Arc::new(Metrics::new()),
    ))
}

fn recording(k: &KafkaConfig, seen: &Seen) -> Recording {
    let producer: FutureProducer = ingest::producer_config(k).create().unwrap();
    let metrics = Arc::new(Metrics::new());
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), k.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        Arc::new(Audit::in_memory(10)),
        metrics.clone(),
        None,
    ));
    Recording {
        inner: ScoringHandler::new(
            Arc::new(Mutex::new(detector())),
            producer,
            k.deadletter_topic.clone(),
            flagger,
            metrics,
        ),
        seen: seen.clone(),
    }
}

/// The (partition, offset) of every record in the telemetry topic, read
/// back from the beginning until `n` are seen. (Not from the watermarks:
/// tansu 0.6 reports a high watermark of 1 for a partition holding many
/// records, while the records themselves carry the right offsets.)
fn all_offsets(k: &KafkaConfig, n: usize) -> BTreeSet<(i32, i64)> {
    let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", "offsets-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&k.telemetry_topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = BTreeSet::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.insert((m.partition(), m.offset()));
        }
    }
    assert_eq!(out.len(), n, "every produced record read back");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn an_instance_task_aborted_mid_stream_leaves_no_record_unscored() {
    let broker = Tansu::start();
    let k = config(&broker.brokers, "kill9").kafka;
    create_topics(&k, PARTITIONS).await;
    let records = traffic(300, 10);
    produce(&broker.brokers, &k.telemetry_topic, &records).await;
    let expected = all_offsets(&k, records.len());

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancellationToken::new();
    let victim = scorer(&k, &seen, &stop);
    let s = seen.clone();
    wait_until("the first instance is mid-stream", 60, || {
        s.lock().unwrap().len() > 200
    })
    .await;
    victim.abort(); // aborted in-process (not a killed process): no commit of what was handled since the last one
    let _ = victim.await;
    let before = seen.lock().unwrap().len();
    let survivor = scorer(&k, &seen, &stop);
    let (s, e) = (seen.clone(), expected.clone());
    wait_until("every record scored after the kill", 120, || {
        *s.lock().unwrap() == e
    })
    .await;
    println!("{before} records scored before the kill, the rest after");
    stop.cancel();
    survivor.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn a_broker_that_stops_answering_for_five_seconds_loses_nothing() {
    let broker = Tansu::start();
    let k = config(&broker.brokers, "paused").kafka;
    create_topics(&k, PARTITIONS).await;
    let records = traffic(200, 10);
    let (first, second) = records.split_at(records.len() / 2);
    produce(&broker.brokers, &k.telemetry_topic, first).await;

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancellationToken::new();
    let task = scorer(&k, &seen, &stop);
    let s = seen.clone();
    let half = first.len();
    wait_until("the first half scored", 120, || {
        s.lock().unwrap().len() >= half
    })
    .await;
    // Five seconds: under the session time-out (10 s), so the group holds.
    // (Past it, tansu 0.6 revokes the assignment and never gives the member
    // a new one; see docs/operations.md.)
    broker.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.resume();
    produce(&broker.brokers, &k.telemetry_topic, second).await;
    let expected = all_offsets(&k, records.len());
    let (s, e) = (seen.clone(), expected.clone());
    wait_until(
        "every record scored after the broker came back",
        120,
        || *s.lock().unwrap() == e,
    )
    .await;
    stop.cancel();
    task.await.unwrap();
}

/// One NGINX access-log line per request, each a different path so that the
/// telemetry topic can be checked record by record.
fn nginx_lines(n: usize) -> Vec<(String, Vec<u8>)> {
    let base = tokenwatch::clock::now_ms() / 1000 - 1800;
    (0..n)
        .map(|i| {
            let ts = time::OffsetDateTime::from_unix_timestamp(base + (i / 100) as i64).unwrap();
            let line = serde_json::json!({
                "time": ts.format(&time::format_description::well_known::Rfc3339).unwrap(),
                "remote_addr": "10.0.0.12", "x_forwarded_for": LYON, "method": "GET",
                "uri": format!("/v1/orders/{i}"), "status": "200", "user_agent": BROWSER,
                "authorization": format!("Bearer opaque-user-{}", i % 1000),
            });
            (format!("k{i}"), serde_json::to_vec(&line).unwrap())
        })
        .collect()
}

/// `tokenwatch_normalized_records_total` of the process on `port`; -1
/// while it does not answer.
fn normalized(port: u16) -> i64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return -1;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return -1;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("tokenwatch_normalized_records_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(-1, |v| v as i64)
}

/// Runs `tokenwatch normalize` until SIGTERM once `until` holds (or, with
/// `None`, once nothing has changed for 20 s); returns how many records it
/// handled, from its own last log line, after checking it gave nothing up.
fn normalize_until(
    config: &std::path::Path,
    until: Option<&dyn Fn() -> bool>,
    progress: &dyn Fn() -> i64,
) -> u64 {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--log-json", "normalize", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut since) = (-1, Instant::now());
    loop {
        assert!(Instant::now() < deadline, "normalize made no progress");
        std::thread::sleep(Duration::from_millis(100));
        match until {
            Some(f) if f() => break,
            Some(_) => {}
            None => {
                let now = progress();
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        !log.contains("never landed")
            && !log.contains("given up")
            && !log.contains("not acknowledged in time"),
        "{log}"
    );
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["fields"]["message"] == "stopped")
        .and_then(|j| j["fields"]["handled"].as_u64())
        .unwrap_or_else(|| panic!("no `stopped` line: {log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (scripts/ensure-tansu); run by .ci/run"]
async fn normalize_stopped_by_sigterm_mid_stream_hands_over_exactly_where_it_stopped() {
    // A real `tokenwatch normalize` process, stopped with SIGTERM while it
    // reads, then started again in the same group. Before, a stop committed
    // almost nothing (a finished delivery read as given up) and the restart
    // re-published nearly everything.
    const N: usize = 40_000;
    const RAW_TOPIC: &str = "nginx.access";
    let broker = Tansu::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("normalize.toml");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
brokers = "{}"
group_id = "sigterm"
commit_interval = "200ms"
[http]
listen = "127.0.0.1:{port}"
[gateway]
mode = "normalize"
hash_key = "sigterm-test-hash-key"
trusted_proxies = ["10.0.0.0/8"]
[[gateway.inputs]]
topic = "{RAW_TOPIC}"
format = "nginx"
"#,
            broker.brokers,
        ),
    )
    .unwrap();
    let cfg = tokenwatch::config::Config::load(Some(&path)).unwrap();
    let k = cfg.kafka.clone();
    create_topics(&k, 2).await;
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = ClientConfig::new()
            .set("bootstrap.servers", &broker.brokers)
            .create()
            .unwrap();
        let t = NewTopic::new(RAW_TOPIC, 2, TopicReplication::Fixed(1));
        for r in admin
            .create_topics([&t], &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap();
        }
    }
    for chunk in nginx_lines(N).chunks(50_000) {
        common::kafka::produce(&broker.brokers, RAW_TOPIC, chunk).await;
    }
    let telemetry = || -> i64 {
        let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.brokers)
            .create()
            .unwrap();
        (0..2)
            .map(|p| {
                c.fetch_watermarks(&k.telemetry_topic, p, Duration::from_secs(10))
                    .map_or(0, |(lo, hi)| hi - lo)
            })
            .sum()
    };
    // Progress from the process's own counter: tansu's watermarks do not
    // count records.
    let handled = || normalized(port);
    let a_third_in = || handled() >= (N / 3) as i64;
    let first = normalize_until(&path, Some(&a_third_in), &handled);
    assert!(
        first < N as u64,
        "stopped after the end ({first}); make N larger"
    );
    let second = normalize_until(&path, None, &handled);

    // Each process acknowledged every output of every record it handled (it
    // logged nothing given up), and the group's commits handed over where
    // the first stopped: every record handled, at most the in-flight window
    // (4096 records) twice.
    let again = (first + second).checked_sub(N as u64);
    eprintln!("first handled {first}, second {second}: {again:?} handled twice; its watermarks count {} of {N}", telemetry());
    let again =
        again.unwrap_or_else(|| panic!("{} records never handled", N as u64 - first - second));
    assert!(again <= 4096, "{again} records handled twice");
    // The topic holds every record: read back, not counted by watermarks
    // (tansu's high watermark is not the record count; see
    // docs/operations.md). Each line has its own path.
    let (brokers, topic) = (broker.brokers.clone(), k.telemetry_topic.clone());
    let want = N + again as usize;
    let records =
        tokio::task::spawn_blocking(move || topic_records(&brokers, &topic, 2, want, 120))
            .await
            .unwrap();
    let paths: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v.as_deref()?).ok())
        .filter_map(|t| t["path"].as_str().map(str::to_owned))
        .collect();
    eprintln!(
        "the telemetry topic holds {} records, {} distinct of {N}",
        records.len(),
        paths.len()
    );
    assert_eq!(paths.len(), N, "records missing from the telemetry topic");
    assert!(records.len() <= want, "more outputs than records handled");
}
