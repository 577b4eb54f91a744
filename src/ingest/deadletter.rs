//! Dead letters: a record tokenwatch cannot handle goes to the dead-letter
//! topic with the reason in its headers, and the consumer moves on. Nothing
//! is dropped silently, and no raw token is ever forwarded.

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};

use crate::kafka::{Extra, TopicWriter};
use crate::telemetry::redact;

/// Publishes `msg` to `topic` with `reason` and `error`; waits for the ack.
/// Anything shaped like a raw token is redacted first.
pub async fn publish(
    writer: &TopicWriter,
    msg: &BorrowedMessage<'_>,
    reason: &str,
    error: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let payload = redact(msg.payload().unwrap_or_default());
    publish_payload(writer, msg, &payload, reason, error).await
}

/// The same with a payload the caller has already made safe (a gateway
/// record with its credential fields removed).
pub async fn publish_payload(
    writer: &TopicWriter,
    msg: &BorrowedMessage<'_>,
    payload: &[u8],
    reason: &str,
    error: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    publish_from(writer, &Source::of(msg), payload, reason, error).await
}

/// Where a dead letter came from, kept past the borrowed message (a
/// decision whose target gave up long after its record was read).
#[derive(Clone, Debug)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
}

impl Source {
    pub fn of(msg: &BorrowedMessage<'_>) -> Source {
        Source {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
        }
    }
}

/// Publishes a safe `payload` from `source` with `reason` and `error`.
pub async fn publish_from(
    writer: &TopicWriter,
    source: &Source,
    payload: &[u8],
    reason: &str,
    error: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let partition = source.partition.to_string();
    let offset = source.offset.to_string();
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
            value: Some(source.topic.as_str()),
        })
        .insert(Header {
            key: "tokenwatch.source.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "tokenwatch.source.offset",
            value: Some(&offset),
        });
    let extra = Extra {
        headers: Some(headers),
        ..Extra::default()
    };
    writer
        .send_with(source.key.as_deref(), payload, extra)
        .await
        .map(|_| ())
}
