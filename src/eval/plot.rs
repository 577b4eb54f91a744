//! The report's pictures: tokenwatch's precision–recall curve with the
//! baseline as a point, and time-to-detect in attacker requests for both.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;

use super::report::EvalReport;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Embedded DejaVu Sans: no system fonts needed.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Writes `pr_curve.png` and `ttd_histogram.png` into `dir`.
pub fn write_plots(report: &EvalReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pr = dir.join("pr_curve.png");
    let ttd = dir.join("ttd_histogram.png");
    pr_curve(report, &pr).map_err(|e| format!("{}: {e}", pr.display()))?;
    ttd_histogram(report, &ttd).map_err(|e| format!("{}: {e}", ttd.display()))?;
    Ok(vec![pr, ttd])
}

fn pr_curve(report: &EvalReport, path: &Path) -> PlotResult {
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Token-level precision–recall", ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1.02, 0f64..1.02)?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .draw()?;
    // In threshold order, so the line follows the operating points.
    let points: Vec<(f64, f64)> = report.pr_curve().iter().map(|(r, p, _)| (*r, *p)).collect();
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(3)))?
        .label("tokenwatch (score thresholds)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    let b = &report.baseline;
    chart
        .draw_series(std::iter::once(Circle::new(
            (b.recall, b.precision),
            8,
            RED.filled(),
        )))?
        .label("baseline: >500 mph rule")
        .legend(|(x, y)| Circle::new((x + 10, y), 6, RED.filled()));
    let t = &report.tokenwatch;
    chart
        .draw_series(std::iter::once(Circle::new(
            (t.recall, t.precision),
            8,
            BLUE.filled(),
        )))?
        .label("tokenwatch at its revoke threshold")
        .legend(|(x, y)| Circle::new((x + 10, y), 6, BLUE.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn ttd_histogram(report: &EvalReport, path: &Path) -> PlotResult {
    const BINS: usize = 10;
    let bins = |s: &super::report::SystemReport| {
        let mut h = [0u32; BINS];
        for t in s.tokens.iter().filter(|t| t.detected()) {
            h[(t.attacker_requests_at_flag as usize).clamp(1, BINS) - 1] += 1;
        }
        h
    };
    let (tw, base) = (bins(&report.tokenwatch), bins(&report.baseline));
    let top = tw
        .iter()
        .chain(base.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Time to detect: attacker requests until the flag",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5f64..(BINS as f64 + 0.5), 0u32..(top + top / 10 + 1))?;
    chart
        .configure_mesh()
        .x_desc("attacker requests seen when flagged (10 = 10 or more)")
        .y_desc("stolen tokens detected")
        .x_labels(BINS)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let bar = |h: [u32; BINS], offset: f64, color: RGBColor| {
        h.into_iter().enumerate().map(move |(i, n)| {
            let x = i as f64 + 1.0 + offset;
            Rectangle::new([(x - 0.18, 0), (x + 0.18, n)], color.filled())
        })
    };
    chart
        .draw_series(bar(tw, -0.2, BLUE))?
        .label("tokenwatch")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.filled()));
    chart
        .draw_series(bar(base, 0.2, RED))?
        .label("baseline")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
