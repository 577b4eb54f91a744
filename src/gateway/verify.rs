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
}

impl JwtVerifier {
    /// A verifier holding `keys` (tests, static configurations).
    pub fn with_keys(url: impl Into<String>, keys: JwkSet) -> JwtVerifier {
        JwtVerifier {
            url: url.into(),
            keys: ArcSwap::from_pointee(keys),
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
        Ok(n)
    }

    /// The payload of `token` if its signature verifies under a key of the
    /// set (matched by `kid`, else any key of the header's algorithm).
    /// Expiry is not checked: a token used after `exp` is still the same
    /// token, and the gateway refuses it anyway.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let header = decode_header(token).ok()?;
        let keys = self.keys.load();
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => keys.find(kid).into_iter().collect(),
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
