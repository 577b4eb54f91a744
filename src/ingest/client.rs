//! librdkafka client settings tokenwatch relies on, in one place.

use rdkafka::config::ClientConfig;

use crate::config::KafkaConfig;

/// A consumer that never commits on its own and never stores an offset it
/// was not told to: offsets move only after a record is fully handled.
pub fn consumer_config(k: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // librdkafka waits up to 500 ms for a fetch to fill by default; a
        // stolen token's next request should not wait that long.
        .set("fetch.wait.max.ms", "50")
        // Feeds tokenwatch_consumer_lag_messages.
        .set("statistics.interval.ms", "5000");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// An idempotent producer: retries never duplicate, acks from all replicas.
pub fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // A decision leaves at once (detection latency); messages queued
        // while a request is in flight are still batched.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}
