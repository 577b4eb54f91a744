//! The real consumer path against librdkafka's mock cluster (the Kafka
//! protocol on loopback): every good record scored, every malformed one on
//! the dead-letter topic with its reason, offsets committed for exactly what
//! was handled, and no record skipped across a crash.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokenwatch::config::{Config, KafkaConfig, RawConfig};
use tokenwatch::decide::Alerts;
use tokenwatch::decide::{Flagger, Outbox};
use tokenwatch::ingest::{
    self, Handled, Handler, IngestConsumer, IngestContext, ScoringHandler, Transient,
};
use tokenwatch::journal::Audit;
use tokenwatch::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const RAW_JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl";

fn kafka_config(brokers: &str) -> KafkaConfig {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = brokers.to_owned();
    raw.kafka.commit_interval = Duration::from_millis(200);
    // Statistics (consumer lag) often enough for a test to see them.
    raw.kafka
        .properties
        .insert("statistics.interval.ms".into(), "200".into());
    let cfg: Config = raw.validate().expect("valid config");
    cfg.kafka
}

/// A one-broker mock cluster with tokenwatch's topics (telemetry on three
/// partitions) and the matching configuration.
fn cluster() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    KafkaConfig,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let k = kafka_config(&cluster.bootstrap_servers());
    create_mock_topics(&cluster, &k, 3);
    (cluster, k)
}

fn scoring_consumer(k: &KafkaConfig, metrics: &Arc<Metrics>) -> Arc<IngestConsumer> {
    let c: IngestConsumer = ingest::consumer_config(k, &k.group_id)
        .create_with_context(IngestContext {
            readiness: None,
            name: "test",
            metrics: Some(metrics.clone()),
        })
        .expect("consumer");
    c.subscribe(&[&k.telemetry_topic]).expect("subscribe");
    Arc::new(c)
}

fn scoring_handler(k: &KafkaConfig, metrics: Arc<Metrics>) -> ScoringHandler {
    let producer: FutureProducer = ingest::producer_config(k).create().expect("producer");
    let flagger = Arc::new(Flagger::new(
        Outbox::new(producer.clone(), k.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        Arc::new(Audit::in_memory(100)),
        metrics.clone(),
        None,
    ));
    ScoringHandler::new(
        Arc::new(Mutex::new(detector())),
        producer,
        k.deadletter_topic.clone(),
        flagger,
        metrics,
    )
}

/// Delegates to the real handler and records which offsets it handled.
struct Recording {
    inner: ScoringHandler,
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    /// Slows the consumer down so a kill lands mid-stream.
    delay: Duration,
}

impl Handler for Recording {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        tokio::time::sleep(self.delay).await;
        let handled = self.inner.handle(msg).await?;
        self.seen
            .lock()
            .unwrap()
            .push((msg.partition(), msg.offset()));
        Ok(handled)
    }
}

fn good_records(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let token = format!("tok-{}", i % 20);
            (token.clone(), record(&token, i as f64, PARIS, BROWSER))
        })
        .collect()
}

fn committed_total(k: &KafkaConfig, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&k.telemetry_topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_are_scored_malformed_ones_dead_lettered_and_offsets_committed() {
    let (_cluster, k) = cluster(); // keeps the mock cluster alive

    let mut records = good_records(200);
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("json", b"{not json".to_vec()),
        ("missing_field", br#"{"ts":1795428000000,"token_id":"x","sub":"s","method":"GET","path":"/","status":200}"#.to_vec()),
        ("raw_token", record(RAW_JWT, 1.0, PARIS, BROWSER)),
        ("timestamp", record("tok-x", 0.0, PARIS, BROWSER).replace_ts()),
        ("ip", record("tok-y", 0.0, "999.1.1.1", BROWSER)),
    ];
    for (i, (_, m)) in malformed.iter().enumerate() {
        records.insert(i * 40 + 7, (format!("bad-{i}"), m.clone()));
    }
    produce(&k.brokers, &k.telemetry_topic, &records).await;

    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest::run(
        scoring_consumer(&k, &metrics),
        scoring_handler(&k, metrics.clone()),
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    let dead = || metrics.deadletters.with_label_values(&["json"]).get();
    wait_until("all records handled", 60, || {
        metrics.events_consumed.get() == 200 && dead() == 1
    })
    .await;
    // librdkafka's statistics (every 200 ms here) feed the lag gauge of each
    // partition the consumer holds; all handled means a lag of 0.
    let lag_series = |p: i32| {
        format!("tokenwatch_consumer_lag_messages{{partition=\"{p}\",topic=\"tokenwatch.telemetry\"}} 0")
    };
    wait_until("consumer lag exported for every partition", 30, || {
        let text = metrics.render();
        (0..3).all(|p| text.contains(&lag_series(p)))
    })
    .await;
    stop.cancel();
    let stats = task.await.unwrap();
    assert_eq!(stats.handled, 205);

    for (reason, _) in &malformed {
        assert_eq!(
            metrics.events_rejected.with_label_values(&[reason]).get(),
            1,
            "reason {reason}"
        );
    }
    assert_eq!(
        committed_total(&k, 3),
        205,
        "committed offsets cover exactly what was handled"
    );

    // The dead-letter topic holds the five, with reasons, and no raw token.
    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[&k.deadletter_topic]).unwrap();
    let mut reasons = BTreeSet::new();
    for _ in 0..5 {
        let m = tokio::time::timeout(Duration::from_secs(20), dlq.recv())
            .await
            .expect("dead letter arrives")
            .unwrap();
        let headers = m.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|h| h.key == "tokenwatch.reason")
            .and_then(|h| h.value)
            .unwrap();
        let error = headers
            .iter()
            .find(|h| h.key == "tokenwatch.error")
            .and_then(|h| h.value)
            .unwrap();
        assert!(!error.is_empty());
        reasons.insert(String::from_utf8(reason.to_vec()).unwrap());
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
        assert!(
            !payload.contains(RAW_JWT),
            "raw token forwarded to the dead-letter topic"
        );
    }
    let expected: BTreeSet<String> = malformed.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(reasons, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_task_aborted_mid_stream_skips_no_record_after_restart() {
    let (_cluster, k) = cluster(); // keeps the mock cluster alive
    let records = good_records(300);
    produce(&k.brokers, &k.telemetry_topic, &records).await;

    let metrics = Arc::new(Metrics::new());
    let first_seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Recording {
        inner: scoring_handler(&k, metrics.clone()),
        seen: first_seen.clone(),
        delay: Duration::from_millis(10),
    };
    let first = tokio::spawn(ingest::run(
        scoring_consumer(&k, &metrics),
        handler,
        k.commit_interval,
        CancellationToken::new(),
        metrics.clone(),
    ));
    wait_until("the first consumer to get going", 60, || {
        first_seen.lock().unwrap().len() >= 100
    })
    .await;
    first.abort(); // no graceful shutdown
    let _ = first.await;
    let killed_at = first_seen.lock().unwrap().len();
    assert!(
        killed_at < 300,
        "the kill happened mid-stream ({killed_at} handled)"
    );

    let second_seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Recording {
        inner: scoring_handler(&k, metrics.clone()),
        seen: second_seen.clone(),
        delay: Duration::ZERO,
    };
    let stop = CancellationToken::new();
    let second = tokio::spawn(ingest::run(
        scoring_consumer(&k, &metrics),
        handler,
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    let union = || -> BTreeSet<(i32, i64)> {
        first_seen
            .lock()
            .unwrap()
            .iter()
            .chain(second_seen.lock().unwrap().iter())
            .copied()
            .collect()
    };
    wait_until(
        "every record handled by one instance or the other",
        60,
        || union().len() == 300,
    )
    .await;
    stop.cancel();
    second.await.unwrap();
    // Nothing skipped: every offset of every partition was handled.
    let per_partition: Vec<usize> = (0..3)
        .map(|p| union().iter().filter(|(q, _)| *q == p).count())
        .collect();
    assert_eq!(per_partition.iter().sum::<usize>(), 300);
    for p in 0..3 {
        let offsets: Vec<i64> = union()
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p} has no gap"
        );
    }
    assert_eq!(committed_total(&k, 3), 300);
}

trait ReplaceTs {
    fn replace_ts(self) -> Vec<u8>;
}

impl ReplaceTs for Vec<u8> {
    /// Turns the epoch-ms timestamp into seconds: a classic unit mistake.
    fn replace_ts(self) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&self).unwrap();
        let ms = v["ts"].as_i64().unwrap();
        v["ts"] = serde_json::json!(ms / 1000);
        serde_json::to_vec(&v).unwrap()
    }
}

/// Hands record `hold_at` an output that lands only when `release` fires
/// (a decision the broker has not acknowledged yet); every other record is
/// done at once.
struct Holding {
    seen: Arc<Mutex<Vec<i64>>>,
    hold_at: i64,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Handler for Holding {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        self.seen.lock().unwrap().push(msg.offset());
        match self.release.take() {
            Some(rx) if msg.offset() == self.hold_at => Ok(Handled::InFlight(tokio::spawn(
                async move { rx.await.is_ok() },
            ))),
            other => {
                self.release = other;
                Ok(Handled::Done)
            }
        }
    }
}

/// 30 records of one token, so all on one partition, offsets 0..30.
async fn one_partition_of_thirty(
    k: &KafkaConfig,
) -> (
    Arc<Mutex<Vec<i64>>>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<ingest::LoopStats>,
    CancellationToken,
) {
    let records: Vec<_> = (0..30)
        .map(|i| {
            (
                "tok-held".to_owned(),
                record("tok-held", i as f64, PARIS, BROWSER),
            )
        })
        .collect();
    produce(&k.brokers, &k.telemetry_topic, &records).await;
    let metrics = Arc::new(Metrics::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest::run(
        scoring_consumer(k, &metrics),
        Holding {
            seen: seen.clone(),
            hold_at: 5,
            release: Some(rx),
        },
        k.commit_interval,
        stop.clone(),
        metrics,
    ));
    let s = seen.clone();
    wait_until(
        "all 30 records read while record 5 is in flight",
        60,
        || s.lock().unwrap().len() == 30,
    )
    .await;
    // Five commit intervals: whatever may be committed has been.
    tokio::time::sleep(k.commit_interval * 5).await;
    (seen, tx, task, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_in_flight_holds_the_offsets_back_but_not_the_reading() {
    let (_cluster, k) = cluster();
    let (_seen, release, task, stop) = one_partition_of_thirty(&k).await;
    assert_eq!(
        committed_total(&k, 3),
        5,
        "committed up to the record whose output is in flight, not past it"
    );
    release.send(()).unwrap();
    wait_until("the rest committed once the output landed", 30, || {
        committed_total(&k, 3) == 30
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_an_output_in_flight_reads_its_record_again() {
    let (_cluster, k) = cluster();
    let (_seen, _never, task, _stop) = one_partition_of_thirty(&k).await;
    task.abort(); // aborted in-process before the decision was acknowledged
    let _ = task.await;
    let metrics = Arc::new(Metrics::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let successor = tokio::spawn(ingest::run(
        scoring_consumer(&k, &metrics),
        Holding {
            seen: seen.clone(),
            hold_at: -1,
            release: None,
        },
        k.commit_interval,
        stop.clone(),
        metrics,
    ));
    let s = seen.clone();
    wait_until("the successor reads to the end", 60, || {
        s.lock().unwrap().last() == Some(&29)
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        (5..30).collect::<Vec<i64>>(),
        "the successor starts at the record whose output never landed"
    );
    stop.cancel();
    successor.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing_and_a_pair_spanning_it_is_decided() {
    let (cluster, k) = cluster();
    let batch = |from: i64, thief: Vec<u8>| -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = (0..100)
            .map(|i| {
                let t = format!("tok-{}", i % 20);
                let rec = live(&t, &format!("u{}", i % 20), 900 - from - i, PARIS, BROWSER);
                (t, rec)
            })
            .collect();
        out.push(("stolen".to_owned(), thief));
        out
    };
    // The owner in Paris before the restart, a script in Sydney after it.
    let before = batch(0, live("stolen", "victim", 600, PARIS, BROWSER));
    produce(&k.brokers, &k.telemetry_topic, &before).await;
    let metrics = Arc::new(Metrics::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest::run(
        scoring_consumer(&k, &metrics),
        Recording {
            inner: scoring_handler(&k, metrics.clone()),
            seen: seen.clone(),
            delay: Duration::ZERO,
        },
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    let s = seen.clone();
    wait_until("the first 101 scored", 60, || {
        s.lock().unwrap().len() == 101
    })
    .await;

    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.broker_up(1).unwrap();
    let after = batch(100, live("stolen", "victim", 60, SYDNEY, TOOL));
    produce(&k.brokers, &k.telemetry_topic, &after).await;

    let s = seen.clone();
    let distinct = move || s.lock().unwrap().iter().collect::<BTreeSet<_>>().len();
    wait_until("every record scored after the restart", 60, || {
        distinct() == 202
    })
    .await;
    let decided = || {
        ["alert", "revoke"]
            .iter()
            .map(|a| metrics.decisions_published.with_label_values(&[a]).get())
            .sum::<u64>()
    };
    wait_until("the pair spanning the restart decided", 30, || {
        decided() == 1
    })
    .await;
    // Commits resume once the group has its coordinator back (a commit
    // tried meanwhile may fail and is retried on the next tick).
    wait_until("everything committed after the restart", 60, || {
        committed_total(&k, 3) == 202
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}
