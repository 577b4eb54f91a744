//! Decide: a verdict becomes a decision. Owns the detector every path
//! shares, the [`Decision`] record, and its hand-off to the decision log
//! (the outbox) with the alert and audit entry. The Kafka path and
//! `POST /v1/score` both come through here, so a token flagged either way is
//! treated the same; `respond` starts where a decision exists.

pub mod alerts;
mod decision;
mod flag;

pub use alerts::{Alert, Alerts};
pub use decision::{Decision, MANUAL_RULE};
pub use flag::{Flagger, Outbox};

use std::sync::{Arc, Mutex};

use crate::clock::now_ms;
use crate::detect::{explain, Action, Detector, Explanation, Verdict};
use crate::telemetry::Event;

/// The detector as the Kafka consumer and the HTTP API share it. The lock is
/// held for one `observe` (about a microsecond) and never across an await.
pub type SharedDetector = Arc<Mutex<Detector>>;

pub fn lock(d: &SharedDetector) -> std::sync::MutexGuard<'_, Detector> {
    // The core does not panic on any input (property-tested); if it ever
    // did, the state is still consistent per token, so carry on.
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// What scoring one event produced.
pub struct Scored {
    pub verdict: Verdict,
    /// Present when `explain_all` was asked for, or the token escalated.
    pub explanation: Option<Explanation>,
    /// Present when the token escalated to alert or revoke.
    pub decision: Option<Decision>,
    /// Present with the explanation (not read on the quiet path: it would
    /// cost an allocation per event).
    pub model_version: Option<String>,
}

/// Scores `event` under the detector's lock and, if the token escalates,
/// writes the decision (not yet published).
pub fn score(detector: &SharedDetector, event: &Event<'_>, explain_all: bool) -> Scored {
    score_with(detector, event, explain_all, Detector::observe)
}

/// Scores `event` and changes nothing: no state, no escalation, so never a
/// decision (`POST /v1/score` by default).
pub fn score_dry(detector: &SharedDetector, event: &Event<'_>) -> Scored {
    score_with(detector, event, true, Detector::observe_dry)
}

fn score_with(
    detector: &SharedDetector,
    event: &Event<'_>,
    explain_all: bool,
    observe: fn(&mut Detector, &Event<'_>) -> Verdict,
) -> Scored {
    let mut det = lock(detector);
    let verdict = observe(&mut det, event);
    let flag = verdict.escalated && verdict.action != Action::None;
    let (explanation, model_version) = if flag || explain_all {
        let geo = det.geo().load();
        let version = det.model().load().version().to_owned();
        (Some(explain(&verdict, event.ip, &geo.db)), Some(version))
    } else {
        (None, None)
    };
    drop(det);
    let decision = flag.then(|| {
        Decision::from_explained(
            event,
            &verdict,
            explanation.as_ref().expect("explained when flagged"),
            model_version.as_deref().expect("read when flagged"),
            now_ms(),
        )
    });
    Scored {
        verdict,
        explanation,
        decision,
        model_version,
    }
}
