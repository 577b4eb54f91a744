//! The scoring consumer's handler: telemetry record → verdict → (when a
//! token escalates) a decision in the decision log. Malformed records go to
//! the dead-letter topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

use std::sync::atomic::Ordering;

use super::changelog::Changelog;
use super::consumer::{Handled, Handler, Transient};
use super::context::Readiness;
use super::deadletter;
use super::population::PopulationLog;
use crate::clock::now_ms;
use crate::decide;
use crate::decide::{Flagger, SharedDetector};
use crate::detect::DetectorStats;
use crate::gateway::Normalizer;
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::telemetry::{check_not_future, Event};

pub struct ScoringHandler {
    detector: SharedDetector,
    deadletters: TopicWriter,
    flagger: Arc<Flagger>,
    metrics: Arc<Metrics>,
    since_stats: u32,
    /// `detect.max_clock_skew`: later event times are dead-lettered.
    max_skew_ms: i64,
    /// The detector's counters as last exported, to add only the increase.
    last_stats: DetectorStats,
    /// Topics of gateway logs, read through their adapter.
    gateways: HashMap<String, Normalizer>,
    /// Per-token state written to / read back from `kafka.state_topic`.
    changelog: Option<(Changelog, Arc<Readiness>)>,
    /// The population tables written to `kafka.population_topic`, and
    /// whether that topic has been read to its end (scoring waits for it).
    population: Option<(PopulationLog, tokio::sync::watch::Receiver<bool>)>,
    /// Debug builds only: a token id whose record makes this handler panic,
    /// from `TW_TEST_FAULT_PANIC_TOKEN`, so a test can prove the process
    /// stops rather than scoring nothing. Release builds have no such path.
    #[cfg(debug_assertions)]
    fault_token: Option<String>,
}

impl ScoringHandler {
    pub fn new(
        detector: SharedDetector,
        producer: FutureProducer,
        deadletter_topic: String,
        flagger: Arc<Flagger>,
        metrics: Arc<Metrics>,
    ) -> ScoringHandler {
        let max_skew_ms = decide::lock(&detector).params().max_clock_skew_ms;
        ScoringHandler {
            max_skew_ms,
            detector,
            deadletters: TopicWriter::new(producer, deadletter_topic),
            flagger,
            metrics,
            since_stats: 0,
            last_stats: DetectorStats::default(),
            #[cfg(debug_assertions)]
            fault_token: std::env::var("TW_TEST_FAULT_PANIC_TOKEN").ok(),
            gateways: HashMap::new(),
            changelog: None,
            population: None,
        }
    }

    /// Keeps the population tables in their topic; scoring starts once
    /// `loaded` says it has been read.
    pub fn with_population(
        mut self,
        log: PopulationLog,
        loaded: tokio::sync::watch::Receiver<bool>,
    ) -> ScoringHandler {
        self.population = Some((log, loaded));
        self
    }

    /// Keeps per-token state in `changelog`, restoring a partition's when
    /// it is first seen after a rebalance counted by `readiness`.
    pub fn with_changelog(
        mut self,
        changelog: Option<Changelog>,
        readiness: Arc<Readiness>,
    ) -> ScoringHandler {
        readiness
            .changelog
            .store(changelog.is_some(), std::sync::atomic::Ordering::Release);
        self.changelog = changelog.map(|c| (c, readiness));
        self
    }

    /// Reads these topics as gateway logs (topic → adapter).
    pub fn with_gateways(mut self, gateways: HashMap<String, Normalizer>) -> ScoringHandler {
        self.gateways = gateways;
        self
    }

    async fn reject(
        &self,
        msg: &BorrowedMessage<'_>,
        payload: Option<&[u8]>,
        reason: &'static str,
        error: &str,
    ) -> Result<Handled, Transient> {
        let published = match payload {
            Some(p) => deadletter::publish_payload(&self.deadletters, msg, p, reason, error).await,
            None => deadletter::publish(&self.deadletters, msg, reason, error).await,
        };
        published.map_err(|e| Transient(format!("dead-letter topic: {e}")))?;
        self.metrics
            .events_rejected
            .with_label_values(&[reason])
            .inc();
        self.metrics.deadletters.with_label_values(&[reason]).inc();
        tracing::debug!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            reason,
            "record dead-lettered"
        );
        Ok(Handled::Done)
    }

    /// Folds the detector's own counters into the exported ones.
    fn observe_detector(&mut self, s: DetectorStats) {
        let last = &mut self.last_stats;
        let d = |now: u64, before: u64| now.saturating_sub(before);
        self.metrics
            .geo_lookups
            .with_label_values(&["shortcut"])
            .inc_by(d(s.geo_shortcut_hits, last.geo_shortcut_hits));
        self.metrics
            .geo_lookups
            .with_label_values(&["cache_hit"])
            .inc_by(d(s.geo_cache_hits, last.geo_cache_hits));
        self.metrics
            .geo_lookups
            .with_label_values(&["database"])
            .inc_by(d(s.geo_cache_misses, last.geo_cache_misses));
        self.metrics
            .tokens_evicted
            .inc_by(d(s.evicted, last.evicted));
        self.metrics
            .tokens_expired
            .inc_by(d(s.expired, last.expired));
        self.metrics.tokens_tracked.set(s.tracked as i64);
        self.metrics.events_late.inc_by(d(s.late, last.late));
        self.metrics
            .events_gateway_rejected
            .inc_by(d(s.rejected, last.rejected));
        *last = s;
    }
}

impl Handler for ScoringHandler {
    async fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<Handled, Transient> {
        if let Some((_, loaded)) = &mut self.population {
            if !*loaded.borrow() {
                // Scored against empty tables, a VPN's users would look
                // like thieves until the fleet's knowledge was read back.
                tracing::info!("scoring waits for the population tables");
                if loaded.wait_for(|l| *l).await.is_err() {
                    return Err(Transient("the population follower stopped".into()));
                }
            }
        }
        if let Some((log, readiness)) = &mut self.changelog {
            let generation = readiness.rebalances.load(Ordering::Acquire);
            log.ensure_restored(msg.partition(), generation, &self.detector, &self.metrics)
                .await;
        }
        let start = Instant::now();
        let payload = msg.payload().unwrap_or_default();
        // Gateway logs are read into events by their adapter; the native
        // topic (the hot path) pays one emptiness check for this.
        let gateway = if self.gateways.is_empty() {
            None
        } else {
            self.gateways.get(msg.topic())
        };
        let (event, others) = match gateway {
            None => match Event::parse(payload) {
                Ok(e) => (e, Vec::new()),
                Err(e) => {
                    return self.reject(msg, None, e.reason(), &e.to_string()).await;
                }
            },
            Some(n) => match n.normalize_all(payload) {
                Ok(n) => (n.event, n.others),
                Err(e) => {
                    let safe = n.redact(payload);
                    return self
                        .reject(msg, Some(&safe), e.reason(), &e.to_string())
                        .await;
                }
            },
        };
        if let Err(e) = check_not_future(event.ts_ms, now_ms(), self.max_skew_ms) {
            let safe = gateway.map(|n| n.redact(payload));
            return self
                .reject(msg, safe.as_deref(), e.reason(), &e.to_string())
                .await;
        }
        let mut flags = Vec::new();
        // A request carrying several bearer tokens is the traffic of each.
        for event in std::iter::once(event).chain(others) {
            flags.extend(self.score(&event, msg.partition(), start));
        }
        Ok(match flags.len() {
            0 => Handled::Done,
            1 => Handled::InFlight(flags.pop().expect("one")),
            _ => Handled::InFlight(tokio::spawn(async move {
                let mut acknowledged = true;
                for f in flags {
                    acknowledged &= f.await.unwrap_or(false);
                }
                acknowledged
            })),
        })
    }

    fn commits_state(&self) -> bool {
        self.changelog.is_some() || self.population.is_some()
    }

    async fn before_commit(&mut self, last: bool) {
        if let Some((log, _)) = &self.population {
            log.write(&self.detector, &self.metrics).await;
        }
        if let Some((log, _)) = &mut self.changelog {
            log.write(&self.detector, &self.metrics).await;
            if last {
                log.flush(&self.metrics).await;
            }
        }
    }

    fn tick(&mut self) {
        self.since_stats = 0;
        let stats = decide::lock(&self.detector).stats();
        self.observe_detector(stats);
    }
}

impl ScoringHandler {
    /// Scores one event; the decision's delivery when the token escalates.
    fn score(
        &mut self,
        event: &Event<'_>,
        partition: i32,
        start: Instant,
    ) -> Option<tokio::task::JoinHandle<bool>> {
        #[cfg(debug_assertions)]
        if self.fault_token.as_deref() == Some(&*event.token_id) {
            panic!("fault injected for a test (TW_TEST_FAULT_PANIC_TOKEN)");
        }
        let scored = decide::score(&self.detector, event, false);
        let verdict = scored.verdict;
        if let Some((log, _)) = &mut self.changelog {
            log.touched(verdict.key, partition);
        }
        let m = &self.metrics;
        m.events_consumed.inc();
        m.verdicts
            .with_label_values(&[verdict.action.as_str()])
            .inc();
        m.score.observe(f64::from(verdict.score.score));
        m.detection_latency_seconds
            .observe(((now_ms() - event.ts_ms).max(0) as f64) / 1000.0);
        m.processing_seconds.observe(start.elapsed().as_secs_f64());
        self.since_stats += 1;
        if self.since_stats >= 256 {
            self.tick();
        }
        match (scored.decision, scored.explanation) {
            // The detector has escalated the token already: from here the
            // decision is retried until the broker has it, never re-scored.
            (Some(decision), Some(explanation)) => Some(self.flagger.flag_in_background(
                decision,
                verdict,
                explanation,
            )),
            _ => None,
        }
    }
}
