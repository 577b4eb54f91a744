//! Dead letters: a record tokenwatch cannot handle goes to the dead-letter
//! topic with the reason in its headers, and the consumer moves on. Nothing
//! is dropped silently, and no raw token is ever forwarded.

use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::telemetry::looks_like_raw_token;

/// Publishes `msg` to `topic` with `reason` and `error`; waits for the ack.
/// Anything shaped like a raw token is redacted first.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    msg: &BorrowedMessage<'_>,
    reason: &str,
    error: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let payload = redact(msg.payload().unwrap_or_default());
    publish_payload(producer, topic, msg, &payload, reason, error).await
}

/// The same with a payload the caller has already made safe (a gateway
/// record with its credential fields removed).
pub async fn publish_payload(
    producer: &FutureProducer,
    topic: &str,
    msg: &BorrowedMessage<'_>,
    payload: &[u8],
    reason: &str,
    error: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "tokenwatch.reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "tokenwatch.error",
            value: Some(error),
        })
        .insert(Header {
            key: "tokenwatch.source.topic",
            value: Some(msg.topic()),
        })
        .insert(Header {
            key: "tokenwatch.source.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "tokenwatch.source.offset",
            value: Some(&offset),
        });
    let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

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
