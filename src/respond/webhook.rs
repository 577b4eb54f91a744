//! Webhook target: the alert event as a JSON POST, signed so the receiver
//! can tell it came from tokenwatch and is fresh.
//!
//! `Tokenwatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<body>"` with the shared secret — the scheme Stripe and others use,
//! so receivers have libraries for it. A receiver rejects a `t` too far from
//! its own clock (replay) and compares `v1` in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::http::{self, CallError, RetryPolicy};

pub const SIGNATURE_HEADER: &str = "tokenwatch-signature";

#[derive(Clone)]
pub struct WebhookParams {
    pub name: String,
    pub url: String,
    pub secret: Vec<u8>,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for WebhookParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookParams")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<set>")
            .finish()
    }
}

pub struct Webhook {
    http: reqwest::Client,
    p: WebhookParams,
}

/// The signature header's value for `body` sent at `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={t},v1={hex}")
}

/// Checks a signature header as a receiver would: the MAC in constant
/// time, and `t` within `tolerance_s` of `now_s`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    let expected = sign(secret, t, body);
    let expected = expected.rsplit("v1=").next().unwrap_or_default();
    use subtle::ConstantTimeEq;
    expected.as_bytes().ct_eq(v1.as_bytes()).into()
}

impl Webhook {
    pub fn new(p: WebhookParams) -> Result<Webhook, reqwest::Error> {
        Ok(Webhook {
            http: p.retry.client()?,
            p,
        })
    }

    pub fn name(&self) -> &str {
        &self.p.name
    }

    /// Posts `body`; each attempt is signed afresh, so a retry is not
    /// rejected as stale.
    /// `idempotency`: the `Idempotency-Key` header's value.
    pub async fn post(&self, body: &[u8], idempotency: &str) -> Result<u32, CallError> {
        self.p
            .retry
            .run(|| async {
                let t = crate::clock::now_ms() / 1000;
                http::send(
                    self.http
                        .post(&self.p.url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, sign(&self.p.secret, t, body))
                        .header(http::IDEMPOTENCY_KEY, idempotency)
                        .body(body.to_vec()),
                )
                .await
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let h = sign(b"s3cret", 1_000, b"{\"a\":1}");
        assert!(verify(b"s3cret", &h, b"{\"a\":1}", 1_100, 300));
        assert!(!verify(b"s3cret", &h, b"{\"a\":2}", 1_100, 300), "body");
        assert!(!verify(b"other", &h, b"{\"a\":1}", 1_100, 300), "secret");
        assert!(!verify(b"s3cret", &h, b"{\"a\":1}", 2_000, 300), "stale");
        assert!(
            !verify(b"s3cret", "v1=00", b"{\"a\":1}", 1_000, 300),
            "no t"
        );
    }
}
