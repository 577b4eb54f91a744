//! Redaction: what leaves tokenwatch about a record it could not read
//! (dead letters, logs) carries no credential. Anything shaped like a raw
//! token or a bearer credential is replaced before it is written anywhere.

use super::identity::looks_like_raw_token;

/// Replaces any JSON string value shaped like a raw bearer token. Records
/// that are not JSON objects go through unchanged (they carry no fields).
pub fn redact(payload: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return payload.to_vec();
    };
    if redact_value(&mut v) {
        serde_json::to_vec(&v).expect("a Value serialises")
    } else {
        payload.to_vec()
    }
}

/// Replaces, in place, every string shaped like a raw token or a bearer
/// credential; true if anything was replaced.
pub fn redact_value(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s)
            if looks_like_raw_token(s)
                || s.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("bearer ")) =>
        {
            *s = "[redacted]".into();
            true
        }
        serde_json::Value::Array(a) => a.iter_mut().fold(false, |acc, x| redact_value(x) | acc),
        serde_json::Value::Object(o) => o.values_mut().fold(false, |acc, x| redact_value(x) | acc),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tokens_are_redacted_and_the_rest_kept() {
        let rec = br#"{"token_id":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc","auth":"Bearer xyz","ip":"1.2.3.4"}"#;
        let out = String::from_utf8(redact(rec)).unwrap();
        assert!(!out.contains("eyJ") && !out.contains("xyz"), "{out}");
        assert!(out.contains("1.2.3.4"));
        assert_eq!(redact(b"not json"), b"not json");
    }
}
