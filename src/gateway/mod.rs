//! Gateway adapters: the access logs gateways already write, read as
//! telemetry. Each format is a table of JSON pointers into the gateway's
//! record ([`FieldMap`]); the presets describe the log formats shipped in
//! `docs/gateways.md`, and `mapped` takes a user's own table. One
//! [`Normalizer`] then does what every format needs: the token's identity
//! from its bearer credential (JWT `jti` or a keyed hash, the raw token
//! dropped or sealed), the client address through trusted proxies, and the
//! checks the telemetry schema makes.

mod client_ip;
mod error;
mod fields;
mod token;
mod verify;

use std::sync::Arc;

pub use client_ip::{client_ip, TrustedProxies};
pub use error::GatewayError;
pub use fields::{FieldMap, Format};
pub use token::{bearer, derive_identity, Claims, TokenIdentity};
pub use verify::{JwksError, JwtVerifier};

use serde::Serialize;
use serde_json::Value;

use crate::respond::Sealer;

/// A normalized telemetry record, owned: what `normalize` publishes and what
/// the scoring path reads when a topic carries gateway logs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Telemetry {
    pub ts: i64,
    pub token_id: String,
    pub sub: String,
    pub ip: String,
    pub user_agent: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_handle: Option<String>,
}

impl Telemetry {
    /// The record as the telemetry topic carries it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("telemetry serialises")
    }
}

/// Reads one gateway format into telemetry.
pub struct Normalizer {
    map: FieldMap,
    trusted: TrustedProxies,
    hash_key: Arc<[u8]>,
    sealer: Option<Sealer>,
    verifier: Option<Arc<JwtVerifier>>,
}

impl Normalizer {
    pub fn new(
        map: FieldMap,
        trusted: TrustedProxies,
        hash_key: Arc<[u8]>,
        sealer: Option<Sealer>,
    ) -> Normalizer {
        Normalizer {
            map,
            trusted,
            hash_key,
            sealer,
            verifier: None,
        }
    }

    /// Verifies JWT signatures with `verifier` (see `verify.rs`).
    pub fn with_verifier(mut self, verifier: Option<Arc<JwtVerifier>>) -> Normalizer {
        self.verifier = verifier;
        self
    }

    pub fn normalize(&self, record: &[u8]) -> Result<Telemetry, GatewayError> {
        let v: Value =
            serde_json::from_slice(record).map_err(|e| GatewayError::Json(e.to_string()))?;
        if !v.is_object() {
            return Err(GatewayError::Json("not a JSON object".into()));
        }
        let m = &self.map;
        let ts = fields::timestamp_ms(m.get(&v, &m.ts).ok_or(GatewayError::Missing("ts"))?)?;
        let remote = m
            .text(&v, &m.remote_addr)
            .ok_or(GatewayError::Missing("client address"))?;
        let ip = client_ip(
            &remote,
            m.text(&v, &m.x_forwarded_for).as_deref(),
            m.text(&v, &m.forwarded).as_deref(),
            &self.trusted,
        )?;
        let authorization = m.text(&v, &m.authorization);
        let claims_value = m.get(&v, &m.jwt_payload);
        let mapped = Claims {
            jti: m.text(&v, &m.token_id),
            sub: m.text(&v, &m.sub),
            iat: m.get(&v, &m.token_iat).and_then(fields::integer),
            exp: m.get(&v, &m.token_exp).and_then(fields::integer),
            client_id: m.text(&v, &m.client_id),
        };
        let id = derive_identity(
            authorization.as_deref(),
            claims_value,
            mapped,
            &self.hash_key,
            self.sealer.as_ref(),
            self.verifier.as_deref(),
        )?;
        let status = m
            .get(&v, &m.status)
            .and_then(fields::integer)
            .and_then(|s| u16::try_from(s).ok())
            .ok_or(GatewayError::Missing("status"))?;
        Ok(Telemetry {
            ts,
            token_id: id.token_id,
            sub: id.claims.sub.unwrap_or_default(),
            ip: ip.to_string(),
            user_agent: m.text(&v, &m.user_agent).unwrap_or_default(),
            method: m
                .text(&v, &m.method)
                .ok_or(GatewayError::Missing("method"))?,
            path: m.text(&v, &m.path).ok_or(GatewayError::Missing("path"))?,
            status,
            client_id: id.claims.client_id,
            token_iat: id.claims.iat,
            token_exp: id.claims.exp,
            bytes: m
                .get(&v, &m.bytes)
                .and_then(fields::integer)
                .and_then(|b| u64::try_from(b).ok()),
            latency_ms: m
                .get(&v, &m.latency)
                .and_then(fields::number)
                .map(|x| x * m.latency_to_ms),
            token_handle: id.handle,
        })
    }

    /// The record with its credential fields removed, for the dead-letter
    /// topic: a raw gateway log may carry a live bearer token.
    pub fn redact(&self, record: &[u8]) -> Vec<u8> {
        let Ok(mut v) = serde_json::from_slice::<Value>(record) else {
            return b"{\"redacted\":\"not JSON; dropped because it may hold a credential\"}"
                .to_vec();
        };
        for p in [&self.map.authorization, &self.map.jwt_payload]
            .into_iter()
            .flatten()
        {
            if let Some(x) = v.pointer_mut(p) {
                *x = Value::String("[redacted]".into());
            }
        }
        crate::ingest::redact_value(&mut v);
        serde_json::to_vec(&v).expect("value serialises")
    }
}
