//! A ratio the shared host's noise cannot move. Criterion times each
//! function in its own phase of several seconds, and on this VM the speed
//! of a phase drifts by a quarter: a baseline measured in a fast phase and
//! a subject in a slow one gave ratios from 1.6 to 2.2 for the same code.
//! Here the baseline and the subject run in alternation, one whole pass
//! each, so a slow second slows both; the ratio of each pair is kept and
//! their spread printed after criterion's own figures.
//!
//! With them, the fastest pass of each, as a rate: noise only ever adds
//! time, so the fastest pass is the nearest this host gets to an
//! uncontended core, and it is what a per-core rate is quoted from.

use std::cell::RefCell;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;

/// Benchmarks `subject` as `name` in the group `group` names, timing
/// `baseline` between its passes. Each closure times one pass of
/// `elements` items itself (so that set-up stays out) and returns that time.
pub fn ratio(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    elements: usize,
    mut baseline: impl FnMut() -> Duration,
    mut subject: impl FnMut() -> Duration,
) {
    let ratios = RefCell::new(Vec::new());
    let fastest = RefCell::new((Duration::MAX, Duration::MAX));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = baseline();
                let took = subject();
                ratios
                    .borrow_mut()
                    .push(took.as_secs_f64() / base.as_secs_f64());
                let mut f = fastest.borrow_mut();
                *f = (f.0.min(base), f.1.min(took));
                total += took;
            }
            total
        })
    });
    let mut r = ratios.into_inner();
    if r.is_empty() {
        return; // filtered out
    }
    r.sort_by(f64::total_cmp);
    let at = |q: f64| r[((r.len() - 1) as f64 * q).round() as usize];
    let (base, took) = fastest.into_inner();
    let rate = |d: Duration| elements as f64 / d.as_secs_f64() / 1e3;
    println!(
        "{group}/{name}: paired ratio to the baseline, median {:.3}, middle 80% {:.3}..{:.3}, {} pairs; \
         fastest pass {:.0} k/s (baseline {:.0} k/s)",
        at(0.5),
        at(0.1),
        at(0.9),
        r.len(),
        rate(took),
        rate(base),
    );
}
