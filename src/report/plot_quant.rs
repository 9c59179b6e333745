//! Quantized variants on the frontier plot: the [`QuantSeries`] part of the parent module
//! (`plot.rs`, whose module doc describes the look). Here: which numbers go into the axes'
//! ranges, which variants are drawn, each series' own Pareto front, the drawing (links,
//! dashed staircases, markers), the boxes the front labels keep clear of, and the footer rows
//! of the legend. Nothing here runs when there are no series, so the plain plot is unchanged.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{staircase, Axis, DrawResult, PxBox, QuantSeries, FONT, SUBTLE_TEXT, TEXT_COLOR};

/// Series colours, in order, cycling: orange, green, purple, brown, magenta (none close to the
/// front's blue or the greys).
const PALETTE: [RGBColor; 5] = [
    RGBColor(230, 115, 0),
    RGBColor(0, 150, 90),
    RGBColor(140, 70, 170),
    RGBColor(140, 85, 50),
    RGBColor(205, 60, 140),
];

/// How far the lines joining a variant to its fp32 point are lightened toward white (opaque,
/// so where links of several schemes share a vertical each stretch shows one colour).
const LINK_TINT: f64 = 0.5;
/// Opacity of a series' dashed staircase.
const STAIR_ALPHA: f64 = 0.8;
/// Dash and gap of a series' staircase, pixels.
const DASH: (i32, i32) = (7, 5);
/// Height of one extra legend row in the footer.
const ROW_H: u32 = 30;
/// First legend row's marker position in the footer, as in the parent's `draw_legend`.
const LEGEND_X: i32 = 110;
const LEGEND_Y: i32 = 22;
/// Right margin of the footer, as for the parent's hint.
const RIGHT_MARGIN: i32 = 36;
const LINK_NOTE: &str = "thin lines join each quantized variant to its fp32 point";

/// Marker shapes, cycling per series (a different period from the colours').
#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Triangle,
    Diamond,
    Square,
}

impl Marker {
    fn of(series: usize) -> Marker {
        [Marker::Triangle, Marker::Diamond, Marker::Square][series % 3]
    }

    /// Filled outline around (0, 0), pixels; `halo` gives the white outline drawn underneath
    /// (about 1.5 px larger all round). Sizes are matched by eye to the front's 6 px dots.
    fn vertices(self, halo: bool) -> Vec<(i32, i32)> {
        match self {
            Marker::Triangle => {
                let r = if halo { 11.0 } else { 8.0 };
                let (dx, dy) = ((0.866f64 * r).round() as i32, (0.5f64 * r).round() as i32);
                vec![(0, -(r as i32) + 1), (dx, dy + 1), (-dx, dy + 1)]
            }
            Marker::Diamond => {
                let r = if halo { 9 } else { 7 };
                vec![(0, -r), (r, 0), (0, r), (-r, 0)]
            }
            Marker::Square => {
                let r = if halo { 7 } else { 5 };
                vec![(-r, -r), (r, -r), (r, r), (-r, r)]
            }
        }
    }

    /// Half the size of the marker with its halo, for the boxes labels keep clear of.
    fn extent(self) -> i32 {
        match self {
            Marker::Triangle => 10,
            Marker::Diamond => 9,
            Marker::Square => 7,
        }
    }
}

/// One series in plot units (x in millions of parameters, y in ms).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Series {
    /// Scheme name, shortened for the legend.
    scheme: String,
    color: RGBColor,
    marker: Marker,
    /// Drawn variants: x, quantized latency, fp32 latency when that end is drawable.
    points: Vec<(f64, f64, Option<f64>)>,
    /// The series' own Pareto front, by parameters (labels empty; the staircase's input).
    front: Vec<(f64, f64, String)>,
    /// Variants without usable numbers (not drawn).
    not_drawn: usize,
}

/// Adds the numbers the axes must cover: for each variant with a finite x and latency, its x,
/// its latency and, when finite, the fp32 latency its link ends at.
pub(super) fn axis_values(series: &[QuantSeries], xs: &mut Vec<f64>, ys: &mut Vec<f64>) {
    for p in series.iter().flat_map(|s| &s.points) {
        let x = p.decoder_params / 1e6;
        if x.is_finite() && p.latency_ms.is_finite() {
            xs.push(x);
            ys.push(p.latency_ms);
            if p.fp32_latency_ms.is_finite() {
                ys.push(p.fp32_latency_ms);
            }
        }
    }
}

/// The series as drawn on axes `x` and `y`: variants outside them (non-finite, or
/// non-positive on a log axis) are counted, not drawn; a link whose fp32 end is outside is
/// left out.
pub(super) fn prepare(series: &[QuantSeries], x: Axis, y: Axis) -> Vec<Series> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut points = Vec::with_capacity(s.points.len());
            let mut not_drawn = 0;
            for p in &s.points {
                let px = p.decoder_params / 1e6;
                if x.contains(px) && y.contains(p.latency_ms) {
                    let fp32 = Some(p.fp32_latency_ms).filter(|&f| y.contains(f));
                    points.push((px, p.latency_ms, fp32));
                } else {
                    not_drawn += 1;
                }
            }
            let scheme: String = if s.scheme.chars().count() > 28 {
                s.scheme.chars().take(27).chain(['…']).collect()
            } else {
                s.scheme.clone()
            };
            Series {
                scheme,
                color: PALETTE[i % PALETTE.len()],
                marker: Marker::of(i),
                front: pareto(&points),
                points,
                not_drawn,
            }
        })
        .collect()
}

/// `color` lightened toward white by [`LINK_TINT`].
fn tint(color: RGBColor) -> RGBColor {
    let t = |c: u8| (c as f64 + (255.0 - c as f64) * LINK_TINT).round() as u8;
    RGBColor(t(color.0), t(color.1), t(color.2))
}

/// Pareto front of `(x, y, _)` points, more x and less y being better, sorted by x; of equal
/// points one is kept.
fn pareto(points: &[(f64, f64, Option<f64>)]) -> Vec<(f64, f64, String)> {
    let mut v: Vec<(f64, f64)> = points.iter().map(|&(x, y, _)| (x, y)).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
    let mut best = f64::INFINITY;
    let mut front = Vec::new();
    for (x, y) in v {
        if y < best {
            best = y;
            front.push((x, y, String::new()));
        }
    }
    front.reverse();
    front
}

/// Draws every series on the chart: all links first (longest first), then the dashed
/// staircases, then the markers (white halo under a filled shape), so no line crosses a
/// marker.
pub(super) fn draw_series<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    series: &[Series],
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    // Links longest first: where the variants of several schemes hang below one fp32 point,
    // each stretch of the shared vertical shows the colour of the nearest variant below it.
    let mut links: Vec<(i32, f64, f64, f64, RGBColor)> = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .filter_map(move |&(x, y, fp32)| fp32.map(|f| (x, y, f, s.color)))
        })
        .map(|(x, y, f, color)| {
            let len = (chart.backend_coord(&(x, f)).1 - chart.backend_coord(&(x, y)).1).abs();
            (len, x, y, f, color)
        })
        .collect();
    links.sort_by_key(|l| std::cmp::Reverse(l.0));
    chart.draw_series(links.into_iter().map(|(_, x, y, f, color)| {
        PathElement::new(vec![(x, f), (x, y)], tint(color).stroke_width(2))
    }))?;
    for s in series.iter().filter(|s| s.front.len() > 1) {
        chart.draw_series(DashedLineSeries::new(
            staircase(&s.front),
            DASH.0,
            DASH.1,
            s.color.mix(STAIR_ALPHA).stroke_width(2),
        ))?;
    }
    for s in series {
        chart.draw_series(s.points.iter().map(|&(x, y, _)| {
            EmptyElement::at((x, y))
                + Polygon::new(s.marker.vertices(true), WHITE.filled())
                + Polygon::new(s.marker.vertices(false), s.color.filled())
        }))?;
    }
    Ok(())
}

/// Boxes (pixels, from `to_px`) that the front labels should keep clear of: every marker,
/// link and staircase segment of the series.
pub(super) fn pixel_boxes(series: &[Series], to_px: impl Fn(f64, f64) -> (i32, i32)) -> Vec<PxBox> {
    let mut boxes = Vec::new();
    for s in series {
        let e = s.marker.extent();
        for &(x, y, fp32) in &s.points {
            let (px, py) = to_px(x, y);
            boxes.push((px - e, py - e, px + e, py + e));
            if let Some(f) = fp32 {
                let (_, pf) = to_px(x, f);
                boxes.push((px - 1, py.min(pf), px + 1, py.max(pf)));
            }
        }
        let path: Vec<(i32, i32)> = staircase(&s.front)
            .into_iter()
            .map(|(x, y)| to_px(x, y))
            .collect();
        for w in path.windows(2) {
            let ((ax, ay), (bx, by)) = (w[0], w[1]);
            boxes.push((
                ax.min(bx) - 1,
                ay.min(by) - 1,
                ax.max(bx) + 1,
                ay.max(by) + 1,
            ));
        }
    }
    boxes
}

/// Where the series' legend entries go in the footer, below the parent's row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LegendLayout {
    /// Per series: its text, extra row (0 = first row under the parent's) and marker x.
    entries: Vec<(String, usize, i32)>,
    /// The note on the links: row and left x.
    note: Option<(usize, i32)>,
    rows: usize,
}

impl LegendLayout {
    /// Extra footer height the series' rows need (0 without series).
    pub(super) fn extra_height(&self) -> u32 {
        self.rows as u32 * ROW_H
    }
}

fn entry_text(s: &Series) -> String {
    if s.not_drawn > 0 {
        format!(
            "{} ({}, {} not drawn)",
            s.scheme,
            s.points.len(),
            s.not_drawn
        )
    } else {
        format!("{} ({})", s.scheme, s.points.len())
    }
}

fn legend_font() -> TextStyle<'static> {
    (FONT, 17).into_font().color(&TEXT_COLOR)
}

fn note_font() -> TextStyle<'static> {
    (FONT, 16).into_font().color(&SUBTLE_TEXT)
}

/// Lays out the series' legend entries in rows as wide as `area` (the whole canvas; the footer
/// has its width), spaced as the parent's entries, wrapping to a new row when an entry would
/// pass the right margin; the note on the links goes right-aligned on the last row, or on a
/// row of its own when it does not fit there.
pub(super) fn legend_layout<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> Result<LegendLayout, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut layout = LegendLayout {
        entries: Vec::with_capacity(series.len()),
        note: None,
        rows: 0,
    };
    if series.is_empty() {
        return Ok(layout);
    }
    let right = area.dim_in_pixel().0 as i32 - RIGHT_MARGIN;
    let font = legend_font();
    let (mut row, mut x) = (0usize, LEGEND_X);
    let mut row_end = LEGEND_X;
    for s in series {
        let text = entry_text(s);
        let tw = area.estimate_text_size(&text, &font)?.0 as i32;
        if x > LEGEND_X && x + 22 + tw > right {
            row += 1;
            x = LEGEND_X;
        }
        layout.entries.push((text, row, x));
        row_end = x + 22 + tw;
        x = row_end + 56;
    }
    let nw = area.estimate_text_size(LINK_NOTE, &note_font())?.0 as i32;
    let note_x = right - nw;
    if row_end + 40 > note_x {
        row += 1;
    }
    layout.note = Some((row, note_x));
    layout.rows = row + 1;
    Ok(layout)
}

/// Draws the series' legend rows into the footer (coordinates relative to it): a dashed
/// stroke and the marker in the series colour, then `<scheme> (<drawn>)`, then the note.
pub(super) fn draw_legend<DB: DrawingBackend>(
    footer: &DrawingArea<DB, Shift>,
    series: &[Series],
    layout: &LegendLayout,
) -> DrawResult<DB> {
    let row_y = |row: usize| LEGEND_Y + ROW_H as i32 * (row as i32 + 1);
    for (s, (text, row, x)) in series.iter().zip(&layout.entries) {
        let (x, y) = (*x, row_y(*row));
        footer.draw(&DashedPathElement::new(
            vec![(x - 16, y), (x + 16, y)],
            DASH.0,
            DASH.1,
            s.color.mix(STAIR_ALPHA).stroke_width(2),
        ))?;
        footer.draw(
            &(EmptyElement::at((x, y))
                + Polygon::new(s.marker.vertices(true), WHITE.filled())
                + Polygon::new(s.marker.vertices(false), s.color.filled())),
        )?;
        footer.draw(&Text::new(text.clone(), (x + 22, y - 10), legend_font()))?;
    }
    if let Some((row, x)) = layout.note {
        footer.draw(&Text::new(LINK_NOTE, (x, row_y(row) - 9), note_font()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{frontier_plot, prepare as prepare_plot, PlotPoint, QuantPoint};
    use super::*;

    fn pt(label: &str, params: f64, lat: f64, front: bool) -> PlotPoint {
        PlotPoint {
            label: label.into(),
            decoder_params: params,
            latency_ms: lat,
            on_front: front,
            feasible: true,
        }
    }

    fn qp(label: &str, params: f64, fp32: f64, lat: f64) -> QuantPoint {
        QuantPoint {
            label: label.into(),
            decoder_params: params,
            fp32_latency_ms: fp32,
            latency_ms: lat,
        }
    }

    fn front_points() -> Vec<PlotPoint> {
        vec![
            pt("a", 1.0e6, 2.0, true),
            pt("b", 2.0e6, 4.0, true),
            pt("c", 3.0e6, 7.0, true),
            pt("d", 2.5e6, 9.0, false),
        ]
    }

    fn two_series() -> Vec<QuantSeries> {
        vec![
            QuantSeries {
                scheme: "int8-dynamic".into(),
                points: vec![
                    qp("a", 1.0e6, 2.1, 1.0),
                    qp("b", 2.0e6, 4.1, 2.1),
                    qp("c", 3.0e6, 7.2, 3.4),
                ],
            },
            QuantSeries {
                scheme: "int4-weight".into(),
                points: vec![qp("a", 1.0e6, 2.0, 0.8), qp("c", 3.0e6, 7.0, 2.5)],
            },
        ]
    }

    fn svg_of(points: &[PlotPoint], quant: &[QuantSeries]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("q.svg");
        frontier_plot(points, quant, "t", "s", &svg, None).unwrap();
        std::fs::read_to_string(&svg).unwrap()
    }

    /// SVG colour of series `i`, as plotters writes it.
    fn hex(i: usize) -> String {
        let RGBColor(r, g, b) = PALETTE[i];
        format!("#{r:02X}{g:02X}{b:02X}")
    }

    /// SVG colour of series `i`'s links.
    fn link_hex(i: usize) -> String {
        let RGBColor(r, g, b) = tint(PALETTE[i]);
        format!("#{r:02X}{g:02X}{b:02X}")
    }

    #[test]
    fn two_series_have_markers_links_staircases_and_legend() {
        let s = svg_of(&front_points(), &two_series());
        for (i, n) in [(0usize, 3usize), (1, 2)] {
            // One filled marker per variant, plus one in the legend.
            let fill = format!("fill=\"{}\"", hex(i));
            assert_eq!(s.matches(&fill).count(), n + 1, "series {i}");
            // One light link per variant (a two-point polyline).
            let link = format!("stroke=\"{}\"", link_hex(i));
            assert_eq!(s.matches(&link).count(), n, "series {i}");
            // A dashed staircase: several dashes in the series colour.
            let dash = format!("opacity=\"{STAIR_ALPHA}\" stroke=\"{}\"", hex(i));
            assert!(s.matches(&dash).count() > 2, "series {i}");
        }
        assert!(s.contains("int8-dynamic (3)"));
        assert!(s.contains("int4-weight (2)"));
        assert!(s.contains(LINK_NOTE));
        // The link of variant "a" of the first series runs vertically (x equal at both ends).
        let link = format!("stroke=\"{}\"", link_hex(0));
        let at = s.find(&link).unwrap();
        let pts = s[at..].split("points=\"").nth(1).unwrap();
        let pts: Vec<&str> = pts[..pts.find('"').unwrap()].split_whitespace().collect();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].split(',').next(), pts[1].split(',').next());
    }

    #[test]
    fn without_series_nothing_of_them_is_drawn() {
        let s = svg_of(&front_points(), &[]);
        for i in 0..PALETTE.len() {
            assert!(
                !s.contains(&hex(i)) && !s.contains(&link_hex(i)),
                "colour {i}"
            );
        }
        assert!(!s.contains(LINK_NOTE));
        // No extra footer rows: the chart keeps its height.
        let mut out = String::new();
        let root = SVGBackend::with_string(&mut out, super::super::PNG_SIZE).into_drawing_area();
        let layout = legend_layout(&root, &[]).unwrap();
        assert_eq!(layout.extra_height(), 0);
        assert!(layout.entries.is_empty() && layout.note.is_none());
    }

    #[test]
    fn axes_cover_variants_and_link_ends() {
        // fp32 latencies span 100..3000 ms (log axis); one variant is faster than every fp32
        // point, another has more parameters than any, and a link end is slower than any.
        let points = vec![pt("a", 1.0e6, 100.0, true), pt("b", 5.0e6, 3000.0, true)];
        let quant = vec![QuantSeries {
            scheme: "int8".into(),
            points: vec![
                qp("a", 1.0e6, 100.0, 2.0),
                qp("b", 5.0e6, 4000.0, 1500.0),
                qp("x", 9.0e6, 3000.0, 1200.0),
            ],
        }];
        let prep = prepare_plot(&points, &quant);
        assert!(prep.y.log);
        assert!(prep.y.lo < 2.0 && prep.y.hi > 4000.0, "{:?}", prep.y);
        assert!(prep.x.hi > 9.0, "{:?}", prep.x);
        assert_eq!(prep.quant[0].points.len(), 3);
        assert_eq!(prep.quant[0].points[0], (1.0, 2.0, Some(100.0)));
        // Without the variants the same fp32 points give a narrower axis.
        let plain = prepare_plot(&points, &[]);
        assert!(plain.y.lo > 2.0 && plain.x.hi < 9.0);
        // And the faster variant is inside the drawn SVG (a marker per variant).
        let s = svg_of(&points, &quant);
        assert_eq!(s.matches(&format!("fill=\"{}\"", hex(0))).count(), 4);
    }

    #[test]
    fn non_finite_and_non_positive_variants_are_skipped() {
        let quant = vec![
            QuantSeries {
                scheme: "nan".into(),
                points: vec![
                    qp("a", 1.0e6, 2.0, f64::NAN),
                    qp("b", 2.0e6, f64::NAN, 2.0),
                    qp("c", f64::INFINITY, 7.0, 3.0),
                ],
            },
            QuantSeries {
                scheme: "empty".into(),
                points: vec![],
            },
        ];
        let s = svg_of(&front_points(), &quant);
        assert!(s.contains("nan (1, 2 not drawn)"));
        assert!(s.contains("empty (0)"));
        // The drawn variant has no link (its fp32 end is NaN).
        let link = format!("stroke=\"{}\"", link_hex(0));
        assert_eq!(s.matches(&link).count(), 0);
        // On a log axis a zero latency is not drawn either.
        let points = vec![pt("a", 1.0e6, 1.0, true), pt("b", 1.0e8, 500.0, true)];
        let quant = vec![QuantSeries {
            scheme: "zero".into(),
            points: vec![qp("a", 1.0e6, 1.0, 0.5), qp("b", 1.0e8, 500.0, 0.0)],
        }];
        // A zero latency makes the y axis linear (as a zero fp32 latency would).
        let prep = prepare_plot(&points, &quant);
        assert!(prep.x.log && !prep.y.log);
        assert_eq!(prep.quant[0].points.len(), 2);
        let quant = vec![QuantSeries {
            scheme: "zero".into(),
            points: vec![qp("a", 0.0, 1.0, 0.5), qp("b", 1.0e8, 500.0, 250.0)],
        }];
        let prep = prepare_plot(&points, &quant);
        assert!(!prep.x.log);
        // Only non-finite data at all: still a valid plot.
        let quant = vec![QuantSeries {
            scheme: "all nan".into(),
            points: vec![qp("a", f64::NAN, f64::NAN, f64::NAN)],
        }];
        let dir = tempfile::tempdir().unwrap();
        let (svg, png) = (dir.path().join("n.svg"), dir.path().join("n.png"));
        frontier_plot(&[], &quant, "t", "s", &svg, Some(&png)).unwrap();
        assert!(std::fs::read_to_string(&svg)
            .unwrap()
            .contains("all nan (0, 1 not drawn)"));
    }

    #[test]
    fn five_series_wrap_into_rows_within_the_footer() {
        let quant: Vec<QuantSeries> = (0..5)
            .map(|i| QuantSeries {
                scheme: format!("scheme-number-{i}-with-a-long-name"),
                points: vec![qp("a", 1.0e6, 2.0, 1.0 + 0.1 * i as f64)],
            })
            .collect();
        let mut out = String::new();
        {
            let root =
                SVGBackend::with_string(&mut out, super::super::PNG_SIZE).into_drawing_area();
            let prep = prepare_plot(&front_points(), &quant);
            let layout = legend_layout(&root, &prep.quant).unwrap();
            assert!(layout.rows >= 2, "{layout:?}");
            let font = legend_font();
            let right = super::super::PNG_SIZE.0 as i32 - RIGHT_MARGIN;
            // Entries on one row do not overlap and stay inside the canvas.
            for (k, (text, row, x)) in layout.entries.iter().enumerate() {
                let end = x + 22 + root.estimate_text_size(text, &font).unwrap().0 as i32;
                assert!(end <= right, "{text}");
                if let Some((_, next_row, next_x)) = layout.entries.get(k + 1) {
                    assert!(next_row > row || *next_x > end, "{text}");
                }
            }
        }
        // Each scheme name shortened to 28 characters.
        let s = svg_of(&front_points(), &quant);
        assert!(s.contains("scheme-number-0-with-a-long…"));
        for i in 0..PALETTE.len() {
            assert!(s.contains(&hex(i)), "colour {i}");
        }
    }

    #[test]
    fn series_front_and_markers() {
        let pts = vec![
            (1.0, 1.0, None),
            (2.0, 3.0, None),
            (2.0, 2.0, None),
            (3.0, 5.0, None),
            (1.5, 4.0, None),
            (3.0, 5.0, None),
        ];
        let front: Vec<(f64, f64)> = pareto(&pts).into_iter().map(|(x, y, _)| (x, y)).collect();
        assert_eq!(front, vec![(1.0, 1.0), (2.0, 2.0), (3.0, 5.0)]);
        assert!(pareto(&[]).is_empty());
        assert_eq!(Marker::of(0), Marker::Triangle);
        assert_eq!(Marker::of(4), Marker::Diamond);
        for m in [Marker::Triangle, Marker::Diamond, Marker::Square] {
            let e = m.extent();
            assert!(m
                .vertices(true)
                .iter()
                .all(|&(x, y)| x.abs() <= e + 1 && y.abs() <= e + 1));
        }
    }
}
