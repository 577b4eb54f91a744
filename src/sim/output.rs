//! Where simulated traffic goes: an NDJSON file (gzipped with fixed header
//! fields, so the same events give the same bytes) with labels, or a Kafka
//! topic keyed by token id without them, as a producer would publish it.

use std::io::{BufWriter, Write};
use std::path::Path;

use rdkafka::error::KafkaError;

use super::SimEvent;
use crate::kafka::{acknowledged, TopicWriter};

/// Writes NDJSON to `out` (`-` for stdout, `.gz` compresses), with the
/// labels inline or not.
pub fn write_file(
    out: &str,
    seed: u64,
    events: &[SimEvent],
    with_labels: bool,
    mut on_written: impl FnMut(),
) -> std::io::Result<()> {
    let sink: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(Path::new(out))?;
        if out.ends_with(".gz") {
            Box::new(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(file, flate2::Compression::best()),
            )
        } else {
            Box::new(file)
        }
    };
    let mut w = BufWriter::new(sink);
    for e in events {
        let id = e.sim_token_id(seed);
        serde_json::to_writer(&mut w, &e.to_wire(&id, None, with_labels))?;
        w.write_all(b"\n")?;
        on_written();
    }
    w.flush()
}

/// Publishes the events to `writer`'s topic without labels; returns once
/// the broker has every one.
pub async fn publish(
    writer: &TopicWriter,
    seed: u64,
    events: &[SimEvent],
    mut on_sent: impl FnMut(),
) -> Result<usize, KafkaError> {
    // Queued now, acknowledged in batches: the producer batches meanwhile.
    const BATCH: usize = 1024;
    let mut pending = Vec::with_capacity(BATCH);
    for e in events {
        let id = e.sim_token_id(seed);
        let payload =
            serde_json::to_vec(&e.to_wire(&id, None, false)).expect("a wire record serialises");
        pending.push(writer.queue_when_room(id.as_bytes(), &payload).await?);
        if pending.len() == BATCH {
            for d in futures::future::join_all(pending.drain(..).map(acknowledged)).await {
                d?;
            }
        }
        on_sent();
    }
    for d in futures::future::join_all(pending.into_iter().map(acknowledged)).await {
        d?;
    }
    Ok(events.len())
}
