//! The frontier plot: decoder parameters (x, millions) against measured latency (y, ms) for every
//! candidate of a search, with the Pareto front highlighted, as in the 2-D "params vs latency"
//! plots of the LiteTransformerSearch paper code (microsoft/archai `neurips-lts`,
//! `nas_utils/plotter.py::plot_2d_pareto`, which used plotly/HTML).
//!
//! Look: dominated feasible candidates are small light-grey dots, infeasible ones (a constraint
//! was violated) small red-grey crosses, the front large blue dots joined by the attainment
//! staircase (for more parameters you must accept at least this latency) and labelled with their
//! architecture ids when there are at most [`MAX_FRONT_LABELS`] of them. Title and subtitle sit
//! in a header; the legend (with counts) sits in a footer strip under the chart, so it can never
//! cover a point. An axis whose data span more than a factor [`LOG_SCALE_RATIO`] is drawn on a
//! log scale (the axis label says so). Points without finite numbers (and, on a log axis,
//! non-positive ones) are not drawn; the legend counts them.
//!
//! Quantized variants (optional, [`QuantSeries`]): each scheme (say `int8-dynamic`) is one
//! series with its own colour and filled marker (triangle, diamond, square, cycling; colours
//! from a fixed palette of five), drawn over the grey dots and under the blue front. A quantized
//! variant has the same decoder parameters as its fp32 member (the proxy does not change with
//! quantization), so it sits straight above or below it: a thin line in a light tint of the series
//! colour joins it to its fp32 point (drawn at the fp32 latency measured interleaved with the
//! variant, which can differ slightly from the blue dot's). The series' own Pareto front is a
//! dashed staircase in its colour. Its legend entries ("int8-dynamic (6)") fill extra footer
//! rows, so the chart gets shorter by one row per five or so series. The axes' ranges and the
//! log-scale decision include the quantized points and their fp32 link ends; the drawing lives
//! in the child module `quant` (`plot_quant.rs`).
//!
//! Decisions (fonts and formats):
//! - One drawing path: the chart is drawn once, as SVG, with `plotters` 0.3 (no default
//!   features; only `svg_backend`, `line_series`, `point_series`). The PNG is that same SVG
//!   rasterised by `resvg` (default features off, only `text`), so the two files always agree.
//! - SVG text is plain `<text font-family="sans-serif">` elements; any viewer renders it with its
//!   own fonts, nothing is needed at run time. (plotters is built without its `ttf`/`ab_glyph`
//!   font features, so it measures text with a simple width estimate; every label that must line
//!   up is anchored (`text-anchor`), so the estimate only affects spacing.)
//! - PNG text: `resvg` shapes and rasterises text itself, from a font database that holds
//!   exactly one font, Noto Sans Regular 1.04 (Apache-2.0, 203 KB, `assets/fonts/`, licence
//!   beside it) embedded with `include_bytes!` and mapped to the generic `sans-serif` family.
//!   The `system-fonts` feature is off: no fontconfig, no `/usr/share/fonts`, identical output on
//!   a bare Debian box and on a headless Raspberry Pi.
//! - Rejected: plotters' own bitmap backend with its `ab_glyph` feature. It works without system
//!   fonts, but its glyph placement ignores side bearings and rounds every advance, so labels
//!   came out visibly mis-spaced ("can didates", "192| 120"); plotters' `ttf` feature needs
//!   fontconfig and system fonts at run time.
//! - Both files are written atomically with [`crate::util::write_atomic`]. The SVG is written
//!   first; any PNG failure (including a panic inside the rasteriser, caught here) comes back as
//!   an `Err` the caller can turn into a warning, with the SVG already in place.
//! - Empty input gives a valid plot (axes 0..1, "no candidates to plot" in the middle), not an
//!   error, so a run that measured nothing still leaves a plot next to its reports.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use resvg::{tiny_skia, usvg};

#[path = "plot_quant.rs"]
mod quant;

/// One candidate on the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPoint {
    /// Architecture id, printed next to front members.
    pub label: String,
    /// Decoder (non-embedding) parameter count, the LTS perplexity proxy (plain count, not
    /// millions).
    pub decoder_params: f64,
    /// Measured latency in milliseconds.
    pub latency_ms: f64,
    /// Member of the Pareto front.
    pub on_front: bool,
    /// Meets every constraint of the search.
    pub feasible: bool,
}

/// One quantized variant of a frontier member: same decoder params (the proxy does not change
/// with quantization), its own measured latency, linked on the plot to its fp32 point.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantPoint {
    /// Architecture id of the fp32 member.
    pub label: String,
    /// Decoder (non-embedding) parameter count, as for [`PlotPoint::decoder_params`].
    pub decoder_params: f64,
    /// Latency in ms of the fp32 point it links to (as measured interleaved with it).
    pub fp32_latency_ms: f64,
    /// Latency in ms of the quantized variant.
    pub latency_ms: f64,
}

/// The quantized variants of one scheme (e.g. "int8-dynamic"), drawn as one series.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantSeries {
    /// Scheme name, shown in the legend.
    pub scheme: String,
    /// Its variants, one per quantized frontier member.
    pub points: Vec<QuantPoint>,
}

/// Size in pixels of the SVG canvas and of the PNG.
pub const PNG_SIZE: (u32, u32) = (1200, 800);

/// An axis whose positive data span more than this factor is drawn on a log scale.
pub const LOG_SCALE_RATIO: f64 = 20.0;

/// Front members are labelled with their ids only when there are at most this many.
pub const MAX_FRONT_LABELS: usize = 16;

/// Noto Sans Regular 1.04, Apache-2.0 (see `assets/fonts/`), used for the PNG's text.
const EMBEDDED_FONT: &[u8] = include_bytes!("../../assets/fonts/NotoSans-Regular.ttf");

const FONT: &str = "sans-serif";
const HEADER_H: u32 = 92;
const FOOTER_H: u32 = 52;
const FRONT_COLOR: RGBColor = RGBColor(0, 95, 175);
const DOMINATED_COLOR: RGBColor = RGBColor(185, 185, 185);
const INFEASIBLE_COLOR: RGBColor = RGBColor(215, 140, 130);
const TEXT_COLOR: RGBColor = RGBColor(30, 30, 30);
const SUBTLE_TEXT: RGBColor = RGBColor(95, 95, 95);
const GRID_COLOR: RGBColor = RGBColor(228, 228, 228);

/// Draws the frontier plot (decoder params in millions vs latency in ms) and writes it as SVG
/// to `svg` and, when `png` is given, as a [`PNG_SIZE`] PNG to `png`; see the module doc for
/// the look, the font route and the empty-input behaviour. `quant` adds one series per
/// quantization scheme (empty: the plain plot). Writes are atomic. The SVG is written before
/// the PNG is attempted, so a PNG error leaves a complete SVG behind.
pub fn frontier_plot(
    points: &[PlotPoint],
    quant: &[QuantSeries],
    title: &str,
    subtitle: &str,
    svg: &Path,
    png: Option<&Path>,
) -> Result<()> {
    let svg_text = render_svg(points, quant, title, subtitle, PNG_SIZE)?;
    crate::util::write_atomic(svg, svg_text.as_bytes())
        .with_context(|| format!("cannot write {}", svg.display()))?;
    if let Some(png) = png {
        let bytes = svg_to_png(&svg_text, PNG_SIZE).context("cannot render the PNG plot")?;
        crate::util::write_atomic(png, &bytes)
            .with_context(|| format!("cannot write {}", png.display()))?;
    }
    Ok(())
}

/// The plot as an SVG document.
fn render_svg(
    points: &[PlotPoint],
    quant: &[QuantSeries],
    title: &str,
    subtitle: &str,
    size: (u32, u32),
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        render(&root, points, quant, title, subtitle)
            .map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("cannot finish the SVG: {e}"))?;
    }
    Ok(out)
}

/// usvg options whose font database holds only the embedded font, as every generic family.
fn usvg_options() -> Result<usvg::Options<'static>> {
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_font_data(EMBEDDED_FONT.to_vec());
    let family = db
        .faces()
        .next()
        .and_then(|f| f.families.first())
        .map(|(name, _)| name.clone())
        .ok_or_else(|| anyhow!("the embedded font could not be loaded"))?;
    db.set_sans_serif_family(family.clone());
    db.set_serif_family(family.clone());
    db.set_monospace_family(family.clone());
    opt.font_family = family;
    Ok(opt)
}

/// Rasterises an SVG document to PNG bytes of exactly `size`, on white, with the embedded
/// font. Panics inside the rasteriser are caught and returned as errors.
fn svg_to_png(svg: &str, size: (u32, u32)) -> Result<Vec<u8>> {
    let opt = usvg_options()?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<u8>> {
        let tree = usvg::Tree::from_str(svg, &opt).context("cannot parse the SVG")?;
        let mut pixmap = tiny_skia::Pixmap::new(size.0, size.1)
            .ok_or_else(|| anyhow!("invalid PNG size {}x{}", size.0, size.1))?;
        pixmap.fill(tiny_skia::Color::WHITE);
        let t = tree.size();
        let transform =
            tiny_skia::Transform::from_scale(size.0 as f32 / t.width(), size.1 as f32 / t.height());
        resvg::render(&tree, transform, &mut pixmap.as_mut());
        pixmap
            .encode_png()
            .map_err(|e| anyhow!("cannot encode the PNG: {e}"))
    }));
    match outcome {
        Ok(r) => r,
        Err(_) => Err(anyhow!("the SVG rasteriser panicked")),
    }
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// How one axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    /// Range for finite values `vs` (already in plot units). Linear axes start at 0 when all
    /// values are non-negative (a latency or a parameter count), with 6% headroom.
    fn fit(vs: &[f64]) -> Axis {
        let finite: Vec<f64> = vs.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return Axis {
                lo: 0.0,
                hi: 1.0,
                log: false,
            };
        }
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if min > 0.0 && max / min > LOG_SCALE_RATIO {
            return Axis {
                lo: min / 1.2,
                hi: max * 1.2,
                log: true,
            };
        }
        let (lo, hi) = if min >= 0.0 {
            (0.0, max)
        } else {
            (min - 0.06 * (max - min), max)
        };
        let span = hi - lo;
        let hi = if span > 0.0 {
            hi + 0.06 * span
        } else if hi != 0.0 {
            hi + 0.5 * hi.abs()
        } else {
            1.0
        };
        Axis { lo, hi, log: false }
    }

    fn contains(&self, v: f64) -> bool {
        v.is_finite() && (!self.log || v > 0.0)
    }
}

/// Tick values for a log axis over `[lo, hi]` (0 < lo < hi): 1-2-5 x 10^k, thinned to
/// powers of ten when that would give more than 12 ticks.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut k = lo.log10().floor() as i32;
    while 10f64.powi(k) <= hi * (1.0 + 1e-12) && ticks.len() < 1000 {
        for m in [1.0, 2.0, 5.0] {
            // Decimal-exact values (0.2, not 0.20000000000000004) for clean labels.
            let v = if k >= 0 {
                m * 10f64.powi(k)
            } else {
                m / 10f64.powi(-k)
            };
            if v >= lo * (1.0 - 1e-12) && v <= hi * (1.0 + 1e-12) {
                ticks.push(v);
            }
        }
        k += 1;
    }
    if ticks.len() > 12 {
        ticks.retain(|v| {
            let l = v.log10();
            (l - l.round()).abs() < 1e-9
        });
    }
    ticks
}

/// Tick label: at most 3 significant digits, no trailing zeros ("0.25", "1", "12.5", "300").
fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Shrinks `text` from font size `size` down to `min_size` until it fits `max_w` pixels, then
/// cuts it with an ellipsis. Width comes from the backend's text estimate (a slight
/// overestimate for proportional fonts, so fitted text stays inside).
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    min_size: f64,
    max_w: u32,
) -> Result<(String, f64), DrawingAreaErrorKind<DB::ErrorType>> {
    let width = |t: &str, sz: f64| area.estimate_text_size(t, &(FONT, sz).into_text_style(area));
    let mut sz = size;
    while sz > min_size && width(text, sz)?.0 > max_w {
        sz -= 1.0;
    }
    if width(text, sz)?.0 <= max_w {
        return Ok((text.to_string(), sz));
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate: String = chars[..mid].iter().chain(['…'].iter()).collect();
        if width(&candidate, sz)?.0 <= max_w {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok((chars[..lo].iter().chain(['…'].iter()).collect(), sz))
}

/// Truncates an id for the plot.
fn short_label(s: &str) -> String {
    const MAX: usize = 14;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX - 1).collect();
        t.push('…');
        t
    }
}

/// Everything the chart needs, in plot units (x in millions of parameters, y in ms).
struct Prepared {
    front: Vec<(f64, f64, String)>,
    dominated: Vec<(f64, f64)>,
    infeasible: Vec<(f64, f64)>,
    not_drawn: usize,
    /// The quantized series, in input order.
    quant: Vec<quant::Series>,
    x: Axis,
    y: Axis,
}

fn prepare(points: &[PlotPoint], quant_series: &[QuantSeries]) -> Prepared {
    let xs: Vec<f64> = points.iter().map(|p| p.decoder_params / 1e6).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.latency_ms).collect();
    let both_finite: Vec<usize> = (0..points.len())
        .filter(|&i| xs[i].is_finite() && ys[i].is_finite())
        .collect();
    let mut fit_x: Vec<f64> = both_finite.iter().map(|&i| xs[i]).collect();
    let mut fit_y: Vec<f64> = both_finite.iter().map(|&i| ys[i]).collect();
    quant::axis_values(quant_series, &mut fit_x, &mut fit_y);
    let x = Axis::fit(&fit_x);
    let y = Axis::fit(&fit_y);
    let mut out = Prepared {
        front: Vec::new(),
        dominated: Vec::new(),
        infeasible: Vec::new(),
        not_drawn: 0,
        quant: quant::prepare(quant_series, x, y),
        x,
        y,
    };
    for (i, p) in points.iter().enumerate() {
        let (px, py) = (xs[i], ys[i]);
        if !(x.contains(px) && y.contains(py)) {
            out.not_drawn += 1;
        } else if p.on_front {
            out.front.push((px, py, short_label(&p.label)));
        } else if !p.feasible {
            out.infeasible.push((px, py));
        } else {
            out.dominated.push((px, py));
        }
    }
    out.front
        .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    out
}

/// Attainment staircase through the front (sorted by params): from each member go up to the
/// next member's latency, then right to it.
fn staircase(front: &[(f64, f64, String)]) -> Vec<(f64, f64)> {
    let mut path = Vec::with_capacity(front.len() * 2);
    for (k, (x, y, _)) in front.iter().enumerate() {
        if k > 0 {
            let prev_x = front[k - 1].0;
            path.push((prev_x, *y));
        }
        path.push((*x, *y));
    }
    path
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[PlotPoint],
    quant_series: &[QuantSeries],
    title: &str,
    subtitle: &str,
) -> DrawResult<DB> {
    let prep = prepare(points, quant_series);
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let quant_legend = quant::legend_layout(root, &prep.quant)?;
    let footer_h = FOOTER_H + quant_legend.extra_height();
    let (header, rest) = root.split_vertically(HEADER_H);
    let (chart_area, footer) = rest.split_vertically(h.saturating_sub(HEADER_H + footer_h));

    let max_w = w.saturating_sub(56);
    let (title, title_size) = fit_text(&header, title, 30.0, 22.0, max_w)?;
    header.draw(&Text::new(
        title,
        (28, 18),
        (FONT, title_size).into_font().color(&TEXT_COLOR),
    ))?;
    let (subtitle, subtitle_size) = fit_text(&header, subtitle, 19.0, 15.0, max_w)?;
    header.draw(&Text::new(
        subtitle,
        (28, 58),
        (FONT, subtitle_size).into_font().color(&SUBTLE_TEXT),
    ))?;

    let x_desc = format!(
        "decoder parameters (millions){}",
        if prep.x.log { ", log scale" } else { "" }
    );
    let y_desc = format!(
        "latency (ms){}",
        if prep.y.log { ", log scale" } else { "" }
    );
    match (prep.x.log, prep.y.log) {
        (false, false) => draw_chart(
            &chart_area,
            prep.x.lo..prep.x.hi,
            prep.y.lo..prep.y.hi,
            &prep,
            &x_desc,
            &y_desc,
        )?,
        (true, false) => draw_chart(
            &chart_area,
            (prep.x.lo..prep.x.hi)
                .log_scale()
                .with_key_points(log_ticks(prep.x.lo, prep.x.hi)),
            prep.y.lo..prep.y.hi,
            &prep,
            &x_desc,
            &y_desc,
        )?,
        (false, true) => draw_chart(
            &chart_area,
            prep.x.lo..prep.x.hi,
            (prep.y.lo..prep.y.hi)
                .log_scale()
                .with_key_points(log_ticks(prep.y.lo, prep.y.hi)),
            &prep,
            &x_desc,
            &y_desc,
        )?,
        (true, true) => draw_chart(
            &chart_area,
            (prep.x.lo..prep.x.hi)
                .log_scale()
                .with_key_points(log_ticks(prep.x.lo, prep.x.hi)),
            (prep.y.lo..prep.y.hi)
                .log_scale()
                .with_key_points(log_ticks(prep.y.lo, prep.y.hi)),
            &prep,
            &x_desc,
            &y_desc,
        )?,
    }

    if points.is_empty() {
        chart_area.draw(&Text::new(
            "no candidates to plot".to_string(),
            (w as i32 / 2 - 110, (h - HEADER_H - footer_h) as i32 / 2),
            (FONT, 24).into_font().color(&SUBTLE_TEXT),
        ))?;
    }

    draw_legend(&footer, &prep)?;
    quant::draw_legend(&footer, &prep.quant, &quant_legend)
}

fn draw_chart<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    x_spec: X,
    y_spec: Y,
    prep: &Prepared,
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin_left(16)
        .margin_right(36)
        .margin_top(8)
        .margin_bottom(4)
        .x_label_area_size(62)
        .y_label_area_size(84)
        .build_cartesian_2d(x_spec, y_spec)?;

    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID_COLOR.stroke_width(1))
        .axis_style(SUBTLE_TEXT.stroke_width(1))
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .label_style((FONT, 17).into_font().color(&TEXT_COLOR))
        .axis_desc_style((FONT, 20).into_font().color(&TEXT_COLOR))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;

    // Background first.
    chart.draw_series(
        prep.dominated
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 3, DOMINATED_COLOR.filled())),
    )?;
    chart.draw_series(
        prep.infeasible
            .iter()
            .map(|&(x, y)| Cross::new((x, y), 4, INFEASIBLE_COLOR.stroke_width(2))),
    )?;
    // The quantized series over the grey points, under the front and its labels.
    quant::draw_series(&mut chart, &prep.quant)?;
    // Front labels next (on a light halo, over the grey points), then the staircase and the
    // front markers on top, so nothing ever hides the front.
    if prep.front.len() <= MAX_FRONT_LABELS {
        let area = chart.plotting_area().strip_coord_spec();
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let (w, h) = area.dim_in_pixel();
        let style = (FONT, 14).into_font().color(&FRONT_COLOR);
        let markers: Vec<(i32, i32)> = prep
            .front
            .iter()
            .map(|(x, y, _)| {
                let (px, py) = chart.backend_coord(&(*x, *y));
                (px - xr.start, py - yr.start)
            })
            .collect();
        let mut sizes = Vec::with_capacity(markers.len());
        for (_, _, label) in &prep.front {
            let (tw, th) = area.estimate_text_size(label, &style)?;
            sizes.push((tw as i32, th as i32));
        }
        let (x0, y0) = (xr.start, yr.start);
        let avoid = quant::pixel_boxes(&prep.quant, |x, y| {
            let (px, py) = chart.backend_coord(&(x, y));
            (px - x0, py - y0)
        });
        let spots = place_labels(&markers, &sizes, &avoid, (w as i32, h as i32));
        for (((_, _, label), (x, y)), (tw, th)) in prep.front.iter().zip(spots).zip(sizes) {
            area.draw(&Rectangle::new(
                [(x - 2, y), (x + tw + 2, y + th)],
                WHITE.mix(0.8).filled(),
            ))?;
            area.draw(&Text::new(label.clone(), (x, y), style.clone()))?;
        }
    }
    if prep.front.len() > 1 {
        chart.draw_series(LineSeries::new(
            staircase(&prep.front),
            FRONT_COLOR.mix(0.75).stroke_width(2),
        ))?;
    }
    chart.draw_series(prep.front.iter().map(|(x, y, _)| {
        EmptyElement::at((*x, *y))
            + Circle::new((0, 0), 7, WHITE.filled())
            + Circle::new((0, 0), 6, FRONT_COLOR.filled())
    }))?;
    Ok(())
}

/// Axis-aligned box `(left, top, right, bottom)` in pixels.
type PxBox = (i32, i32, i32, i32);

fn overlap(a: PxBox, b: PxBox) -> i64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0) as i64;
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0) as i64;
    w * h
}

/// Top-left corners for the front labels (`markers` and label `sizes` in plotting-area pixels,
/// `avoid` more boxes to keep clear (the quantized series), `bounds` the area's size). Greedy,
/// in order of parameters: each label takes the first candidate spot around its marker that
/// stays inside the plot and touches no marker, no part of the staircase, nothing in `avoid`
/// and no label placed before it, else the spot with the least overlap. Spots below
/// and right of a marker come first: that side of the front's staircase is empty by
/// construction.
fn place_labels(
    markers: &[(i32, i32)],
    sizes: &[(i32, i32)],
    avoid: &[PxBox],
    bounds: (i32, i32),
) -> Vec<(i32, i32)> {
    const GAP: i32 = 9;
    const MARKER: i32 = 8;
    let mut obstacles: Vec<PxBox> = markers
        .iter()
        .map(|&(x, y)| (x - MARKER, y - MARKER, x + MARKER, y + MARKER))
        .collect();
    // The staircase: up from the previous marker, then right to this one (2 px thick).
    for k in 1..markers.len() {
        let ((ax, ay), (bx, by)) = (markers[k - 1], markers[k]);
        obstacles.push((ax - 1, ay.min(by), ax + 1, ay.max(by)));
        obstacles.push((ax.min(bx), by - 1, ax.max(bx), by + 1));
    }
    obstacles.extend_from_slice(avoid);
    let mut placed: Vec<PxBox> = Vec::with_capacity(markers.len());
    let mut out = Vec::with_capacity(markers.len());
    for (&(px, py), &(w, h)) in markers.iter().zip(sizes) {
        let candidates = [
            (px + GAP, py + 2),             // below right
            (px + GAP + 2, py - h / 2),     // right
            (px - w / 2, py + GAP + 2),     // below
            (px - GAP - w, py + 2),         // below left
            (px - GAP - 2 - w, py - h / 2), // left
            (px + GAP, py + GAP + h / 2),   // further below right
            (px - GAP - w, py - h - 2),     // above left
            (px + GAP, py - h - 2),         // above right
            (px - w / 2, py - GAP - 2 - h), // above
        ];
        let mut best: Option<((i32, i32), i64)> = None;
        for &(x, y) in &candidates {
            let b = (x, y, x + w, y + h);
            let outside = (b.0 < 0 || b.1 < 0 || b.2 > bounds.0 || b.3 > bounds.1) as i64;
            let hits: i64 = obstacles
                .iter()
                .chain(placed.iter())
                .map(|&o| overlap(b, o))
                .sum();
            let cost = outside * 1_000_000_000 + hits;
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some(((x, y), cost));
            }
            if cost == 0 {
                break;
            }
        }
        let (spot, _) = best.unwrap_or(((px + GAP, py + 2), 0));
        placed.push((spot.0, spot.1, spot.0 + w, spot.1 + h));
        out.push(spot);
    }
    out
}

/// Legend row in the footer, with counts; markers match the chart's.
fn draw_legend<DB: DrawingBackend>(
    footer: &DrawingArea<DB, Shift>,
    prep: &Prepared,
) -> DrawResult<DB> {
    let font = (FONT, 17).into_font().color(&TEXT_COLOR);
    let y = 22;
    let mut x = 110;
    let mut entries: Vec<(u8, String)> = vec![
        (0, format!("Pareto front ({})", prep.front.len())),
        (1, format!("dominated ({})", prep.dominated.len())),
        (2, format!("infeasible ({})", prep.infeasible.len())),
    ];
    if prep.not_drawn > 0 {
        entries.push((
            3,
            format!("{} without usable numbers, not drawn", prep.not_drawn),
        ));
    }
    let hint = "better: right (more parameters) and down (faster)";
    let hint_font = (FONT, 16).into_font().color(&SUBTLE_TEXT);
    let (fw, _) = footer.dim_in_pixel();
    let (hw, _) = footer.estimate_text_size(hint, &hint_font)?;
    footer.draw(&Text::new(
        hint,
        (fw as i32 - hw as i32 - 36, y - 9),
        hint_font,
    ))?;
    for (kind, text) in entries {
        match kind {
            0 => {
                footer.draw(&PathElement::new(
                    vec![(x - 14, y), (x + 14, y)],
                    FRONT_COLOR.mix(0.75).stroke_width(2),
                ))?;
                footer.draw(&Circle::new((x, y), 6, FRONT_COLOR.filled()))?;
            }
            1 => footer.draw(&Circle::new((x, y), 3, DOMINATED_COLOR.filled()))?,
            2 => footer.draw(&Cross::new((x, y), 4, INFEASIBLE_COLOR.stroke_width(2)))?,
            _ => {}
        }
        let tx = if kind == 3 { x - 14 } else { x + 22 };
        footer.draw(&Text::new(text.clone(), (tx, y - 10), font.clone()))?;
        let (tw, _) = footer.estimate_text_size(&text, &font)?;
        x = tx + tw as i32 + 56;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(label: &str, params: f64, lat: f64, front: bool, feasible: bool) -> PlotPoint {
        PlotPoint {
            label: label.into(),
            decoder_params: params,
            latency_ms: lat,
            on_front: front,
            feasible,
        }
    }

    fn sample() -> Vec<PlotPoint> {
        vec![
            pt("a", 1.0e6, 2.0, true, true),
            pt("b", 3.0e6, 5.0, true, true),
            pt("c", 2.0e6, 8.0, false, true),
            pt("d", 4.0e6, 9.0, false, false),
            pt("e", 0.5e6, 6.0, false, true),
        ]
    }

    #[test]
    fn svg_has_title_axis_labels_and_one_marker_per_point() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("f.svg");
        frontier_plot(&sample(), &[], "My <title> & co", "device X", &svg, None).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.starts_with("<svg"));
        assert!(s.contains("My &lt;title&gt; &amp; co"));
        assert!(s.contains("device X"));
        assert!(s.contains("decoder parameters (millions)"));
        assert!(s.contains("latency (ms)"));
        // Circles: 3 feasible dominated/front points are drawn as one circle each, front
        // members as two (white halo + dot); legend: 2 circles. 4 feasible points -> 2 front * 2
        // + 2 dominated + 2 legend = 8.
        assert_eq!(s.matches("<circle").count(), 8);
        // The infeasible point is a cross (two lines); the legend cross is another two.
        assert!(s.matches("<line").count() >= 4);
        // Front labels.
        assert!(s.contains(">\na\n") || s.contains(">a\n") || s.contains("\na\n"));
        // Only the SVG and no temporary file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn png_has_signature_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("f.svg");
        let png = dir.path().join("sub").join("f.png");
        frontier_plot(&sample(), &[], "t", "s", &svg, Some(&png)).unwrap();
        let b = std::fs::read(&png).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height big-endian at bytes 16..24.
        let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
        assert_eq!((w, h), PNG_SIZE);
        assert_eq!(std::fs::read_dir(png.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn empty_input_gives_a_valid_plot() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("e.svg");
        let png = dir.path().join("e.png");
        frontier_plot(&[], &[], "empty", "nothing", &svg, Some(&png)).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("no candidates to plot"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn identical_params_and_odd_values_do_not_crash() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("i.svg");
        let png = dir.path().join("i.png");
        let pts = vec![
            pt("a", 2.0e6, 3.0, true, true),
            pt("b", 2.0e6, 3.0, true, true),
            pt("c", 2.0e6, 4.0, false, true),
        ];
        frontier_plot(&pts, &[], "t", "s", &svg, Some(&png)).unwrap();
        // A single point, zero values, NaN and infinities.
        let pts = vec![
            pt("z", 0.0, 0.0, true, true),
            pt("n", f64::NAN, 1.0, false, true),
            pt("i", 1.0e6, f64::INFINITY, false, false),
        ];
        frontier_plot(&pts, &[], "t", "s", &svg, Some(&png)).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("2 without usable numbers, not drawn"));
        // A title far too long for the canvas is shrunk and cut, not overflowing.
        let long = "LTS frontier: ".to_string() + &"very long device name ".repeat(20);
        frontier_plot(&pts, &[], &long, &long, &svg, Some(&png)).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("LTS frontier: very long") && s.contains('…'));
        frontier_plot(&pts[..1], &[], "t", "s", &svg, None).unwrap();
    }

    #[test]
    fn png_error_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("f.svg");
        // The PNG's parent is a file: cannot create the directory.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let png = blocker.join("f.png");
        let err = frontier_plot(&sample(), &[], "t", "s", &svg, Some(&png)).unwrap_err();
        assert!(format!("{err:#}").contains("f.png"), "{err:#}");
        assert!(svg.exists(), "the SVG is written before the PNG is tried");
    }

    #[test]
    fn embedded_font_renders_text_without_system_fonts() {
        // The font database holds only the embedded font; text in any generic family resolves
        // to it, so the text becomes glyph paths (an unresolved font drops the text silently).
        let opt = usvg_options().unwrap();
        assert_eq!(opt.fontdb.len(), 1);
        for family in ["sans-serif", "serif", "Arial"] {
            let svg = format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="50"><text x="10" y="30" font-family="{family}" font-size="20">Hi 0.25</text></svg>"#
            );
            let tree = usvg::Tree::from_str(&svg, &opt).unwrap();
            assert!(tree.root().has_children(), "{family}: text was dropped");
        }
        // And it puts dark pixels in the PNG.
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="40"><text x="5" y="30" font-family="sans-serif" font-size="30">WW</text></svg>"#;
        let png = svg_to_png(svg, (100, 40)).unwrap();
        let tree = usvg::Tree::from_str(svg, &opt).unwrap();
        let mut pixmap = tiny_skia::Pixmap::new(100, 40).unwrap();
        resvg::render(
            &tree,
            tiny_skia::Transform::identity(),
            &mut pixmap.as_mut(),
        );
        assert!(pixmap.pixels().iter().any(|p| p.alpha() > 200));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn axes_and_labels() {
        let a = Axis::fit(&[0.1, 10.0]);
        assert!(a.log && a.lo < 0.1 && a.hi > 10.0);
        assert_eq!(
            log_ticks(a.lo, a.hi),
            vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
        );
        assert_eq!(
            log_ticks(1e-3, 1e6),
            vec![1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
        );
        let a = Axis::fit(&[1.0, 5.0]);
        assert!(!a.log && a.lo == 0.0 && a.hi > 5.0);
        let a = Axis::fit(&[3.0, 3.0]);
        assert!(a.hi > a.lo);
        let a = Axis::fit(&[0.0, 0.0]);
        assert!(a.hi > a.lo);
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(1.0), "1");
        assert_eq!(tick_label(12.5), "12.5");
        assert_eq!(tick_label(300.0), "300");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(
            short_label("abcdefghijklmnopqrstuvwxyz").chars().count(),
            14
        );
        let front = vec![(1.0, 1.0, String::new()), (2.0, 3.0, String::new())];
        assert_eq!(staircase(&front), vec![(1.0, 1.0), (1.0, 3.0), (2.0, 3.0)]);
    }
}
