//! Records whose outputs are still on their way to the broker.
//!
//! Awaiting each output's acknowledgement before reading the next record
//! made the consumer wait out one broker round trip per decision (or, in
//! `normalize`, per record). Instead, a handler may leave its outputs in
//! flight; the loop reads on, and offsets move only past records whose
//! outputs, and all earlier ones', are acknowledged. The stored offset is
//! therefore still "everything before it is fully handled".

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use super::consumer::IngestConsumer;

/// A task that resolves to true once a record's outputs are acknowledged.
/// It retries on its own; false means it was given up (shutdown).
pub type InFlight = tokio::task::JoinHandle<bool>;

/// Records handled after an in-flight one, waiting for it: the highest
/// offset per partition (few partitions per segment, so a Vec).
struct Segment {
    wait: InFlight,
    offsets: Vec<(String, i32, i64)>,
}

pub struct Window {
    segments: VecDeque<Segment>,
    limit: usize,
    /// Set once an output was given up: nothing after it may be stored.
    broken: bool,
}

impl Window {
    /// At most `limit` in-flight records before the loop waits.
    pub fn new(limit: usize) -> Window {
        Window {
            segments: VecDeque::new(),
            limit: limit.max(1),
            broken: false,
        }
    }

    /// `msg` is handled; `wait` holds its outputs if they are not yet
    /// acknowledged.
    pub fn handled(
        &mut self,
        consumer: &IngestConsumer,
        msg: &BorrowedMessage<'_>,
        wait: Option<InFlight>,
    ) {
        match (wait, self.segments.back_mut()) {
            // The hot path: nothing in flight, the offset moves now.
            (None, None) => store(consumer, msg.topic(), msg.partition(), msg.offset()),
            (None, Some(tail)) => note(&mut tail.offsets, msg),
            (Some(wait), _) => {
                let mut offsets = Vec::with_capacity(1);
                note(&mut offsets, msg);
                self.segments.push_back(Segment { wait, offsets });
            }
        }
    }

    /// Stores the offsets of every acknowledged prefix, without waiting.
    pub fn settle(&mut self, consumer: &IngestConsumer) {
        while self.segments.front().is_some_and(|s| s.wait.is_finished()) {
            let mut s = self.segments.pop_front().expect("front exists");
            // Unconstrained: polling a JoinHandle spends tokio's cooperative
            // budget, and once a busy loop has spent it, even a finished
            // task answers Pending. Read as "given up", that stopped every
            // later offset from being stored: a stop committed almost
            // nothing and a restart republished nearly all it had read.
            let acked = tokio::task::unconstrained(&mut s.wait)
                .now_or_never()
                .is_some_and(|r| r.unwrap_or(false));
            self.release(consumer, s, acked);
        }
    }

    /// Waits for the oldest in-flight record while the window is full.
    pub async fn make_room(&mut self, consumer: &IngestConsumer) {
        self.settle(consumer);
        while self.segments.len() >= self.limit {
            self.pop_front(consumer).await;
        }
    }

    /// Waits for everything in flight, at most `patience` if given; what
    /// is not acknowledged by then is abandoned (its records are not
    /// stored, so they are read again). True if everything landed.
    pub async fn drain(&mut self, consumer: &IngestConsumer, patience: Option<Duration>) -> bool {
        let all = async {
            while !self.segments.is_empty() {
                self.pop_front(consumer).await;
            }
        };
        let landed = match patience {
            None => {
                all.await;
                true
            }
            Some(p) => tokio::time::timeout(p, all).await.is_ok(),
        };
        if !landed {
            tracing::warn!(
                in_flight = self.segments.len(),
                "outputs not acknowledged in time; their records will be read again"
            );
            for s in self.segments.drain(..) {
                s.wait.abort();
            }
            self.broken = true;
        }
        !self.broken
    }

    async fn pop_front(&mut self, consumer: &IngestConsumer) {
        let Some(front) = self.segments.front_mut() else {
            return;
        };
        let acked = (&mut front.wait).await.unwrap_or(false);
        let s = self.segments.pop_front().expect("front exists");
        self.release(consumer, s, acked);
    }

    fn release(&mut self, consumer: &IngestConsumer, s: Segment, acked: bool) {
        if !acked && !self.broken {
            // Only an abandoned or panicked task gets here.
            tracing::error!("an output was given up; no further offset is stored");
            self.broken = true;
        }
        if self.broken {
            return;
        }
        for (topic, partition, offset) in &s.offsets {
            store(consumer, topic, *partition, *offset);
        }
    }
}

fn note(offsets: &mut Vec<(String, i32, i64)>, msg: &BorrowedMessage<'_>) {
    let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
    match offsets
        .iter_mut()
        .find(|(t, p, _)| *p == partition && t == topic)
    {
        Some(entry) => entry.2 = entry.2.max(offset),
        None => offsets.push((topic.to_owned(), partition, offset)),
    }
}

fn store(consumer: &IngestConsumer, topic: &str, partition: i32, offset: i64) {
    // librdkafka stores offset + 1: the next record to read.
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::warn!(error = %e, topic, partition, "cannot store offset (partition revoked?); the record will be redelivered");
    }
}
