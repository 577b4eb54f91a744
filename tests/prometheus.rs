//! End to end with a real Prometheus on loopback: it scrapes `tokenwatch
//! demo`, evaluates `deploy/prometheus/alerts.yml`, and the detection alert
//! fires, as seen through Prometheus's own HTTP API.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`), so it is
//! ignored by `cargo test`; `.ci/run` installs the package and runs
//! `cargo test --test prometheus -- --ignored`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, repo};
use serde_json::Value;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test]
#[ignore = "needs the prometheus binary; run by .ci/run"]
async fn prometheus_fires_the_detection_alert_on_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let tw_port = free_port();
    let prom_port = free_port();
    let demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
            .current_dir(repo(""))
            .args(["demo", "--duration", "90s", "--listen"])
            .arg(format!("127.0.0.1:{tw_port}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("tokenwatch demo starts"),
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: tokenwatch\n    static_configs:\n      - targets: ['127.0.0.1:{tw_port}']\n",
        repo("deploy/prometheus/alerts.yml").display()
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (apt-get install prometheus)"),
    );

    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{prom_port}/api/v1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Value::Null;
    let firing = loop {
        assert!(
            Instant::now() < deadline,
            "no firing TokenwatchStolenTokenDetected in 120 s; last /api/v1/alerts: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(v) = get_json(&client, &format!("{api}/alerts")).await else {
            continue;
        };
        last = v.clone();
        let found = v["data"]["alerts"].as_array().and_then(|alerts| {
            alerts
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "TokenwatchStolenTokenDetected"
                        && a["state"] == "firing"
                })
                .cloned()
        });
        if let Some(a) = found {
            break a;
        }
    };
    let reason = firing["labels"]["reason"].as_str().unwrap().to_owned();
    assert!(
        [
            "travel_to_unknown_egress",
            "impossible_travel",
            "concurrent_use",
            "model"
        ]
        .contains(&reason.as_str()),
        "{firing}"
    );
    assert_eq!(firing["labels"]["severity"], "warning");

    // The scrape itself is healthy and the counter behind the alert is real.
    let up = get_json(
        &client,
        &format!("{api}/query?query=up{{job=%22tokenwatch%22}}"),
    )
    .await
    .unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let flagged = get_json(
        &client,
        &format!("{api}/query?query=sum(tokenwatch_tokens_flagged_total%7Baction=%22revoke%22%7D)"),
    )
    .await
    .unwrap();
    let n: f64 = flagged["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 1.0, "{flagged}");
    // Nothing about the pipeline is alerting while the demo runs.
    let alerts = last["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for a in &alerts {
        let name = a["labels"]["alertname"].as_str().unwrap_or_default();
        assert!(
            ![
                "TokenwatchDown",
                "TokenwatchRevocationFailures",
                "TokenwatchBrakeEngaged"
            ]
            .contains(&name)
                || a["state"] != "firing",
            "unexpected firing alert: {a}"
        );
    }

    // Every dashboard query runs against the live data; most return series.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/tokenwatch.json")).unwrap(),
    )
    .unwrap();
    let mut with_data = 0;
    let mut total = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m");
            let v: Value = client
                .get(format!("{api}/query"))
                .query(&[("query", expr.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["status"], "success", "{}: {v}", panel["title"]);
            total += 1;
            if v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                with_data += 1;
            }
        }
    }
    assert!(
        with_data * 4 >= total * 3,
        "only {with_data} of {total} dashboard queries returned data"
    );
    drop(demo);
}
