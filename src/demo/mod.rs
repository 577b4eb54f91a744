//! `tokenwatch demo`: the whole pipeline in one process, on real parts.
//!
//! librdkafka's mock cluster stands in for Kafka (the real protocol, on
//! loopback), a small authorization server issues opaque tokens and revokes
//! them through RFC 7009, the simulator plays gateway traffic with stolen
//! tokens in real time, and the unmodified `serve` path consumes, scores,
//! decides and revokes. Each detection is printed as it is settled, checked
//! against the authorization server, and a summary closes the run.

mod authserver;
mod summary;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::clock::now_ms;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

use crate::kafka::TopicWriter;
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use authserver::AuthServer;
use summary::print_summary;

use crate::config::{RawConfig, RawRfc7009};
use crate::geo::GeoHandle;
use crate::metrics::Metrics;
use crate::respond::{ClientAuth, Outcome, Settled};
use crate::seal::Sealer;
use crate::sim::{self, Scenario, SimParams, World};
use crate::telemetry::keyed_token_id;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// How long to play traffic for.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Requests per second, roughly.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where the HTTP API (/v1/…, /metrics, /healthz, /readyz) listens.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Share of tokens that get stolen.
    #[arg(long, default_value_t = 0.02)]
    pub attack_share: f64,
    #[arg(long, default_value = "models/default.json")]
    pub model: std::path::PathBuf,
    #[arg(long, default_value = "data/geo/demo-city.mmdb")]
    pub city_db: std::path::PathBuf,
    #[arg(long, default_value = "data/geo/demo-asn.mmdb")]
    pub asn_db: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("kafka mock cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error("authorization server: {0}")]
    Io(#[from] std::io::Error),
}

/// What the demo saw, for its summary and for tests.
#[derive(Debug, Default, Clone)]
pub struct DemoSummary {
    pub events: usize,
    pub tokens: usize,
    pub attacked_tokens: usize,
    pub revoked_attacks: usize,
    pub flagged_legit: usize,
    pub revocations_confirmed: u64,
    /// Attacker's first request published → revocation settled, ms.
    pub latencies_ms: Vec<u64>,
    /// What the edge check (`/v1/check`, as NGINX `auth_request` asks it)
    /// answered at the end for a revoked stolen token and a legitimate one.
    pub edge_check: Option<(u16, u16)>,
    revoked_ids: Vec<String>,
    pub metrics_addr: Option<SocketAddr>,
}

struct TokenInfo {
    raw: String,
    scenario: Scenario,
    sub: String,
}

/// When each stolen token's first attacker request was published, ms.
type FirstAttack = Arc<std::sync::Mutex<HashMap<String, i64>>>;

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> Result<DemoSummary, DemoError> {
    let cluster = MockCluster::new(1)?;
    let brokers = cluster.bootstrap_servers();
    let mut cfg = RawConfig::default();
    cfg.kafka.brokers = brokers.clone();
    cfg.kafka.commit_interval = Duration::from_millis(500);

    let stop_all = CancellationToken::new();
    let auth = AuthServer::start(stop_all.clone()).await?;
    let seal_key = Sealer::generate_key();
    let sealer = Sealer::new([("demo", seal_key.as_str())]).expect("generated key is valid");
    let id_secret = Sealer::generate_key();
    cfg.respond
        .seal_keys
        .insert("demo".into(), seal_key.clone());
    cfg.respond.rfc7009 = Some(RawRfc7009 {
        url: auth.revocation_url(),
        client_id: auth.client_id.clone(),
        client_secret: auth.client_secret.clone(),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_secs(5),
        max_retries: 6,
    });
    // The edge check derives ids the way the demo's gateway does.
    cfg.gateway.hash_key = id_secret.clone();
    cfg.http.listen = args.listen.to_string();
    // A fresh admin credential per run, printed so the admin API can be tried.
    let admin_token = format!("demo-{:032x}", rand::random::<u128>());
    cfg.http.admin_token = admin_token.clone();
    cfg.model.path = args.model.clone();
    cfg.geo.city_db = vec![args.city_db.clone()];
    cfg.geo.asn_db = Some(args.asn_db.clone());
    let topic = cfg.kafka.telemetry_topic.clone();
    let config = cfg.validate()?;
    for (topic, partitions) in config.kafka.topics() {
        cluster.create_topic(topic, partitions, 1)?;
    }

    // Real-time traffic: timestamps are wall-clock, so detection latency is real.
    let geo = GeoHandle::open(vec![args.city_db.clone()], Some(args.asn_db.clone()))?;
    let world = World::from_geo(&geo.load().db);
    let mean_gap_ms = 3_000.0;
    let span_ms = args.duration.as_millis() as i64;
    // Generated at a fixed reference time (the simulator's activity follows
    // the local hour), then moved to now: the same seed gives the same
    // traffic whatever the time of day the demo runs.
    let reference_ms = SimParams::default().start_ms;
    let params = SimParams {
        seed: args.seed,
        start_ms: reference_ms,
        span_ms,
        users: ((f64::from(args.rate) * mean_gap_ms / 1000.0) as u32).max(10),
        attack_share: args.attack_share,
        token_life_ms: ((span_ms / 3).max(5_000), span_ms.max(10_000)),
        mean_gap_ms,
        p_flight: 0.0,
        attack_delay_ms: (500, 3_000),
        ..SimParams::default()
    };
    let mut events = sim::generate(&world, &params);
    let shift = now_ms() + 2_000 - reference_ms;
    events.iter_mut().for_each(|e| e.shift(shift));

    // Mint a real token per simulated token: the gateway would see it.
    let mut tokens: HashMap<u32, (String, String)> = HashMap::new();
    let mut info: HashMap<String, TokenInfo> = HashMap::new();
    for e in &events {
        tokens.entry(e.token_seq).or_insert_with(|| {
            let sub = format!("user-{:05}", e.sub);
            let raw = auth.issue(&sub);
            let id = keyed_token_id(id_secret.as_bytes(), &raw);
            let handle = sealer.seal(&id, &raw);
            info.insert(
                id.clone(),
                TokenInfo {
                    raw,
                    scenario: e.label.scenario,
                    sub,
                },
            );
            (id, handle)
        });
    }
    let attacked = info.values().filter(|t| t.scenario.is_attack()).count();
    println!(
        "tokenwatch demo: {} requests over {:?} from {} users, {} tokens, {attacked} of them stolen; /metrics on http://{}/metrics",
        events.len(),
        args.duration,
        params.users,
        info.len(),
        args.listen
    );
    println!(
        "  try: curl -s -H 'Authorization: Bearer {admin_token}' http://{0}/v1/alerts | head -c 600; echo\n  admin: curl -s -H 'Authorization: Bearer {admin_token}' http://{0}/v1/allowlist",
        args.listen
    );

    let metrics = Arc::new(Metrics::new());
    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<Settled>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let hooks = crate::serve::Hooks {
        decisions: None,
        settled: Some(settled_tx),
        http_bound: Some(bound_tx),
        metrics: Some(metrics.clone()),
    };
    let serve_stop = stop_all.clone();
    let service = tokio::spawn(crate::serve::serve(config, serve_stop, hooks));
    let metrics_addr = bound_rx.await.ok().map(|b| b.metrics);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let mut summary = DemoSummary {
        events: events.len(),
        tokens: info.len(),
        attacked_tokens: attacked,
        metrics_addr,
        ..Default::default()
    };

    // The gateway side: publish each request when it is due, without waiting
    // for delivery, as a gateway's log shipper would.
    let first_attack: FirstAttack = Arc::default();
    let publisher = {
        let first_attack = first_attack.clone();
        let stop = shutdown.clone();
        let records: Vec<(i64, bool, String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let (id, handle) = &tokens[&e.token_seq];
                let payload = serde_json::to_vec(&e.to_wire(id, Some(handle), false))
                    .expect("record serialises");
                (e.ts_ms, e.label.attacker, id.clone(), payload)
            })
            .collect();
        let writer = TopicWriter::new(producer.clone(), topic.as_str());
        tokio::spawn(async move {
            for (ts, attacker, id, payload) in records {
                let wait = ts - now_ms();
                if wait > 0 {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    }
                }
                if attacker {
                    first_attack
                        .lock()
                        .expect("demo lock")
                        .entry(id.clone())
                        .or_insert_with(now_ms);
                }
                // Not awaited: a gateway's shipper does not wait either.
                if let Err(e) = writer.queue_when_room(id.as_bytes(), &payload).await {
                    tracing::warn!(error = %e, "demo: a request was not published");
                }
            }
            let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
        })
    };

    let drain_until = tokio::time::Instant::now() + args.duration + Duration::from_secs(8);
    let mut publisher = publisher;
    let mut published = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = &mut publisher, if !published => {
                published = true;
                let _ = r;
            }
            s = settled_rx.recv() => match s {
                Some(s) => {
                    report(&s, &info, &first_attack, &auth, &mut summary);
                    // Ask the edge right away, while the token is unexpired.
                    if summary.edge_check.is_none() && !summary.revoked_ids.is_empty() {
                        summary.edge_check =
                            edge_check(metrics_addr, &summary.revoked_ids, &info).await;
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    stop_all.cancel();
    let _ = service.await;
    while let Ok(s) = settled_rx.try_recv() {
        report(&s, &info, &first_attack, &auth, &mut summary);
    }
    summary.revocations_confirmed = auth.revocations();
    print_summary(&summary, &metrics);
    // Clients first, so none of them reports the cluster going away.
    if !published {
        publisher.abort();
        let _ = publisher.await;
    }
    drop(cluster);
    Ok(summary)
}

/// Asks the edge check about a revoked stolen token and a legitimate one,
/// with their raw values in `Authorization`, as the gateway would.
async fn edge_check(
    addr: Option<SocketAddr>,
    revoked: &[String],
    info: &HashMap<String, TokenInfo>,
) -> Option<(u16, u16)> {
    let addr = addr?;
    let stolen = &info.get(revoked.first()?)?.raw;
    let legit = &info.values().find(|t| !t.scenario.is_attack())?.raw;
    let http = reqwest::Client::new();
    let ask = |token: &str| {
        http.get(format!("http://{addr}/v1/check"))
            .bearer_auth(token)
            .send()
    };
    let denied = ask(stolen).await.ok()?.status().as_u16();
    let allowed = ask(legit).await.ok()?.status().as_u16();
    println!(
        "edge check (/v1/check, as NGINX auth_request asks it): a revoked stolen token → {denied}, a legitimate token → {allowed}"
    );
    Some((denied, allowed))
}

fn report(
    s: &Settled,
    info: &HashMap<String, TokenInfo>,
    first_attack: &FirstAttack,
    auth: &AuthServer,
    summary: &mut DemoSummary,
) {
    let d = &s.decision;
    let Some(t) = info.get(&d.token_id) else {
        return;
    };
    let truth = if t.scenario.is_attack() {
        format!("stolen: {}", t.scenario.as_str())
    } else {
        format!("FALSE POSITIVE: {}", t.scenario.as_str())
    };
    let outcome = match s.outcome_of(crate::respond::RFC7009) {
        Some(Outcome::Revoked { .. }) => {
            let active = auth.is_active(&t.raw);
            let since = first_attack
                .lock()
                .expect("demo lock")
                .get(&d.token_id)
                .map(|at| (s.settled_at_ms - at).max(0) as u64);
            if t.scenario.is_attack() && !active {
                summary.revoked_attacks += 1;
                summary.revoked_ids.push(d.token_id.clone());
                if let Some(ms) = since {
                    summary.latencies_ms.push(ms);
                }
            }
            match since {
                Some(ms) => format!("revoked in {} ms (IdP says active={active}); {ms} ms after the attacker's first request", s.took.as_millis()),
                None => format!("revoked in {} ms (IdP says active={active})", s.took.as_millis()),
            }
        }
        _ => serde_json::to_string(&s.outcomes).unwrap_or_default(),
    };
    if !t.scenario.is_attack() {
        summary.flagged_legit += 1;
    }
    let short = &d.token_id[..d.token_id.len().min(14)];
    println!(
        "⚑ {short}… {} score {:.3} [{truth}]\n    why: {}\n    → {outcome}",
        t.sub, d.score, d.explanation
    );
}
