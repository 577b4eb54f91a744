//! The HTTP surface, driven without a socket (axum's `oneshot`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokenwatch::api::{app, AppState};
use tokenwatch::ingest::Readiness;
use tokenwatch::metrics::Metrics;
use tower::ServiceExt;

async fn get(state: &AppState, path: &str) -> (StatusCode, String, String) {
    let resp = app(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (status, ctype, body)
}

fn state() -> AppState {
    AppState {
        metrics: Arc::new(Metrics::new()),
        readiness: Arc::new(Readiness::default()),
    }
}

#[tokio::test]
async fn healthz_is_always_ok() {
    assert_eq!(get(&state(), "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn readyz_needs_an_assignment_and_a_model() {
    let s = state();
    let (status, _, body) = get(&s, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("assigned=false"));
    s.readiness.model_loaded.store(true, Ordering::Release);
    assert_eq!(get(&s, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    s.readiness.assigned.store(true, Ordering::Release);
    assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_exposed_in_the_text_format_with_project_names() {
    let s = state();
    s.metrics.events_consumed.inc_by(3);
    s.metrics.events_rejected.with_label_values(&["json"]).inc();
    s.metrics.set_model_version("lr-test");
    let (status, ctype, body) = get(&s, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"));
    assert!(body.contains("tokenwatch_events_consumed_total 3"));
    assert!(body.contains("tokenwatch_events_rejected_total{reason=\"json\"} 1"));
    assert!(body.contains("tokenwatch_model_info{version=\"lr-test\"} 1"));
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("tokenwatch_"), "unprefixed metric: {line}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404() {
    assert_eq!(get(&state(), "/nope").await.0, StatusCode::NOT_FOUND);
}
