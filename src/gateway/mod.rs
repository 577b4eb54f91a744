//! Gateway adapters: the access logs gateways already write, read as
//! telemetry. Each format is a table of JSON pointers into the gateway's
//! record ([`FieldMap`]); the presets describe the log formats shipped in
//! `docs/gateways.md`, and `mapped` takes a user's own table. One
//! [`Normalizer`] then does what every format needs: the token's identity
//! from its bearer credential (JWT `jti` or a keyed hash, the raw token
//! dropped or sealed), the client address through trusted proxies, and the
//! checks the telemetry schema makes.

mod authorization;
mod client_ip;
mod error;
mod fields;
mod pluck;
mod token;
mod verify;

use std::sync::Arc;

pub use authorization::{bearer, other_bearer_tokens, read_authorization, Authorization};
pub use client_ip::{client_ip, TrustedProxies};
pub use error::GatewayError;
pub use fields::{slot, FieldMap, Format};
pub use pluck::{Plan, Scalar};
pub use token::{derive_identity, other_identity, token_ids, Claims, TokenIdentity};
pub use verify::{JwksError, JwtVerifier};

use std::borrow::Cow;

use serde_json::Value;

use crate::telemetry::{check_ts_ms, without_query, Event, TokenHasher};

use crate::seal::Sealer;

/// One gateway record read as telemetry: the event of its (first) bearer
/// token, and one more per other distinct bearer token the request carried
/// (`Authorization: Bearer decoy, Bearer stolen`). Each is the token's
/// traffic; `others` is empty (and allocates nothing) for the usual request.
#[derive(Debug)]
pub struct Normalized<'a> {
    pub event: Event<'a>,
    pub others: Vec<Event<'a>>,
}

impl Normalized<'_> {
    fn into_owned(self) -> Normalized<'static> {
        Normalized {
            event: self.event.into_owned(),
            others: self.others.into_iter().map(Event::into_owned).collect(),
        }
    }
}

/// Reads one gateway format into telemetry.
pub struct Normalizer {
    map: FieldMap,
    plan: Plan,
    trusted: TrustedProxies,
    hasher: TokenHasher,
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
            plan: Plan::new(&map.pointers()),
            map,
            trusted,
            hasher: TokenHasher::new(&hash_key),
            sealer,
            verifier: None,
        }
    }

    /// Verifies JWT signatures with `verifier` (see `verify.rs`).
    pub fn with_verifier(mut self, verifier: Option<Arc<JwtVerifier>>) -> Normalizer {
        self.verifier = verifier;
        self
    }

    /// The record as a validated event, borrowing from `record` where it
    /// can, with an event for every other bearer token it carried: the
    /// scoring path scores them as they are, `normalize` publishes their
    /// JSON (`Event::to_json`).
    pub fn normalize_all<'a>(&self, record: &'a [u8]) -> Result<Normalized<'a>, GatewayError> {
        // As `telemetry::read_text` reads a record: a record with invalid
        // UTF-8 is read from a lossy copy, not refused.
        match simdutf8::basic::from_utf8(record) {
            Ok(text) => self.normalize_text(text),
            Err(_) => self
                .normalize_text(&String::from_utf8_lossy(record))
                .map(Normalized::into_owned),
        }
    }

    /// The event of the record's first bearer token alone.
    pub fn normalize<'a>(&self, record: &'a [u8]) -> Result<Event<'a>, GatewayError> {
        self.normalize_all(record).map(|n| n.event)
    }

    fn normalize_text<'a>(&self, record: &'a str) -> Result<Normalized<'a>, GatewayError> {
        let mut slots: [Option<Scalar<'a>>; slot::COUNT] = Default::default();
        self.plan
            .pluck(record, &mut slots)
            .map_err(|_| GatewayError::Json)?;
        // JSON null, "" and the "-" gateways write for "no value" are absent.
        for s in &mut slots {
            let absent = match s {
                Some(Scalar::Str(v)) => v.is_empty() || v == "-",
                Some(Scalar::Other) => true,
                _ => false,
            };
            if absent {
                *s = None;
            }
        }
        let get = |i: usize| slots[i].as_ref();
        let text = |i: usize| get(i).and_then(Scalar::text);
        let ts = fields::timestamp_ms(get(slot::TS).ok_or(GatewayError::Missing("ts"))?)?;
        check_ts_ms(ts).map_err(|_| GatewayError::Timestamp)?;
        let remote = text(slot::REMOTE_ADDR).ok_or(GatewayError::Missing("client address"))?;
        let ip = client_ip(
            &remote,
            text(slot::X_FORWARDED_FOR).as_deref(),
            text(slot::FORWARDED).as_deref(),
            &self.trusted,
        )?;
        let payload_text;
        let payload = match get(slot::JWT_PAYLOAD) {
            Some(Scalar::Tree(v)) => Some(v),
            Some(Scalar::Str(s)) => {
                payload_text = Value::String(s.to_string());
                Some(&payload_text)
            }
            _ => None,
        };
        // Borrowed from the record: a claim the token also carries wins,
        // and a copy made here would be thrown away.
        let field = |i: usize| get(i).and_then(Scalar::to_text);
        let mapped = Claims {
            jti: field(slot::TOKEN_ID),
            sub: field(slot::SUB),
            iat: get(slot::TOKEN_IAT).and_then(Scalar::integer),
            exp: get(slot::TOKEN_EXP).and_then(Scalar::integer),
            client_id: field(slot::CLIENT_ID),
        };
        let authorization = field(slot::AUTHORIZATION);
        let id = derive_identity(
            authorization.as_deref(),
            payload,
            mapped,
            self.map.claims_verified,
            &self.hasher,
            self.sealer.as_ref(),
            self.verifier.as_deref(),
        )?;
        let status = get(slot::STATUS)
            .and_then(Scalar::integer)
            .and_then(|s| u16::try_from(s).ok())
            .ok_or(GatewayError::Missing("status"))?;
        let bytes = get(slot::BYTES)
            .and_then(Scalar::integer)
            .and_then(|b| u64::try_from(b).ok());
        let latency_ms = get(slot::LATENCY)
            .and_then(Scalar::number)
            .map(|x| x * self.map.latency_to_ms);
        let mut take = |i: usize| slots[i].take().and_then(Scalar::into_text);
        let event = Event {
            ts_ms: ts,
            token_id: Cow::Owned(id.token_id),
            sub: id.claims.sub.unwrap_or_default(),
            sub_verified: id.sub_verified,
            ip,
            user_agent: take(slot::USER_AGENT).unwrap_or_default(),
            method: take(slot::METHOD).ok_or(GatewayError::Missing("method"))?,
            path: without_query(take(slot::PATH).ok_or(GatewayError::Missing("path"))?),
            status,
            tenant: None,
            client_id: id.claims.client_id,
            token_exp: id.claims.exp,
            token_iat: id.claims.iat,
            bytes,
            latency_ms: latency_ms.filter(|l| l.is_finite()),
            token_handle: id.handle.map(Cow::Owned),
        };
        // Only a comma-joined header can carry another token.
        let joined = authorization
            .as_deref()
            .filter(|h| memchr::memchr(b',', h.as_bytes()).is_some());
        let others = match joined.map(read_authorization) {
            Some(Authorization::Ambiguous(Some(first))) => {
                self.others(authorization.as_deref().unwrap_or_default(), first, &event)
            }
            _ => Vec::new(),
        };
        Ok(Normalized { event, others })
    }

    /// The same request as the traffic of each other bearer token in
    /// `header`. One whose id cannot be derived (a JWT with an unusable
    /// `jti`) is left out rather than failing the record: appending such a
    /// token must not make the request, and the token before it, unscored.
    fn others<'a>(&self, header: &str, first: &str, event: &Event<'a>) -> Vec<Event<'a>> {
        other_bearer_tokens(header, first)
            .into_iter()
            .filter_map(|token| {
                let id = other_identity(
                    token,
                    &self.hasher,
                    self.sealer.as_ref(),
                    self.verifier.as_deref(),
                )
                .ok()?;
                Some(Event {
                    token_id: Cow::Owned(id.token_id),
                    sub: id.claims.sub.unwrap_or_default(),
                    sub_verified: id.sub_verified,
                    client_id: id.claims.client_id,
                    token_exp: id.claims.exp,
                    token_iat: id.claims.iat,
                    token_handle: id.handle.map(Cow::Owned),
                    ..event.clone()
                })
            })
            .collect()
    }

    /// What of a record may go to the dead-letter topic: only the fields the
    /// input maps, under their tokenwatch names, never the credential ones
    /// (`authorization`, `jwt_payload`), paths without their query string,
    /// and any remaining value shaped like a token replaced. A raw gateway
    /// log carries every header a client sent (cookies, Basic credentials,
    /// API keys); none of it is needed to see why a record was refused.
    pub fn redact(&self, record: &[u8]) -> Vec<u8> {
        let Ok(v) = serde_json::from_slice::<Value>(record) else {
            return b"{\"redacted\":\"not JSON; dropped because it may hold a credential\"}"
                .to_vec();
        };
        let mut kept = serde_json::Map::new();
        for (i, (name, pointer)) in slot::NAMES.iter().zip(self.map.pointers()).enumerate() {
            if i == slot::AUTHORIZATION || i == slot::JWT_PAYLOAD {
                continue;
            }
            let Some(mut value) = pointer.and_then(|p| v.pointer(p)).cloned() else {
                continue;
            };
            if let (slot::PATH, Value::String(s)) = (i, &mut value) {
                s.truncate(s.find('?').unwrap_or(s.len()));
            }
            kept.insert((*name).to_owned(), value);
        }
        let mut kept = Value::Object(kept);
        crate::telemetry::redact_value(&mut kept);
        serde_json::to_vec(&kept).expect("value serialises")
    }
}
