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
use std::time::Instant;

use lru::LruCache;
use prometheus::IntGauge;

use super::denylist::DenyEntry;
use super::event::{sign_set, AlertEvent};
use super::logout::Subject;
use super::outcome::{Outcome, Settled, TargetOutcome};
use super::policy::{Controls, Mode};
use super::targets::{self, AlertFormat, Targets, ALERTS, DENYLIST, RFC7009};
use crate::clock::now_ms;
use crate::decide::{Decision, MANUAL_RULE};
use crate::detect::Action;
use crate::seal::Sealer;

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
                target: targets::DECISION.into(),
                outcome: Outcome::Duplicate,
            });
        } else if mode == Mode::Shadow {
            // Shadow: score and record only; nothing leaves tokenwatch.
            outcomes.push(TargetOutcome {
                target: targets::POLICY.into(),
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
        self.log_out(d, out).await;
        self.deny(d, now, out).await;
    }

    /// Subject logout at each configured IdP, once per tenant and subject.
    async fn log_out(&mut self, d: &Decision, out: &mut Vec<TargetOutcome>) {
        for i in 0..self.targets.logouts.len() {
            let l = &self.targets.logouts[i];
            let key = format!(
                "{}|{}/{}",
                l.name(),
                d.tenant.as_deref().unwrap_or(""),
                d.sub
            );
            let o = if !d.subject_verified {
                // Anyone can put a subject in an unsigned JWT or a forged
                // record: it never chooses whom to log out.
                Outcome::Unrevocable {
                    why: "the subject is not verified; the token alone is revoked".into(),
                }
            } else if self.done.contains(&key) {
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
            if d.subject_verified {
                self.remember(key, &o);
            }
            out.push(TargetOutcome {
                target: name,
                outcome: o,
            });
        }
    }

    /// The edge denylist entry, published once the other revoking targets
    /// are settled, so a token on the denylist means "settled" to every
    /// instance.
    async fn deny(&mut self, d: &Decision, now: i64, out: &mut Vec<TargetOutcome>) {
        let Some(dl) = &self.targets.denylist else {
            return;
        };
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
            match targets::send(&dl.writer, &d.token_id, &payload).await {
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
                    targets::send(&a.writer, &d.token_id, &payload)
                        .await
                        .map(|()| 1),
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
