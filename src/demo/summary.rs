//! What the demo prints when it ends: what was caught, how fast, and the
//! metrics that show it.

use super::DemoSummary;
use crate::metrics::Metrics;

pub(super) fn print_summary(s: &DemoSummary, metrics: &Metrics) {
    let mut lat = s.latencies_ms.clone();
    lat.sort_unstable();
    let median = lat.get(lat.len() / 2).copied();
    println!("\n── summary ──────────────────────────────────────────────");
    println!("requests published        {}", s.events);
    println!(
        "requests scored           {}",
        metrics.events_consumed.get()
    );
    println!(
        "tokens / stolen           {} / {}",
        s.tokens, s.attacked_tokens
    );
    println!(
        "stolen tokens revoked     {} (the authorization server revoked {} tokens in all)",
        s.revoked_attacks, s.revocations_confirmed
    );
    println!("legitimate tokens flagged {}", s.flagged_legit);
    if let Some(m) = median {
        println!(
            "attack → revoked          median {m} ms, max {} ms",
            lat.last().copied().unwrap_or(0)
        );
    }
    println!("note: stolen tokens used only after the run's end, or whose thief never returned, stay unrevoked.");
}
