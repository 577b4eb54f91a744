//! The token's identity, derived the moment a gateway record is read: the
//! JWT `jti` when there is one, otherwise a keyed hash of the token. The raw
//! token leaves this module only sealed, for the revoker.
//!
//! JWT claims are decoded without verifying the signature: the identifier
//! does not need trust, and the gateway in front has verified (or refused)
//! the token. A forged JWT carrying someone else's `jti` is refused by the
//! gateway (401) before it reaches an upstream; to be safe against it being
//! counted as the victim's traffic anyway, prefer a verified payload
//! (`jwt_payload`, e.g. Envoy's jwt_authn metadata) where the gateway has one.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use serde_json::Value;

use super::authorization::bearer;
use super::{GatewayError, JwtVerifier};
use crate::seal::Sealer;
use crate::telemetry::TokenHasher;

/// The claims tokenwatch uses. Claims a gateway logs as fields of their own
/// borrow from its record; claims decoded from a token are owned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims<'a> {
    pub jti: Option<Cow<'a, str>>,
    pub sub: Option<Cow<'a, str>>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
    pub client_id: Option<Cow<'a, str>>,
}

impl Claims<'_> {
    fn from_json(v: &Value) -> Claims<'static> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| Cow::Owned(s.to_owned()))
        };
        let n = |k: &str| v.get(k).and_then(Value::as_i64);
        Claims {
            jti: s("jti"),
            sub: s("sub"),
            iat: n("iat"),
            exp: n("exp"),
            client_id: s("client_id").or_else(|| s("azp")).or_else(|| s("cid")),
        }
    }

    /// The claims of a JSON payload, plucked without building a tree
    /// (the same reading as `from_json`); `None` unless it is an object.
    fn from_payload(bytes: &[u8]) -> Option<Claims<'static>> {
        use super::pluck::{Plan, Scalar};
        static PLAN: std::sync::OnceLock<Plan> = std::sync::OnceLock::new();
        let plan = PLAN.get_or_init(|| {
            Plan::new(&[
                Some("/jti"),
                Some("/sub"),
                Some("/iat"),
                Some("/exp"),
                Some("/client_id"),
                Some("/azp"),
                Some("/cid"),
            ])
        });
        let mut slots: [Option<Scalar<'_>>; 7] = Default::default();
        plan.pluck(simdutf8::basic::from_utf8(bytes).ok()?, &mut slots)
            .ok()?;
        let s = |i: usize| match &slots[i] {
            Some(Scalar::Str(v)) if !v.is_empty() => Some(Cow::Owned(v.to_string())),
            _ => None,
        };
        let n = |i: usize| match &slots[i] {
            Some(Scalar::Int(v)) => Some(*v),
            _ => None,
        };
        Some(Claims {
            jti: s(0),
            sub: s(1),
            iat: n(2),
            exp: n(3),
            client_id: s(4).or_else(|| s(5)).or_else(|| s(6)),
        })
    }
}

impl<'a> Claims<'a> {
    /// Fills what `self` lacks from `other`.
    fn or(self, other: Claims<'a>) -> Claims<'a> {
        Claims {
            jti: self.jti.or(other.jti),
            sub: self.sub.or(other.sub),
            iat: self.iat.or(other.iat),
            exp: self.exp.or(other.exp),
            client_id: self.client_id.or(other.client_id),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct TokenIdentity<'a> {
    pub token_id: String,
    /// The claims; their `jti`, when there is one, has moved to `token_id`.
    pub claims: Claims<'a>,
    /// The raw token sealed for the revoker, when a seal key is configured
    /// and the record carried the token.
    pub handle: Option<String>,
    /// The subject came from verified claims: a payload the gateway decoded
    /// after verifying it, a token whose signature `verifier` checked, or
    /// claim fields the gateway vouches for (`mapped_verified`).
    pub sub_verified: bool,
}

/// Every id the edge must look a bearer token up by: the id tokenwatch
/// derives for it (a verified `jti`, else the keyed hash), and, for a JWT
/// whose signature could not be verified (the issuer's keys not loaded yet,
/// or rotated), its unverified `jti` too: a revoked token must not pass
/// because a key is missing. A forged token carrying a revoked `jti` only
/// gets its own sender refused.
pub fn token_ids(
    token: &str,
    hasher: &TokenHasher,
    verifier: Option<&JwtVerifier>,
) -> (String, Option<String>) {
    let verified = jwt_claims(token, verifier).and_then(|c| c.jti);
    let unverified = match (&verified, verifier) {
        (None, Some(_)) => jwt_claims(token, None).and_then(|c| c.jti),
        _ => None,
    };
    let id = match verified {
        Some(jti) => jti.into_owned(),
        None => hasher.id(token),
    };
    (id, unverified.map(Cow::into_owned))
}

/// The payload claims of a compact JWS, if `token` is one. With a verifier,
/// only a token whose signature verifies has claims.
fn jwt_claims(token: &str, verifier: Option<&JwtVerifier>) -> Option<Claims<'static>> {
    if let Some(v) = verifier {
        return v
            .verify(token)
            .filter(Value::is_object)
            .map(|c| Claims::from_json(&c));
    }
    // Exactly three parts: header, payload, signature.
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(a), Some(b), None) = (dots.next(), dots.next(), dots.next()) else {
        return None;
    };
    let payload = token[a + 1..b].trim_end_matches('=');
    // Decoded on the stack: a payload is a few hundred bytes, and this runs
    // for every record that carries a JWT.
    let mut buf = [0u8; 1024];
    match URL_SAFE_NO_PAD.decode_slice(payload, &mut buf) {
        Ok(n) => Claims::from_payload(&buf[..n]),
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            Claims::from_payload(&URL_SAFE_NO_PAD.decode(payload).ok()?)
        }
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

/// Derives the token's id and claims from whatever the record carries: the
/// bearer credential, a decoded payload, or claims logged as fields.
pub fn derive_identity<'a>(
    authorization: Option<&str>,
    jwt_payload: Option<&Value>,
    mapped: Claims<'a>,
    mapped_verified: bool,
    hasher: &TokenHasher,
    sealer: Option<&Sealer>,
    verifier: Option<&JwtVerifier>,
) -> Result<TokenIdentity<'a>, GatewayError> {
    let payload = jwt_payload.map(|v| match v {
        // Some gateways log the payload as a JSON string.
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map(|v| Claims::from_json(&v))
            .unwrap_or_default(),
        v => Claims::from_json(v),
    });
    let raw = match authorization {
        Some(h) => Some(bearer(h).ok_or(GatewayError::NotBearer)?),
        None => None,
    };
    let record = RecordClaims {
        payload: payload.unwrap_or_default(),
        mapped,
        mapped_verified,
    };
    identity(raw, record, hasher, sealer, verifier)
}

/// The identity of one more bearer token a request carried (`Bearer a,
/// Bearer b`): from the token alone, since the record's payload and claim
/// fields may describe either.
pub fn other_identity(
    token: &str,
    hasher: &TokenHasher,
    sealer: Option<&Sealer>,
    verifier: Option<&JwtVerifier>,
) -> Result<TokenIdentity<'static>, GatewayError> {
    let nothing = RecordClaims::default();
    identity(Some(token), nothing, hasher, sealer, verifier)
}

/// What a record says about its token besides the token itself.
#[derive(Default)]
struct RecordClaims<'a> {
    /// A payload the gateway decoded (and verified).
    payload: Claims<'static>,
    /// Claims logged as fields of their own.
    mapped: Claims<'a>,
    mapped_verified: bool,
}

fn identity<'a>(
    raw: Option<&str>,
    record: RecordClaims<'a>,
    hasher: &TokenHasher,
    sealer: Option<&Sealer>,
    verifier: Option<&JwtVerifier>,
) -> Result<TokenIdentity<'a>, GatewayError> {
    let RecordClaims {
        payload,
        mapped,
        mapped_verified,
    } = record;
    let from_token = raw
        .and_then(|t| jwt_claims(t, verifier))
        .unwrap_or_default();
    let sub_verified = if payload.sub.is_some() {
        true
    } else if from_token.sub.is_some() {
        verifier.is_some()
    } else {
        mapped.sub.is_some() && mapped_verified
    };
    let mut claims = payload.or(from_token).or(mapped);
    let token_id = match (claims.jti.take(), raw) {
        (Some(jti), _) => jti.into_owned(),
        (None, Some(raw)) => hasher.id(raw),
        (None, None) => return Err(GatewayError::NoToken),
    };
    crate::telemetry::check_token_id(&token_id).map_err(|_| GatewayError::BadTokenId)?;
    let handle = match (raw, sealer) {
        (Some(raw), Some(s)) => Some(s.seal(&token_id, raw)),
        _ => None,
    };
    Ok(TokenIdentity {
        token_id,
        claims,
        handle,
        sub_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::keyed_token_id;

    fn jwt(claims: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.{}", e(r#"{"alg":"RS256"}"#), e(claims), e("sig"))
    }

    /// The identity of a record carrying only `Authorization: Bearer <token>`.
    fn of_bearer(token: &str) -> TokenIdentity<'static> {
        derive_identity(
            Some(&format!("Bearer {token}")),
            None,
            Claims::default(),
            false,
            &TokenHasher::new(b"k"),
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_jwt_is_known_by_its_jti_and_its_claims_are_kept() {
        let t = jwt(r#"{"jti":"j-1","sub":"alice","iat":100,"exp":200,"azp":"web"}"#);
        let id = of_bearer(&t);
        assert_eq!(id.token_id, "j-1");
        assert_eq!(id.claims.sub.as_deref(), Some("alice"));
        assert_eq!((id.claims.iat, id.claims.exp), (Some(100), Some(200)));
        assert_eq!(id.claims.client_id.as_deref(), Some("web"));
        assert!(id.handle.is_none());
        // A payload too long for the stack buffer is decoded on the heap.
        let big = jwt(&format!(r#"{{"pad":"{}","jti":"j-2"}}"#, "x".repeat(2000)));
        let id = of_bearer(&big);
        assert_eq!(id.token_id, "j-2");
    }

    #[test]
    fn only_a_token_of_three_parts_is_read_as_a_jwt() {
        let t = jwt(r#"{"jti":"j-3"}"#);
        assert_eq!(of_bearer(&t).token_id, "j-3");
        // Padding on the payload is tolerated.
        let (head, rest) = t.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        assert_eq!(
            of_bearer(&format!("{head}.{payload}==.{sig}")).token_id,
            "j-3"
        );
        // Two parts, or four (a JWE has five): a token, not a JWS to read.
        for other in [format!("{head}.{payload}"), format!("{t}.more")] {
            assert_eq!(
                of_bearer(&other).token_id,
                keyed_token_id(b"k", &other),
                "{other}"
            );
        }
    }

    #[test]
    fn an_opaque_token_is_known_by_its_keyed_hash_and_sealed_when_asked() {
        let key = Sealer::generate_key();
        let sealer = Sealer::new([("k1", key.as_str())]).unwrap();
        let id = derive_identity(
            Some("bearer opaque-abc"),
            None,
            Claims::default(),
            false,
            &TokenHasher::new(b"k"),
            Some(&sealer),
            None,
        )
        .unwrap();
        assert_eq!(id.token_id, keyed_token_id(b"k", "opaque-abc"));
        let handle = id.handle.unwrap();
        assert!(!handle.contains("opaque-abc"));
        assert_eq!(
            sealer.open(&id.token_id, &handle).unwrap().as_str(),
            "opaque-abc"
        );
        // A JWT without a jti is hashed too.
        let t = jwt(r#"{"sub":"bob"}"#);
        let id = of_bearer(&t);
        assert!(id.token_id.starts_with("h1:"));
        assert_eq!(id.claims.sub.as_deref(), Some("bob"));
    }

    proptest::proptest! {
        /// Plucked claims read exactly as the claims of the parsed tree.
        #[test]
        fn plucked_claims_equal_tree_claims(
            jti in proptest::option::of("[a-z0-9-]{0,12}"),
            iat in proptest::option::of(proptest::prelude::any::<i64>()),
            exp_float in proptest::prelude::any::<bool>(),
            azp in proptest::option::of("[a-z]{1,6}"),
        ) {
            let mut v = serde_json::json!({"sub": "s", "extra": {"nested": [1, 2]}});
            if let Some(j) = &jti { v["jti"] = j.clone().into(); }
            if let Some(i) = iat { v["iat"] = i.into(); }
            v["exp"] = if exp_float { serde_json::json!(1.5) } else { serde_json::json!(17) };
            if let Some(a) = &azp { v["azp"] = a.clone().into(); }
            let bytes = serde_json::to_vec(&v).unwrap();
            proptest::prop_assert_eq!(Claims::from_payload(&bytes), Some(Claims::from_json(&v)));
        }
    }

    #[test]
    fn other_credentials_and_none_are_refused() {
        assert_eq!(
            derive_identity(
                Some("Basic YWxpY2U6cHc="),
                None,
                Claims::default(),
                false,
                &TokenHasher::new(b"k"),
                None,
                None,
            ),
            Err(GatewayError::NotBearer)
        );
        assert_eq!(
            derive_identity(
                None,
                None,
                Claims::default(),
                false,
                &TokenHasher::new(b"k"),
                None,
                None
            ),
            Err(GatewayError::NoToken)
        );
        let mapped = Claims {
            jti: Some("aws-jti".into()),
            ..Claims::default()
        };
        assert_eq!(
            derive_identity(
                None,
                None,
                mapped,
                false,
                &TokenHasher::new(b"k"),
                None,
                None
            )
            .unwrap()
            .token_id,
            "aws-jti"
        );
        let payload = serde_json::json!({"jti": "env-1", "sub": "carol"});
        assert_eq!(
            derive_identity(
                None,
                Some(&payload),
                Claims::default(),
                false,
                &TokenHasher::new(b"k"),
                None,
                None
            )
            .unwrap()
            .token_id,
            "env-1"
        );
    }
}
