//! The revoker: turns one decision into the calls that really revoke, then
//! tells the world.
//!
//! Revoking targets, in order: RFC 7009 with the sealed handle (opened here
//! and nowhere else, used for one call, dropped), subject logout at the IdP's
//! admin API, and the edge denylist. Then the notifying targets: the alerts
//! topic and webhooks. A decision without a handle cannot be revoked through
//! RFC 7009 — posting the token id would get a 200 and revoke nothing — so
//! that target records `unrevocable`, never success.
//!
//! Idempotence: each target acts at most once per key (the token for token
//! targets, the tenant and subject for logout), so a replayed decision, or a
//! retry after one target failed, calls only what has not yet succeeded.
//! Across restarts and instances the denylist topic is the record: a token
//! on it has been settled.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use prometheus::IntGauge;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use super::decision::{Decision, MANUAL_RULE};
use super::denylist::{DenyEntry, Denylist};
use super::event::{sign_set, AlertEvent};
use super::http::CallError;
use super::logout::{Subject, SubjectLogout};
use super::policy::{Controls, Mode};
use super::rfc7009::Rfc7009Client;
use super::seal::Sealer;
use super::webhook::Webhook;
use crate::clock::now_ms;
use crate::detect::Action;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The authorization server or IdP accepted the revocation.
    Revoked { attempts: u32 },
    /// On the edge denylist: the gateway refuses the token from now on.
    Denied,
    /// The alert event or webhook was delivered.
    Delivered { attempts: u32 },
    /// Policy said not to act (shadow or alert mode, or an alert-level
    /// decision for a revoking target).
    NotActed { mode: &'static str },
    /// The brake against mass revocation held it; an operator reviews it
    /// and revokes by hand (`POST /v1/tokens/{id}/revoke`) if it stands.
    Braked,
    /// Already acted on (a replayed or duplicate decision, or a subject
    /// already logged out).
    Duplicate,
    /// Nothing here can revoke it (no handle, no endpoint, a template value
    /// the decision lacks).
    Unrevocable { why: String },
    /// The handle would not open (wrong key, tampered, other token id).
    BadHandle { why: String },
    /// The server refused, or retries ran out.
    Failed { why: String, permanent: bool },
    /// Not tried yet: waits for the targets before it (the denylist entry
    /// is written once the others have settled).
    Waiting,
}

impl Outcome {
    /// Label for `tokenwatch_revocations_total{outcome}`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Revoked { .. } => "revoked",
            Outcome::Denied => "denied",
            Outcome::Delivered { .. } => "delivered",
            Outcome::NotActed { .. } => "not_acted",
            Outcome::Braked => "braked",
            Outcome::Duplicate => "duplicate",
            Outcome::Unrevocable { .. } => "unrevocable",
            Outcome::BadHandle { .. } => "bad_handle",
            Outcome::Failed {
                permanent: true, ..
            } => "rejected",
            Outcome::Failed {
                permanent: false, ..
            } => "gave_up",
            Outcome::Waiting => "waiting",
        }
    }

    /// Something now stops the token.
    pub fn revoked(&self) -> bool {
        matches!(self, Outcome::Revoked { .. } | Outcome::Denied)
    }

    /// May succeed if tried again later.
    pub fn pending(&self) -> bool {
        matches!(
            self,
            Outcome::Failed {
                permanent: false,
                ..
            } | Outcome::Waiting
        )
    }

    fn of_call(result: Result<u32, CallError>, ok: fn(u32) -> Outcome) -> Outcome {
        match result {
            Ok(attempts) => ok(attempts),
            Err(CallError::Impossible(why)) => Outcome::Unrevocable { why },
            Err(e) => Outcome::Failed {
                permanent: !e.retryable(),
                why: e.to_string(),
            },
        }
    }
}

/// What one target did with one decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetOutcome {
    pub target: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The settled decision, with what every target did and how long it took.
#[derive(Clone, Debug, Serialize)]
pub struct Settled {
    pub decision: Decision,
    pub outcomes: Vec<TargetOutcome>,
    pub took: Duration,
    /// Wall-clock time the outcomes were known, ms since the epoch.
    pub settled_at_ms: i64,
}

impl Settled {
    pub fn outcome_of(&self, target: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.target == target)
            .map(|o| &o.outcome)
    }

    /// A target may still succeed: the decision must be tried again.
    pub fn pending(&self) -> bool {
        self.outcomes.iter().any(|o| o.outcome.pending())
    }

    /// Something now stops the token.
    pub fn revoked(&self) -> bool {
        self.outcomes.iter().any(|o| o.outcome.revoked())
    }
}

/// One Kafka topic a target writes to.
#[derive(Clone)]
pub struct TopicWriter {
    producer: FutureProducer,
    topic: String,
}

impl TopicWriter {
    pub fn new(producer: FutureProducer, topic: String) -> TopicWriter {
        TopicWriter { producer, topic }
    }

    /// Returns once the broker has the record.
    pub async fn send(&self, key: &str, payload: &[u8]) -> Result<(), CallError> {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| CallError::Transport(format!("topic {}: {e}", self.topic)))
    }
}

pub struct DenylistTarget {
    pub writer: TopicWriter,
    pub set: Arc<Denylist>,
    /// How long to deny a token whose expiry is unknown.
    pub max_ttl: Duration,
}

#[derive(Clone)]
pub enum AlertFormat {
    Json,
    /// RFC 8417 Security Event Token, HS256-signed.
    Set {
        issuer: String,
        audience: Option<String>,
        key: Vec<u8>,
    },
}

pub struct AlertsTarget {
    pub writer: TopicWriter,
    pub format: AlertFormat,
}

/// Everything the revoker may call; any may be absent.
#[derive(Default)]
pub struct Targets {
    pub rfc7009: Option<Rfc7009Client>,
    pub logouts: Vec<SubjectLogout>,
    pub denylist: Option<DenylistTarget>,
    pub alerts: Option<AlertsTarget>,
    pub webhooks: Vec<Webhook>,
}

impl Targets {
    /// Just RFC 7009 (tests and tools).
    pub fn rfc7009(client: Option<Rfc7009Client>) -> Targets {
        Targets {
            rfc7009: client,
            ..Targets::default()
        }
    }
}

pub const RFC7009: &str = "rfc7009";
pub const DENYLIST: &str = "denylist";
pub const ALERTS: &str = "alerts";

pub struct Revoker {
    controls: Arc<Controls>,
    sealer: Option<Sealer>,
    targets: Targets,
    /// Tokens tracked by this instance, for the brake's fraction limit.
    active: Option<IntGauge>,
    /// Keys already acted on: decisions, target×token, target×subject,
    /// brake admissions, notifications.
    done: LruCache<String, ()>,
}

impl Revoker {
    pub fn new(controls: Arc<Controls>, sealer: Option<Sealer>, targets: Targets) -> Revoker {
        Revoker {
            controls,
            sealer,
            targets,
            active: None,
            done: LruCache::new(NonZeroUsize::new(200_000).expect("non-zero")),
        }
    }

    /// Reads the number of tracked tokens from `gauge` for the brake.
    pub fn with_active_tokens(mut self, gauge: IntGauge) -> Revoker {
        self.active = Some(gauge);
        self
    }

    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    pub fn mode(&self) -> Mode {
        self.controls.mode.get()
    }

    /// Names of the revoking targets, in the order they are called.
    fn revoking_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.targets.rfc7009.is_some()
            || self.targets.logouts.is_empty() && self.targets.denylist.is_none()
        {
            // With nothing else configured, RFC 7009 is reported even when
            // absent, so "nothing can revoke this" is visible.
            names.push(RFC7009.to_owned());
        }
        names.extend(self.targets.logouts.iter().map(|l| l.name().to_owned()));
        if self.targets.denylist.is_some() {
            names.push(DENYLIST.to_owned());
        }
        names
    }

    pub async fn settle(&mut self, d: Decision) -> Settled {
        let start = Instant::now();
        let mode = self
            .controls
            .mode_for(d.tenant.as_deref(), d.client_id.as_deref());
        let mut outcomes = Vec::new();
        if self.done.contains(&d.decision_id) {
            outcomes.push(TargetOutcome {
                target: "decision".into(),
                outcome: Outcome::Duplicate,
            });
        } else if mode == Mode::Shadow {
            // Shadow: score and record only; nothing leaves tokenwatch.
            outcomes.push(TargetOutcome {
                target: "policy".into(),
                outcome: Outcome::NotActed { mode: "shadow" },
            });
        } else {
            self.revoke(&d, mode, &mut outcomes).await;
            self.notify(&d, mode, &mut outcomes).await;
        }
        if !outcomes
            .iter()
            .any(|o| o.outcome.pending() || o.outcome == Outcome::Braked)
        {
            self.done.put(d.decision_id.clone(), ());
        }
        Settled {
            decision: d,
            outcomes,
            took: start.elapsed(),
            settled_at_ms: now_ms(),
        }
    }

    async fn revoke(&mut self, d: &Decision, mode: Mode, out: &mut Vec<TargetOutcome>) {
        let names = self.revoking_names();
        let all = |out: &mut Vec<TargetOutcome>, o: Outcome| {
            out.extend(names.iter().map(|n| TargetOutcome {
                target: n.clone(),
                outcome: o.clone(),
            }))
        };
        if mode != Mode::Revoke || d.action != Action::Revoke {
            return all(
                out,
                Outcome::NotActed {
                    mode: mode.as_str(),
                },
            );
        }
        let now = now_ms();
        if let Some(dl) = &self.targets.denylist {
            if dl.set.is_denied(&d.token_id, now) {
                // Settled before, by this instance or another, before a
                // restart or after: the denylist topic is the record.
                return all(out, Outcome::Duplicate);
            }
        }
        // Manual revocations by an operator are not held by the brake: the
        // brake guards against the machine, not against the person. A
        // decision the brake admitted once is not counted again when it is
        // retried.
        let admitted = format!("brake|{}", d.decision_id);
        if d.rule.as_deref() != Some(MANUAL_RULE) && !self.done.contains(&admitted) {
            let active = self.active.as_ref().map_or(0, |g| g.get().max(0) as usize);
            if !self.controls.brake.allow(now, d.tenant.as_deref(), active) {
                return all(out, Outcome::Braked);
            }
            self.done.put(admitted, ());
        }

        if names.iter().any(|n| n == RFC7009) {
            let key = format!("{RFC7009}|{}", d.token_id);
            let o = if self.done.contains(&key) {
                Outcome::Duplicate
            } else {
                self.rfc7009(d).await
            };
            self.remember(key, &o);
            out.push(TargetOutcome {
                target: RFC7009.into(),
                outcome: o,
            });
        }
        for i in 0..self.targets.logouts.len() {
            let l = &self.targets.logouts[i];
            let key = format!(
                "{}|{}/{}",
                l.name(),
                d.tenant.as_deref().unwrap_or(""),
                d.sub
            );
            let o = if self.done.contains(&key) {
                Outcome::Duplicate
            } else {
                let subject = Subject {
                    sub: &d.sub,
                    tenant: d.tenant.as_deref(),
                    client_id: d.client_id.as_deref(),
                };
                Outcome::of_call(l.logout(subject).await, |attempts| Outcome::Revoked {
                    attempts,
                })
            };
            let name = l.name().to_owned();
            self.remember(key, &o);
            out.push(TargetOutcome {
                target: name,
                outcome: o,
            });
        }
        if let Some(dl) = &self.targets.denylist {
            // Published once the other revoking targets are settled, so a
            // token on the denylist means "settled" to every instance.
            let o = if out.iter().any(|o| o.outcome.pending()) {
                Outcome::Waiting
            } else {
                let until_ms = d
                    .token_exp
                    .map(|exp| exp.saturating_mul(1000))
                    .filter(|&until| until > now)
                    .unwrap_or(now + dl.max_ttl.as_millis() as i64);
                let entry = DenyEntry {
                    token_id: d.token_id.clone(),
                    decision_id: d.decision_id.clone(),
                    revoked_at_ms: now,
                    until_ms,
                };
                let payload = serde_json::to_vec(&entry).expect("entry serialises");
                match dl.writer.send(&d.token_id, &payload).await {
                    Ok(()) => {
                        dl.set.insert(&entry);
                        Outcome::Denied
                    }
                    Err(e) => Outcome::Failed {
                        why: e.to_string(),
                        permanent: false,
                    },
                }
            };
            out.push(TargetOutcome {
                target: DENYLIST.into(),
                outcome: o,
            });
        }
    }

    async fn rfc7009(&self, d: &Decision) -> Outcome {
        let Some(client) = &self.targets.rfc7009 else {
            return Outcome::Unrevocable {
                why: "no RFC 7009 endpoint configured".into(),
            };
        };
        let Some(handle) = d.token_handle.as_deref() else {
            return Outcome::Unrevocable {
                why: "telemetry carried no sealed token handle".into(),
            };
        };
        let Some(sealer) = &self.sealer else {
            return Outcome::Unrevocable {
                why: "no seal keys configured to open the handle".into(),
            };
        };
        let token = match sealer.open(&d.token_id, handle) {
            Ok(t) => t,
            Err(e) => return Outcome::BadHandle { why: e.to_string() },
        };
        let result = client.revoke(&token, "access_token").await;
        drop(token);
        Outcome::of_call(result, |attempts| Outcome::Revoked { attempts })
    }

    /// Alerts topic and webhooks: once while a revocation is pending, once
    /// when settled, so a SIEM hears of the flag without waiting for an IdP
    /// outage to end.
    async fn notify(&mut self, d: &Decision, mode: Mode, out: &mut Vec<TargetOutcome>) {
        if self.targets.alerts.is_none() && self.targets.webhooks.is_empty() {
            return;
        }
        let phase = if out.iter().any(|o| o.outcome.pending()) {
            "pending"
        } else {
            "settled"
        };
        let now = now_ms();
        let event = AlertEvent::new(d, mode.as_str(), out);
        let json = event.to_json();
        let mut notes = Vec::new();
        if let Some(a) = &self.targets.alerts {
            let key = format!("{ALERTS}|{}|{phase}", d.decision_id);
            let o = if self.done.contains(&key) {
                Outcome::Duplicate
            } else {
                let payload = match &a.format {
                    AlertFormat::Json => json.clone(),
                    AlertFormat::Set {
                        issuer,
                        audience,
                        key,
                    } => sign_set(&event.set_claims(issuer, audience.as_deref(), now), key)
                        .into_bytes(),
                };
                Outcome::of_call(
                    a.writer.send(&d.token_id, &payload).await.map(|()| 1),
                    |attempts| Outcome::Delivered { attempts },
                )
            };
            notes.push((ALERTS.to_owned(), key, o));
        }
        for w in &self.targets.webhooks {
            let key = format!("{}|{}|{phase}", w.name(), d.decision_id);
            let o = if self.done.contains(&key) {
                Outcome::Duplicate
            } else {
                Outcome::of_call(w.post(&json).await, |attempts| Outcome::Delivered {
                    attempts,
                })
            };
            notes.push((w.name().to_owned(), key, o));
        }
        for (target, key, outcome) in notes {
            self.remember(key, &outcome);
            out.push(TargetOutcome { target, outcome });
        }
    }

    /// A target is done with a key unless it may still succeed later.
    fn remember(&mut self, key: String, o: &Outcome) {
        if !o.pending() {
            self.done.put(key, ());
        }
    }
}
