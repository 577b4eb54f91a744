//! OAuth 2.0 Token Revocation (RFC 7009) client.
//!
//! A form POST of `token` and `token_type_hint` with client authentication
//! (`client_secret_basic` or `client_secret_post`). 200 is success (§2.2 —
//! note a server also answers 200 for a token it does not know, which is why
//! only a real token value, opened from a sealed handle, is ever sent). 5xx,
//! 429, time-outs and connection errors are retried with exponential backoff
//! and jitter; any other 4xx is permanent.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Clone, Debug)]
pub struct Rfc7009Params {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth: ClientAuth,
    pub timeout: Duration,
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CallError {
    #[error("HTTP {status} (retryable)")]
    Retryable { status: u16 },
    #[error("HTTP {status}: {body}")]
    Permanent { status: u16, body: String },
    #[error("transport: {0}")]
    Transport(String),
}

impl CallError {
    fn retryable(&self) -> bool {
        !matches!(self, CallError::Permanent { .. })
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Retryable { .. } => "server_error",
            CallError::Permanent { .. } => "rejected",
            CallError::Transport(_) => "transport",
        }
    }
}

#[derive(Clone)]
pub struct Rfc7009Client {
    http: reqwest::Client,
    p: Rfc7009Params,
}

impl Rfc7009Client {
    pub fn new(p: Rfc7009Params) -> Result<Rfc7009Client, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(p.timeout).build()?;
        Ok(Rfc7009Client { http, p })
    }

    /// Revokes `token`; returns how many attempts it took.
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<u32, CallError> {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let call = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.call_once(token, hint).await
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.p.min_backoff)
            .with_max_delay(self.p.max_backoff)
            .with_max_times(self.p.max_retries)
            .with_jitter();
        call.retry(backoff).when(CallError::retryable).await?;
        Ok(attempts.into_inner())
    }

    async fn call_once(&self, token: &str, hint: &str) -> Result<(), CallError> {
        let mut form: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", hint)];
        let mut req = self.http.post(&self.p.url);
        match self.p.auth {
            ClientAuth::ClientSecretBasic => {
                req = req.basic_auth(
                    form_encode(&self.p.client_id),
                    Some(form_encode(&self.p.client_secret)),
                );
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.p.client_id));
                form.push(("client_secret", &self.p.client_secret));
            }
        }
        let body = serde_urlencoded_form(&form);
        let resp = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(()),
            429 | 500..=599 => Err(CallError::Retryable { status }),
            _ => {
                let body = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                Err(CallError::Permanent { status, body })
            }
        }
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic auth.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
