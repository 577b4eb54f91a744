//! Sealed token handles: the raw token, encrypted for the revoker alone.
//!
//! RFC 7009 revokes by token *value*, and tokenwatch must never store one.
//! The producer seals the token under a key it shares with the revoker
//! (XChaCha20-Poly1305, the token id as associated data so a handle cannot be
//! replayed under another id); the detection path carries the handle opaque;
//! only the revoker opens it, uses it for one call, and drops it.
//!
//! Format: `tw1.<key id>.<base64url(nonce ‖ ciphertext)>`.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const PREFIX: &str = "tw1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("seal key {kid:?} must be 32 bytes of base64, got {len} bytes")]
    KeyLength { kid: String, len: usize },
    #[error("seal key {kid:?} is not valid base64")]
    KeyEncoding { kid: String },
    #[error("key id {0:?} must be 1-32 characters of [A-Za-z0-9_-]")]
    KeyId(String),
    #[error("no seal keys configured")]
    NoKeys,
    #[error("handle is malformed")]
    Malformed,
    #[error("handle was sealed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("handle does not open: wrong key, wrong token id, or tampered")]
    Open,
}

/// Keys by id; the first is used to seal, all are tried by id to open, so a
/// key can be rotated without losing handles in flight.
#[derive(Clone)]
pub struct Sealer {
    current: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Sealer")
            .field("current", &self.current)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=32).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Sealer {
    /// `keys`: (key id, base64 of 32 key bytes); the first seals.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Sealer, SealError> {
        let mut current = None;
        let mut map = HashMap::new();
        for (kid, b64) in keys {
            if !valid_kid(kid) {
                return Err(SealError::KeyId(kid.to_owned()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|_| SealError::KeyEncoding {
                    kid: kid.to_owned(),
                })?;
            if bytes.len() != 32 {
                return Err(SealError::KeyLength {
                    kid: kid.to_owned(),
                    len: bytes.len(),
                });
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).expect("32-byte key");
            current.get_or_insert_with(|| kid.to_owned());
            map.insert(kid.to_owned(), cipher);
        }
        Ok(Sealer {
            current: current.ok_or(SealError::NoKeys)?,
            keys: map,
        })
    }

    /// A fresh random key, base64, for `tokenwatch seal --new-key` and tests.
    pub fn generate_key() -> String {
        base64::engine::general_purpose::STANDARD
            .encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn seal(&self, token_id: &str, raw_token: &str) -> String {
        let cipher = &self.keys[&self.current];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: raw_token.as_bytes(),
                    aad: token_id.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!("{PREFIX}.{}.{}", self.current, URL_SAFE_NO_PAD.encode(blob))
    }

    /// Opens a handle bound to `token_id`. The result lives only as long as
    /// the revocation call that needs it.
    pub fn open(&self, token_id: &str, handle: &str) -> Result<String, SealError> {
        let mut parts = handle.splitn(3, '.');
        let (Some(PREFIX), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| SealError::UnknownKey(kid.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if blob.len() <= NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: token_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(pt).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> (Sealer, String) {
        let k = Sealer::generate_key();
        (Sealer::new([("k1", k.as_str())]).unwrap(), k)
    }

    #[test]
    fn round_trip_and_binding_to_the_token_id() {
        let (s, _) = sealer();
        let h = s.seal("jti-1", "secret-token-value");
        assert!(h.starts_with("tw1.k1.") && !h.contains("secret"));
        assert_eq!(s.open("jti-1", &h).unwrap(), "secret-token-value");
        assert_eq!(s.open("jti-2", &h), Err(SealError::Open));
    }

    #[test]
    fn rotation_opens_old_handles_and_rejects_unknown_keys() {
        let (old, k1) = sealer();
        let h = old.seal("t", "v");
        let k2 = Sealer::generate_key();
        let rotated = Sealer::new([("k2", k2.as_str()), ("k1", k1.as_str())]).unwrap();
        assert_eq!(rotated.open("t", &h).unwrap(), "v");
        assert!(rotated.seal("t", "v").starts_with("tw1.k2."));
        let other = Sealer::new([("k9", k2.as_str())]).unwrap();
        assert_eq!(other.open("t", &h), Err(SealError::UnknownKey("k1".into())));
    }

    #[test]
    fn tampering_and_bad_keys_are_errors() {
        let (s, _) = sealer();
        let mut h = s.seal("t", "v");
        h.push('A');
        assert!(s.open("t", &h).is_err());
        assert_eq!(s.open("t", "nonsense"), Err(SealError::Malformed));
        assert!(matches!(
            Sealer::new([("k", "c2hvcnQ=")]),
            Err(SealError::KeyLength { .. })
        ));
        assert!(matches!(
            Sealer::new([("bad kid!", "x")]),
            Err(SealError::KeyId(_))
        ));
    }
}
