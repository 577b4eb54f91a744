//! Backtest: replays historical telemetry (no labels needed) through the
//! same core `serve` runs and reports what a model would have done: alerts
//! and revocations per day, the reasons behind them, and the tokens it would
//! have revoked. What an operator reads before letting a model act.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::{replay, Labels, ReplayError};
use crate::detect::{explain, Action, Detector, DetectorParams, ModelHandle, Verdict};
use crate::geo::{GeoDb, GeoHandle};
use crate::telemetry::Event;

/// One UTC day of the replayed telemetry.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub requests: u64,
    /// Distinct tokens seen that day.
    pub tokens: u64,
    /// Tokens that first reached alert level that day.
    pub alerts: u64,
    /// Tokens that would have been revoked that day.
    pub revocations: u64,
    /// Revocations per 100k tokens seen that day.
    pub revocations_per_100k_tokens: f64,
}

/// A token the model would have revoked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WouldRevoke {
    pub token_id: String,
    pub sub: String,
    /// RFC 3339, the request that tipped it.
    pub at: String,
    pub score: f32,
    pub explanation: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BacktestReport {
    pub data_sha256: String,
    pub model_version: String,
    pub requests: u64,
    pub tokens: u64,
    /// Requests the gateway had refused: not traffic, not scored.
    pub rejected: u64,
    pub days: Vec<Day>,
    /// How often each reason (a rule, or one of a decision's top features)
    /// stood behind an alert or revocation, most frequent first.
    pub top_reasons: Vec<(String, u64)>,
    pub would_revoke: Vec<WouldRevoke>,
}

#[derive(Default)]
struct DayCount {
    requests: u64,
    tokens: HashSet<u128>,
    alerts: u64,
    revocations: u64,
}

/// Counts verdicts into a report; fed by a file replay or by a topic.
#[derive(Default)]
pub struct Tally {
    days: BTreeMap<i64, DayCount>,
    tokens: HashSet<u128>,
    reasons: HashMap<String, u64>,
    would_revoke: Vec<WouldRevoke>,
    requests: u64,
    rejected: u64,
}

const DAY_MS: i64 = 86_400_000;

impl Tally {
    /// Counts the verdict `serve` reached on `event`.
    pub fn count(&mut self, event: &Event<'_>, v: &Verdict, geo: &GeoDb) {
        self.requests += 1;
        if v.rejected {
            self.rejected += 1;
            return;
        }
        let day = self.days.entry(event.ts_ms.div_euclid(DAY_MS)).or_default();
        day.requests += 1;
        day.tokens.insert(v.key);
        self.tokens.insert(v.key);
        // Acted on once per token and level, as `serve` does; an
        // allowlisted subject is never acted on.
        if !v.escalated || v.suppressed {
            return;
        }
        match v.action {
            Action::None => return,
            Action::Alert => day.alerts += 1,
            Action::Revoke => day.revocations += 1,
        }
        let e = explain(v, event.ip, geo);
        for reason in e.rule.into_iter().chain(e.top.iter().map(|f| f.feature)) {
            *self.reasons.entry(reason.to_owned()).or_default() += 1;
        }
        if v.action == Action::Revoke {
            self.would_revoke.push(WouldRevoke {
                token_id: event.token_id.to_string(),
                sub: event.sub.to_string(),
                at: rfc3339(event.ts_ms),
                score: v.score.score,
                explanation: e.text,
            });
        }
    }

    pub fn finish(self, data_sha256: String, model_version: String) -> BacktestReport {
        let mut top_reasons: Vec<(String, u64)> = self.reasons.into_iter().collect();
        top_reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let days = self
            .days
            .into_iter()
            .map(|(d, c)| Day {
                date: rfc3339(d * DAY_MS)[..10].to_owned(),
                requests: c.requests,
                tokens: c.tokens.len() as u64,
                alerts: c.alerts,
                revocations: c.revocations,
                revocations_per_100k_tokens: c.revocations as f64 * 100_000.0
                    / c.tokens.len().max(1) as f64,
            })
            .collect();
        BacktestReport {
            data_sha256,
            model_version,
            requests: self.requests,
            tokens: self.tokens.len() as u64,
            rejected: self.rejected,
            days,
            top_reasons,
            would_revoke: self.would_revoke,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Backtests a telemetry file (NDJSON, `.gz` allowed); labels, if any, are
/// ignored.
pub fn backtest(
    path: &std::path::Path,
    geo: Arc<GeoHandle>,
    model: ModelHandle,
    params: DetectorParams,
) -> Result<BacktestReport, ReplayError> {
    let version = model.load().version().to_owned();
    let mut tally = Tally::default();
    let detector = Detector::new(geo, model, params);
    let sha = replay(path, detector, Labels::Unlabelled, |d, event, _| {
        let v = d.observe(event);
        tally.count(event, &v, &d.geo().load().db);
    })?;
    Ok(tally.finish(sha, version))
}

impl BacktestReport {
    /// Daily volumes, top reasons and the first revocations, as Markdown.
    pub fn table(&self, show: usize) -> String {
        let mut out = format!(
            "{} requests, {} tokens ({} refused by the gateway, not scored); model {}\n\n",
            self.requests, self.tokens, self.rejected, self.model_version
        );
        out.push_str("| day (UTC) | requests | tokens | alerts | revocations | revocations / 100k tokens |\n|---|---|---|---|---|---|\n");
        for d in &self.days {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.1} |\n",
                d.date,
                d.requests,
                d.tokens,
                d.alerts,
                d.revocations,
                d.revocations_per_100k_tokens
            ));
        }
        out.push_str("\n| reason | decisions |\n|---|---|\n");
        for (r, n) in self.top_reasons.iter().take(10) {
            out.push_str(&format!("| {r} | {n} |\n"));
        }
        if !self.would_revoke.is_empty() {
            out.push_str(&format!(
                "\nwould revoke {} tokens; the first {}:\n\n| at | token | subject | score | why |\n|---|---|---|---|---|\n",
                self.would_revoke.len(),
                show.min(self.would_revoke.len())
            ));
            for w in self.would_revoke.iter().take(show) {
                out.push_str(&format!(
                    "| {} | {} | {} | {:.3} | {} |\n",
                    w.at, w.token_id, w.sub, w.score, w.explanation
                ));
            }
        }
        out
    }
}
