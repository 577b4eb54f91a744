//! The revoker: turns one decision into the calls that really revoke, then
//! tells the world.
//!
//! Order: the edge denylist entry first and unconditionally (a topic write:
//! the gateway refuses the token within a second, whatever the IdP does),
//! then RFC 7009 with the sealed handle (opened here and nowhere else, used
//! for one call, dropped) and subject logout at each IdP, side by side. Then
//! the notifying targets: the alerts topic and webhooks. A decision without
//! a handle cannot be revoked through RFC 7009 — posting the token id would
//! get a 200 and revoke nothing — so that target records `unrevocable`,
//! never success.
//!
//! Each target fails alone: it keeps its own backoff for the decision (see
//! [`Persistence`]) while the others, and later decisions (the revoking
//! consumer reads on, `ingest/revoke.rs`), go ahead; a gate per target
//! bounds its calls at once, so an IdP coming back is not hit by every
//! waiting decision together.
//!
//! Idempotence: a target acts at most once per decision (key: target and
//! decision), so a replayed decision, or a retry after one target failed,
//! calls only what has not yet succeeded. A manual revocation has a
//! decision of its own, so it always acts; a second theft of a subject's
//! token logs the subject out again. Across restarts and instances the
//! denylist topic is the record: its entry is published again, marked
//! settled, once every target is done with the decision.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;
use lru::LruCache;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};
use tokio::sync::Semaphore;

use super::brake::Held as BrakeHeld;
use super::denylist::DenyEntry;
use super::event::{sign_set, AlertEvent};
use super::logout::Subject;
use super::outcome::{Outcome, Settled, TargetOutcome};
use super::persist::Persistence;
use super::policy::{Controls, Mode};
use super::targets::{self, AlertFormat, Targets, ALERTS, DENYLIST, RFC7009};
use crate::clock::now_ms;
use crate::decide::{Decision, MANUAL_RULE};
use crate::detect::Action;
use crate::metrics::Metrics;
use crate::seal::Sealer;

/// Calls one target makes at once, across decisions.
const GATE: usize = 16;

/// One configured target.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Rfc7009,
    Logout(usize),
    Denylist,
    Alerts,
    Webhook(usize),
}

/// What an attempt sends, besides the decision.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// RFC 7009 and subject logout: everything is in the decision.
    Idp,
    Deny(&'a DenyEntry),
    Note(&'a Note),
}

/// What a notifying target sends for one phase of a decision.
struct Note {
    phase: &'static str,
    json: Vec<u8>,
    set: Option<Vec<u8>>,
}

/// A decision the brake holds: the reset it waits for, and the outcome
/// of every revoking target meanwhile.
struct Hold {
    reset: u64,
    braked: Vec<(Target, Outcome)>,
}

/// Counts retries and decisions a target still holds, when serving.
struct Watch {
    retries: IntCounterVec,
    pending: IntGaugeVec,
    held: IntGauge,
}

pub struct Revoker {
    controls: Arc<Controls>,
    sealer: Option<Sealer>,
    targets: Targets,
    persistence: Persistence,
    /// A decision the brake holds waits for the operator's reset (and is
    /// then acted on or dropped) instead of settling as `braked`.
    holds: bool,
    /// Tokens tracked by this instance, for the brake's fraction limit.
    active: Option<IntGauge>,
    watch: Option<Watch>,
    /// Keys already acted on: decisions, target×decision, brake admissions,
    /// notifications.
    done: Mutex<LruCache<String, ()>>,
    /// One per target, indexed like `all_targets`.
    gates: Vec<Semaphore>,
}

impl Revoker {
    /// A revoker that tries each target once per `settle` ([`Persistence::ONCE`]).
    pub fn new(controls: Arc<Controls>, sealer: Option<Sealer>, targets: Targets) -> Revoker {
        let n = 3 + targets.logouts.len() + targets.webhooks.len();
        Revoker {
            controls,
            sealer,
            targets,
            persistence: Persistence::ONCE,
            holds: false,
            active: None,
            watch: None,
            done: Mutex::new(LruCache::new(NonZeroUsize::new(200_000).expect("non-zero"))),
            gates: (0..n).map(|_| Semaphore::new(GATE)).collect(),
        }
    }

    /// Each target keeps retrying a decision for `p.budget` before its
    /// outcome stands.
    pub fn with_persistence(mut self, p: Persistence) -> Revoker {
        self.persistence = p;
        self
    }

    /// Held decisions wait for the brake's reset, which says whether they
    /// are acted on or dropped (`serve`). Without it they settle `braked`.
    pub fn holding(mut self) -> Revoker {
        self.holds = true;
        self
    }

    /// Reads the number of tracked tokens from `gauge` for the brake.
    pub fn with_active_tokens(mut self, gauge: IntGauge) -> Revoker {
        self.active = Some(gauge);
        self
    }

    /// Reports retries and pending decisions per target.
    pub fn with_metrics(mut self, m: &Metrics) -> Revoker {
        self.watch = Some(Watch {
            retries: m.target_retries.clone(),
            pending: m.target_pending.clone(),
            held: m.brake_held.clone(),
        });
        self.with_active_tokens(m.tokens_tracked.clone())
    }

    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    pub fn mode(&self) -> Mode {
        self.controls.mode.get()
    }

    fn name(&self, t: Target) -> &str {
        match t {
            Target::Rfc7009 => RFC7009,
            Target::Logout(i) => self.targets.logouts[i].name(),
            Target::Denylist => DENYLIST,
            Target::Alerts => ALERTS,
            Target::Webhook(i) => self.targets.webhooks[i].name(),
        }
    }

    fn gate(&self, t: Target) -> &Semaphore {
        let i = match t {
            Target::Rfc7009 => 0,
            Target::Denylist => 1,
            Target::Alerts => 2,
            Target::Logout(i) => 3 + i,
            Target::Webhook(i) => 3 + self.targets.logouts.len() + i,
        };
        &self.gates[i]
    }

    /// The revoking targets after the denylist, called side by side.
    fn idp_targets(&self) -> Vec<Target> {
        let mut ts = Vec::new();
        if self.targets.rfc7009.is_some()
            || self.targets.logouts.is_empty() && self.targets.denylist.is_none()
        {
            // With nothing else configured, RFC 7009 is reported even when
            // absent, so "nothing can revoke this" is visible.
            ts.push(Target::Rfc7009);
        }
        ts.extend((0..self.targets.logouts.len()).map(Target::Logout));
        ts
    }

    fn revoking_targets(&self) -> Vec<Target> {
        let mut ts = Vec::new();
        if self.targets.denylist.is_some() {
            ts.push(Target::Denylist);
        }
        ts.extend(self.idp_targets());
        ts
    }

    fn notifying_targets(&self) -> Vec<Target> {
        let mut ts = Vec::new();
        if self.targets.alerts.is_some() {
            ts.push(Target::Alerts);
        }
        ts.extend((0..self.targets.webhooks.len()).map(Target::Webhook));
        ts
    }

    fn is_done(&self, key: &str) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn mark_done(&self, key: String) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, ());
    }

    /// Acts on one decision through every target. Returns once every
    /// target is done with it: succeeded, refused for good, or out of its
    /// retry budget (a pending outcome then means "given up").
    pub async fn settle(&self, d: Decision) -> Settled {
        // The fleet's mode and brake first: a restarted instance must not
        // revoke under a brake the fleet has engaged.
        self.controls.until_loaded().await;
        let start = Instant::now();
        let mode = self
            .controls
            .mode_for(d.tenant.as_deref(), d.client_id.as_deref());
        let manual = d.rule.as_deref() == Some(MANUAL_RULE);
        let mut outcomes = Vec::new();
        if self.is_done(&d.decision_id) || !manual && self.settled_before(&d) {
            outcomes.push(TargetOutcome {
                target: targets::DECISION.into(),
                outcome: Outcome::Duplicate,
            });
        } else if mode == Mode::Shadow && !manual {
            // Shadow: score and record only; nothing leaves tokenwatch. An
            // operator's own revocation is not the machine's, and acts.
            outcomes.push(TargetOutcome {
                target: targets::POLICY.into(),
                outcome: Outcome::NotActed {
                    mode: Mode::Shadow.as_str(),
                },
            });
        } else {
            outcomes = self.act(&d, mode, manual).await;
        }
        if !outcomes
            .iter()
            .any(|o| o.outcome.pending() || o.outcome == Outcome::Braked)
        {
            self.mark_done(d.decision_id.clone());
        }
        Settled {
            decision: d,
            outcomes,
            took: start.elapsed(),
            settled_at_ms: now_ms(),
        }
    }

    /// Every target of the decision settled before (the denylist topic
    /// says so): a replay, by this instance or another.
    fn settled_before(&self, d: &Decision) -> bool {
        self.targets
            .denylist
            .as_ref()
            .is_some_and(|dl| dl.set.is_settled(&d.token_id, &d.decision_id))
    }

    async fn act(&self, d: &Decision, mode: Mode, manual: bool) -> Vec<TargetOutcome> {
        let (first, entry) = match self.revoke(d, mode, manual).await {
            Ok(first) => first,
            Err(Hold { braked, .. }) if !self.holds => {
                let shown = self.labelled(&braked);
                let mut all = shown.clone();
                all.extend(self.notify(d, mode, &shown, "settled").await);
                return all;
            }
            Err(Hold { reset, braked }) => {
                // Held until an operator resets the brake (through any
                // instance): the SIEM hears of it now; the decision stays
                // uncommitted meanwhile, so a restart holds it again.
                let shown = self.labelled(&braked);
                let mut notes = self.notify(d, mode, &shown, "held").await;
                let held = {
                    let _held = self.watch.as_ref().map(|w| Held::new(&w.held, None));
                    self.controls.brake.until_reset(reset).await
                };
                match held {
                    BrakeHeld::Drop => {
                        let dropped: Vec<_> =
                            braked.iter().map(|(t, _)| (*t, Outcome::Dropped)).collect();
                        let dropped = self.labelled(&dropped);
                        let mut all = dropped.clone();
                        all.append(&mut notes);
                        all.extend(self.notify(d, mode, &dropped, "settled").await);
                        return all;
                    }
                    BrakeHeld::Release => {
                        self.mark_done(format!("brake|{}", d.decision_id));
                        match self.revoke(d, mode, manual).await {
                            Ok(first) => first,
                            // Admitted above: the brake is not asked again.
                            Err(h) => (h.braked, None),
                        }
                    }
                }
            }
        };
        let payload = |t: Target| match (&entry, t) {
            (Some(e), Target::Denylist) => Payload::Deny(e),
            _ => Payload::Idp,
        };
        let phase = if first.iter().any(|(_, o)| o.pending()) {
            "pending"
        } else {
            "settled"
        };
        // The SIEM hears of the flag now, while pending revocations retry.
        let shown = self.labelled(&first);
        let (revoking, notes) = tokio::join!(
            join_all(
                first
                    .into_iter()
                    .map(|(t, o)| self.persist(t, d, payload(t), o))
            ),
            self.notify(d, mode, &shown, phase),
        );
        let revoking: Vec<_> = self.labelled(&revoking);
        let mut all = revoking.clone();
        all.extend(notes);
        if phase == "pending" && !revoking.iter().any(|o| o.outcome.pending()) {
            all.extend(self.notify(d, mode, &revoking, "settled").await);
        }
        if let Some(entry) = &entry {
            if !all.iter().any(|o| o.outcome.pending()) {
                self.mark_settled(entry.clone()).await;
            }
        }
        all
    }

    fn labelled<T: AsRef<[(Target, Outcome)]>>(&self, xs: T) -> Vec<TargetOutcome> {
        xs.as_ref()
            .iter()
            .map(|(t, o)| TargetOutcome {
                target: self.name(*t).to_owned(),
                outcome: o.clone(),
            })
            .collect()
    }

    /// The first attempt of every revoking target; the denylist entry
    /// written (unsettled), if this call wrote one. Err when the brake holds
    /// the decision.
    async fn revoke(
        &self,
        d: &Decision,
        mode: Mode,
        manual: bool,
    ) -> Result<(Vec<(Target, Outcome)>, Option<DenyEntry>), Hold> {
        let ts = self.revoking_targets();
        let all = |o: Outcome| ts.iter().map(|t| (*t, o.clone())).collect();
        if !manual && (mode != Mode::Revoke || d.action != Action::Revoke) {
            return Ok((
                all(Outcome::NotActed {
                    mode: mode.as_str(),
                }),
                None,
            ));
        }
        let now = now_ms();
        let denied = self
            .targets
            .denylist
            .as_ref()
            .is_some_and(|dl| dl.set.is_denied(&d.token_id, now));
        // Manual revocations by an operator are not held by the brake: the
        // brake guards against the machine, not against the person. A
        // decision the brake admitted once (in this process, or before a
        // restart: its token is on the denylist) is not counted again.
        let admitted = format!("brake|{}", d.decision_id);
        if !manual && !denied && !self.is_done(&admitted) {
            let active = self.active.as_ref().map_or(0, |g| g.get().max(0) as usize);
            if let Some(reset) = self.controls.brake.admit(now, d.tenant.as_deref(), active) {
                self.announce_trip().await;
                return Err(Hold {
                    reset,
                    braked: all(Outcome::Braked),
                });
            }
            self.mark_done(admitted);
            self.controls.share_brake_count();
        }
        let mut out = Vec::new();
        let mut entry = None;
        if let Some(dl) = &self.targets.denylist {
            let o = if denied && !manual {
                Outcome::Duplicate
            } else {
                let until_ms = d
                    .token_exp
                    .map(|exp| exp.saturating_mul(1000))
                    .filter(|&until| until > now)
                    .unwrap_or(now + dl.max_ttl.as_millis() as i64);
                let e = DenyEntry {
                    token_id: d.token_id.clone(),
                    decision_id: d.decision_id.clone(),
                    revoked_at_ms: now,
                    until_ms,
                    settled: false,
                };
                let o = self.attempt(Target::Denylist, d, Payload::Deny(&e)).await;
                entry = Some(e);
                o
            };
            out.push((Target::Denylist, o));
        }
        let idp = self.idp_targets();
        let firsts = join_all(idp.iter().map(|t| self.attempt(*t, d, Payload::Idp))).await;
        out.extend(idp.into_iter().zip(firsts));
        Ok((out, entry))
    }

    /// Tells the fleet when this instance tripped the brake, so every
    /// instance holds revocations (and a restart keeps holding them).
    async fn announce_trip(&self) {
        let Some(fleet) = &self.controls.fleet else {
            return;
        };
        if let Some(at_ms) = self.controls.brake.take_new_trip() {
            let change = super::Change::Brake {
                engaged: true,
                held: None,
            };
            match fleet.publish(change, "brake", at_ms).await {
                Ok(s) => self.controls.applied(s.at_ms),
                Err(e) => {
                    tracing::error!(error = %e, "brake trip not published to the fleet; held here only")
                }
            }
        }
    }

    /// Retries a pending outcome with backoff until the budget is spent.
    async fn persist(
        &self,
        t: Target,
        d: &Decision,
        payload: Payload<'_>,
        mut o: Outcome,
    ) -> (Target, Outcome) {
        if o.pending() && !self.persistence.budget.is_zero() {
            let name = self.name(t).to_owned();
            let _held = self
                .watch
                .as_ref()
                .map(|w| Held::new(&w.pending, Some(&name)));
            let started = Instant::now();
            let mut backoff = self.persistence.first_backoff();
            while o.pending() && started.elapsed() + backoff <= self.persistence.budget {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.persistence.max_backoff);
                if let Some(w) = &self.watch {
                    w.retries.with_label_values(&[&name]).inc();
                }
                o = self.attempt(t, d, payload).await;
            }
        }
        (t, o)
    }

    /// One attempt of one target, unless it already succeeded for this
    /// decision; remembers a final outcome.
    async fn attempt(&self, t: Target, d: &Decision, payload: Payload<'_>) -> Outcome {
        let key = match payload {
            Payload::Note(n) => format!("{}|{}|{}", self.name(t), d.decision_id, n.phase),
            _ => format!("{}|{}", self.name(t), d.decision_id),
        };
        if self.is_done(&key) {
            return Outcome::Duplicate;
        }
        let idem = super::http::idempotency_value(&key);
        let o = match (t, payload) {
            (Target::Denylist, Payload::Deny(e)) => self.deny(e).await,
            (Target::Rfc7009, _) => self.gated(t, self.rfc7009(d, &idem)).await,
            (Target::Logout(i), _) => self.gated(t, self.log_out(i, d, &idem)).await,
            (Target::Alerts, Payload::Note(n)) => self.gated(t, self.alert(d, n)).await,
            (Target::Webhook(i), Payload::Note(n)) => {
                let post = self.targets.webhooks[i].post(&n.json, &idem);
                let r = self.gated(t, post).await;
                Outcome::of_call(r, |attempts| Outcome::Delivered { attempts })
            }
            _ => Outcome::Unrevocable {
                why: "nothing to send to this target".into(),
            },
        };
        if !o.pending() {
            self.mark_done(key);
        }
        o
    }

    /// Runs `call` once the target's gate lets it.
    async fn gated<F: std::future::Future>(&self, t: Target, call: F) -> F::Output {
        let _permit = self.gate(t).acquire().await;
        call.await
    }

    /// Subject logout at one IdP.
    async fn log_out(&self, i: usize, d: &Decision, idempotency: &str) -> Outcome {
        if !d.subject_verified {
            // Anyone can put a subject in an unsigned JWT or a forged
            // record: it never chooses whom to log out.
            return Outcome::Unrevocable {
                why: "the subject is not verified; the token alone is revoked".into(),
            };
        }
        let subject = Subject {
            sub: &d.sub,
            tenant: d.tenant.as_deref(),
            client_id: d.client_id.as_deref(),
        };
        Outcome::of_call(
            self.targets.logouts[i].logout(subject, idempotency).await,
            |attempts| Outcome::Revoked { attempts },
        )
    }

    /// Publishes a denylist entry and adds it to this instance's set.
    async fn deny(&self, e: &DenyEntry) -> Outcome {
        let Some(dl) = &self.targets.denylist else {
            return Outcome::Unrevocable {
                why: "no denylist configured".into(),
            };
        };
        let payload = serde_json::to_vec(e).expect("entry serialises");
        let sent = self
            .gated(
                Target::Denylist,
                targets::send(&dl.writer, &e.token_id, &payload),
            )
            .await;
        match sent {
            Ok(()) => {
                dl.set.insert(e);
                Outcome::Denied
            }
            Err(e) => Outcome::Failed {
                why: e.to_string(),
                permanent: false,
            },
        }
    }

    /// The denylist entry again, marked settled. If it does not land, a
    /// replay of the decision acts again (at least once), nothing worse.
    async fn mark_settled(&self, mut e: DenyEntry) {
        e.settled = true;
        if let Outcome::Failed { why, .. } = self.deny(&e).await {
            tracing::warn!(token_id = %e.token_id, error = %why, "denylist entry not marked settled");
        }
    }

    async fn rfc7009(&self, d: &Decision, idempotency: &str) -> Outcome {
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
        let result = client.revoke(&token, "access_token", idempotency).await;
        drop(token);
        Outcome::of_call(result, |attempts| Outcome::Revoked { attempts })
    }

    async fn alert(&self, d: &Decision, n: &Note) -> Outcome {
        let Some(a) = &self.targets.alerts else {
            return Outcome::Unrevocable {
                why: "no alerts topic configured".into(),
            };
        };
        let payload = n.set.as_deref().unwrap_or(&n.json);
        Outcome::of_call(
            targets::send(&a.writer, &d.token_id, payload)
                .await
                .map(|()| 1),
            |attempts| Outcome::Delivered { attempts },
        )
    }

    /// Alerts topic and webhooks for one phase: "pending" while a
    /// revocation retries, "settled" once none does, so a SIEM hears of
    /// the flag without waiting for an IdP outage to end.
    async fn notify(
        &self,
        d: &Decision,
        mode: Mode,
        shown: &[TargetOutcome],
        phase: &'static str,
    ) -> Vec<TargetOutcome> {
        let ts = self.notifying_targets();
        if ts.is_empty() {
            return Vec::new();
        }
        let event = AlertEvent::new(d, mode.as_str(), shown);
        let set = match self.targets.alerts.as_ref().map(|a| &a.format) {
            Some(AlertFormat::Set {
                issuer,
                audience,
                key,
            }) => Some(
                sign_set(
                    &event.set_claims(issuer, audience.as_deref(), now_ms()),
                    key,
                )
                .into_bytes(),
            ),
            _ => None,
        };
        let note = Note {
            phase,
            json: event.to_json(),
            set,
        };
        let note = &note;
        let done = join_all(ts.into_iter().map(|t| async move {
            let first = self.attempt(t, d, Payload::Note(note)).await;
            self.persist(t, d, Payload::Note(note), first).await
        }))
        .await;
        self.labelled(&done)
    }
}

/// Counts a decision held while a target retries or the brake holds it,
/// also when the wait is cancelled (shutdown).
struct Held {
    gauge: IntGauge,
}

impl Held {
    fn new<G: Labelled>(g: &G, target: Option<&str>) -> Held {
        let gauge = g.gauge(target);
        gauge.inc();
        Held { gauge }
    }
}

trait Labelled {
    fn gauge(&self, target: Option<&str>) -> IntGauge;
}

impl Labelled for IntGaugeVec {
    fn gauge(&self, target: Option<&str>) -> IntGauge {
        self.with_label_values(&[target.unwrap_or_default()])
    }
}

impl Labelled for IntGauge {
    fn gauge(&self, _: Option<&str>) -> IntGauge {
        self.clone()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
