//! The one loopback identity provider of the tests: a client-credentials
//! token endpoint, a Keycloak-shaped logout route (scripted answers, an
//! outage switch), an RFC 7009 endpoint and a webhook receiver that checks
//! signatures. Each test reads what it was called with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokenwatch::respond::webhook;

/// The admin access token the token endpoint issues, also accepted when a
/// test configures it directly as a bearer token.
pub const ADMIN_AT: &str = "admin-access-token-1";
pub const HOOK_SECRET: &[u8] = b"webhook-secret-0123456789";

/// A loopback IdP: a client-credentials token endpoint, a Keycloak-shaped
/// logout route that answers from a script, an RFC 7009 endpoint and a
/// webhook receiver that checks signatures.
#[derive(Default)]
pub struct Idp {
    pub token_calls: AtomicU32,
    pub logouts: Mutex<Vec<String>>,
    pub logout_script: Mutex<Vec<u16>>,
    pub revocations: Mutex<Vec<String>>,
    pub hooks: Mutex<Vec<serde_json::Value>>,
    pub bad_signatures: AtomicU32,
    /// Delay before answering the RFC 7009 endpoint.
    pub revoke_delay: Mutex<Duration>,
    pub revoke_started: AtomicU32,
    /// While set, logout answers 503 (an outage).
    pub down: AtomicBool,
    /// Logout calls that passed authentication, answered or not.
    pub attempts: AtomicU32,
    /// When each raw token's RFC 7009 revocation arrived.
    pub revoked_at: Mutex<BTreeMap<String, std::time::Instant>>,
    /// While set, the webhook answers 500 (a SIEM outage).
    pub hook_down: AtomicBool,
    /// Webhook calls with a good signature, answered or not.
    pub hook_attempts: AtomicU32,
    /// Delay before answering a logout (after counting the attempt).
    pub logout_delay: Mutex<Duration>,
    /// Every call's route and `Idempotency-Key` header ("" when absent), in
    /// arrival order: a target that honours the key acts once per key.
    pub keyed: Mutex<Vec<(&'static str, String)>>,
}

impl Idp {
    fn keyed(&self, route: &'static str, headers: &HeaderMap) {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.keyed.lock().unwrap().push((route, key));
    }

    /// Calls per idempotency key of `route`.
    pub fn calls_per_key(&self, route: &str) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for (r, k) in self.keyed.lock().unwrap().iter() {
            if *r == route {
                *m.entry(k.clone()).or_default() += 1;
            }
        }
        m
    }

    /// Logouts per user.
    pub fn logout_counts(&self) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for u in self.logouts.lock().unwrap().iter() {
            *m.entry(u.clone()).or_default() += 1;
        }
        m
    }
}

async fn token(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> (StatusCode, String) {
    idp.token_calls.fetch_add(1, Ordering::SeqCst);
    // tokenwatch:s3cret, Basic.
    let ok = headers
        .get("authorization")
        .is_some_and(|v| v == "Basic dG9rZW53YXRjaDpzM2NyZXQ=");
    if !ok {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (
        StatusCode::OK,
        format!(r#"{{"access_token":"{ADMIN_AT}","token_type":"Bearer","expires_in":300}}"#),
    )
}

async fn logout(
    State(idp): State<Arc<Idp>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {ADMIN_AT}"))
    {
        return StatusCode::UNAUTHORIZED;
    }
    idp.attempts.fetch_add(1, Ordering::SeqCst);
    idp.keyed("logout", &headers);
    let delay = *idp.logout_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if idp.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if user == "ghost" {
        return StatusCode::NOT_FOUND;
    }
    let next = {
        let mut s = idp.logout_script.lock().unwrap();
        if s.is_empty() {
            204
        } else {
            s.remove(0)
        }
    };
    if next == 204 {
        idp.logouts.lock().unwrap().push(user);
    }
    StatusCode::from_u16(next).unwrap()
}

async fn revoke(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> StatusCode {
    idp.revoke_started.fetch_add(1, Ordering::SeqCst);
    idp.keyed("revoke", &headers);
    let delay = *idp.revoke_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    idp.revoked_at
        .lock()
        .unwrap()
        .entry(token.clone())
        .or_insert_with(std::time::Instant::now);
    idp.revocations.lock().unwrap().push(token);
    StatusCode::OK
}

async fn hook(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let sig = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = tokenwatch::clock::now_ms() / 1000;
    if !webhook::verify(HOOK_SECRET, sig, &body, now, 300) {
        idp.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    idp.hook_attempts.fetch_add(1, Ordering::SeqCst);
    idp.keyed("hook", &headers);
    if idp.hook_down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    idp.hooks
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

pub async fn idp() -> (String, Arc<Idp>) {
    let state = Arc::new(Idp::default());
    let app = Router::new()
        .route("/realms/acme/protocol/openid-connect/token", post(token))
        .route("/admin/realms/acme/users/{user}/logout", post(logout))
        .route("/revoke", post(revoke))
        .route("/hook", post(hook))
        .with_state(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, state)
}
