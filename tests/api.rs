//! The HTTP API, driven without a socket (axum's `oneshot`) over the real
//! core, a real producer on librdkafka's mock cluster, and real files: every
//! route, its auth and its errors.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::kafka::create_mock_topics;
use common::*;
use http_body_util::BodyExt;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer};
use serde_json::{json, Value};
use tokenwatch::api::{app, AllowlistStore, AppState, Credential, EdgeCheck, Service};
use tokenwatch::config::{KafkaConfig, RawConfig};
use tokenwatch::decide::Alerts;
use tokenwatch::decide::{Flagger, Outbox};
use tokenwatch::ingest::{self, Readiness};
use tokenwatch::journal::Audit;
use tokenwatch::metrics::Metrics;
use tokenwatch::model::ModelSource;
use tokenwatch::respond::{Brake, BrakeLimits, Controls, DenyEntry, Denylist, Mode};
use tokenwatch::telemetry::{keyed_token_id, TokenHasher};

const HASH_KEY: &[u8] = b"edge-check-hash-key";
use tower::ServiceExt;

const ADMIN: &str = "test-admin-token-0123456789";
const READER: &str = "test-read-token-0123456789";
const SCORER: &str = "test-score-token-0123456789";
const RAW_JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl";

struct Fixture {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    kafka: KafkaConfig,
    state: AppState,
    _dir: tempfile::TempDir,
    model_path: std::path::PathBuf,
    allowlist_path: std::path::PathBuf,
}

fn fixture_with(admin: Option<&str>, brake: Brake) -> Fixture {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    let kafka = raw.validate().expect("config").kafka;
    create_mock_topics(&cluster, &kafka, 1);
    let producer: FutureProducer = ingest::producer_config(&kafka).create().expect("producer");
    let dir = tempfile::tempdir().expect("tempdir");
    let model_path = dir.path().join("model.json");
    std::fs::copy(repo("models/default.json"), &model_path).expect("model copy");
    let allowlist_path = dir.path().join("allowlist.json");
    let metrics = Arc::new(Metrics::new());
    let allowlist = AllowlistStore::new(
        Arc::new(ArcSwap::from_pointee(Default::default())),
        Some(allowlist_path.clone()),
    );
    let detector = detector().with_allowlist(allowlist.handle.clone());
    let model = Arc::new(ModelSource::new(
        detector.model().clone(),
        model_path.clone(),
    ));
    let flagger = Flagger::new(
        Outbox::new(producer.clone(), kafka.decisions_topic.clone()),
        Arc::new(Alerts::default()),
        Arc::new(Audit::with_topic(1000, producer, kafka.audit_topic.clone())),
        metrics.clone(),
        None,
    );
    let state = AppState {
        metrics,
        readiness: Arc::new(Readiness::default()),
        service: Arc::new(Service {
            detector: Arc::new(Mutex::new(detector)),
            flagger: Arc::new(flagger),
            controls: Arc::new(Controls::new(Mode::Revoke, brake)),
            allowlist,
            model,
            admin_token: admin.map(Credential::new),
            read_token: Some(Credential::new(READER)),
            score_token: Some(Credential::new(SCORER)),
            // These tests drive the token's state through /v1/score; the
            // default dry run is tested in tests/adversarial.rs.
            score_updates_state: true,
            max_body_bytes: 4096,
            edge: Some(Arc::new(EdgeCheck {
                denylist: Arc::new(Denylist::default()),
                hasher: TokenHasher::new(HASH_KEY),
                verifier: None,
            })),
        }),
    };
    Fixture {
        _cluster: cluster,
        kafka,
        state,
        _dir: dir,
        model_path,
        allowlist_path,
    }
}

fn fixture() -> Fixture {
    fixture_with(Some(ADMIN), Brake::default())
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn call(
    f: &Fixture,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(f: &Fixture, path: &str) -> Resp {
    call(f, Method::GET, path, Some(READER), None).await
}

async fn admin(f: &Fixture, method: Method, path: &str, body: Option<Value>) -> Resp {
    call(
        f,
        method,
        path,
        Some(ADMIN),
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
}

async fn score(f: &Fixture, rec: Vec<u8>) -> Resp {
    call(f, Method::POST, "/v1/score", Some(SCORER), Some(rec)).await
}

// --------------------------------------------------------------------------
// Operations routes.

#[tokio::test]
async fn healthz_is_always_ok() {
    assert_eq!(get(&fixture(), "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_needs_an_assignment_and_a_model() {
    let f = fixture();
    let r = get(&f, "/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text.contains("assigned=false"));
    let ready = &f.state.readiness;
    ready.model_loaded.store(true, Ordering::Release);
    assert_eq!(
        get(&f, "/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    ready.assigned.store(true, Ordering::Release);
    assert_eq!(get(&f, "/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_exposed_in_the_text_format_with_project_names() {
    let f = fixture();
    let m = &f.state.metrics;
    m.events_consumed.inc_by(3);
    m.events_rejected.with_label_values(&["json"]).inc();
    m.set_model_version("lr-test");
    let r = get(&f, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let ctype = r.headers["content-type"].to_str().unwrap();
    assert!(ctype.starts_with("text/plain; version=0.0.4"));
    assert!(r.text.contains("tokenwatch_events_consumed_total 3"));
    assert!(r
        .text
        .contains("tokenwatch_events_rejected_total{reason=\"json\"} 1"));
    assert!(r
        .text
        .contains("tokenwatch_model_info{version=\"lr-test\"} 1"));
    for line in r.text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("tokenwatch_"), "unprefixed metric: {line}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_with_a_json_error() {
    let r = get(&fixture(), "/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not_found");
}

// --------------------------------------------------------------------------
// Scoring and queries.

#[tokio::test]
async fn score_flags_impossible_travel_once_and_logs_the_decision() {
    let f = fixture();
    let r = score(&f, record("tok-1", 0.0, PARIS, BROWSER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let first = r.json();
    assert_eq!(first["action"], "none");
    assert_eq!(first["escalated"], false);
    assert!(first["features"]["velocity_kmh"].is_number(), "{first}");

    let r = score(&f, record("tok-1", 600.0, SINGAPORE, TOOL)).await;
    let v = r.json();
    assert_eq!(v["action"], "revoke", "{v}");
    assert_eq!(v["escalated"], true);
    // Nobody has signed in from that network: revoked at once.
    assert_eq!(v["rule"], "travel_to_unknown_egress");
    assert!(
        v["explanation"].as_str().unwrap().contains("Singapore"),
        "{v}"
    );
    assert_eq!(v["decision_id"], "tok-1/revoke");
    assert!(!v["top"].as_array().unwrap().is_empty());

    // Same token again: scored, not acted on twice.
    let v = score(&f, record("tok-1", 660.0, PARIS, BROWSER))
        .await
        .json();
    assert_eq!(v["escalated"], false);
    assert!(v["decision_id"].is_null());

    let decisions = topic_json(&f.kafka.brokers, &f.kafka.decisions_topic, 2, 5);
    assert_eq!(decisions.len(), 1, "one decision in the log: {decisions:?}");
    assert_eq!(decisions[0]["decision_id"], "tok-1/revoke");

    let alerts = get(&f, "/v1/alerts").await.json();
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["token_id"], "tok-1");
    assert!(items[0]["features"]["velocity_kmh"].as_f64().unwrap() > 1000.0);

    let audit = get(&f, "/v1/audit?token_id=tok-1").await.json();
    assert_eq!(audit["items"][0]["action"], "flagged");
    let on_topic = topic_json(&f.kafka.brokers, &f.kafka.audit_topic, 1, 5);
    assert_eq!(on_topic[0]["action"], "flagged");
    assert_eq!(on_topic[0]["token_id"], "tok-1");
}

#[tokio::test]
async fn score_rejects_bad_records_with_the_reason_and_never_echoes_a_token() {
    let f = fixture();
    let r = score(&f, b"{not json".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().len() > 5);

    let missing = score(&f, br#"{"ts": 1795428000000, "token_id": "t"}"#.to_vec()).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.text.contains("sub") || missing.text.contains("ip"),
        "{}",
        missing.text
    );

    let mut rec: Value = serde_json::from_slice(&record("x", 0.0, PARIS, BROWSER)).unwrap();
    rec["token_id"] = json!(RAW_JWT);
    let r = score(&f, serde_json::to_vec(&rec).unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "raw_token");
    assert!(!r.text.contains(RAW_JWT));

    let big = vec![b' '; 8192];
    let r = score(&f, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"], "too_large");
}

#[tokio::test]
async fn token_view_shows_state_and_the_last_alert() {
    let f = fixture();
    score(&f, record("tok-v", 0.0, PARIS, BROWSER)).await;
    score(&f, record("tok-v", 600.0, SINGAPORE, TOOL)).await;
    let r = get(&f, "/v1/tokens/tok-v").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["tracked"], true);
    assert_eq!(v["state"]["requests"], 2);
    assert_eq!(v["state"]["flagged"], "revoke");
    assert_eq!(v["state"]["last_place"]["country"], "SG");
    assert_eq!(v["last_alert"]["rule"], "travel_to_unknown_egress");

    let r = get(&f, "/v1/tokens/never-seen").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["tracked"], false);

    let r = get(&f, &format!("/v1/tokens/{RAW_JWT}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.text.contains(RAW_JWT));
}

#[tokio::test]
async fn alerts_and_audit_page_newest_first() {
    let f = fixture();
    for i in 0..3 {
        let t = format!("tok-p{i}");
        score(&f, record(&t, 0.0, PARIS, BROWSER)).await;
        score(&f, record(&t, 600.0, SYDNEY, BROWSER)).await;
    }
    let p1 = get(&f, "/v1/alerts?limit=2").await.json();
    assert_eq!(p1["items"][0]["token_id"], "tok-p2");
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let before = p1["next_before"].as_u64().expect("more pages");
    let p2 = get(&f, &format!("/v1/alerts?limit=2&before={before}"))
        .await
        .json();
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2["items"][0]["token_id"], "tok-p0");
    assert!(p2["next_before"].is_null());
    let only = get(&f, "/v1/alerts?token_id=tok-p1").await.json();
    assert_eq!(only["items"].as_array().unwrap().len(), 1);

    for bad in [
        "/v1/alerts?limit=0",
        "/v1/alerts?limit=5000",
        "/v1/audit?limit=x",
        "/v1/audit?bogus=1",
    ] {
        let r = get(&f, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert!(r.json()["message"].is_string());
    }
}

/// Behind a Service, `/v1/alerts` and `/v1/audit` go to any instance: each
/// lists what the audit topic holds, under the topic's numbers, so a page
/// cursor from one is good on another. Another instance's rings, filled
/// only by reading the topic, list exactly what this one does; a record
/// that is not an audit entry, and a flag naming features this build does
/// not have, list nothing as alerts.
#[tokio::test]
async fn another_instance_lists_the_same_alerts_and_audit_under_the_same_numbers() {
    let f = fixture();
    for i in 0..3 {
        let t = format!("tok-s{i}");
        score(&f, record(&t, 0.0, PARIS, BROWSER)).await;
        score(&f, record(&t, 600.0, SYDNEY, BROWSER)).await;
    }
    let forged_flag = json!({"seq": 1, "at_ms": 1, "actor": "detector", "action": "flagged",
        "token_id": "tok-forged", "detail": {"decision_id": "x", "token_id": "tok-forged",
        "sub": "ceo", "action": "revoke", "score": 1.0, "rule": null, "explanation": "",
        "top": [{"feature": "no_such_feature", "value": 1.0, "contribution": 1.0}],
        "features": {}, "model_version": "m", "event_ts_ms": 1, "decided_at_ms": 1}});
    common::kafka::produce(
        &f.kafka.brokers,
        &f.kafka.audit_topic,
        &[
            ("junk".into(), b"not an audit entry".to_vec()),
            (
                "tok-forged".into(),
                serde_json::to_vec(&forged_flag).unwrap(),
            ),
        ],
    )
    .await;

    let metrics = Arc::new(Metrics::new());
    let (audit, alerts) = (Arc::new(Audit::in_memory(100)), Arc::new(Alerts::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ingest::journal::follow(
        f.kafka.clone(),
        f.kafka.audit_topic.clone(),
        ingest::journal::JournalFollower {
            audit: audit.clone(),
            alerts: alerts.clone(),
            metrics: metrics.clone(),
        },
        stop.clone(),
    ));
    let m = metrics.clone();
    wait_until("the audit topic read", 20, move || {
        m.audit_records.with_label_values(&["applied"]).get() >= 4
            && m.audit_records.with_label_values(&["refused"]).get() >= 1
    })
    .await;
    stop.cancel();
    let count = |r| metrics.audit_records.with_label_values(&[r]).get();
    assert_eq!((count("refused"), count("not_an_alert")), (1, 1));

    let here = get(&f, "/v1/alerts?limit=2").await.json();
    let there = as_api(&alerts.page(None, 2, None));
    assert_eq!(here["items"].as_array().unwrap().len(), 2);
    assert_eq!(here, there, "the same first page");
    let before = here["next_before"].as_u64().unwrap();
    let here = get(&f, &format!("/v1/alerts?limit=2&before={before}"))
        .await
        .json();
    let there = as_api(&alerts.page(Some(before), 2, None));
    assert_eq!(here["items"][0]["token_id"], "tok-s0");
    assert_eq!(here, there, "the same second page from the first's cursor");
    assert!(
        alerts.latest_for("tok-forged").is_none(),
        "a forged flag is no alert"
    );

    let there = audit.page(None, 100, None).items;
    let flagged: Vec<_> = there.iter().filter(|e| e.action == "flagged").collect();
    assert_eq!(
        flagged.len(),
        4,
        "three flags and the forged entry, as audit"
    );
    let here = get(&f, "/v1/audit?limit=3").await.json();
    let mine: Vec<Value> = there
        .iter()
        .filter(|e| e.token_id.as_deref() != Some("tok-forged"))
        .take(3)
        .map(as_api)
        .collect();
    assert_eq!(here["items"].as_array().unwrap(), &mine);
}

/// JSON as the API writes it (an f32 as an f32, not widened by to_value).
fn as_api(v: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

#[tokio::test]
async fn policy_is_public_and_shows_mode_brake_and_model() {
    let f = fixture();
    let v = get(&f, "/v1/policy").await.json();
    assert_eq!(v["mode"], "revoke");
    assert_eq!(v["brake"]["engaged"], false);
    assert!(v["model_version"].as_str().unwrap().starts_with("lrkm-"));
}

// --------------------------------------------------------------------------
// Admin routes.

fn admin_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/v1/tokens/tok-a/revoke",
            Some(json!({"reason": "user reported theft"})),
        ),
        (Method::GET, "/v1/allowlist", None),
        (
            Method::POST,
            "/v1/allowlist",
            Some(json!({"kind": "asn", "value": "AS64500"})),
        ),
        (Method::DELETE, "/v1/allowlist/nope", None),
        (Method::POST, "/v1/model/reload", None),
        (
            Method::PUT,
            "/v1/model/pin",
            Some(json!({"version": "m-2"})),
        ),
        (
            Method::PUT,
            "/v1/policy/mode",
            Some(json!({"mode": "shadow"})),
        ),
        (
            Method::POST,
            "/v1/policy/brake/reset",
            Some(json!({"held": "drop"})),
        ),
    ]
}

#[tokio::test]
async fn every_admin_route_needs_the_bearer_credential() {
    let f = fixture();
    for (method, path, body) in admin_routes() {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let none = call(&f, method.clone(), path, None, body.clone()).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(none.headers.contains_key("www-authenticate"));
        let wrong = call(
            &f,
            method.clone(),
            path,
            Some("not-the-admin-token"),
            body.clone(),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let right = call(&f, method.clone(), path, Some(ADMIN), body).await;
        assert!(
            right.status != StatusCode::UNAUTHORIZED && right.status != StatusCode::FORBIDDEN,
            "{method} {path}: {} {}",
            right.status,
            right.text
        );
    }
    // Nothing changed without the credential: the allowlist is as the one
    // authorised POST left it, the mode as the one authorised PUT set it.
    assert_eq!(f.state.service.allowlist.handle.load().entries().len(), 1);
}

#[tokio::test]
async fn admin_routes_are_refused_when_no_credential_is_configured() {
    let f = fixture_with(None, Brake::default());
    for (method, path, body) in admin_routes() {
        let r = call(
            &f,
            method.clone(),
            path,
            Some(ADMIN),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.json()["error"], "route_disabled");
    }
}

#[tokio::test]
async fn manual_revoke_goes_through_the_decision_log_and_is_audited() {
    let f = fixture();
    let r = admin(
        &f,
        Method::POST,
        "/v1/tokens/tok-m/revoke",
        Some(json!({"reason": "phished", "sub": "bob"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    // A decision of its own, so it acts whatever came before.
    let id = r.json()["decision_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tok-m/manual/"), "{id}");
    let d = topic_json(&f.kafka.brokers, &f.kafka.decisions_topic, 1, 5);
    assert_eq!(d[0]["decision_id"], id.as_str());
    assert_eq!(d[0]["rule"], "manual");
    assert_eq!(d[0]["sub"], "bob");
    assert_eq!(d[0]["action"], "revoke");
    let audit = get(&f, "/v1/audit?token_id=tok-m").await.json();
    assert_eq!(audit["items"][0]["actor"], "admin");
    assert_eq!(audit["items"][0]["detail"]["reason"], "phished");

    let empty = admin(
        &f,
        Method::POST,
        "/v1/tokens/tok-m/revoke",
        Some(json!({"reason": " "})),
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let unknown = admin(
        &f,
        Method::POST,
        "/v1/tokens/tok-m/revoke",
        Some(json!({"reason": "x", "extra": 1})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap()
        .contains("extra"));
    let raw = admin(
        &f,
        Method::POST,
        &format!("/v1/tokens/{RAW_JWT}/revoke"),
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    let no_type = call(&f, Method::POST, "/v1/tokens/t/revoke", Some(ADMIN), None).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn allowlisted_egress_is_not_read_as_travel_and_the_list_persists() {
    let f = fixture();
    let r = admin(&f, Method::POST, "/v1/allowlist",
        Some(json!({"id": "corp-vpn-sg", "kind": "network", "value": "1.32.200.0/24", "note": "corporate VPN"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["value"], "1.32.200.0/24");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&f.allowlist_path).unwrap()).unwrap();
    assert_eq!(saved[0]["id"], "corp-vpn-sg");
    assert_eq!(f.state.metrics.allowlist_entries.get(), 1);

    score(&f, record("tok-vpn", 0.0, PARIS, BROWSER)).await;
    let v = score(&f, record("tok-vpn", 600.0, SINGAPORE, BROWSER))
        .await
        .json();
    assert_eq!(v["action"], "none", "VPN egress is not travel: {v}");

    let dup = admin(
        &f,
        Method::POST,
        "/v1/allowlist",
        Some(json!({"id": "corp-vpn-sg", "kind": "asn", "value": "1"})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = admin(
        &f,
        Method::POST,
        "/v1/allowlist",
        Some(json!({"kind": "network", "value": "1.2.3.0/99"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["message"].as_str().unwrap().contains("CIDR"));
    let kind = admin(
        &f,
        Method::POST,
        "/v1/allowlist",
        Some(json!({"kind": "planet", "value": "x"})),
    )
    .await;
    assert_eq!(kind.status, StatusCode::UNPROCESSABLE_ENTITY);

    let list = admin(&f, Method::GET, "/v1/allowlist", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        admin(&f, Method::DELETE, "/v1/allowlist/corp-vpn-sg", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin(&f, Method::DELETE, "/v1/allowlist/corp-vpn-sg", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        std::fs::read_to_string(&f.allowlist_path).unwrap().trim(),
        "[]"
    );

    // Without the entry the same pattern is flagged.
    score(&f, record("tok-novpn", 0.0, PARIS, BROWSER)).await;
    let v = score(&f, record("tok-novpn", 600.0, SINGAPORE, BROWSER))
        .await
        .json();
    assert_eq!(v["rule"], "travel_to_unknown_egress", "{v}");
    assert_ne!(v["action"], "none", "{v}");

    let audit = get(&f, "/v1/audit").await.json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"allowlist_add") && actions.contains(&"allowlist_remove"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_allowlisted_subject_is_scored_but_never_acted_on() {
    let f = fixture();
    admin(
        &f,
        Method::POST,
        "/v1/allowlist",
        Some(json!({"kind": "subject", "value": "synthetic-monitor"})),
    )
    .await;
    score(
        &f,
        record_for("tok-s", "synthetic-monitor", 0.0, PARIS, BROWSER),
    )
    .await;
    let v = score(
        &f,
        record_for("tok-s", "synthetic-monitor", 600.0, SINGAPORE, TOOL),
    )
    .await
    .json();
    assert_eq!(v["action"], "none");
    assert_eq!(v["suppressed"], true);
    assert!(v["score"].as_f64().unwrap() > 0.9, "still scored: {v}");
}

#[tokio::test]
async fn model_reload_swaps_a_good_file_and_keeps_the_model_on_a_bad_one() {
    let f = fixture();
    let r = admin(&f, Method::POST, "/v1/model/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let version = r.json()["version"].as_str().unwrap().to_owned();
    std::fs::write(&f.model_path, "{\"not\": \"a model\"}").unwrap();
    let r = admin(&f, Method::POST, "/v1/model/reload", None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("stays in use"));
    assert_eq!(get(&f, "/v1/policy").await.json()["model_version"], version);
    let m = get(&f, "/metrics").await.text;
    assert!(
        m.contains("tokenwatch_model_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("tokenwatch_model_reloads_total{result=\"error\"} 1"));
}

#[tokio::test]
async fn a_model_pin_needs_the_fleets_control_topic_and_says_which_key_gives_it() {
    let f = fixture();
    let r = admin(
        &f,
        Method::PUT,
        "/v1/model/pin",
        Some(json!({"version": "m-2"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("http.admin_token"), "{}", r.text);
    let p = get(&f, "/v1/policy").await.json();
    assert!(
        p["model_pin"].is_null() && p["model_pin_in_force"] == true,
        "{p}"
    );
    let r = admin(
        &f,
        Method::PUT,
        "/v1/model/pin",
        Some(json!({"version": 7})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn mode_switch_takes_effect_and_is_exported() {
    let f = fixture();
    let r = admin(
        &f,
        Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": "shadow"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["mode"], "shadow");
    assert_eq!(f.state.service.controls.mode.get(), Mode::Shadow);
    assert!(get(&f, "/metrics")
        .await
        .text
        .contains("tokenwatch_policy_mode{mode=\"shadow\"} 1"));
    let bad = admin(
        &f,
        Method::PUT,
        "/v1/policy/mode",
        Some(json!({"mode": "nuke"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.state.service.controls.mode.get(), Mode::Shadow);
    let audit = get(&f, "/v1/audit").await.json();
    assert_eq!(audit["items"][0]["action"], "mode_switch");
    assert_eq!(audit["items"][0]["detail"]["from"], "revoke");
}

#[tokio::test]
async fn a_tenants_mode_is_set_and_lifted_and_a_global_null_is_refused() {
    let f = fixture();
    let put = |body: Value| admin(&f, Method::PUT, "/v1/policy/mode", Some(body));
    let r = put(json!({"mode": "alert", "tenant": "pilot"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["tenant_modes"]["pilot"], "alert");
    assert_eq!(r.json()["mode"], "revoke", "the global mode is untouched");
    let c = &f.state.service.controls;
    assert_eq!(c.mode_for(Some("pilot"), None), Mode::Alert);
    assert_eq!(c.mode_for(Some("other"), None), Mode::Revoke);
    let r = put(json!({"mode": null, "tenant": "pilot"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(c.mode_for(Some("pilot"), None), Mode::Revoke);
    for bad in [
        json!({"mode": null}),
        json!({"mode": "shadow", "tenant": "a", "client": "b"}),
        json!({"mode": "shadow", "client": ""}),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    assert_eq!(c.mode.get(), Mode::Revoke);
}

#[tokio::test]
async fn brake_reset_releases_an_engaged_brake() {
    let f = fixture_with(
        Some(ADMIN),
        Brake::new(BrakeLimits {
            max_revocations: 1,
            ..BrakeLimits::default()
        }),
    );
    let brake = &f.state.service.controls.brake;
    assert!(brake.allow(0, None, 0));
    assert!(!brake.allow(1, None, 0));
    assert_eq!(get(&f, "/v1/policy").await.json()["brake"]["engaged"], true);
    // The operator must say what happens to the held revocations.
    let r = admin(&f, Method::POST, "/v1/policy/brake/reset", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("held"), "{}", r.text);
    assert!(brake.status().engaged, "a refused reset changes nothing");
    let r = admin(
        &f,
        Method::POST,
        "/v1/policy/brake/reset",
        Some(json!({"held": "drop"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["engaged"], false);
    assert_eq!(
        get(&f, "/v1/audit").await.json()["items"][0]["detail"]["was_engaged"],
        true
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let spec = std::fs::read_to_string(repo("docs/openapi.yaml")).unwrap();
    let documented: std::collections::BTreeSet<String> = spec
        .lines()
        .filter(|l| l.starts_with("  /") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_owned())
        .collect();
    let router = std::fs::read_to_string(repo("src/api/mod.rs")).unwrap();
    let served: std::collections::BTreeSet<String> = router
        .split(".route(\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(documented, served);
    // And each documented path is routed (not the 404 fallback) for the
    // first method the document gives it.
    let f = fixture();
    for path in &documented {
        let concrete = path
            .replace("{token_id}", "tok-x")
            .replace("{id}", "x")
            .replace("{*original}", "orders/1");
        let section = spec.split(&format!("\n  {path}:\n")).nth(1).unwrap();
        let method = section
            .trim_start()
            .split(':')
            .next()
            .unwrap()
            .to_uppercase();
        let r = call(
            &f,
            Method::from_bytes(method.as_bytes()).unwrap(),
            &concrete,
            Some(ADMIN),
            None,
        )
        .await;
        let routed = r.status != StatusCode::NOT_FOUND
            || r.text.contains("tracked")
            || r.text.contains("no allowlist entry");
        assert!(routed, "{method} {concrete}: {} {}", r.status, r.text);
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
    }
}

// --------------------------------------------------------------------------
// The edge check (NGINX auth_request, Envoy ext_authz).

#[tokio::test]
async fn the_edge_check_refuses_a_revoked_token_and_passes_every_other_request() {
    let f = fixture();
    let edge = f.state.service.edge.as_ref().unwrap();
    // Until the denylist topic has been read, the gateway is told to wait.
    let r = call(&f, Method::GET, "/v1/check", Some("opaque-stolen"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    edge.denylist.mark_ready();

    let now = tokenwatch::clock::now_ms();
    let deny = |id: String, until_ms: i64| {
        edge.denylist.insert(&DenyEntry {
            decision_id: format!("{id}/revoke"),
            token_id: id,
            revoked_at_ms: now,
            until_ms,
            settled: true,
        })
    };
    // Known the way the adapters know them: keyed hash, or the JWT's jti.
    deny(keyed_token_id(HASH_KEY, "opaque-stolen"), now + 60_000);
    deny("jti-stolen".into(), now + 60_000);
    deny(keyed_token_id(HASH_KEY, "opaque-expired"), now - 1);
    let jwt = |jti: &str| {
        use base64::Engine;
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            e(r#"{"alg":"RS256"}"#),
            e(&format!(r#"{{"jti":"{jti}","sub":"v"}}"#)),
            e("sig")
        )
    };

    let r = call(&f, Method::GET, "/v1/check", Some("opaque-stolen"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // Envoy ext_authz: the original method and path follow the prefix.
    let r = call(
        &f,
        Method::POST,
        "/v1/check/orders/42?x=1",
        Some(&jwt("jti-stolen")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (token, why) in [
        (
            Some("opaque-fine".to_string()),
            "another token of the victim",
        ),
        (Some(jwt("jti-fine")), "another JWT"),
        (
            Some("opaque-expired".to_string()),
            "an entry past its expiry",
        ),
        (None, "no credential: the upstream decides"),
    ] {
        let r = call(&f, Method::GET, "/v1/check", token.as_deref(), None).await;
        assert_eq!(r.status, StatusCode::OK, "{why}");
    }
    let m = get(&f, "/metrics").await.text;
    assert!(
        m.contains(r#"tokenwatch_denylist_checks_total{result="denied"} 2"#),
        "{m}"
    );
    assert!(m.contains(r#"tokenwatch_denylist_checks_total{result="allowed"} 4"#));
    assert!(m.contains(r#"tokenwatch_denylist_checks_total{result="not_ready"} 1"#));
}
