//! Nobody outside can steer the detector. Each test is an attack tried end
//! to end against a whole `serve` instance on the mock cluster (telemetry
//! topic, HTTP API, edge check, revoker with a subject-logout target), and
//! shows that it moves no state and revokes nothing it should not.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::idp::{idp, ADMIN_AT};
use common::instance::{self, Instance};
use common::kafka::{create_mock_topics, produce};
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokenwatch::config::{Config, RawConfig, RawLogout};
use tokenwatch::decide::Decision;
use tokenwatch::respond::{DenyEntry, Mode, Preset, Settled};
use tokenwatch::serve::Hooks;
use tokio::sync::mpsc;

const SCORE_TOKEN: &str = "test-score-token-0123456789";
const LONDON: &str = "1.178.12.17";

struct Rig {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    cfg: Config,
    instance: Instance,
    decisions: mpsc::UnboundedReceiver<Decision>,
    settled: mpsc::UnboundedReceiver<Settled>,
    idp: std::sync::Arc<common::idp::Idp>,
}

/// A revoking instance with subject logout at a loopback IdP, the edge
/// denylist, and `/v1/score` behind its credential (a dry run); returned
/// once ready.
async fn rig(tune: impl FnOnce(&mut RawConfig)) -> Rig {
    let r = rig_unready(tune).await;
    wait_ready(r.instance.http).await;
    r
}

/// The same, returned as soon as its HTTP side is bound.
async fn rig_unready(tune: impl FnOnce(&mut RawConfig)) -> Rig {
    let cluster = MockCluster::new(1).unwrap();
    let (base, idp) = idp().await;
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.http.read_token = READ_TOKEN.into();
    raw.http.score_token = SCORE_TOKEN.into();
    raw.respond.mode = Mode::Revoke;
    raw.respond.denylist.enabled = true;
    raw.respond.subject_logout.push(RawLogout {
        name: "keycloak".into(),
        preset: Some(Preset::Keycloak),
        base_url: base,
        realm: Some("acme".into()),
        bearer_token: Some(ADMIN_AT.into()),
        timeout: Some(Duration::from_secs(2)),
        max_retries: Some(1),
        ..RawLogout::default()
    });
    tune(&mut raw);
    let cfg = raw.validate().unwrap();
    create_mock_topics(&cluster, &cfg.kafka, 2);
    for input in &cfg.gateway.inputs {
        cluster.create_topic(&input.topic, 2, 1).unwrap();
    }
    let (dtx, decisions) = mpsc::unbounded_channel();
    let (stx, settled) = mpsc::unbounded_channel();
    let instance = instance::start_with(
        cfg.clone(),
        Hooks {
            decisions: Some(dtx),
            settled: Some(stx),
            ..Hooks::default()
        },
    )
    .await;
    Rig {
        _cluster: cluster,
        cfg,
        instance,
        decisions,
        settled,
        idp,
    }
}

impl Rig {
    async fn send(&self, records: &[(String, Vec<u8>)]) {
        produce(
            &self.cfg.kafka.brokers,
            &self.cfg.kafka.telemetry_topic,
            records,
        )
        .await;
    }

    fn brokers(&self) -> &str {
        &self.cfg.kafka.brokers
    }

    async fn stop(self) {
        self.instance.stop.cancel();
        let _ = self.instance.task.await;
    }
}

/// A telemetry record as an outsider would shape it: any status, any
/// claimed subject, no verification.
fn forged(token: &str, sub: &str, ago_s: i64, ip: &str, status: u16) -> Vec<u8> {
    let now = tokenwatch::clock::now_ms();
    serde_json::to_vec(&serde_json::json!({
        "ts": now - ago_s * 1000, "token_id": token, "sub": sub, "ip": ip,
        "user_agent": BROWSER, "method": "GET", "path": "/v1/orders", "status": status,
        "token_iat": now / 1000 - 3600, "token_exp": now / 1000 + 3600,
    }))
    .unwrap()
}

/// London and Sydney in turn, every 20 s: concurrent use by any reading.
fn london_sydney(token: &str, sub: &str, status: u16) -> Vec<(String, Vec<u8>)> {
    (0..6)
        .map(|i| {
            let ip = if i % 2 == 0 { LONDON } else { SYDNEY };
            (
                token.to_owned(),
                forged(token, sub, 200 - i * 20, ip, status),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_refused_tokens_with_a_chosen_subject_decide_nothing() {
    let mut r = rig(|_| {}).await;
    let mut records = Vec::new();
    for i in 0..200 {
        records.extend(london_sydney(&format!("forged-{i}"), "ceo@corp", 401));
    }
    r.send(&records).await;
    let m = r.instance.metrics.clone();
    wait_until("every forged record consumed", 30, || {
        m.events_consumed.get() >= records.len() as u64
    })
    .await;
    // Stats are folded in every 256 events; the last ones a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.decisions.try_recv().is_err(),
        "a refused request made a decision"
    );
    assert_eq!(m.brake_engaged.get(), 0, "the brake was tripped");
    assert!(r.idp.logouts.lock().unwrap().is_empty());
    // Refused requests create no token state.
    let client = reqwest::Client::new();
    let view = client
        .get(format!("http://{}/v1/tokens/forged-0", r.instance.http))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 404, "{}", view.text().await.unwrap());

    // The same sequence accepted by the gateway is revoked: the forged one
    // failed for its status, not for its shape.
    r.send(&london_sydney("accepted", "bob", 200)).await;
    let d = tokio::time::timeout(Duration::from_secs(20), r.decisions.recv())
        .await
        .expect("the accepted sequence is flagged")
        .unwrap();
    assert_eq!(d.token_id, "accepted");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_subject_is_never_logged_out() {
    let mut r = rig(|_| {}).await;
    // Accepted by the gateway, but the subject is whatever an unsigned JWT
    // said: the token is revoked, the subject is not logged out.
    r.send(&london_sydney("stolen-unverified", "ceo@corp", 200))
        .await;
    let s = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = r.settled.recv().await.unwrap();
            if s.decision.action == tokenwatch::detect::Action::Revoke {
                return s;
            }
        }
    })
    .await
    .expect("the token's revocation settles");
    assert!(!s.decision.subject_verified);
    assert!(s.revoked(), "the token itself is denied: {:?}", s.outcomes);
    assert!(
        matches!(
            s.outcome_of("keycloak"),
            Some(tokenwatch::respond::Outcome::Unrevocable { .. })
        ),
        "{:?}",
        s.outcomes
    );
    assert_eq!(r.idp.attempts.load(Ordering::SeqCst), 0);

    // A verified subject is logged out (the target works).
    r.send(&[
        (
            "stolen-verified".into(),
            live("stolen-verified", "bob", 200, LONDON, BROWSER),
        ),
        (
            "stolen-verified".into(),
            live("stolen-verified", "bob", 180, SYDNEY, TOOL),
        ),
        (
            "stolen-verified".into(),
            live("stolen-verified", "bob", 160, LONDON, BROWSER),
        ),
    ])
    .await;
    let idp = r.idp.clone();
    wait_until("the verified subject is logged out", 20, || {
        idp.logout_counts().contains_key("bob")
    })
    .await;
    assert!(!idp.logout_counts().contains_key("ceo@corp"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_2099_is_refused_and_detection_goes_on() {
    let mut r = rig(|_| {}).await;
    let mut from_2099: serde_json::Value =
        serde_json::from_slice(&forged("blinder", "mallory", 0, LONDON, 200)).unwrap();
    from_2099["ts"] = "2099-01-01T00:00:00Z".into();
    let from_2099 = serde_json::to_vec(&from_2099).unwrap();
    r.send(&[("blinder".into(), from_2099.clone())]).await;

    // The API refuses it too.
    let client = reqwest::Client::new();
    let api = client
        .post(format!("http://{}/v1/score", r.instance.http))
        .bearer_auth(SCORE_TOKEN)
        .body(from_2099)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 400);
    assert_eq!(
        api.json::<serde_json::Value>().await.unwrap()["error"],
        "future"
    );

    let dead = topic_json(r.brokers(), &r.cfg.kafka.deadletter_topic, 1, 20);
    assert_eq!(dead.len(), 1, "dead-lettered: {dead:?}");
    let m = r.instance.metrics.clone();
    assert_eq!(m.deadletters.with_label_values(&["future"]).get(), 1);

    // A token used from London and Sydney in turn is still revoked.
    r.send(&london_sydney("after-blinding", "bob", 200)).await;
    let d = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let d = r.decisions.recv().await.unwrap();
            if d.action == tokenwatch::detect::Action::Revoke {
                return d;
            }
        }
    })
    .await
    .expect("still revoked after the 2099 record");
    assert_eq!(d.token_id, "after-blinding");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_is_a_credentialed_dry_run() {
    let mut r = rig(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/score", r.instance.http);
    let unauthenticated = client
        .post(&url)
        .body(forged("probe", "ceo@corp", 0, LONDON, 200))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    // Six London/Sydney requests through the API: answered, not acted on,
    // and nothing remembered (the stream then sees a first request).
    let mut last = serde_json::Value::Null;
    for (_, rec) in london_sydney("probe", "ceo@corp", 200) {
        let resp = client
            .post(&url)
            .bearer_auth(SCORE_TOKEN)
            .body(rec)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        last = resp.json().await.unwrap();
    }
    assert_eq!(last["escalated"], false, "{last}");
    assert!(last["decision_id"].is_null(), "{last}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(r.decisions.try_recv().is_err(), "the API made a decision");
    let view = client
        .get(format!("http://{}/v1/tokens/probe", r.instance.http))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 404, "a dry run left state behind");
    // The read routes need their credential.
    let anonymous = client
        .get(format!("http://{}/v1/alerts", r.instance.http))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    r.stop().await;
}

/// The edge's answer for `headers` (each an `Authorization` value).
async fn edge(http: std::net::SocketAddr, headers: &[&str]) -> u16 {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{http}/v1/check"));
    for h in headers {
        req = req.header("authorization", *h);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn deny(brokers: &str, topic: &str, token_id: &str) {
    let now = tokenwatch::clock::now_ms();
    let entry = DenyEntry {
        token_id: token_id.into(),
        decision_id: format!("{token_id}/revoke"),
        revoked_at_ms: now,
        until_ms: now + 3_600_000,
        settled: true,
    };
    produce(
        brokers,
        topic,
        &[(token_id.into(), serde_json::to_vec(&entry).unwrap())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_authorization_headers_of_a_revoked_token_are_refused() {
    const TOKEN: &str = "revoked-opaque-token-5f0c2a9d";
    let r = nginx_rig().await;
    let id = tokenwatch::telemetry::keyed_token_id(&r.cfg.gateway.hash_key, TOKEN);
    deny(r.brokers(), &r.cfg.kafka.denylist_topic, &id).await;
    let http = r.instance.http;
    let plain = format!("Bearer {TOKEN}");
    for _ in 0..100 {
        if edge(http, &[&plain]).await == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(edge(http, &[&plain]).await, 403);
    let tab = format!("Bearer\t{TOKEN}");
    let spaces = format!("bearer    {TOKEN}");
    let joined = format!("Bearer {TOKEN}, Bearer {TOKEN}");
    let mixed = format!("Bearer innocent-token-0000, Bearer {TOKEN}");
    for headers in [
        vec![tab.as_str()],
        vec![spaces.as_str()],
        vec![joined.as_str()],
        vec![mixed.as_str()],
        vec![plain.as_str(), plain.as_str()],
        vec!["Bearer innocent-token-0000", plain.as_str()],
        vec!["Bearer"],
    ] {
        assert_eq!(edge(http, &headers).await, 403, "{headers:?}");
    }
    // The scorer reads them the same way: each of these log lines is
    // scored as the token's traffic, none dead-lettered; a decoy in front
    // hides nothing (the request is the traffic of both tokens).
    let lines: Vec<(String, Vec<u8>)> = [
        tab.as_str(),
        spaces.as_str(),
        joined.as_str(),
        mixed.as_str(),
    ]
    .iter()
    .enumerate()
    .map(|(i, h)| {
        (
            "k".to_owned(),
            nginx_line(30 - i as i64, PARIS, "", "/v1/orders", h),
        )
    })
    .collect();
    produce(r.brokers(), "nginx.access", &lines).await;
    let m = r.instance.metrics.clone();
    wait_until("the four odd headers scored", 20, || {
        m.events_consumed.get() >= 5
    })
    .await;
    assert_eq!(m.deadletters.with_label_values(&["not_bearer"]).get(), 0);
    let client = reqwest::Client::new();
    let view = read_view(&client, format!("http://{http}/v1/tokens/{id}")).await;
    assert!(view.contains("\"requests\":4"), "{view}");
    let decoy =
        tokenwatch::telemetry::keyed_token_id(&r.cfg.gateway.hash_key, "innocent-token-0000");
    let view = read_view(&client, format!("http://{http}/v1/tokens/{decoy}")).await;
    assert!(view.contains("\"requests\":1"), "{view}");
    // Unrelated traffic passes: the check is not refusing everything.
    assert_eq!(edge(http, &["Bearer innocent-token-0000"]).await, 200);
    assert_eq!(edge(http, &["Basic dXNlcjpwYXNz"]).await, 200);
    assert_eq!(edge(http, &[]).await, 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_jwt_is_refused_while_the_jwks_is_unreachable() {
    let dead = format!("http://127.0.0.1:{}/jwks.json", free_port());
    // Not ready while the keys are missing (readyz), but the edge answers.
    let r = rig_unready(|raw| raw.gateway.jwks_url = Some(dead)).await;
    let jti = "revoked-jti-7c1e";
    let e = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let jwt = format!(
        "{}.{}.{}",
        e(r#"{"alg":"RS256","kid":"k1"}"#),
        e(&format!(r#"{{"jti":"{jti}","sub":"alice"}}"#)),
        e("signature-that-cannot-be-checked")
    );
    deny(r.brokers(), &r.cfg.kafka.denylist_topic, jti).await;
    let header = format!("Bearer {jwt}");
    let mut status = 0;
    for _ in 0..100 {
        status = edge(r.instance.http, &[&header]).await;
        if status == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 403, "a revoked jti passed while keys were missing");
    // And the instance says it is not ready: JWTs would be known by their
    // keyed hash until the keys load.
    let ready = reqwest::get(format!("http://{}/readyz", r.instance.http))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("jwks_loaded=false"));
    r.stop().await;
}

const HASH_KEY: &str = "gateway-hash-key-for-tests";

/// Logs of this test binary, captured once.
fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(capture_logs)
}

/// An instance reading NGINX access logs directly, behind a trusted proxy.
async fn nginx_rig() -> Rig {
    rig(|raw| {
        raw.gateway.hash_key = HASH_KEY.into();
        raw.gateway.trusted_proxies = vec!["10.0.0.0/8".into()];
        raw.gateway.inputs = vec![serde_json::from_value(serde_json::json!({
            "topic": "nginx.access", "format": "nginx"
        }))
        .unwrap()];
    })
    .await
}

/// An NGINX log line as a client can shape it: its own `Forwarded`
/// header, a cookie, a query string, any Authorization value.
fn nginx_line(ago_s: i64, xff: &str, forwarded: &str, uri: &str, authorization: &str) -> Vec<u8> {
    let at = time::OffsetDateTime::from_unix_timestamp(tokenwatch::clock::now_ms() / 1000 - ago_s)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    serde_json::to_vec(&serde_json::json!({
        "time": at, "remote_addr": "10.0.0.12", "x_forwarded_for": xff,
        "forwarded": forwarded, "method": "GET", "uri": uri, "status": "200",
        "user_agent": BROWSER, "authorization": authorization,
        "cookie": "session=SECRET-COOKIE-VALUE",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_written_forwarded_header_does_not_move_the_client() {
    let r = nginx_rig().await;
    let token = "opaque-token-of-a-thief-2f9e";
    // The thief is in Sydney (the proxy's X-Forwarded-For says so) and
    // writes `Forwarded: for=` an address in London, the victim's city.
    let line = nginx_line(
        10,
        SYDNEY,
        &format!("for={LONDON}"),
        "/v1/orders",
        &format!("Bearer {token}"),
    );
    produce(r.brokers(), "nginx.access", &[("k".into(), line)]).await;
    let id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), token);
    let client = reqwest::Client::new();
    let mut view = serde_json::Value::Null;
    for _ in 0..100 {
        let url = format!("http://{}/v1/tokens/{id}", r.instance.http);
        view = serde_json::from_str(&read_view(&client, url).await).unwrap();
        if view["tracked"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["state"]["last_place"]["country"], "AU", "{view}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_credentials_and_cookies_reach_no_topic_log_or_view() {
    let logs = logs();
    let r = nginx_rig().await;
    let token = "opaque-token-in-a-query-77ab";
    let lines = [
        // Scored: the path keeps no query string.
        nginx_line(
            30,
            PARIS,
            "",
            "/v1/orders?access_token=SECRET-QUERY-TOKEN&page=2",
            &format!("Bearer {token}"),
        ),
        nginx_line(
            20,
            SYDNEY,
            "",
            "/v1/orders?access_token=SECRET-QUERY-TOKEN",
            &format!("Bearer {token}"),
        ),
        // Refused (not a bearer credential): dead-lettered with the mapped
        // fields only.
        nginx_line(
            10,
            PARIS,
            "",
            "/v1/orders?api_key=SECRET-QUERY-TOKEN",
            "Basic U0VDUkVULUJBU0lD",
        ),
    ];
    let records: Vec<(String, Vec<u8>)> = lines.into_iter().map(|l| ("k".to_owned(), l)).collect();
    // The first hop of a fleet reads the same lines and publishes telemetry.
    let stop = tokio_util::sync::CancellationToken::new();
    let nm = std::sync::Arc::new(tokenwatch::metrics::Metrics::new());
    let first_hop = tokio::spawn(tokenwatch::serve::normalize(
        r.cfg.clone(),
        stop.clone(),
        tokenwatch::serve::NormalizeHooks {
            metrics: Some(nm.clone()),
            ..Default::default()
        },
    ));
    produce(r.brokers(), "nginx.access", &records).await;
    let m = r.instance.metrics.clone();
    wait_until("every line handled", 30, || {
        m.events_consumed.get() >= 2
            && m.deadletters.with_label_values(&["not_bearer"]).get() >= 1
            && nm.records_normalized.get() >= 2
    })
    .await;
    stop.cancel();
    first_hop.await.unwrap().unwrap();
    let id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), token);
    let client = reqwest::Client::new();
    let http = r.instance.http;
    let mut seen = String::new();
    for path in [
        format!("/v1/tokens/{id}"),
        "/v1/alerts".into(),
        "/v1/audit".into(),
    ] {
        seen.push_str(&read_view(&client, format!("http://{http}{path}")).await);
    }
    let k = &r.cfg.kafka;
    for (t, partitions) in common::kafka::planned(k, 2) {
        for (key, payload) in topic_records(&k.brokers, t, partitions, 1000, 2) {
            seen.push_str(&key);
            seen.push_str(&String::from_utf8_lossy(&payload.unwrap_or_default()));
        }
    }
    let dead = topic_json(&k.brokers, &k.deadletter_topic, 2, 2);
    assert_eq!(dead.len(), 2, "one dead letter from each hop: {dead:?}");
    assert!(
        dead[0].get("path").is_some(),
        "mapped fields kept: {}",
        dead[0]
    );
    seen.push_str(&logs.text());
    for secret in [
        "SECRET-QUERY-TOKEN",
        "SECRET-COOKIE-VALUE",
        "U0VDUkVULUJBU0lD",
        token,
    ] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replaying_many_victims_earns_no_shared_egress_exemption() {
    let mut r = rig(|_| {}).await;
    // Five victims, each at home in a different city, whose tokens one
    // server in Sydney replays in turn with the victims' own browser
    // string. By the fourth, the server's /24 has carried three subjects:
    // the old rule made it "shared egress" and excused the travel.
    let homes = [LONDON, PARIS, LYON, MARSEILLE, NEW_YORK];
    let server = ["1.1.1.17", "1.1.1.18", "1.1.1.19"];
    let mut flagged = std::collections::BTreeSet::new();
    for (v, home) in homes.iter().enumerate() {
        let token = format!("replayed-{v}");
        let sub = format!("victim-{v}");
        let records: Vec<(String, Vec<u8>)> = (0..6)
            .map(|i| {
                let ip = if i % 2 == 0 { *home } else { server[v % 3] };
                let rec = forged(&token, &sub, 200 - i * 20, ip, 200);
                (token.clone(), rec)
            })
            .collect();
        r.send(&records).await;
        let d = tokio::time::timeout(Duration::from_secs(20), r.decisions.recv())
            .await
            .unwrap_or_else(|_| panic!("victim {v} not flagged; flagged: {flagged:?}"))
            .unwrap();
        flagged.insert(d.token_id);
        // Drain this token's further decisions (alert, then revoke).
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(d) = r.decisions.try_recv() {
            flagged.insert(d.token_id);
        }
    }
    assert_eq!(flagged.len(), 5, "{flagged:?}");
    r.stop().await;
}
