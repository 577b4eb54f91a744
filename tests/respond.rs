//! Every response target against real servers on loopback and a real Kafka
//! protocol (librdkafka's mock cluster): subject logout with client
//! credentials, signed webhooks, time-outs, retries that call only what has
//! not yet succeeded, per-tenant brakes, the denylist and SET alert topics,
//! idempotence across a restart, and a revoker task aborted between consuming a
//! decision and committing it.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::idp::{idp, ADMIN_AT, HOOK_SECRET};
use common::kafka::create_mock_topics;
use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokenwatch::config::{KafkaConfig, RawConfig};
use tokenwatch::decide::Decision;
use tokenwatch::detect::Action;
use tokenwatch::ingest::{self, IngestConsumer, IngestContext, RevocationHandler};
use tokenwatch::journal::Audit;
use tokenwatch::kafka::TopicWriter;
use tokenwatch::metrics::Metrics;
use tokenwatch::respond::{
    AlertFormat, AlertsTarget, Brake, BrakeLimits, ClientAuth, Controls, Denylist, DenylistTarget,
    Held, LogoutAuth, LogoutParams, Mode, Outcome, Persistence, Preset, RetryPolicy, Revoker,
    Rfc7009Client, Rfc7009Params, Settled, SubjectLogout, Targets, Webhook, WebhookParams, ALERTS,
    CAEP_SESSION_REVOKED, DENYLIST, RFC7009,
};
use tokenwatch::seal::Sealer;
use tokio_util::sync::CancellationToken;

fn quick_retry(max_retries: usize) -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(2),
        max_retries,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

fn keycloak(base: &str) -> SubjectLogout {
    let (method, url) = Preset::Keycloak.method_and_url(base, Some("acme")).unwrap();
    SubjectLogout::new(LogoutParams {
        name: "keycloak".into(),
        method,
        url,
        headers: vec![],
        body: None,
        auth: LogoutAuth::ClientCredentials {
            token_url: format!("{base}/realms/acme/protocol/openid-connect/token"),
            client_id: "tokenwatch".into(),
            client_secret: "s3cret".into(),
            scope: None,
        },
        retry: quick_retry(3),
    })
    .unwrap()
}

fn rfc7009(base: &str, retry: RetryPolicy) -> Rfc7009Client {
    Rfc7009Client::new(Rfc7009Params {
        url: format!("{base}/revoke"),
        client_id: "tw".into(),
        client_secret: "x".into(),
        auth: ClientAuth::ClientSecretBasic,
        retry,
    })
    .unwrap()
}

fn hook_target(base: &str) -> Webhook {
    Webhook::new(WebhookParams {
        name: "siem".into(),
        url: format!("{base}/hook"),
        secret: HOOK_SECRET.to_vec(),
        retry: quick_retry(2),
    })
    .unwrap()
}

fn sealer() -> Sealer {
    Sealer::new([("k1", Sealer::generate_key().as_str())]).unwrap()
}

fn decision(token_id: &str, sub: &str, tenant: Option<&str>, action: Action) -> Decision {
    Decision {
        decision_id: Decision::decision_id(token_id, action),
        token_id: token_id.into(),
        sub: sub.into(),
        // Verified claims, as a gateway's authorizer or the JWKS gives them.
        subject_verified: true,
        tenant: tenant.map(str::to_owned),
        client_id: None,
        action,
        score: 0.97,
        model_version: "test".into(),
        explanation: "velocity 9,800 km/h Paris→Sydney in 40 min".into(),
        rule: Some("impossible_travel".into()),
        event_ts_ms: 0,
        decided_at_ms: 0,
        token_handle: None,
        token_exp: None,
    }
}

fn of(s: &Settled, target: &str) -> Outcome {
    s.outcome_of(target)
        .cloned()
        .unwrap_or_else(|| panic!("no {target} in {:?}", s.outcomes))
}

#[tokio::test]
async fn subject_logout_gets_a_client_credentials_token_and_logs_the_subject_out_per_theft_once() {
    let (base, idp) = idp().await;
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        None,
        Targets {
            logouts: vec![keycloak(&base)],
            ..Targets::default()
        },
    );
    // A subject id that needs escaping in a path.
    let s = r
        .settle(decision("tok-1", "user 1/a", None, Action::Revoke))
        .await;
    assert_eq!(of(&s, "keycloak"), Outcome::Revoked { attempts: 1 });
    // The same decision again (a replay): not logged out twice.
    let again = r
        .settle(decision("tok-1", "user 1/a", None, Action::Revoke))
        .await;
    assert_eq!(of(&again, "decision"), Outcome::Duplicate);
    // A second stolen token of the same subject, later: the thief may hold
    // a session made since the first logout, so it is logged out again.
    let s = r
        .settle(decision("tok-2", "user 1/a", None, Action::Revoke))
        .await;
    assert_eq!(of(&s, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert_eq!(
        *idp.logouts.lock().unwrap(),
        vec!["user 1/a".to_string(), "user 1/a".to_string()]
    );
    assert_eq!(
        idp.token_calls.load(Ordering::SeqCst),
        1,
        "the admin token is reused"
    );

    // An unknown subject logged nobody out: a failure, never a success.
    let s = r
        .settle(decision("tok-3", "ghost", None, Action::Revoke))
        .await;
    assert_eq!(of(&s, "keycloak").label(), "rejected");
    assert!(!s.revoked());
}

#[tokio::test]
async fn a_template_naming_a_value_the_decision_lacks_is_never_called() {
    let (base, idp) = idp().await;
    let l = SubjectLogout::new(LogoutParams {
        name: "per-tenant".into(),
        method: reqwest::Method::POST,
        url: format!("{base}/admin/realms/{{tenant}}/users/{{sub}}/logout"),
        headers: vec![],
        body: None,
        auth: LogoutAuth::Bearer(ADMIN_AT.into()),
        retry: quick_retry(1),
    })
    .unwrap();
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        None,
        Targets {
            logouts: vec![l],
            ..Targets::default()
        },
    );
    let s = r
        .settle(decision("tok-1", "alice", None, Action::Revoke))
        .await;
    assert_eq!(of(&s, "per-tenant").label(), "unrevocable");
    // With the tenant the same template reaches the IdP.
    let s = r
        .settle(decision("tok-2", "alice", Some("acme"), Action::Revoke))
        .await;
    assert_eq!(of(&s, "per-tenant"), Outcome::Revoked { attempts: 1 });
    assert_eq!(idp.logouts.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retry_calls_only_the_targets_that_have_not_yet_succeeded() {
    let (base, idp) = idp().await;
    let s = sealer();
    // The logout endpoint is down for 4 calls: more than one settle retries.
    *idp.logout_script.lock().unwrap() = vec![503, 503, 503, 503];
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s.clone()),
        Targets {
            rfc7009: Some(rfc7009(&base, quick_retry(2))),
            logouts: vec![keycloak(&base)],
            ..Targets::default()
        },
    );
    let mut d = decision("tok-r", "bob", None, Action::Revoke);
    d.token_handle = Some(s.seal("tok-r", "raw-opaque-r"));
    let first = r.settle(d.clone()).await;
    assert_eq!(of(&first, RFC7009), Outcome::Revoked { attempts: 1 });
    assert_eq!(of(&first, "keycloak").label(), "gave_up");
    assert!(first.pending(), "the decision is not done");
    // The consumer hands the same decision back: RFC 7009 is not called again.
    let second = r.settle(d.clone()).await;
    assert_eq!(of(&second, RFC7009), Outcome::Duplicate);
    assert_eq!(of(&second, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert!(!second.pending());
    assert_eq!(
        *idp.revocations.lock().unwrap(),
        vec!["raw-opaque-r".to_string()]
    );
    assert_eq!(*idp.logouts.lock().unwrap(), vec!["bob".to_string()]);
    // And once settled, a replay does nothing at all.
    let third = r.settle(d).await;
    assert_eq!(third.outcomes.len(), 1);
    assert_eq!(third.outcomes[0].outcome, Outcome::Duplicate);
}

#[tokio::test]
async fn a_server_that_does_not_answer_in_time_is_retried_then_given_up_not_counted_revoked() {
    let (base, idp) = idp().await;
    *idp.revoke_delay.lock().unwrap() = Duration::from_secs(5);
    let s = sealer();
    let retry = RetryPolicy {
        timeout: Duration::from_millis(200),
        ..quick_retry(1)
    };
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s.clone()),
        Targets::rfc7009(Some(rfc7009(&base, retry))),
    );
    let mut d = decision("tok-t", "carol", None, Action::Revoke);
    d.token_handle = Some(s.seal("tok-t", "raw-t"));
    let started = std::time::Instant::now();
    let settled = r.settle(d).await;
    let o = of(&settled, RFC7009);
    assert_eq!(o.label(), "gave_up", "{o:?}");
    assert!(format!("{o:?}").contains("transport"), "{o:?}");
    assert!(settled.pending() && !settled.revoked());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "two 200 ms attempts"
    );
}

#[tokio::test]
async fn webhooks_are_signed_and_carry_no_sealed_token() {
    let (base, idp) = idp().await;
    let s = sealer();
    let r = Revoker::new(
        Controls::with_mode(Mode::Alert),
        Some(s.clone()),
        Targets {
            rfc7009: Some(rfc7009(&base, quick_retry(1))),
            webhooks: vec![hook_target(&base)],
            ..Targets::default()
        },
    );
    let mut d = decision("tok-w", "dave", Some("acme"), Action::Revoke);
    d.token_handle = Some(s.seal("tok-w", "raw-w"));
    let settled = r.settle(d).await;
    assert_eq!(of(&settled, RFC7009), Outcome::NotActed { mode: "alert" });
    assert_eq!(of(&settled, "siem"), Outcome::Delivered { attempts: 1 });
    assert!(
        idp.revocations.lock().unwrap().is_empty(),
        "alert mode revokes nothing"
    );
    let hooks = idp.hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["token_id"], "tok-w");
    assert_eq!(hooks[0]["tenant"], "acme");
    assert_eq!(hooks[0]["revoked"], false);
    assert!(!hooks[0].to_string().contains("raw-w"));
    assert!(hooks[0].get("token_handle").is_none());
    assert_eq!(idp.bad_signatures.load(Ordering::SeqCst), 0);

    // A receiver with another secret refuses it, and that is a failure.
    let wrong = Webhook::new(WebhookParams {
        name: "wrong".into(),
        url: format!("{base}/hook"),
        secret: b"not-the-shared-secret".to_vec(),
        retry: quick_retry(0),
    })
    .unwrap();
    let r = Revoker::new(
        Controls::with_mode(Mode::Alert),
        None,
        Targets {
            webhooks: vec![wrong],
            ..Targets::default()
        },
    );
    let settled = r
        .settle(decision("tok-w2", "dave", None, Action::Alert))
        .await;
    assert_eq!(of(&settled, "wrong").label(), "rejected");
    assert_eq!(idp.bad_signatures.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn one_tenant_past_its_brake_is_held_while_others_are_revoked() {
    let (base, idp) = idp().await;
    let controls = Arc::new(Controls::new(
        Mode::Revoke,
        Brake::new(BrakeLimits {
            per_tenant: Some(1),
            ..BrakeLimits::default()
        }),
    ));
    let r = Revoker::new(
        controls.clone(),
        None,
        Targets {
            logouts: vec![keycloak(&base)],
            ..Targets::default()
        },
    );
    let a1 = r
        .settle(decision("t-a1", "a1", Some("acme"), Action::Revoke))
        .await;
    let a2 = r
        .settle(decision("t-a2", "a2", Some("acme"), Action::Revoke))
        .await;
    let g1 = r
        .settle(decision("t-g1", "g1", Some("globex"), Action::Revoke))
        .await;
    assert_eq!(of(&a1, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert_eq!(of(&a2, "keycloak"), Outcome::Braked);
    assert_eq!(of(&g1, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert_eq!(
        controls.brake.status().tenants_engaged,
        vec!["acme".to_string()]
    );
    // Reset: the held decision, handed back by the consumer, goes through.
    controls.brake.reset(tokenwatch::respond::Held::Release);
    let a2 = r
        .settle(decision("t-a2", "a2", Some("acme"), Action::Revoke))
        .await;
    assert_eq!(of(&a2, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert_eq!(idp.logouts.lock().unwrap().len(), 3);
}

// --------------------------------------------------------------------------
// Kafka-backed targets.

fn kafka(cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>) -> KafkaConfig {
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(100);
    let k = raw.validate().unwrap().kafka;
    create_mock_topics(cluster, &k, 1);
    k
}

/// A revoker as `serve` builds it: RFC 7009, denylist and SET alerts.
fn full_revoker(
    k: &KafkaConfig,
    base: &str,
    sealer: &Sealer,
    denylist: Arc<Denylist>,
    set_key: &[u8],
) -> Revoker {
    let producer: FutureProducer = ingest::producer_config(k).create().unwrap();
    Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(sealer.clone()),
        Targets {
            rfc7009: Some(rfc7009(base, quick_retry(2))),
            denylist: Some(DenylistTarget {
                writer: TopicWriter::new(producer.clone(), k.denylist_topic.clone()),
                set: denylist,
                max_ttl: Duration::from_secs(3600),
            }),
            alerts: Some(AlertsTarget {
                writer: TopicWriter::new(producer, k.alerts_topic.clone()),
                format: AlertFormat::Set {
                    issuer: "https://tokenwatch.test".into(),
                    audience: Some("https://siem.test".into()),
                    key: set_key.to_vec(),
                },
            }),
            ..Targets::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_denylist_and_alert_topics_record_a_revocation_and_a_restart_does_not_repeat_it() {
    let cluster = MockCluster::new(1).unwrap();
    let k = kafka(&cluster);
    let (base, idp) = idp().await;
    let s = sealer();
    let set_key = [7u8; 32];
    let mut d = decision("tok-k", "erin", Some("acme"), Action::Revoke);
    d.token_handle = Some(s.seal("tok-k", "raw-k"));
    let exp_s = tokenwatch::clock::now_ms() / 1000 + 600;
    d.token_exp = Some(exp_s);

    let first = Arc::new(Denylist::default());
    let r = full_revoker(&k, &base, &s, first.clone(), &set_key);
    let settled = r.settle(d.clone()).await;
    assert_eq!(of(&settled, RFC7009), Outcome::Revoked { attempts: 1 });
    assert_eq!(of(&settled, DENYLIST), Outcome::Denied);
    assert_eq!(of(&settled, ALERTS), Outcome::Delivered { attempts: 1 });

    // The denylist entry: keyed by token id, denied until the token's exp.
    // Written first, then again once settled (what a restart reads).
    let entries = topic_records(&k.brokers, &k.denylist_topic, 1, 2, 10);
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.0 == "tok-k"));
    let entry: serde_json::Value = serde_json::from_slice(entries[1].1.as_ref().unwrap()).unwrap();
    assert_eq!(entry["until_ms"], exp_s * 1000);
    assert_eq!(entry["settled"], true);

    // The alert: a signed SET with a CAEP session-revoked event.
    let alerts = topic_records(&k.brokers, &k.alerts_topic, 1, 1, 10);
    let jws = String::from_utf8(alerts[0].1.clone().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["https://siem.test"]);
    v.set_required_spec_claims(&["iss", "aud"]);
    let set = jsonwebtoken::decode::<serde_json::Value>(
        &jws,
        &jsonwebtoken::DecodingKey::from_secret(&set_key),
        &v,
    )
    .expect("the SET verifies");
    assert_eq!(set.header.typ.as_deref(), Some("secevent+jwt"));
    let claims = set.claims;
    assert_eq!(claims["sub_id"]["user"]["id"], "erin");
    assert_eq!(claims["sub_id"]["tenant"]["id"], "acme");
    assert!(
        claims["events"][CAEP_SESSION_REVOKED].is_object(),
        "{claims}"
    );
    assert!(!jws.contains("raw-k") && !claims.to_string().contains("raw-k"));

    // A restarted instance (new process: empty memory) reads the denylist
    // topic and does not revoke the same token again.
    let stop = CancellationToken::new();
    let second = Arc::new(Denylist::default());
    let follower = tokio::spawn(ingest::denylist::follow(
        k.clone(),
        k.denylist_topic.clone(),
        second.clone(),
        Arc::new(Metrics::new()),
        stop.clone(),
    ));
    wait_until("the denylist to load", 15, || second.is_ready()).await;
    assert!(second.is_denied("tok-k", tokenwatch::clock::now_ms()));
    let r2 = full_revoker(&k, &base, &s, second.clone(), &set_key);
    let again = r2.settle(d).await;
    assert_eq!(of(&again, "decision"), Outcome::Duplicate);
    assert_eq!(idp.revocations.lock().unwrap().len(), 1, "revoked once");
    stop.cancel();
    follower.await.unwrap();
}

fn revoke_consumer(k: &KafkaConfig) -> Arc<IngestConsumer> {
    let c: IngestConsumer = ingest::consumer_config(k, "revoker-crash")
        .create_with_context(IngestContext {
            readiness: None,
            name: "revoke",
            metrics: None,
        })
        .unwrap();
    c.subscribe(&[&k.decisions_topic]).unwrap();
    Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoker_task_aborted_before_committing_acts_on_the_decision_after_restart() {
    let cluster = MockCluster::new(1).unwrap();
    let k = kafka(&cluster);
    let (base, idp) = idp().await;
    let s = sealer();
    let mut d = decision("tok-c", "frank", None, Action::Revoke);
    d.token_handle = Some(s.seal("tok-c", "raw-c"));
    let producer: FutureProducer = ingest::producer_config(&k).create().unwrap();
    producer
        .send(
            FutureRecord::to(&k.decisions_topic)
                .key("tok-c")
                .payload(&serde_json::to_vec(&d).unwrap()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();

    // The IdP answers slowly: the revoker is killed while its call is in
    // flight, after consuming the decision and before committing it.
    let start = |idp_delay: Duration| {
        *idp.revoke_delay.lock().unwrap() = idp_delay;
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Settled>();
        let handler = RevocationHandler::new(
            full_revoker(&k, &base, &s, Arc::new(Denylist::default()), &[1; 32]),
            producer.clone(),
            k.deadletter_topic.clone(),
            metrics.clone(),
            Arc::new(Audit::in_memory(10)),
            Some(tx),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(ingest::run(
            revoke_consumer(&k),
            handler,
            k.commit_interval,
            stop.clone(),
            metrics,
        ));
        (task, stop, rx)
    };
    let (task, _stop, _rx) = start(Duration::from_secs(30));
    // Wait until the decision has been consumed and the call is in flight.
    wait_until("the revoker to call the IdP", 20, || {
        idp.revoke_started.load(Ordering::SeqCst) >= 1
    })
    .await;
    task.abort(); // an aborted task, not a killed process: no shutdown, no commit
    let _ = task.await;
    assert!(
        idp.revocations.lock().unwrap().is_empty(),
        "the first call never finished"
    );

    let (task, stop, mut rx) = start(Duration::ZERO);
    let settled = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the decision comes back after restart")
        .unwrap();
    assert_eq!(of(&settled, RFC7009), Outcome::Revoked { attempts: 1 });
    // Acted on once after restart: the aborted call is still asleep in
    // the IdP (30 s) and never lands, so exactly one revocation did.
    let calls = idp.revocations.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls.iter().all(|t| t == "raw-c"));
    stop.cancel();
    let stats = task.await.unwrap();
    assert!(stats.handled >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_tenant_in_shadow_is_scored_but_never_acted_on_while_others_are() {
    let (base, idp) = idp().await;
    let mut o = tokenwatch::respond::Overrides::default();
    o.tenants.insert("pilot".into(), Mode::Shadow);
    let controls = Arc::new(Controls::new(Mode::Revoke, Brake::default()).with_overrides(o));
    let r = Revoker::new(
        controls,
        None,
        Targets {
            logouts: vec![keycloak(&base)],
            webhooks: vec![hook_target(&base)],
            ..Targets::default()
        },
    );
    let pilot = r
        .settle(decision("t-p", "p1", Some("pilot"), Action::Revoke))
        .await;
    assert_eq!(pilot.outcomes.len(), 1);
    assert_eq!(
        pilot.outcomes[0].outcome,
        Outcome::NotActed { mode: "shadow" }
    );
    let other = r
        .settle(decision("t-o", "o1", Some("acme"), Action::Revoke))
        .await;
    assert_eq!(of(&other, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert_eq!(*idp.logouts.lock().unwrap(), vec!["o1".to_string()]);
    assert_eq!(
        idp.hooks.lock().unwrap().len(),
        1,
        "shadow sends nothing out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_denylist_entry_lands_first_while_the_idp_is_down_and_is_marked_settled_after() {
    let cluster = MockCluster::new(1).unwrap();
    let k = kafka(&cluster);
    let (base, idp) = idp().await;
    // Down for 8 calls: 2 attempts of 4 calls (3 in-call retries) each.
    *idp.logout_script.lock().unwrap() = vec![503; 8];
    let producer: FutureProducer = ingest::producer_config(&k).create().unwrap();
    let set = Arc::new(Denylist::default());
    let r = Arc::new(
        Revoker::new(
            Controls::with_mode(Mode::Revoke),
            None,
            Targets {
                logouts: vec![keycloak(&base)],
                denylist: Some(DenylistTarget {
                    writer: TopicWriter::new(producer, k.denylist_topic.clone()),
                    set: set.clone(),
                    max_ttl: Duration::from_secs(3600),
                }),
                ..Targets::default()
            },
        )
        .with_persistence(Persistence {
            budget: Duration::from_secs(20),
            max_backoff: Duration::from_millis(300),
        }),
    );
    let task = {
        let r = r.clone();
        tokio::spawn(async move {
            r.settle(decision("tok-first", "gina", None, Action::Revoke))
                .await
        })
    };
    wait_until("the IdP to refuse a first time", 10, || {
        idp.attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    let now = tokenwatch::clock::now_ms();
    assert!(
        set.is_denied("tok-first", now),
        "the gateway refuses the token while the IdP is down"
    );
    assert!(!set.is_settled("tok-first", "tok-first/revoke"));
    let s = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("settles once the IdP is back")
        .unwrap();
    assert_eq!(of(&s, DENYLIST), Outcome::Denied);
    assert_eq!(of(&s, "keycloak"), Outcome::Revoked { attempts: 1 });
    assert!(
        idp.attempts.load(Ordering::SeqCst) >= 9,
        "retried on its own"
    );
    assert!(set.is_settled("tok-first", "tok-first/revoke"));
    // On the topic: the entry at once, then the same entry settled, which
    // is what a restarted instance reads.
    let entries = topic_records(&k.brokers, &k.denylist_topic, 1, 2, 10);
    let settled: Vec<bool> = entries
        .iter()
        .map(|(_, v)| {
            serde_json::from_slice::<serde_json::Value>(v.as_ref().unwrap()).unwrap()["settled"]
                == true
        })
        .collect();
    assert_eq!(settled, vec![false, true]);
}

#[tokio::test]
async fn an_operators_revocation_acts_after_shadow_and_alert_left_the_token_alone() {
    let (base, idp) = idp().await;
    let s = sealer();
    let controls = Controls::with_mode(Mode::Shadow);
    let r = Revoker::new(
        controls.clone(),
        Some(s.clone()),
        Targets {
            rfc7009: Some(rfc7009(&base, quick_retry(1))),
            logouts: vec![keycloak(&base)],
            ..Targets::default()
        },
    );
    let mut auto = decision("tok-m", "mia", None, Action::Revoke);
    auto.token_handle = Some(s.seal("tok-m", "raw-m"));
    let shadowed = r.settle(auto.clone()).await;
    assert_eq!(of(&shadowed, "policy").label(), "not_acted");

    // Still in shadow: the operator's own revocation is not the machine's.
    let mut manual = Decision::manual("tok-m", "mia", "reviewed", None, 1_000);
    manual.token_handle = Some(s.seal("tok-m", "raw-m"));
    let acted = r.settle(manual).await;
    assert_eq!(of(&acted, RFC7009), Outcome::Revoked { attempts: 1 });
    assert_eq!(of(&acted, "keycloak"), Outcome::Revoked { attempts: 1 });

    // In alert mode, a second review of the same token acts again.
    controls.mode.set(Mode::Alert);
    let mut again = Decision::manual("tok-m", "mia", "still signed in", None, 2_000);
    again.token_handle = Some(s.seal("tok-m", "raw-m"));
    assert_eq!(
        of(&r.settle(again).await, "keycloak"),
        Outcome::Revoked { attempts: 1 }
    );
    assert_eq!(idp.logout_counts()["mia"], 2);
    assert_eq!(idp.revocations.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_spends_its_budget_is_dead_lettered_and_the_consumer_goes_on() {
    let cluster = MockCluster::new(1).unwrap();
    let k = kafka(&cluster);
    let (base, idp) = idp().await;
    idp.hook_down.store(true, Ordering::SeqCst);
    let s = sealer();
    let producer: FutureProducer = ingest::producer_config(&k).create().unwrap();
    let revoker = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s.clone()),
        Targets {
            rfc7009: Some(rfc7009(&base, quick_retry(1))),
            webhooks: vec![hook_target(&base)],
            ..Targets::default()
        },
    )
    .with_persistence(Persistence {
        budget: Duration::from_secs(2),
        max_backoff: Duration::from_millis(200),
    });
    let metrics = Arc::new(Metrics::new());
    let handler = RevocationHandler::new(
        revoker,
        producer.clone(),
        k.deadletter_topic.clone(),
        metrics.clone(),
        Arc::new(Audit::in_memory(10)),
        None,
    );
    for id in ["tok-d1", "tok-d2"] {
        let mut d = decision(id, "dora", None, Action::Revoke);
        d.token_handle = Some(s.seal(id, &format!("raw-{id}")));
        producer
            .send(
                FutureRecord::to(&k.decisions_topic)
                    .key(id)
                    .payload(&serde_json::to_vec(&d).unwrap()),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest::run(
        revoke_consumer(&k),
        handler,
        k.commit_interval,
        stop.clone(),
        metrics.clone(),
    ));
    let letters = topic_records_with_reason(&k, 2).await;
    assert_eq!(idp.revocations.lock().unwrap().len(), 2, "both revoked");
    for (reason, error, payload) in &letters {
        assert_eq!(reason, "target_gave_up");
        assert!(error.starts_with("siem: "), "{error}");
        let d: Decision = serde_json::from_slice(payload).unwrap();
        assert!(d.token_handle.is_none(), "no sealed token in a dead letter");
    }
    assert_eq!(
        metrics
            .deadletters
            .with_label_values(&["target_gave_up"])
            .get(),
        2
    );
    // Both decisions are done: the offset moved past them.
    wait_until("the offsets to be committed", 10, || {
        let c = revoke_consumer(&k);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&k.decisions_topic, 0);
        c.committed_offsets(tpl, Duration::from_secs(2))
            .ok()
            .and_then(|t| t.elements().first().map(|e| e.offset()))
            == Some(rdkafka::Offset::Offset(2))
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}

/// The first `n` dead letters: reason, error and payload.
async fn topic_records_with_reason(k: &KafkaConfig, n: usize) -> Vec<(String, String, Vec<u8>)> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::message::{Headers, Message};
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&k.deadletter_topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), c.recv())
            .await
            .expect("a dead letter arrives")
            .unwrap();
        let h = m.headers().expect("headers");
        let get = |key: &str| {
            h.iter()
                .find(|x| x.key == key)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        out.push((
            get("tokenwatch.reason"),
            get("tokenwatch.error"),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

#[tokio::test]
async fn a_held_revocation_is_dropped_or_acted_on_as_the_reset_says() {
    let (base, idp) = idp().await;
    let s = sealer();
    let controls = Arc::new(Controls::new(
        Mode::Revoke,
        Brake::new(BrakeLimits {
            max_revocations: 1,
            ..BrakeLimits::default()
        }),
    ));
    let r = Arc::new(
        Revoker::new(
            controls.clone(),
            Some(s.clone()),
            Targets::rfc7009(Some(rfc7009(&base, quick_retry(1)))),
        )
        .holding(),
    );
    let sealed = |id: &str| {
        let mut d = decision(id, "hal", None, Action::Revoke);
        d.token_handle = Some(s.seal(id, &format!("raw-{id}")));
        d
    };
    assert_eq!(
        of(&r.settle(sealed("tok-h1")).await, RFC7009),
        Outcome::Revoked { attempts: 1 }
    );
    let settle = |id: &'static str| {
        let (r, d) = (r.clone(), sealed(id));
        tokio::spawn(async move { r.settle(d).await })
    };

    let held = settle("tok-h2");
    wait_until("the brake to hold it", 5, || {
        controls.brake.status().held >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held until an operator resets");
    controls.brake.reset(Held::Drop);
    let dropped = held.await.unwrap();
    assert_eq!(of(&dropped, RFC7009), Outcome::Dropped);

    // The next flood: released this time, and acted on.
    assert_eq!(
        of(&r.settle(sealed("tok-h3")).await, RFC7009),
        Outcome::Revoked { attempts: 1 }
    );
    let held = settle("tok-h4");
    wait_until("the brake to hold it", 5, || {
        controls.brake.status().held >= 1
    })
    .await;
    controls.brake.reset(Held::Release);
    assert_eq!(
        of(&held.await.unwrap(), RFC7009),
        Outcome::Revoked { attempts: 1 }
    );
    let revoked = idp.revocations.lock().unwrap().clone();
    assert_eq!(revoked, ["raw-tok-h1", "raw-tok-h3", "raw-tok-h4"]);
}
