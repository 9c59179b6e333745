//! The human-readable files of a search run (`frontier.svg`, `frontier.png`, `summary.md`),
//! rendered from the rows the search hands over after every iteration: the
//! [`Reporter`] that `lts search` gives the search.

use anyhow::Result;

use crate::search::outcome::{Reporter, RunReport};
use crate::search::quantized::QuantRow;
use crate::search::store;

/// Draws the frontier plot and writes `summary.md` of a search run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchFiles;

impl Reporter for SearchFiles {
    fn write(&self, run: &RunReport<'_>, warn: &dyn Fn(String)) -> Result<()> {
        let points: Vec<super::plot::PlotPoint> = run
            .all
            .iter()
            .map(|r| super::plot::PlotPoint {
                label: r.arch_id.clone(),
                decoder_params: r.decoder_params as f64,
                latency_ms: r.latency_median_ms,
                on_front: r.on_latency_frontier,
                feasible: r.feasible,
            })
            .collect();
        let w = &run.info.config.workload;
        let title = format!(
            "LTS frontier: {} space, {} ({})",
            run.info.config.space.name,
            run.info
                .device
                .cpu_brand
                .as_deref()
                .unwrap_or("this machine"),
            if run.info.runtime.is_empty() {
                "?"
            } else {
                &run.info.runtime
            }
        );
        let subtitle = format!(
            "{}, batch {} | {} candidates; line: params-latency frontier ({}); {} on the 3-objective frontier with memory | run {}",
            w.describe(),
            w.batch,
            run.all.len(),
            run.front.iter().filter(|r| r.on_latency_frontier).count(),
            run.front.len(),
            run.info.run_id
        );
        let png = run.dir.join(store::FRONTIER_PNG);
        let plotted = super::plot::frontier_plot(
            &points,
            &quant_series(run.quant),
            &title,
            &subtitle,
            &run.dir.join(store::FRONTIER_SVG),
            Some(&png),
        );
        if let Err(e) = &plotted {
            warn(format!("warning: could not draw the frontier plot: {e:#}"));
        }
        crate::util::write_atomic(
            &run.dir.join(store::SUMMARY_MD),
            super::markdown::summary(run.info, run.front, run.all, run.quant).as_bytes(),
        )
    }
}

/// The plot's quantized series: one per scheme, each variant linked to its fp32 point.
fn quant_series(rows: &[QuantRow]) -> Vec<super::plot::QuantSeries> {
    use super::plot::{QuantPoint, QuantSeries};
    let mut out: Vec<QuantSeries> = Vec::new();
    for r in rows {
        let p = QuantPoint {
            label: r.arch_id.clone(),
            decoder_params: r.decoder_params as f64,
            fp32_latency_ms: r.fp32_median_ms,
            latency_ms: r.latency_median_ms,
        };
        match out.iter_mut().find(|s| s.scheme == r.scheme) {
            Some(s) => s.points.push(p),
            None => out.push(QuantSeries {
                scheme: r.scheme.clone(),
                points: vec![p],
            }),
        }
    }
    out
}
