//! Building a role's parts from the configuration: its consumers, the
//! gateway adapters, the state changelog and the revoker with every target.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;

use super::ServeError;
use crate::config::{Config, GatewayInput};
use crate::gateway::{JwtVerifier, Normalizer};
use crate::ingest::{self, IngestConsumer, IngestContext, Readiness};
use crate::kafka::TopicWriter;
use crate::metrics::Metrics;
use crate::respond::{
    AlertsTarget, Controls, Denylist, DenylistTarget, Outcome, Revoker, Rfc7009Client,
    SubjectLogout, Targets, Webhook, ALERTS, DENYLIST, RFC7009,
};

pub fn consumer(
    cfg: &Config,
    group: &str,
    topics: &[&str],
    name: &'static str,
    readiness: Option<Arc<Readiness>>,
    metrics: Arc<Metrics>,
) -> Result<Arc<IngestConsumer>, ServeError> {
    let c: IngestConsumer =
        ingest::consumer_config(&cfg.kafka, group).create_with_context(IngestContext {
            readiness,
            name,
            metrics: Some(metrics),
        })?;
    c.subscribe(topics)?;
    Ok(Arc::new(c))
}

/// The state changelog, when its topic is configured and exists.
pub async fn state_changelog(
    cfg: &Config,
    producer: &rdkafka::producer::FutureProducer,
) -> Option<ingest::changelog::Changelog> {
    let topic = cfg.kafka.state_topic.clone()?;
    // A group id is required by the client; the reader joins nothing.
    let reader = ingest::consumer_config(
        &cfg.kafka,
        &format!("{}.state.{}", cfg.kafka.group_id, std::process::id()),
    );
    let partitions = ingest::changelog::partitions(
        reader.clone(),
        topic.clone(),
        "state changelog (per-token state will not follow partitions across instances)",
    )
    .await?;
    Some(ingest::changelog::Changelog::new(
        topic,
        partitions,
        producer.clone(),
        reader,
    ))
}

/// The population tables' writer and follower, when their topic is
/// configured and exists.
pub async fn population_log(
    cfg: &Config,
    producer: &rdkafka::producer::FutureProducer,
    detector: &crate::decide::SharedDetector,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Option<(
    ingest::population::PopulationLog,
    ingest::population::Follower,
)> {
    let topic = cfg.kafka.population_topic.clone()?;
    let reader = ingest::consumer_config(
        &cfg.kafka,
        &format!("{}.population.{}", cfg.kafka.group_id, std::process::id()),
    );
    ingest::changelog::partitions(
        reader,
        topic.clone(),
        "population topic (a restart starts with empty population tables)",
    )
    .await?;
    let writer = crate::kafka::TopicWriter::new(producer.clone(), topic);
    Some(ingest::population::PopulationLog::new(
        writer,
        detector.clone(),
        metrics.clone(),
    ))
}

/// The adapter of each gateway topic in `inputs`.
pub fn gateway_adapters(
    cfg: &Config,
    inputs: &[GatewayInput],
    verifier: Option<Arc<JwtVerifier>>,
) -> HashMap<String, Normalizer> {
    inputs
        .iter()
        .map(|i| {
            let n = Normalizer::new(
                i.map.clone(),
                cfg.gateway.trusted.clone(),
                cfg.gateway.hash_key.clone(),
                cfg.respond.sealer.clone(),
            )
            .with_verifier(verifier.clone());
            (i.topic.clone(), n)
        })
        .collect()
}

/// The revoker with every configured target.
pub fn revoker(
    cfg: &Config,
    controls: Arc<Controls>,
    producer: &FutureProducer,
    denylist: &Arc<Denylist>,
    metrics: &Metrics,
) -> Result<Revoker, ServeError> {
    let r = &cfg.respond;
    let targets = Targets {
        rfc7009: r.rfc7009.clone().map(Rfc7009Client::new).transpose()?,
        logouts: r
            .logouts
            .iter()
            .cloned()
            .map(SubjectLogout::new)
            .collect::<Result<_, _>>()?,
        denylist: r.denylist.map(|max_ttl| DenylistTarget {
            writer: TopicWriter::new(producer.clone(), cfg.kafka.denylist_topic.clone()),
            set: denylist.clone(),
            max_ttl,
        }),
        alerts: r.alerts.clone().map(|format| AlertsTarget {
            writer: TopicWriter::new(producer.clone(), cfg.kafka.alerts_topic.clone()),
            format,
        }),
        webhooks: r
            .webhooks
            .iter()
            .cloned()
            .map(Webhook::new)
            .collect::<Result<_, _>>()?,
    };
    let mut names: Vec<&str> = vec![RFC7009];
    names.extend(r.logouts.iter().map(|l| l.name.as_str()));
    names.extend(r.denylist.map(|_| DENYLIST));
    names.extend(r.alerts.as_ref().map(|_| ALERTS));
    names.extend(r.webhooks.iter().map(|w| w.name.as_str()));
    metrics.zero_targets(&names, &Outcome::LABELS);
    Ok(Revoker::new(controls, r.sealer.clone(), targets)
        .with_persistence(r.retry)
        .holding()
        .with_metrics(metrics))
}
