//! End to end against a real authorization server: oidc-provider 9 (npm,
//! started on loopback from tests/idp), tokenwatch's whole service on
//! librdkafka's mock cluster. A token minted for another client is stolen;
//! telemetry of the theft carries only its keyed id and sealed handle
//! (made with `tokenwatch seal`, as a producer would); tokenwatch revokes it
//! through RFC 7009, and introspection then reports it inactive, while the
//! victim's other token stays active. The raw token appears in no topic,
//! log line, metric or state view.
//!
//! Needs Node.js and `npm ci` in tests/idp: `scripts/ensure-idp` does both,
//! and `.ci/run` runs this with `cargo test --test oidc -- --ignored`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::instance::{self, Instance};
use common::kafka::{create_mock_topics, planned};
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokenwatch::clock::now_ms;
use tokenwatch::config::RawConfig;
use tokenwatch::respond::{Mode, Outcome, Settled, RFC7009};
use tokenwatch::seal::Sealer;
use tokenwatch::serve::Hooks;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const TW_SECRET: &str = "tokenwatch-secret-0123456789";
const VICTIM_SECRET: &str = "victim-secret-0123456789";
const HASH_KEY: &str = "producer-hash-key-0123456789";

/// Starts oidc-provider; returns the process (killed on drop) and its issuer.
async fn start_idp() -> (tokio::process::Child, String) {
    let dir = repo("tests/idp");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run scripts/ensure-idp"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("PORT", "0")
        .env("TOKENWATCH_SECRET", TW_SECRET)
        .env("VICTIM_SECRET", VICTIM_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(i) = l.strip_prefix("listening ") {
                return i.to_owned();
            }
        }
        panic!("oidc-provider exited before listening");
    })
    .await
    .expect("oidc-provider starts within 30 s");
    assert!(issuer.starts_with("http://127.0.0.1:"), "loopback only");
    (child, issuer)
}

async fn mint(http: &reqwest::Client, token_endpoint: &str) -> String {
    let r: Value = http
        .post(token_endpoint)
        .basic_auth("victim-app", Some(VICTIM_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "orders")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

async fn active(http: &reqwest::Client, introspection: &str, token: &str) -> bool {
    let r: Value = http
        .post(introspection)
        .basic_auth("tokenwatch", Some(TW_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["active"].as_bool().expect("introspection answers active")
}

/// `tokenwatch seal`, as a producer runs it.
fn seal(key: &str, token_id: &str, raw: &str) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["seal", "--token-id", token_id, "--key-id", "k1"])
        .env("TOKENWATCH_SEAL_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/idp installed (scripts/ensure-idp); run by .ci/run"]
async fn a_stolen_opaque_token_is_revoked_at_a_real_authorization_server() {
    let logs = capture_logs();

    let (_idp, issuer) = start_idp().await;
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint = |k: &str| discovery[k].as_str().unwrap().to_owned();
    let (token_ep, revocation, introspection) = (
        endpoint("token_endpoint"),
        endpoint("revocation_endpoint"),
        endpoint("introspection_endpoint"),
    );
    let stolen = mint(&http, &token_ep).await;
    let kept = mint(&http, &token_ep).await;
    assert!(active(&http, &introspection, &stolen).await);
    assert!(active(&http, &introspection, &kept).await);

    let cluster = MockCluster::new(1).unwrap();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Revoke;
    let key = Sealer::generate_key();
    raw.respond.seal_keys.insert("k1".into(), key.clone());
    raw.respond.rfc7009 = Some(
        serde_json::from_value(serde_json::json!({
            "url": revocation, "client_id": "tokenwatch", "client_secret": TW_SECRET,
        }))
        .unwrap(),
    );
    raw.gateway.hash_key = HASH_KEY.into();
    raw.http.read_token = READ_TOKEN.into();
    let cfg = raw.validate().unwrap();
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 4);
    let (stx, mut srx) = mpsc::unbounded_channel::<Settled>();
    let Instance {
        stop,
        task: service,
        http: tw,
        ..
    } = instance::start_with(
        cfg,
        Hooks {
            settled: Some(stx),
            ..Hooks::default()
        },
    )
    .await;

    // The producer's side: a keyed id and a sealed handle, never the token.
    let token_id = tokenwatch::telemetry::keyed_token_id(HASH_KEY.as_bytes(), &stolen);
    let handle = seal(&key, &token_id, &stolen);
    assert!(!handle.contains(&stolen));
    let now = now_ms();
    let event = |at_ms: i64, ip: &str, agent: &str| {
        serde_json::to_vec(&serde_json::json!({
            "ts": at_ms, "token_id": token_id, "sub": "victim-app", "ip": ip,
            "user_agent": agent, "method": "GET", "path": "/v1/orders", "status": 200,
            "client_id": "victim-app", "token_handle": handle,
        }))
        .unwrap()
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    // The victim in Paris, then the thief in Sydney five minutes later,
    // replaying with a script.
    for record in [
        event(now - 600_000, PARIS, BROWSER),
        event(now - 400_000, PARIS, BROWSER),
        event(now - 100_000, SYDNEY, TOOL),
    ] {
        producer
            .send(
                FutureRecord::to(&k.telemetry_topic)
                    .key(&token_id)
                    .payload(&record),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let settled = tokio::time::timeout(Duration::from_secs(60), srx.recv())
        .await
        .expect("a settled decision within 60 s")
        .unwrap();
    assert_eq!(settled.decision.token_id, token_id);
    assert_eq!(
        settled.outcome_of(RFC7009),
        Some(&Outcome::Revoked { attempts: 1 }),
        "{:?}",
        settled.outcomes
    );
    assert!(
        !active(&http, &introspection, &stolen).await,
        "the authorization server no longer accepts the stolen token"
    );
    assert!(
        active(&http, &introspection, &kept).await,
        "the victim's other token is untouched"
    );

    // Everything tokenwatch exposed or wrote, searched for the raw token.
    let metrics_text = http
        .get(format!("http://{tw}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut views = Vec::new();
    for path in [
        format!("/v1/tokens/{token_id}"),
        "/v1/alerts".into(),
        "/v1/audit".into(),
    ] {
        views.push(read_view(&http, format!("http://{tw}{path}")).await);
    }
    assert!(views[0].contains(&token_id), "{}", views[0]);
    let mut published = Vec::new();
    for (t, partitions) in planned(&k, 4) {
        for (key, payload) in topic_records(&k.brokers, t, partitions, 1000, 2) {
            published.push(key);
            published.push(String::from_utf8_lossy(&payload.unwrap_or_default()).into_owned());
        }
    }
    assert!(
        published.iter().any(|p| p.contains("\"revoked\"")),
        "the topics were read"
    );
    stop.cancel();
    let _ = service.await;
    let logs = logs.text();
    assert!(logs.contains("decision settled"), "logs were captured");
    for (what, text) in [
        ("metrics", metrics_text),
        ("state and journals", views.join("\n")),
        ("topics", published.join("\n")),
        ("logs", logs),
    ] {
        assert!(!text.contains(&stolen), "raw token in {what}");
    }
}
