//! Optional JWT signature verification against the issuer's JWKS
//! (`gateway.jwks_url`). Never needed to derive an identifier; when it is
//! configured, a JWT whose signature does not verify is not trusted for its
//! `jti` or claims and is known by the keyed hash of its value instead, so a
//! forged token carrying someone else's `jti` cannot be counted as their
//! traffic.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("{url} is not a JWK set: {why}")]
    Invalid { url: String, why: String },
}

/// The issuer's keys, replaced whole on refresh.
pub struct JwtVerifier {
    url: String,
    keys: ArcSwap<JwkSet>,
    /// A key set has been fetched (or given) at least once.
    loaded: std::sync::atomic::AtomicBool,
    /// A token named a `kid` the set does not hold: the issuer may have
    /// rotated, and the refresh task fetches again without waiting its turn.
    unknown_kid: tokio::sync::Notify,
}

impl JwtVerifier {
    /// A verifier holding `keys` (tests, static configurations).
    pub fn with_keys(url: impl Into<String>, keys: JwkSet) -> JwtVerifier {
        JwtVerifier {
            url: url.into(),
            loaded: (!keys.keys.is_empty()).into(),
            keys: ArcSwap::from_pointee(keys),
            unknown_kid: tokio::sync::Notify::new(),
        }
    }

    /// Fetches the key set once.
    pub async fn fetch(url: &str, client: &reqwest::Client) -> Result<Arc<JwtVerifier>, JwksError> {
        let keys = fetch_keys(url, client).await?;
        Ok(Arc::new(JwtVerifier::with_keys(url, keys)))
    }

    /// Fetches the key set again (issuers rotate keys); on error the old set
    /// stays.
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<usize, JwksError> {
        let keys = fetch_keys(&self.url, client).await?;
        let n = keys.keys.len();
        self.keys.store(Arc::new(keys));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(n)
    }

    /// A key set has been loaded: until then no signature verifies.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves when a token named a `kid` the set lacks.
    pub async fn unknown_kid(&self) {
        self.unknown_kid.notified().await
    }

    /// The payload of `token` if its signature verifies under a key of the
    /// set (matched by `kid`, else any key of the header's algorithm).
    /// Expiry is not checked: a token used after `exp` is still the same
    /// token, and the gateway refuses it anyway.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let header = decode_header(token).ok()?;
        let keys = self.keys.load();
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => {
                let found: Vec<_> = keys.find(kid).into_iter().collect();
                if found.is_empty() {
                    self.unknown_kid.notify_one();
                }
                found
            }
            None => keys.keys.iter().collect(),
        };
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        candidates.into_iter().find_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            decode::<Value>(token, &key, &validation)
                .ok()
                .map(|d| d.claims)
        })
    }
}

async fn fetch_keys(url: &str, client: &reqwest::Client) -> Result<JwkSet, JwksError> {
    let fetch = |source| JwksError::Fetch {
        url: url.to_owned(),
        source,
    };
    let body = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fetch)?
        .text()
        .await
        .map_err(fetch)?;
    serde_json::from_str(&body).map_err(|e| JwksError::Invalid {
        url: url.to_owned(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn an_unknown_kid_asks_for_a_refresh_and_verifies_nothing() {
        let v = JwtVerifier::with_keys("http://127.0.0.1:1/jwks", JwkSet { keys: Vec::new() });
        assert!(!v.is_loaded());
        let e = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let token = format!(
            "{}.{}.{}",
            e(r#"{"alg":"RS256","kid":"rotated"}"#),
            e("{}"),
            e("sig")
        );
        assert!(
            v.unknown_kid().now_or_never().is_none(),
            "nothing asked yet"
        );
        assert!(v.verify(&token).is_none());
        assert!(
            v.unknown_kid().now_or_never().is_some(),
            "the miss asks for a refresh"
        );
    }
}
