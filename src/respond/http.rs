//! One retry policy for every HTTP target (RFC 7009, subject logout,
//! webhooks): 2xx is success; 429, 5xx, time-outs and connection errors are
//! retried with exponential backoff and jitter; any other status is a
//! permanent failure, never a success.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CallError {
    #[error("HTTP {status} (retryable)")]
    Retryable { status: u16 },
    #[error("HTTP {status}: {body}")]
    Permanent { status: u16, body: String },
    #[error("transport: {0}")]
    Transport(String),
    /// The call cannot be made for this decision at all (a template needs a
    /// value the decision lacks); retrying would not help.
    #[error("{0}")]
    Impossible(String),
}

impl CallError {
    pub fn retryable(&self) -> bool {
        matches!(self, CallError::Retryable { .. } | CallError::Transport(_))
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Retryable { .. } => "server_error",
            CallError::Permanent { .. } => "rejected",
            CallError::Transport(_) => "transport",
            CallError::Impossible(_) => "impossible",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub timeout: Duration,
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(5),
            max_retries: 6,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A client for one target. Redirects are not followed: a revocation
    /// endpoint that redirects (to a login page, say) would otherwise end
    /// in a 200 that revoked nothing.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// Runs `call` until it succeeds, fails permanently or retries run out;
    /// returns how many attempts it took.
    pub async fn run<F, Fut>(&self, call: F) -> Result<u32, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let attempts = AtomicU32::new(0);
        let counted = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            call()
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.max_retries)
            .with_jitter();
        counted.retry(backoff).when(CallError::retryable).await?;
        Ok(attempts.into_inner())
    }
}

/// The header every call to a target carries: the same value for every
/// attempt of one target for one decision (its retries, and a replay after a
/// crash mid-call), so a target that honours it (draft-ietf-httpapi-
/// idempotency-key-header) acts once however often it is called.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The header's value for an idempotence key (`target|decision|…`): hashed,
/// so whatever a decision id holds, the header is 32 hex characters.
pub fn idempotency_value(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    h[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends one request and classifies the answer.
pub async fn send(req: reqwest::RequestBuilder) -> Result<(), CallError> {
    let resp = req.send().await.map_err(transport)?;
    classify(resp).await
}

pub fn transport(e: reqwest::Error) -> CallError {
    CallError::Transport(e.without_url().to_string())
}

pub async fn classify(resp: reqwest::Response) -> Result<(), CallError> {
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
