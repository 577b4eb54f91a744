//! End to end with a real gateway: Debian's NGINX on loopback, in front of
//! a small upstream, asks tokenwatch's edge check (`auth_request`) before
//! every request and writes `escape=json` access lines, which `kcat` ships
//! to the raw topic on librdkafka's mock cluster, where tokenwatch `serve`
//! reads them. Once the stolen token is flagged, the thief's next request
//! through NGINX gets 403, and the victim's other token still passes.
//!
//! Needs nginx and kcat: `scripts/ensure-nginx` installs them, and
//! `.ci/run` runs this with `cargo test --test nginx -- --ignored`.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use common::instance::{self, Instance};
use common::kafka::create_mock_topics;
use common::*;
use rdkafka::mocking::MockCluster;
use tokenwatch::config::RawConfig;
use tokenwatch::respond::Mode;
use tokenwatch::seal::Sealer;
use tokenwatch::serve::Hooks;

const STOLEN: &str = "victims-opaque-token-7c1e2b90aa";
const OTHER: &str = "victims-other-token-44d0f1e3b2";

fn nginx_conf(dir: &std::path::Path, listen: u16, tokenwatch: &str, upstream: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  # The line docs/gateways.md gives for format = "nginx".
  log_format tokenwatch escape=json
    '{{"time":"$time_iso8601","remote_addr":"$remote_addr",'
    '"x_forwarded_for":"$http_x_forwarded_for","forwarded":"$http_forwarded",'
    '"method":"$request_method","uri":"$request_uri","status":"$status",'
    '"bytes":"$body_bytes_sent","request_time":"$request_time",'
    '"user_agent":"$http_user_agent","authorization":"$http_authorization"}}';
  access_log {d}/access.json tokenwatch;
  server {{
    listen 127.0.0.1:{listen};
    location = /_tokenwatch_check {{
      internal;
      proxy_pass http://{tokenwatch}/v1/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location / {{
      auth_request /_tokenwatch_check;
      proxy_pass http://{upstream};
    }}
  }}
}}
"#
    )
}

/// Kills the child process group when dropped, so no nginx or kcat outlives
/// the test.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // The whole group: a shell pipeline's children too.
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn through(http: &reqwest::Client, nginx: u16, token: &str, ip: &str, agent: &str) -> u16 {
    http.get(format!("http://127.0.0.1:{nginx}/v1/orders"))
        .bearer_auth(token)
        .header("x-forwarded-for", ip)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx and kcat (scripts/ensure-nginx); run by .ci/run"]
async fn nginx_refuses_a_stolen_token_once_tokenwatch_flags_it() {
    for tool in ["nginx", "kcat"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} is not installed: run scripts/ensure-nginx"
        );
    }
    let cluster = MockCluster::new(1).unwrap();
    let mut raw = RawConfig::default();
    raw.kafka.brokers = cluster.bootstrap_servers();
    raw.kafka.commit_interval = Duration::from_millis(200);
    raw.http.listen = "127.0.0.1:0".into();
    // The gateway reaches the edge check on a listener of its own, as
    // docs/gateways.md and deploy/kubernetes set it up.
    raw.http.edge_listen = "127.0.0.1:0".into();
    raw.respond.mode = Mode::Revoke;
    raw.respond
        .seal_keys
        .insert("k1".into(), Sealer::generate_key());
    raw.gateway.hash_key = "edge-hash-key-0123456789".into();
    // NGINX is the proxy; the client address is the X-Forwarded-For it logs.
    raw.gateway.trusted_proxies = vec!["127.0.0.1/32".into()];
    raw.gateway.inputs = vec![serde_json::from_value(serde_json::json!({
        "topic": "nginx.access", "format": "nginx"
    }))
    .unwrap()];
    let cfg = raw.validate().unwrap();
    let k = cfg.kafka.clone();
    create_mock_topics(&cluster, &k, 1);
    cluster.create_topic("nginx.access", 1, 1).unwrap();
    let Instance {
        stop,
        task: service,
        http: tokenwatch,
        bound,
        ..
    } = instance::start_with(cfg, Hooks::default()).await;

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            upstream,
            Router::new().fallback(get(|| async { "orders\n" })),
        )
        .await
        .unwrap()
    });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_conf(
            dir.path(),
            port,
            &bound.edge.to_string(),
            &upstream_addr.to_string(),
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("access.json"), b"").unwrap();
    let _nginx = Reaped(
        std::process::Command::new("nginx")
            .process_group(0)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts"),
    );
    // The log shipper: every access line, as written, to the raw topic.
    let _shipper = Reaped(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec tail -n +1 -F {log} | kcat -P -q -b {brokers} -t nginx.access",
                log = dir.path().join("access.json").display(),
                brokers = cluster.bootstrap_servers(),
            ))
            .process_group(0)
            .spawn()
            .expect("tail | kcat starts"),
    );

    let http = reqwest::Client::new();
    // Wait for NGINX, for the edge check's denylist to load (the check
    // answers 503 until then) and for tokenwatch to hold its partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = |url: String| {
            let http = http.clone();
            async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
        };
        if up(format!("http://127.0.0.1:{port}/probe")).await
            && up(format!("http://{tokenwatch}/readyz")).await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx + tokenwatch not up in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The victim works from Paris with two tokens.
    assert_eq!(through(&http, port, STOLEN, PARIS, BROWSER).await, 200);
    assert_eq!(through(&http, port, OTHER, PARIS, BROWSER).await, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // The thief replays the stolen one from Sydney, with a script, until
    // NGINX refuses it.
    let attack = Instant::now();
    let mut passed = 0;
    let refused_after = loop {
        match through(&http, port, STOLEN, SYDNEY, TOOL).await {
            200 => passed += 1,
            403 => break attack.elapsed(),
            other => panic!("unexpected status {other}"),
        }
        assert!(
            attack.elapsed() < Duration::from_secs(30),
            "the stolen token still passes after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "first 403 {} ms after the attacker's first request ({passed} requests passed before)",
        refused_after.as_millis()
    );
    // The victim's other token is untouched; the stolen one stays refused.
    assert_eq!(through(&http, port, OTHER, PARIS, BROWSER).await, 200);
    assert_eq!(through(&http, port, STOLEN, PARIS, BROWSER).await, 403);
    stop.cancel();
    let _ = service.await;
}
