//! Token-level detection figures, per scenario, for tokenwatch and the
//! baseline rule, from one replay of a labelled file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::baseline::TravelRule;
use super::{replay, Labels, ReplayError};
use crate::detect::{Action, Detector, DetectorParams, ModelHandle};
use crate::geo::GeoHandle;
use crate::sim::Scenario;

/// What happened to one token under one system.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TokenOutcome {
    pub scenario: Option<Scenario>,
    /// The token's first request, ms.
    pub first_ms: i64,
    pub attacked: bool,
    pub stolen_at_ms: i64,
    /// First flag: time, and how many attacker requests had been seen.
    pub flagged_at_ms: Option<i64>,
    pub attacker_requests_at_flag: u32,
    pub attacker_requests: u32,
    /// Highest score over the attacker's requests (attacked tokens) or over
    /// all requests (legitimate ones).
    pub max_score: f32,
}

impl TokenOutcome {
    /// Caught: flagged on or after the attacker's first request.
    pub fn detected(&self) -> bool {
        self.attacked && self.flagged_at_ms.is_some() && self.attacker_requests_at_flag > 0
    }

    /// A flag that is not a detection: a legitimate token, or an attacked
    /// one flagged before the thief used it.
    pub fn false_flag(&self) -> bool {
        self.flagged_at_ms.is_some() && !self.detected()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScenarioMetrics {
    pub tokens: u64,
    pub flagged: u64,
    /// Attacked tokens: share detected.
    pub recall: Option<f64>,
    /// Legitimate tokens: flags per 100k tokens.
    pub false_flags_per_100k: Option<f64>,
    /// Attacker requests up to and including the one that was flagged.
    pub ttd_requests_median: Option<f64>,
    pub ttd_requests_p95: Option<f64>,
    /// Seconds from the theft to the flag.
    pub ttd_seconds_median: Option<f64>,
    pub ttd_seconds_p95: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SystemReport {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub false_flags_per_100k: f64,
    pub per_scenario: BTreeMap<String, ScenarioMetrics>,
    /// Counts of per-token max scores in 20 bins over [0, 1].
    pub score_histogram_legit: Vec<u64>,
    pub score_histogram_attacked: Vec<u64>,
    #[serde(skip)]
    pub tokens: Vec<TokenOutcome>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvalReport {
    pub data_sha256: String,
    /// Tokens first seen within this long of the file's start were replayed
    /// (the population learned from them) but are not counted.
    pub warmup_s: u64,
    pub model_version: String,
    pub requests: u64,
    pub legit_tokens: u64,
    pub attacked_tokens: u64,
    pub tokenwatch: SystemReport,
    pub baseline: SystemReport,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn summarize(name: &str, tokens: Vec<TokenOutcome>) -> SystemReport {
    let mut per: BTreeMap<String, Vec<&TokenOutcome>> = BTreeMap::new();
    for t in &tokens {
        let key = t.scenario.map_or("unlabelled", |s| s.as_str()).to_owned();
        per.entry(key).or_default().push(t);
    }
    let metrics = |ts: &[&TokenOutcome]| -> ScenarioMetrics {
        let attacked: Vec<&&TokenOutcome> = ts.iter().filter(|t| t.attacked).collect();
        let legit = ts.len() - attacked.len();
        let detected: Vec<&&TokenOutcome> =
            attacked.iter().copied().filter(|t| t.detected()).collect();
        let mut req: Vec<f64> = detected
            .iter()
            .map(|t| f64::from(t.attacker_requests_at_flag))
            .collect();
        let mut secs: Vec<f64> = detected
            .iter()
            .map(|t| (t.flagged_at_ms.unwrap_or(0) - t.stolen_at_ms).max(0) as f64 / 1000.0)
            .collect();
        req.sort_by(f64::total_cmp);
        secs.sort_by(f64::total_cmp);
        let false_flags = ts
            .iter()
            .filter(|t| !t.attacked && t.flagged_at_ms.is_some())
            .count();
        ScenarioMetrics {
            tokens: ts.len() as u64,
            flagged: ts.iter().filter(|t| t.flagged_at_ms.is_some()).count() as u64,
            recall: (!attacked.is_empty()).then(|| detected.len() as f64 / attacked.len() as f64),
            false_flags_per_100k: (legit > 0)
                .then(|| false_flags as f64 * 100_000.0 / legit as f64),
            ttd_requests_median: percentile(&req, 0.5),
            ttd_requests_p95: percentile(&req, 0.95),
            ttd_seconds_median: percentile(&secs, 0.5),
            ttd_seconds_p95: percentile(&secs, 0.95),
        }
    };
    let all: Vec<&TokenOutcome> = tokens.iter().collect();
    let overall = metrics(&all);
    let tp = tokens.iter().filter(|t| t.detected()).count() as f64;
    let fp = tokens.iter().filter(|t| t.false_flag()).count() as f64;
    let hist = |attacked: bool| {
        let mut h = vec![0u64; 20];
        for t in tokens.iter().filter(|t| t.attacked == attacked) {
            h[((t.max_score.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
        }
        h
    };
    SystemReport {
        name: name.to_owned(),
        precision: if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 },
        recall: overall.recall.unwrap_or(0.0),
        false_flags_per_100k: overall.false_flags_per_100k.unwrap_or(0.0),
        per_scenario: per.iter().map(|(k, v)| (k.clone(), metrics(v))).collect(),
        score_histogram_legit: hist(false),
        score_histogram_attacked: hist(true),
        tokens,
    }
}

fn observe(o: &mut TokenOutcome, label: &crate::sim::Label, ts_ms: i64, score: f32, flagged: bool) {
    if o.scenario.is_none() {
        o.first_ms = ts_ms;
    }
    o.scenario = Some(label.scenario);
    o.attacked = label.attacked;
    o.stolen_at_ms = label.stolen_at_ms;
    if label.attacker {
        o.attacker_requests += 1;
    }
    if !label.attacked || label.attacker {
        o.max_score = o.max_score.max(score);
    }
    if flagged && o.flagged_at_ms.is_none() {
        o.flagged_at_ms = Some(ts_ms);
        o.attacker_requests_at_flag = o.attacker_requests;
    }
}

/// Replays `path` through tokenwatch (flag = a revoke-level verdict) and the
/// baseline rule, in the same pass. Tokens first seen within `warmup` of the
/// start are replayed but not counted.
pub fn evaluate(
    path: &std::path::Path,
    geo: Arc<GeoHandle>,
    model: ModelHandle,
    params: DetectorParams,
    warmup: std::time::Duration,
    labels: Labels<'_>,
) -> Result<EvalReport, ReplayError> {
    let model_version = model.load().version().to_owned();
    let mut tw: HashMap<u128, TokenOutcome> = HashMap::new();
    let mut base: HashMap<u128, TokenOutcome> = HashMap::new();
    let mut rule = TravelRule::default();
    let mut requests = 0u64;
    let mut start_ms = None;
    let sha = replay(
        path,
        Detector::new(geo, model, params),
        labels,
        |d, event, label| {
            requests += 1;
            start_ms.get_or_insert(event.ts_ms);
            let v = d.observe(event);
            observe(
                tw.entry(v.key).or_default(),
                &label,
                event.ts_ms,
                v.score.score,
                v.action == Action::Revoke,
            );
            let fired = rule.fires(v.key, event.ts_ms, &v.lookup);
            observe(
                base.entry(v.key).or_default(),
                &label,
                event.ts_ms,
                f32::from(u8::from(fired)),
                fired,
            );
        },
    )?;
    let counted_from = start_ms.unwrap_or(0) + warmup.as_millis() as i64;
    let sorted = |m: HashMap<u128, TokenOutcome>| {
        // A token stolen but never used by the thief inside the file (the
        // theft came after its end) is neither a detection nor a miss.
        let mut v: Vec<(u128, TokenOutcome)> = m
            .into_iter()
            .filter(|(_, t)| t.first_ms >= counted_from && (!t.attacked || t.attacker_requests > 0))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, t)| t).collect::<Vec<_>>()
    };
    let tokenwatch = summarize("tokenwatch", sorted(tw));
    let baseline = summarize(
        "baseline: >500 mph between consecutive requests",
        sorted(base),
    );
    let attacked = tokenwatch.tokens.iter().filter(|t| t.attacked).count() as u64;
    Ok(EvalReport {
        data_sha256: sha,
        warmup_s: warmup.as_secs(),
        model_version,
        requests,
        legit_tokens: tokenwatch.tokens.len() as u64 - attacked,
        attacked_tokens: attacked,
        tokenwatch,
        baseline,
    })
}

impl EvalReport {
    /// The per-scenario table as Markdown, tokenwatch beside the baseline.
    pub fn table(&self) -> String {
        let f =
            |x: Option<f64>, digits: usize| x.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
        let mut out = String::new();
        out.push_str(&format!(
            "{} requests, {} legitimate and {} stolen tokens counted (warm-up {} s); model {}\n\n",
            self.requests,
            self.legit_tokens,
            self.attacked_tokens,
            self.warmup_s,
            self.model_version
        ));
        out.push_str("| scenario | tokens | tokenwatch recall | baseline recall | tokenwatch false flags /100k | baseline false flags /100k | tokenwatch TTD requests (median / p95) | tokenwatch TTD s (median / p95) |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for (name, m) in &self.tokenwatch.per_scenario {
            let b = self
                .baseline
                .per_scenario
                .get(name)
                .cloned()
                .unwrap_or_default();
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} / {} | {} / {} |\n",
                m.tokens,
                f(m.recall, 3),
                f(b.recall, 3),
                f(m.false_flags_per_100k, 0),
                f(b.false_flags_per_100k, 0),
                f(m.ttd_requests_median, 0),
                f(m.ttd_requests_p95, 0),
                f(m.ttd_seconds_median, 0),
                f(m.ttd_seconds_p95, 0),
            ));
        }
        for s in [&self.tokenwatch, &self.baseline] {
            out.push_str(&format!(
                "\n**{}**: precision {:.3}, recall {:.3}, {:.0} false flags per 100k legitimate tokens",
                s.name, s.precision, s.recall, s.false_flags_per_100k
            ));
        }
        out.push('\n');
        out
    }

    /// Precision–recall points of tokenwatch over score thresholds.
    pub fn pr_curve(&self) -> Vec<(f64, f64, f32)> {
        let tokens = &self.tokenwatch.tokens;
        let attacked = tokens.iter().filter(|t| t.attacked).count().max(1) as f64;
        let mut thresholds: Vec<f32> = tokens.iter().map(|t| t.max_score).collect();
        thresholds.sort_by(f32::total_cmp);
        thresholds.dedup();
        thresholds
            .iter()
            .map(|&th| {
                let tp = tokens
                    .iter()
                    .filter(|t| t.attacked && t.max_score >= th)
                    .count() as f64;
                let fp = tokens
                    .iter()
                    .filter(|t| !t.attacked && t.max_score >= th)
                    .count() as f64;
                let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 1.0 };
                (tp / attacked, precision, th)
            })
            .collect()
    }
}

/// One line per model, and the baseline once: the evidence for choosing a
/// model family.
pub fn comparison(reports: &[(String, crate::model::Family, EvalReport)]) -> String {
    let ttd = |s: &SystemReport| {
        let mut secs: Vec<f64> = s
            .tokens
            .iter()
            .filter(|t| t.detected())
            .map(|t| (t.flagged_at_ms.unwrap_or(0) - t.stolen_at_ms).max(0) as f64 / 1000.0)
            .collect();
        secs.sort_by(f64::total_cmp);
        percentile(&secs, 0.5).map_or("–".to_owned(), |v| format!("{v:.0}"))
    };
    let mut out = String::from(
        "| model | family | precision | recall | false flags / 100k legit tokens | TTD s (median) |\n|---|---|---|---|---|---|\n",
    );
    for (name, family, r) in reports {
        let s = &r.tokenwatch;
        out.push_str(&format!(
            "| {name} | {} | {:.3} | {:.3} | {:.0} | {} |\n",
            family.as_str(),
            s.precision,
            s.recall,
            s.false_flags_per_100k,
            ttd(s)
        ));
    }
    if let Some((_, _, r)) = reports.first() {
        let b = &r.baseline;
        out.push_str(&format!(
            "| {} | rule | {:.3} | {:.3} | {:.0} | {} |\n",
            b.name,
            b.precision,
            b.recall,
            b.false_flags_per_100k,
            ttd(b)
        ));
    }
    out
}
