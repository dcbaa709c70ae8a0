//! The run's picture: throughput and acknowledgement latency over time, as
//! a PNG for docs/benchmarks.md.
//!
//! Key decision: plotters draws into a bitmap with a TrueType font loaded at
//! run time (DejaVu Sans, Debian's `fonts-dejavu-core`, which `scripts/deps
//! bench` installs), so the image needs no system font service and looks the
//! same on every machine.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Where the font is looked for, first found wins.
const FONTS: [&str; 2] = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// One series: a name and its (seconds since start, value) points.
pub struct Series {
    /// Legend text; empty for a continuation of an earlier series (same color, no legend entry).
    pub name: String,
    /// Index into the palette.
    pub color: usize,
    /// Points in time order.
    pub points: Vec<(f64, f64)>,
}

/// A shaded stretch of the run (a phase), with its label.
pub struct Span {
    /// Label drawn at its top left.
    pub label: String,
    /// Start and end, seconds since the run began.
    pub from_s: f64,
    /// End.
    pub to_s: f64,
}

/// Everything drawn.
pub struct Figure<'a> {
    /// Title above the top panel.
    pub title: &'a str,
    /// Events per second (top panel).
    pub throughput: &'a [Series],
    /// A horizontal reference line in the top panel (the broker's bound), with its label.
    pub bound: Option<(&'a str, f64)>,
    /// Milliseconds (bottom panel, logarithmic).
    pub latency: &'a [Series],
    /// Phases shaded in both panels.
    pub spans: &'a [Span],
}

fn load_font() -> anyhow::Result<()> {
    let path = FONTS.iter().find(|p| Path::new(p).exists()).with_context(|| {
        format!("no TrueType font at {}; install Debian's fonts-dejavu-core (scripts/deps bench)", FONTS.join(" or "))
    })?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow::anyhow!("{path} is not a usable font"))
}

const COLORS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Draws `fig` into a 1200 x 800 PNG at `path`.
///
/// # Errors
/// If no font is found or the file cannot be written.
pub fn draw(fig: &Figure<'_>, path: &Path) -> anyhow::Result<()> {
    load_font()?;
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).context("drawing the background")?;
    let (top, bottom) = root.split_vertically(420);
    let end = fig
        .throughput
        .iter()
        .chain(fig.latency)
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(fig.spans.iter().map(|s| s.to_s))
        .fold(1.0, f64::max);
    let series_max = fig.throughput.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0, f64::max);
    // A bound far above the series would squash them to the axis: it is then
    // named in the legend instead of drawn.
    let bound_on_scale = fig.bound.filter(|b| b.1 <= series_max * 2.0);
    let max_rate = bound_on_scale.map_or(series_max, |b| b.1.max(series_max)) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(fig.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end, 0.0..max_rate)
        .context("laying out the throughput panel")?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("events/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .context("drawing the throughput axes")?;
    shade(&mut chart, fig.spans, max_rate)?;
    if let Some((label, rate)) = fig.bound {
        let grey = RGBColor(90, 90, 90);
        let (points, label) = match bound_on_scale {
            Some(_) => (vec![(0.0, rate), (end, rate)], label.to_owned()),
            None => (Vec::new(), format!("{label} (above the scale)")),
        };
        chart
            .draw_series(DashedLineSeries::new(points, 8, 6, grey.stroke_width(2)))
            .context("drawing the bound")?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
    }
    lines(&mut chart, fig.throughput)?;
    legend(&mut chart)?;

    let max_ms = fig.latency.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.5;
    let min_ms = fig.latency.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(max_ms, f64::min).max(0.05) / 1.5;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end, (min_ms..max_ms).log_scale())
        .context("laying out the latency panel")?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("ingest acknowledgement, ms (log)")
        .y_label_formatter(&|v| if *v >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") })
        .draw()
        .context("drawing the latency axes")?;
    shade(&mut chart, fig.spans, max_ms)?;
    lines(&mut chart, fig.latency)?;
    legend(&mut chart)?;
    root.present().with_context(|| format!("writing {}", path.display()))
}

type Chart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

fn shade<Y: Ranged<ValueType = f64>>(chart: &mut Chart<'_, '_, Y>, spans: &[Span], top: f64) -> anyhow::Result<()> {
    for (i, s) in spans.iter().enumerate() {
        let fill = if i % 2 == 0 { RGBColor(235, 242, 250) } else { RGBColor(250, 240, 230) };
        chart
            .draw_series([Rectangle::new([(s.from_s, top), (s.to_s, 0.000_001)], fill.filled())])
            .context("shading a phase")?;
        chart
            .draw_series([Text::new(s.label.clone(), (s.from_s, top), ("sans-serif", 14).into_font())])
            .context("labelling a phase")?;
    }
    Ok(())
}

fn lines<Y: Ranged<ValueType = f64>>(chart: &mut Chart<'_, '_, Y>, series: &[Series]) -> anyhow::Result<()> {
    for s in series {
        let color = COLORS[s.color % COLORS.len()];
        let drawn = chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .context("drawing a series")?;
        if !s.name.is_empty() {
            drawn
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    Ok(())
}

fn legend<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(chart: &mut Chart<'a, 'b, Y>) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .context("drawing the legend")
}
