//! A consumer that holds no partition while a partition of its topics is
//! held by no member of its group rejoins the group.
//!
//! A broker should never leave a partition unowned once its group is
//! stable. tansu does: when a member is evicted (its session timed out)
//! while the group is re-forming, the group can settle with the newcomer as
//! its only member and an empty assignment, and no later heartbeat asks for
//! a rebalance. Observed in `tests/crash.rs`: after the second SIGKILL the
//! restarted `serve` was assigned nothing and committed nothing for 300 s.
//! A consumer with nothing to read cannot tell that from a fleet larger than
//! the partition count, so it asks the coordinator (DescribeGroups) who
//! holds what, and rejoins only when some partition has no holder.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use super::IngestConsumer;
use crate::metrics::Metrics;

/// How often an idle consumer looks; it acts after two idle looks in a
/// row, past any group's first join (`session.timeout.ms` is 10 s).
const EVERY: Duration = Duration::from_secs(15);
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `shutdown`.
pub async fn watch(
    consumer: Arc<IngestConsumer>,
    group: String,
    name: &'static str,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let holds = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if holds > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < 2 {
            continue;
        }
        let (c, g) = (consumer.clone(), group.clone());
        let Ok(found) = tokio::task::spawn_blocking(move || unowned(&c, &g)).await else {
            continue;
        };
        match found {
            Ok(unowned) if !unowned.is_empty() => {
                tracing::warn!(
                    consumer = name,
                    %group,
                    unowned = ?unowned,
                    "partitions held by no member of the group while this consumer holds none; rejoining"
                );
                metrics.consumer_rejoins.with_label_values(&[name]).inc();
                rejoin(&consumer);
                idle = 0;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(consumer = name, error = %e, "group not described"),
        }
    }
}

fn rejoin(consumer: &IngestConsumer) {
    let topics: Vec<String> = consumer
        .subscription()
        .map(|s| s.elements().iter().map(|e| e.topic().to_owned()).collect())
        .unwrap_or_default();
    let topics: BTreeSet<&str> = topics.iter().map(String::as_str).collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    consumer.unsubscribe();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(error = %e, "subscribing again failed");
    }
}

/// Partitions of the consumer's topics that no member of `group` holds;
/// empty while the group is re-forming (its assignment is not final).
fn unowned(
    consumer: &IngestConsumer,
    group: &str,
) -> rdkafka::error::KafkaResult<Vec<(String, i32)>> {
    let groups = consumer.fetch_group_list(Some(group), ASK_TIMEOUT)?;
    let Some(info) = groups.groups().iter().find(|g| g.name() == group) else {
        return Ok(Vec::new());
    };
    if info.state().contains("Rebalance") || info.members().is_empty() {
        return Ok(Vec::new());
    }
    let owned: BTreeSet<(String, i32)> = info
        .members()
        .iter()
        .filter_map(|m| m.assignment())
        .flat_map(|a| assignment(a).unwrap_or_default())
        .collect();
    let subscribed = consumer.subscription()?;
    let mut unowned = Vec::new();
    for topic in subscribed.elements().iter().map(|e| e.topic().to_owned()) {
        let meta = consumer.fetch_metadata(Some(&topic), ASK_TIMEOUT)?;
        for t in meta.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                if !owned.contains(&(topic.clone(), p.id())) {
                    unowned.push((topic.clone(), p.id()));
                }
            }
        }
    }
    Ok(unowned)
}

/// The (topic, partition) pairs in a member's assignment as the consumer
/// protocol encodes it: version (i16), then topics (i32 count; each a
/// string with an i16 length and i32 partitions with an i32 count), then
/// user data this reader ignores. None if it is not that.
pub fn assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    let i16_ = |b: &mut &[u8]| take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]));
    let i32_ = |b: &mut &[u8]| take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]));
    let mut b = bytes;
    if b.is_empty() {
        return Some(Vec::new());
    }
    i16_(&mut b)?;
    let topics = usize::try_from(i32_(&mut b)?).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(i16_(&mut b)?).ok()?;
        let topic = std::str::from_utf8(take(&mut b, len)?).ok()?.to_owned();
        let n = usize::try_from(i32_(&mut b)?).ok()?;
        if n > b.len() / 4 {
            return None;
        }
        for _ in 0..n {
            out.push((topic.clone(), i32_(&mut b)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        b
    }

    #[test]
    fn a_members_assignment_decodes_and_garbage_does_not() {
        let a = encode(&[("tokenwatch.telemetry", &[0, 2]), ("gw.nginx", &[1])]);
        assert_eq!(
            assignment(&a).unwrap(),
            vec![
                ("tokenwatch.telemetry".to_owned(), 0),
                ("tokenwatch.telemetry".to_owned(), 2),
                ("gw.nginx".to_owned(), 1)
            ]
        );
        assert_eq!(assignment(&[]).unwrap(), vec![]);
        assert!(assignment(&a[..a.len() - 9]).is_none(), "cut short");
        // A partition count far beyond the bytes present is refused before
        // anything is allocated for it.
        let mut huge = encode(&[("t", &[])]);
        let at = 2 + 4 + 2 + 1;
        huge[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(assignment(&huge).is_none());
    }
}
