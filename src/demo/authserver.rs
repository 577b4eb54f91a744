//! A small OAuth 2.0 authorization server on loopback for the demo and the
//! tests: it issues opaque access tokens and really revokes them (RFC 7009),
//! and introspection (RFC 7662) tells whether a token is still active. Client
//! authentication is `client_secret_basic` or `client_secret_post`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inner {
    /// Active tokens → subject.
    active: HashMap<String, String>,
    revocations: u64,
    requests: u64,
}

/// Handle to a running server.
#[derive(Clone)]
pub struct AuthServer {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Deserialize)]
struct TokenForm {
    token: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    client_id: String,
    client_secret: String,
}

impl AppState {
    fn authenticated(&self, headers: &HeaderMap, form: &TokenForm) -> bool {
        if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            if let Some(b64) = v.strip_prefix("Basic ") {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    let expect = format!("{}:{}", self.client_id, self.client_secret);
                    return raw == expect.as_bytes();
                }
            }
            return false;
        }
        form.client_id.as_deref() == Some(&self.client_id)
            && form.client_secret.as_deref() == Some(&self.client_secret)
    }
}

async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> StatusCode {
    if !s.authenticated(&headers, &form) {
        return StatusCode::UNAUTHORIZED;
    }
    let mut inner = s.inner.lock().expect("auth server lock");
    inner.requests += 1;
    // RFC 7009 §2.2: 200 whether or not the token was known.
    if inner.active.remove(&form.token).is_some() {
        inner.revocations += 1;
    }
    StatusCode::OK
}

async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    if !s.authenticated(&headers, &form) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let inner = s.inner.lock().expect("auth server lock");
    Ok(Json(match inner.active.get(&form.token) {
        Some(sub) => serde_json::json!({ "active": true, "sub": sub }),
        None => serde_json::json!({ "active": false }),
    }))
}

impl AuthServer {
    /// Starts on 127.0.0.1 (an ephemeral port) until `shutdown`.
    pub async fn start(shutdown: CancellationToken) -> std::io::Result<AuthServer> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = AppState {
            inner: inner.clone(),
            client_id: "tokenwatch".into(),
            client_secret: random_token(),
        };
        let app = Router::new()
            .route("/oauth2/revoke", post(revoke))
            .route("/oauth2/introspect", post(introspect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(AuthServer {
            inner,
            addr,
            client_id: state.client_id,
            client_secret: state.client_secret,
        })
    }

    pub fn revocation_url(&self) -> String {
        format!("http://{}/oauth2/revoke", self.addr)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://{}/oauth2/introspect", self.addr)
    }

    /// Issues a fresh opaque access token for `sub`.
    pub fn issue(&self, sub: &str) -> String {
        let token = random_token();
        self.inner
            .lock()
            .expect("auth server lock")
            .active
            .insert(token.clone(), sub.to_owned());
        token
    }

    pub fn is_active(&self, token: &str) -> bool {
        self.inner
            .lock()
            .expect("auth server lock")
            .active
            .contains_key(token)
    }

    /// Tokens actually revoked (known and active when the call came).
    pub fn revocations(&self) -> u64 {
        self.inner.lock().expect("auth server lock").revocations
    }

    pub fn revocation_requests(&self) -> u64 {
        self.inner.lock().expect("auth server lock").requests
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
