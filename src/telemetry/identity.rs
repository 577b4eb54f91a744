//! Token identity: how a token is named without ever being stored.
//!
//! Telemetry carries a `token_id` (the JWT `jti`, or an HMAC of the opaque
//! token under a deployment secret). Inside the process, per-token state is
//! keyed by a 128-bit hash of that id so the state record stays fixed-size.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Fixed-size key for per-token state.
pub type TokenKey = u128;

/// Hashes a token id into the state key. Not a security boundary: the id is
/// already non-secret; this only makes the key small and uniform.
pub fn token_key(token_id: &str) -> TokenKey {
    xxhash_rust::xxh3::xxh3_128(token_id.as_bytes())
}

/// Derives the public token id of an opaque token: `h1:` + hex of the first
/// 16 bytes of HMAC-SHA-256(secret, token). The producer and tokenwatch must
/// share the secret so that the same token always gets the same id.
pub fn keyed_token_id(secret: &[u8], raw_token: &str) -> String {
    TokenHasher::new(secret).id(raw_token)
}

/// The keyed hash with its key schedule done once: each id then costs the
/// message blocks only, not the two key blocks as well.
#[derive(Clone)]
pub struct TokenHasher(Hmac<Sha256>);

impl TokenHasher {
    pub fn new(secret: &[u8]) -> TokenHasher {
        TokenHasher(
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length"),
        )
    }

    /// `h1:` + hex of the first 16 bytes of HMAC-SHA-256(secret, token).
    pub fn id(&self, raw_token: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.0.clone();
        mac.update(raw_token.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = String::with_capacity(3 + 32);
        id.push_str("h1:");
        for b in &digest[..16] {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 15)]));
        }
        id
    }
}

/// True for values shaped like a compact JWS/JWE (`eyJ…` with dots): such a
/// value in `token_id` is a raw token that must not be stored.
pub fn looks_like_raw_token(value: &str) -> bool {
    value.starts_with("eyJ") && value.bytes().filter(|&b| b == b'.').count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_id_is_stable_secret_dependent_and_hides_the_token() {
        let a = keyed_token_id(b"secret-1", "opaque-token-value");
        assert_eq!(a, keyed_token_id(b"secret-1", "opaque-token-value"));
        assert_ne!(a, keyed_token_id(b"secret-2", "opaque-token-value"));
        assert!(a.starts_with("h1:") && a.len() == 35);
        assert!(!a.contains("opaque"));
    }

    #[test]
    fn jwt_shapes_are_recognised() {
        assert!(looks_like_raw_token(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig"
        ));
        assert!(!looks_like_raw_token(
            "8f14e45f-ceea-467a-9575-6b1f3e0c0b1d"
        ));
        assert!(!looks_like_raw_token("h1:0011"));
    }
}
