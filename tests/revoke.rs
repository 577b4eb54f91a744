//! The revoker against real HTTP servers on loopback: a token is revoked
//! only through its sealed value, and a call that cannot revoke is never
//! counted as success.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokenwatch::decide::Decision;
use tokenwatch::demo::AuthServer;
use tokenwatch::detect::Action;
use tokenwatch::respond::{
    BrakeLimits, ClientAuth, Controls, Mode, Outcome, RetryPolicy, Revoker, Rfc7009Client,
    Rfc7009Params, Settled, Targets, RFC7009,
};
use tokenwatch::seal::Sealer;
use tokio_util::sync::CancellationToken;

fn params(url: String, id: &str, secret: &str, auth: ClientAuth) -> Rfc7009Params {
    Rfc7009Params {
        url,
        client_id: id.into(),
        client_secret: secret.into(),
        auth,
        retry: RetryPolicy {
            timeout: Duration::from_secs(2),
            max_retries: 4,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
    }
}

/// What the RFC 7009 target did (or the one outcome of a decision that
/// never reached the targets).
fn rfc(s: Settled) -> Outcome {
    s.outcome_of(RFC7009)
        .or(s
            .outcomes
            .first()
            .filter(|_| s.outcomes.len() == 1)
            .map(|o| &o.outcome))
        .cloned()
        .unwrap_or_else(|| panic!("{:?}", s.outcomes))
}

fn decision(token_id: &str, handle: Option<String>) -> Decision {
    Decision {
        decision_id: Decision::decision_id(token_id, Action::Revoke),
        token_id: token_id.into(),
        sub: "alice".into(),
        subject_verified: true,
        tenant: None,
        client_id: None,
        action: Action::Revoke,
        score: 0.99,
        model_version: "test".into(),
        explanation: "test".into(),
        rule: None,
        event_ts_ms: 0,
        decided_at_ms: 0,
        token_handle: handle,
        token_exp: None,
    }
}

/// An RFC 7009 client of the loopback authorization server, basic auth.
fn client_of(auth: &AuthServer) -> Rfc7009Client {
    Rfc7009Client::new(params(
        auth.revocation_url(),
        &auth.client_id,
        &auth.client_secret,
        ClientAuth::ClientSecretBasic,
    ))
    .unwrap()
}

fn sealer() -> Sealer {
    let key = Sealer::generate_key();
    Sealer::new([("k1", key.as_str())]).unwrap()
}

#[tokio::test]
async fn a_sealed_handle_really_revokes_the_token_at_the_authorization_server() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let raw = auth.issue("alice");
    let s = sealer();
    let handle = s.seal("tok-1", &raw);
    for method in [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost] {
        let raw = auth.issue("alice");
        let handle = s.seal("tok-m", &raw);
        let client = Rfc7009Client::new(params(
            auth.revocation_url(),
            &auth.client_id,
            &auth.client_secret,
            method,
        ))
        .unwrap();
        let r = Revoker::new(
            Controls::with_mode(Mode::Revoke),
            Some(s.clone()),
            Targets::rfc7009(Some(client)),
        );
        let settled = r.settle(decision("tok-m", Some(handle))).await;
        assert_eq!(rfc(settled), Outcome::Revoked { attempts: 1 }, "{method:?}");
        assert!(
            !auth.is_active(&raw),
            "{method:?}: the token is really gone"
        );
    }
    let client = client_of(&auth);
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s),
        Targets::rfc7009(Some(client)),
    );
    assert!(auth.is_active(&raw));
    r.settle(decision("tok-1", Some(handle.clone()))).await;
    assert!(!auth.is_active(&raw));
    // A replayed decision is recognised and not acted on twice.
    assert_eq!(
        rfc(r.settle(decision("tok-1", Some(handle))).await),
        Outcome::Duplicate
    );
    stop.cancel();
}

#[tokio::test]
async fn without_a_handle_nothing_is_posted_and_nothing_counts_as_revoked() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let client = client_of(&auth);
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(sealer()),
        Targets::rfc7009(Some(client)),
    );
    let out = rfc(r.settle(decision("tok-2", None)).await);
    assert!(matches!(out, Outcome::Unrevocable { .. }), "{out:?}");
    assert_eq!(out.label(), "unrevocable");
    assert_eq!(
        auth.revocation_requests(),
        0,
        "the token id was never posted as if it were the token"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_handle_sealed_for_another_token_or_key_does_not_open() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let raw = auth.issue("alice");
    let handle = sealer().seal("tok-3", &raw); // another key
    let client = client_of(&auth);
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(sealer()),
        Targets::rfc7009(Some(client)),
    );
    let out = rfc(r.settle(decision("tok-3", Some(handle))).await);
    assert_eq!(out.label(), "bad_handle");
    assert!(auth.is_active(&raw));
    stop.cancel();
}

#[tokio::test]
async fn shadow_mode_never_calls_the_authorization_server() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let raw = auth.issue("alice");
    let s = sealer();
    let handle = s.seal("tok-4", &raw);
    let client = client_of(&auth);
    let r = Revoker::new(
        Controls::with_mode(Mode::Shadow),
        Some(s),
        Targets::rfc7009(Some(client)),
    );
    let out = rfc(r.settle(decision("tok-4", Some(handle))).await);
    assert_eq!(out, Outcome::NotActed { mode: "shadow" });
    assert!(auth.is_active(&raw) && auth.revocation_requests() == 0);
    stop.cancel();
}

/// A server that answers each call with the next status of `script`.
async fn scripted(script: Vec<u16>) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/revoke",
        post(move || {
            let c = c.clone();
            let script = script.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) as usize;
                StatusCode::from_u16(*script.get(n).unwrap_or(&200)).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/revoke", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, calls)
}

/// Settles a revoke decision against a server scripted to answer `script`;
/// returns the outcome and how many calls the server saw.
async fn settle_against(script: Vec<u16>, token_id: &str) -> (Outcome, u32) {
    let s = sealer();
    let (url, calls) = scripted(script).await;
    let client = Rfc7009Client::new(params(url, "tw", "x", ClientAuth::ClientSecretBasic)).unwrap();
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s.clone()),
        Targets::rfc7009(Some(client)),
    );
    let out = rfc(r
        .settle(decision(token_id, Some(s.seal(token_id, "v"))))
        .await);
    (out, calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_permanent() {
    let (out, calls) = settle_against(vec![503, 503, 429, 200], "tok-5").await;
    assert_eq!(out, Outcome::Revoked { attempts: 4 });
    assert_eq!(calls, 4);

    let (out, calls) = settle_against(vec![400], "tok-6").await;
    assert_eq!(out.label(), "rejected", "{out:?}");
    assert_eq!(calls, 1, "a 400 is not retried");

    let (out, calls) = settle_against(vec![503; 10], "tok-7").await;
    assert_eq!(out.label(), "gave_up", "{out:?}");
    assert_eq!(calls, 5, "one call and four retries");
}

#[tokio::test]
async fn wrong_client_credentials_are_a_permanent_failure() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let raw = auth.issue("alice");
    let s = sealer();
    let client = Rfc7009Client::new(params(
        auth.revocation_url(),
        &auth.client_id,
        "wrong",
        ClientAuth::ClientSecretBasic,
    ))
    .unwrap();
    let r = Revoker::new(
        Controls::with_mode(Mode::Revoke),
        Some(s.clone()),
        Targets::rfc7009(Some(client)),
    );
    let out = rfc(r
        .settle(decision("tok-8", Some(s.seal("tok-8", &raw))))
        .await);
    assert_eq!(out.label(), "rejected");
    assert!(auth.is_active(&raw));
    stop.cancel();
}

#[tokio::test]
async fn the_brake_holds_a_flood_of_revocations_but_not_an_operator() {
    let stop = CancellationToken::new();
    let auth = AuthServer::start(stop.clone()).await.unwrap();
    let s = sealer();
    let controls = Arc::new(Controls::new(
        Mode::Revoke,
        tokenwatch::respond::Brake::new(BrakeLimits {
            max_revocations: 2,
            ..BrakeLimits::default()
        }),
    ));
    let r = Revoker::new(
        controls.clone(),
        Some(s.clone()),
        Targets::rfc7009(Some(client_of(&auth))),
    );
    let mut raws = Vec::new();
    for i in 0..4 {
        let id = format!("tok-b{i}");
        let raw = auth.issue("alice");
        let outcome = rfc(r.settle(decision(&id, Some(s.seal(&id, &raw)))).await);
        if i < 2 {
            assert_eq!(outcome, Outcome::Revoked { attempts: 1 }, "{id}");
            assert!(!auth.is_active(&raw));
        } else {
            assert_eq!(outcome, Outcome::Braked, "{id}");
            assert!(auth.is_active(&raw), "{id}: held, not revoked");
        }
        raws.push(raw);
    }
    assert!(controls.brake.status().engaged);
    assert_eq!(controls.brake.status().held, 2);

    // The operator reviews and revokes one by hand: the brake does not hold
    // a person, and the braked decision was not marked done.
    let mut manual = Decision::manual("tok-b2", "alice", "reviewed", None, 0);
    manual.token_handle = Some(s.seal("tok-b2", &raws[2]));
    assert_eq!(
        rfc(r.settle(manual).await),
        Outcome::Revoked { attempts: 1 }
    );
    assert!(!auth.is_active(&raws[2]));

    // Reset: automatic revocations flow again.
    controls.brake.reset(tokenwatch::respond::Held::Release);
    let outcome = rfc(r
        .settle(decision("tok-b3", Some(s.seal("tok-b3", &raws[3]))))
        .await);
    assert_eq!(outcome, Outcome::Revoked { attempts: 1 });
    stop.cancel();
}
