//! The revoker: turns one decision into the calls that really revoke.
//!
//! The sealed handle is opened here and nowhere else, used for one RFC 7009
//! call, and dropped. A decision without a handle cannot be revoked through
//! RFC 7009 — posting the token id would get a 200 and revoke nothing — so it
//! is recorded as `unrevocable`, never as success.

use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::clock::now_ms;
use std::time::{Duration, Instant};

use lru::LruCache;
use serde::Serialize;

use super::decision::Decision;
use super::decision::MANUAL_RULE;
use super::policy::{Controls, Mode};
use super::rfc7009::{CallError, Rfc7009Client};
use super::seal::Sealer;
use crate::detect::Action;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The authorization server accepted the revocation.
    Revoked { attempts: u32 },
    /// Policy said not to act (shadow or alert mode, or an alert-level decision).
    NotActed { mode: &'static str },
    /// The brake against mass revocation held it; an operator reviews it
    /// and revokes by hand (`POST /v1/tokens/{id}/revoke`) if it stands.
    Braked,
    /// Already acted on (a replayed or duplicate decision).
    Duplicate,
    /// No sealed handle, or no RFC 7009 endpoint: nothing can revoke it here.
    Unrevocable { why: String },
    /// The handle would not open (wrong key, tampered, other token id).
    BadHandle { why: String },
    /// The server refused, or retries ran out.
    Failed { why: String, permanent: bool },
}

impl Outcome {
    /// Label for `tokenwatch_revocations_total{outcome}`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Revoked { .. } => "revoked",
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
        }
    }
}

/// The settled decision, with how long the revocation took.
#[derive(Clone, Debug, Serialize)]
pub struct Settled {
    pub decision: Decision,
    pub outcome: Outcome,
    pub took: Duration,
    /// Wall-clock time the outcome was known, ms since the epoch.
    pub settled_at_ms: i64,
}

pub struct Revoker {
    controls: Arc<Controls>,
    sealer: Option<Sealer>,
    rfc7009: Option<Rfc7009Client>,
    /// Decision ids already settled, so duplicates are not acted on twice.
    done: LruCache<String, ()>,
}

impl Revoker {
    pub fn new(
        controls: Arc<Controls>,
        sealer: Option<Sealer>,
        rfc7009: Option<Rfc7009Client>,
    ) -> Revoker {
        Revoker {
            controls,
            sealer,
            rfc7009,
            done: LruCache::new(NonZeroUsize::new(100_000).expect("non-zero")),
        }
    }

    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    pub fn mode(&self) -> Mode {
        self.controls.mode.get()
    }

    pub async fn settle(&mut self, d: Decision) -> Settled {
        let start = Instant::now();
        let outcome = self.act(&d).await;
        // A retryable failure or a braked decision may still be acted on
        // later, so neither marks the decision done.
        if !matches!(
            outcome,
            Outcome::Failed {
                permanent: false,
                ..
            } | Outcome::Braked
        ) {
            self.done.put(d.decision_id.clone(), ());
        }
        let settled_at_ms = now_ms();
        Settled {
            decision: d,
            outcome,
            took: start.elapsed(),
            settled_at_ms,
        }
    }

    async fn act(&mut self, d: &Decision) -> Outcome {
        if self.done.contains(&d.decision_id) {
            return Outcome::Duplicate;
        }
        let mode = self.controls.mode.get();
        if mode != Mode::Revoke || d.action != Action::Revoke {
            return Outcome::NotActed {
                mode: mode.as_str(),
            };
        }
        // Manual revocations by an operator are not held by the brake: the
        // brake guards against the machine, not against the person.
        if d.rule.as_deref() != Some(MANUAL_RULE) && !self.controls.brake.allow(now_ms()) {
            return Outcome::Braked;
        }
        let Some(client) = &self.rfc7009 else {
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
        match result {
            Ok(attempts) => Outcome::Revoked { attempts },
            Err(e @ CallError::Permanent { .. }) => Outcome::Failed {
                why: e.to_string(),
                permanent: true,
            },
            Err(e) => Outcome::Failed {
                why: e.to_string(),
                permanent: false,
            },
        }
    }
}
