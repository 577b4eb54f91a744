//! Every Prometheus metric tokenwatch exports, defined in one place and
//! registered once. Names follow `tokenwatch_<noun>_<unit>`; counters end in
//! `_total`; labels take small fixed sets of values, never a token id, IP or
//! subject. `docs/metrics.md` describes each.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub events_consumed: IntCounter,
    pub events_rejected: IntCounterVec,
    pub deadletters: IntCounterVec,
    pub processing_seconds: Histogram,
    pub detection_latency_seconds: Histogram,
    pub verdicts: IntCounterVec,
    pub tokens_flagged: IntCounterVec,
    pub score: Histogram,
    pub tokens_tracked: IntGauge,
    pub tokens_evicted: IntCounter,
    pub tokens_expired: IntCounter,
    pub events_late: IntCounter,
    pub events_gateway_rejected: IntCounter,
    pub geo_lookups: IntCounterVec,
    pub geo_build_epoch: Gauge,
    pub geo_reloads: IntCounterVec,
    pub model_info: IntGaugeVec,
    pub model_reloads: IntCounterVec,
    pub model_pin_mismatch: IntGauge,
    pub decisions_published: IntCounterVec,
    pub revocations: IntCounterVec,
    pub revocation_seconds: HistogramVec,
    pub target_retries: IntCounterVec,
    pub target_pending: IntGaugeVec,
    pub commits: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub consumer_rejoins: IntCounterVec,
    pub policy_mode: IntGaugeVec,
    pub brake_engaged: IntGauge,
    pub brake_held: IntGauge,
    pub jwks_refreshes: IntCounterVec,
    pub records_normalized: IntCounter,
    pub normalize_rejected: IntCounterVec,
    pub normalize_seconds: Histogram,
    pub allowlist_entries: IntGauge,
    pub denylist_entries: IntGauge,
    pub denylist_checks: IntCounterVec,
    pub check_seconds: Histogram,
    pub http_connections: IntGaugeVec,
    pub state_writes: IntCounterVec,
    pub state_restored: IntCounter,
    pub population_records: IntCounterVec,
    pub audit_records: IntCounterVec,
    pub control_applied: Gauge,
    pub control_refused: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        // Scoring or normalizing a record takes 1–5 µs: buckets from 0.5 µs,
        // doubling to 65 ms, so the quantiles mean something (from 10 µs
        // every sample fell in the first bucket).
        let latency = prometheus::exponential_buckets(0.000_000_5, 2.0, 18).expect("valid buckets");
        let wall = prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets");
        let m = Metrics {
            events_consumed: counter(&r, "tokenwatch_events_consumed_total", "Telemetry records consumed and scored."),
            events_rejected: counter_vec(
                &r,
                "tokenwatch_events_rejected_total",
                "Telemetry records rejected as malformed, by reason.",
                &["reason"],
            ),
            deadletters: counter_vec(
                &r,
                "tokenwatch_deadletters_total",
                "Records published to the dead-letter topic, by reason.",
                &["reason"],
            ),
            processing_seconds: histogram(
                &r,
                "tokenwatch_event_processing_seconds",
                "Time to parse, enrich, score and hand off one record.",
                latency.clone(),
            ),
            detection_latency_seconds: histogram(
                &r,
                "tokenwatch_detection_latency_seconds",
                "From the request's event time to its verdict.",
                wall.clone(),
            ),
            verdicts: counter_vec(&r, "tokenwatch_verdicts_total", "Verdicts by action.", &["action"]),
            tokens_flagged: counter_vec(
                &r,
                "tokenwatch_tokens_flagged_total",
                "Tokens escalated to an action for the first time, by action and reason.",
                &["action", "reason"],
            ),
            score: histogram(
                &r,
                "tokenwatch_verdict_score_ratio",
                "Risk score of each verdict.",
                vec![0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999],
            ),
            tokens_tracked: {
                let g = IntGauge::new("tokenwatch_tokens_tracked", "Tokens with live state in this instance.")
                    .expect("valid metric");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            tokens_evicted: counter(
                &r,
                "tokenwatch_tokens_evicted_total",
                "Token states dropped to stay under the tracked-token cap.",
            ),
            tokens_expired: counter(&r, "tokenwatch_tokens_expired_total", "Token states expired (idle or past exp)."),
            events_late: counter(
                &r,
                "tokenwatch_events_late_total",
                "Events older than the disorder window: scored, but moved no rate or sighting.",
            ),
            events_gateway_rejected: counter(
                &r,
                "tokenwatch_events_gateway_rejected_total",
                "Requests the gateway refused (detect.rejected_statuses): not scored, moved no state.",
            ),
            geo_lookups: counter_vec(
                &r,
                "tokenwatch_geo_lookups_total",
                "Geo resolutions by path: per-token shortcut, cache hit, database lookup.",
                &["path"],
            ),
            geo_build_epoch: {
                let g = Gauge::new(
                    "tokenwatch_geo_database_build_timestamp_seconds",
                    "Build time of the loaded City database.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            geo_reloads: counter_vec(
                &r,
                "tokenwatch_geo_reloads_total",
                "Geo database reloads by result.",
                &["result"],
            ),
            model_info: gauge_vec(&r, "tokenwatch_model_info", "The loaded model (value 1).", &["version"]),
            model_reloads: counter_vec(
                &r,
                "tokenwatch_model_reloads_total",
                "Model file reloads (SIGHUP) by result.",
                &["result"],
            ),
            model_pin_mismatch: gauge(
                &r,
                "tokenwatch_model_pin_mismatch",
                "1 while the fleet pinned a model version this instance has not loaded (its file holds another).",
            ),
            decisions_published: counter_vec(
                &r,
                "tokenwatch_decisions_published_total",
                "Decisions written to the decision log, by action.",
                &["action"],
            ),
            revocations: counter_vec(
                &r,
                "tokenwatch_revocations_total",
                "Decision outcomes per response target (rfc7009, a subject-logout name, denylist, alerts, a webhook name).",
                &["target", "outcome"],
            ),
            revocation_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new("tokenwatch_revocation_duration_seconds", "Time to settle one decision across all its targets.")
                        .buckets(wall),
                    &["result"],
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("metric registered once");
                h
            },
            target_retries: counter_vec(
                &r,
                "tokenwatch_target_retries_total",
                "Attempts a response target made again after a failure, by target.",
                &["target"],
            ),
            target_pending: gauge_vec(
                &r,
                "tokenwatch_target_pending_decisions",
                "Decisions a response target is still retrying, by target.",
                &["target"],
            ),
            commits: counter_vec(&r, "tokenwatch_kafka_commits_total", "Offset commits by result.", &["result"]),
            consumer_rejoins: counter_vec(
                &r,
                "tokenwatch_consumer_rejoins_total",
                "Times a consumer holding no partition rejoined its group because a partition had no holder (a broker that left it unowned).",
                &["consumer"],
            ),
            consumer_lag: gauge_vec(
                &r,
                "tokenwatch_consumer_lag_messages",
                "Messages behind the high watermark, by topic and partition.",
                &["topic", "partition"],
            ),
            policy_mode: gauge_vec(&r, "tokenwatch_policy_mode", "Response mode in force (value 1).", &["mode"]),
            brake_engaged: {
                let g = IntGauge::new(
                    "tokenwatch_brake_engaged",
                    "1 while the brake against mass revocation holds revocations.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            records_normalized: counter(
                &r,
                "tokenwatch_normalized_records_total",
                "Gateway records republished as telemetry by the normalize stage.",
            ),
            normalize_rejected: counter_vec(
                &r,
                "tokenwatch_normalize_rejected_total",
                "Gateway records the normalize stage dead-lettered, by reason.",
                &["reason"],
            ),
            normalize_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "tokenwatch_normalize_seconds",
                        "Time to read one gateway record into telemetry (before the publish).",
                    )
                    .buckets(latency.clone()),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            },
            brake_held: {
                let g = IntGauge::new(
                    "tokenwatch_brake_held_decisions",
                    "Revoke decisions the brake holds on this instance until an operator resets it (release or drop).",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            jwks_refreshes: counter_vec(
                &r,
                "tokenwatch_jwks_refreshes_total",
                "Fetches of the issuer's JWKS (gateway.jwks_url) by result.",
                &["result"],
            ),
            allowlist_entries: {
                let g = IntGauge::new("tokenwatch_allowlist_entries", "Entries in the operator's allowlist.")
                    .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            denylist_entries: {
                let g = IntGauge::new(
                    "tokenwatch_denylist_entries",
                    "Revoked tokens on the edge denylist held by this instance.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            denylist_checks: counter_vec(
                &r,
                "tokenwatch_denylist_checks_total",
                "Edge checks (auth_request / ext_authz) by result: allowed, denied, unreadable, not_ready.",
                &["result"],
            ),
            check_seconds: histogram(
                &r,
                "tokenwatch_check_seconds",
                "Time to answer one edge check (/v1/check), header read to verdict.",
                latency.clone(),
            ),
            http_connections: gauge_vec(
                &r,
                "tokenwatch_http_connections",
                "Open HTTP connections, by listener (api, edge, metrics, or those sharing one socket joined by +).",
                &["listener"],
            ),
            state_writes: counter_vec(
                &r,
                "tokenwatch_state_writes_total",
                "Token states written to the state changelog, by result: ok, error, restore_error.",
                &["result"],
            ),
            state_restored: counter(
                &r,
                "tokenwatch_state_restored_total",
                "Token states taken from the state changelog after a partition was assigned.",
            ),
            population_records: counter_vec(
                &r,
                "tokenwatch_population_records_total",
                "Population-table records (shared egress, familiar places, rate baseline), by result: written, write_error, applied, refused.",
                &["result"],
            ),
            audit_records: counter_vec(
                &r,
                "tokenwatch_audit_records_total",
                "Audit-topic records read into /v1/audit and /v1/alerts, by result: applied, refused (not an audit entry), not_an_alert (a flag whose alert this build cannot list).",
                &["result"],
            ),
            control_applied: {
                let g = Gauge::new(
                    "tokenwatch_control_applied_timestamp_seconds",
                    "Time of the latest fleet control change (mode, brake, allowlist) this instance applied: its policy version.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            control_refused: counter_vec(
                &r,
                "tokenwatch_control_records_refused_total",
                "Control-topic records not applied, by reason: signature, key, malformed.",
                &["reason"],
            ),
            registry: r,
        };
        m.zero_known_series();
        m
    }

    /// Creates the series an alert watches at 0, so the first flag or the
    /// first failure after a restart is an increase Prometheus can see
    /// (a counter that appears already at 1 has no increase).
    fn zero_known_series(&self) {
        for reason in ["signature", "key", "malformed"] {
            self.control_refused.with_label_values(&[reason]);
        }
        for action in ["alert", "revoke"] {
            for reason in ["impossible_travel", "concurrent_use", "model", "manual"] {
                self.tokens_flagged.with_label_values(&[action, reason]);
            }
            self.decisions_published.with_label_values(&[action]);
        }
    }

    /// Creates the outcome series of every configured response target at
    /// 0, so the first failure after a restart is an `increase()`.
    /// `outcomes` are the labels the outcome type defines.
    pub fn zero_targets(&self, targets: &[&str], outcomes: &[&str]) {
        for target in targets {
            for outcome in outcomes {
                self.revocations.with_label_values(&[target, outcome]);
            }
            self.target_retries.with_label_values(&[target]);
            self.target_pending.with_label_values(&[target]);
        }
    }

    pub fn set_model_version(&self, version: &str) {
        self.model_info.reset();
        self.model_info.with_label_values(&[version]).set(1);
    }

    pub fn set_mode(&self, mode: &str) {
        self.policy_mode.reset();
        self.policy_mode.with_label_values(&[mode]).set(1);
    }

    pub fn set_brake(&self, holding: bool) {
        self.brake_engaged.set(i64::from(holding));
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
