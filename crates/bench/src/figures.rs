//! The figures of `docs/benchmarks.md`, drawn as SVG from `make bench`'s summary
//! (`target/bench/summary.json`). Pure: the summary in, SVG text out; only [`write_all`]
//! touches files. `nsguard-bench --figures SUMMARY DIR` redraws them without a run.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::prelude::*;
use serde_json::Value;

/// One figure: its file under `docs/benchmarks/` and its title (also the image's alt text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    pub file: &'static str,
    pub title: &'static str,
}

impl Figure {
    /// The markdown image line, relative to `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        format!("![{}](benchmarks/{})", self.title, self.file)
    }
}

pub const LATENCY: Figure = Figure {
    file: "latency.svg",
    title: "Decision latency against the objects in the namespace",
};
pub const MEMORY: Figure = Figure {
    file: "memory.svg",
    title: "nsguard's resident memory against objects",
};
pub const STORMS: Figure = Figure {
    file: "storms.svg",
    title: "Deletion storms: namespaces remaining over time",
};
pub const SCALE: Figure = Figure {
    file: "scale.svg",
    title: "Scale: start-up and decision latency against the objects in the cluster",
};
pub const INDEX_MEMORY: Figure = Figure {
    file: "index-memory.svg",
    title: "The index's heap per object (in process)",
};

/// One row of the preflight-latency table.
#[derive(Clone, Debug, PartialEq)]
pub struct Preflight {
    pub crds: u64,
    pub objects: u64,
    /// Inside nsguard, ms: p50, p95, p99.
    pub inside: [f64; 3],
    /// Server dry runs of `DELETE namespace`, ms (p50, p95, p99), with nsguard and without.
    pub with: [f64; 3],
    pub without: [f64; 3],
    pub rss_mib: f64,
}

/// One scale step.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleStep {
    pub objects: u64,
    pub ready_s: f64,
    pub rss_mib: f64,
    pub p99_inside_ms: f64,
}

/// One size of the in-process index measurement, bytes per object.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexMemory {
    pub objects: u64,
    pub bytes: f64,
    pub former: f64,
    pub bare: f64,
    pub bare_former: f64,
}

/// One storm run: namespaces remaining, sampled at each poll.
#[derive(Clone, Debug, PartialEq)]
pub struct StormTimeline {
    pub run: String,
    /// nsguard's webhook selected the namespaces.
    pub webhook: bool,
    /// (seconds since the deletions were sent, namespaces remaining).
    pub samples: Vec<(f64, f64)>,
}

/// What the figures need from `summary.json`; a part the run did not measure is empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Data {
    pub preflight: Vec<Preflight>,
    pub scale: Vec<ScaleStep>,
    pub index_memory: Vec<IndexMemory>,
    pub storms: Vec<StormTimeline>,
}

/// A number of the summary; `null` (a figure not measured) is NaN, and is not drawn.
fn number(v: &Value, key: &str) -> Result<f64> {
    match &v[key] {
        Value::Null => Ok(f64::NAN),
        x => x
            .as_f64()
            .with_context(|| format!("{key} is not a number: {x}")),
    }
}

fn count(v: &Value, key: &str) -> Result<u64> {
    v[key]
        .as_u64()
        .with_context(|| format!("{key} is not a count: {}", v[key]))
}

fn triple(v: &Value, key: &str) -> Result<[f64; 3]> {
    let a = v[key]
        .as_array()
        .filter(|a| a.len() == 3)
        .with_context(|| format!("{key} is not [p50, p95, p99]: {}", v[key]))?;
    let p = |i: usize| a[i].as_f64().unwrap_or(f64::NAN);
    Ok([p(0), p(1), p(2)])
}

/// The entries of the summary's array `key` (absent: none), each read by `read`.
fn entries<T>(summary: &Value, key: &str, read: impl Fn(&Value) -> Result<T>) -> Result<Vec<T>> {
    match &summary[key] {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, e)| read(e).with_context(|| format!("{key}[{i}]")))
            .collect(),
        x => Err(anyhow!("{key} is not an array: {x}")),
    }
}

impl Data {
    /// Reads the keys of `summary.json` the figures use: `preflight`, `scale`,
    /// `index_memory` and `storm_timelines`.
    pub fn from_summary(summary: &Value) -> Result<Self> {
        Ok(Self {
            preflight: entries(summary, "preflight", |r| {
                Ok(Preflight {
                    crds: count(r, "crds")?,
                    objects: count(r, "objects")?,
                    inside: triple(r, "inside_ms")?,
                    with: triple(r, "dry_run_with_ms")?,
                    without: triple(r, "dry_run_without_ms")?,
                    rss_mib: number(r, "rss_mib")?,
                })
            })?,
            scale: entries(summary, "scale", |s| {
                Ok(ScaleStep {
                    objects: count(s, "objects")?,
                    ready_s: number(s, "ready_seconds")?,
                    rss_mib: number(s, "rss_mib")?,
                    p99_inside_ms: number(s, "p99_ms_inside")?,
                })
            })?,
            index_memory: entries(summary, "index_memory", |m| {
                Ok(IndexMemory {
                    objects: count(m, "objects")?,
                    bytes: number(m, "bytes_per_object")?,
                    former: number(m, "former_bytes_per_object")?,
                    bare: number(m, "bare_bytes_per_object")?,
                    bare_former: number(m, "bare_former_bytes_per_object")?,
                })
            })?,
            storms: entries(summary, "storm_timelines", |s| {
                Ok(StormTimeline {
                    run: s["run"].as_str().context("run is not a string")?.into(),
                    webhook: s["webhook"].as_bool().context("webhook is not a boolean")?,
                    samples: entries(s, "samples", |p| {
                        Ok((
                            p[0].as_f64().context("a sample's seconds")?,
                            p[1].as_f64().context("a sample's namespaces")?,
                        ))
                    })?,
                })
            })?,
        })
    }
}

/// Every figure the data has what to draw, with its SVG text.
pub fn draw(data: &Data) -> Result<Vec<(Figure, String)>> {
    let mut out = Vec::new();
    if !data.preflight.is_empty() {
        out.push((LATENCY, latency(&data.preflight)?));
    }
    if !data.preflight.is_empty() || !data.scale.is_empty() {
        out.push((MEMORY, memory(&data.preflight, &data.scale)?));
    }
    if !data.storms.is_empty() {
        out.push((STORMS, storms(&data.storms)?));
    }
    if !data.scale.is_empty() {
        out.push((SCALE, scale(&data.scale)?));
    }
    if !data.index_memory.is_empty() {
        out.push((INDEX_MEMORY, index_memory(&data.index_memory)?));
    }
    Ok(out)
}

/// Draws every figure of `summary` into `dir` (created if missing); the files written.
pub fn write_all(summary: &Value, dir: &Path) -> Result<Vec<PathBuf>> {
    let figures = draw(&Data::from_summary(summary)?)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    figures
        .into_iter()
        .map(|(figure, svg)| {
            let path = dir.join(figure.file);
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

// Categorical colours, distinguishable in colour and in grey.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x5f, 0xa8),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0x7a, 0x3d, 0x9a),
    RGBColor(0xc0, 0x1f, 0x3a),
    RGBColor(0x6b, 0x6b, 0x6b),
];
const FONT: &str = "sans-serif";
const PANEL: (u32, u32) = (520, 440);

/// How a series is marked, so that series of one colour stay apart.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Circle,
    Triangle,
    Cross,
}

/// One line of a panel.
struct Series {
    label: String,
    color: RGBColor,
    /// A lighter, thinner line: the baseline a series is compared with.
    faint: bool,
    mark: Mark,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(label: impl Into<String>, color: RGBColor, mark: Mark, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            color,
            faint: false,
            mark,
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
        }
    }

    fn faint(mut self) -> Self {
        self.faint = true;
        self
    }

    fn style(&self) -> ShapeStyle {
        if self.faint {
            self.color.mix(0.6).stroke_width(1)
        } else {
            self.color.stroke_width(2)
        }
    }
}

/// An axis: linear from zero, logarithmic, or categorical (the values at even steps).
#[derive(Clone)]
enum Axis {
    Linear {
        desc: String,
        max: f64,
    },
    Log {
        desc: String,
        range: Range<f64>,
        ticks: Vec<f64>,
    },
    Categories {
        desc: String,
        values: Vec<u64>,
    },
}

impl Axis {
    /// Linear from 0 to a little above the largest of `values`.
    fn linear(desc: &str, values: impl IntoIterator<Item = f64>) -> Self {
        let max = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        Self::Linear {
            desc: desc.into(),
            max: if max > 0.0 { max * 1.15 } else { 1.0 },
        }
    }

    /// Logarithmic around `values`. As an x axis, a tick at each of `ticks` and nowhere else;
    /// as a y axis, plotters' own ticks (`ticks` is not used).
    fn log(desc: &str, values: impl IntoIterator<Item = f64>, ticks: Vec<f64>) -> Self {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        Self::Log {
            desc: desc.into(),
            range: lo / 1.4..hi * 1.4,
            ticks,
        }
    }

    /// The distinct `values`, each at its own step.
    fn categories(desc: &str, values: impl IntoIterator<Item = u64>) -> Self {
        let mut values: Vec<u64> = values.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        Self::Categories {
            desc: desc.into(),
            values,
        }
    }

    /// Where `value` is drawn on this axis.
    fn at(&self, value: u64) -> f64 {
        match self {
            Self::Categories { values, .. } => values
                .iter()
                .position(|v| *v == value)
                .map_or(f64::NAN, |i| i as f64),
            _ => value as f64,
        }
    }

    fn desc(&self) -> &str {
        match self {
            Self::Linear { desc, .. } | Self::Log { desc, .. } | Self::Categories { desc, .. } => {
                desc
            }
        }
    }
}

/// A number for a tick label: thousands grouped by a thin space are hard to read in SVG text,
/// so 1k, 1M; small values keep a decimal.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 && (v / 1e6).fract().abs() < 1e-9 {
        format!("{}M", v / 1e6)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 && (v / 1e3).fract().abs() < 1e-9 {
        format!("{}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A number for a y tick label, with as many decimals as the axis' steps need.
fn y_tick(y: &Axis, v: f64) -> String {
    match y {
        Axis::Linear { max, .. } => {
            let decimals = (-(max / 10.0).log10().floor()).max(0.0) as usize;
            format!("{v:.decimals$}")
        }
        _ => format!("{v:.0}"),
    }
}

/// One SVG of `panels` side by side under `title`.
fn svg(
    title: &str,
    panels: usize,
    draw: impl FnOnce(&[DrawingArea<SVGBackend, Shift>]) -> Result<()>,
) -> Result<String> {
    let mut out = String::new();
    {
        // A figure of one panel is wider: its title needs the room.
        let width = if panels == 1 {
            760
        } else {
            PANEL.0 * panels as u32
        };
        let size = (width, PANEL.1 + 40);
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, (FONT, 22))?;
        draw(&body.split_evenly((1, panels)))?;
        root.present()?;
    }
    Ok(out)
}

/// One panel: `series` over `x` and `y`, with its caption and legend.
fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<()> {
    // A legend at the top gets room above the data instead of covering it.
    let headroom = match legend {
        SeriesLabelPosition::UpperLeft
        | SeriesLabelPosition::UpperMiddle
        | SeriesLabelPosition::UpperRight => 1.0 + 0.06 * series.len() as f64,
        _ => 1.0,
    };
    match (x, y) {
        (Axis::Categories { values, .. }, Axis::Linear { max, .. }) => {
            let labels = values.clone();
            let range = Steps {
                range: -0.35..(values.len() as f64 - 0.65),
                ticks: (0..values.len()).map(|i| i as f64).collect(),
            };
            plot(
                area,
                caption,
                range,
                0.0..*max * headroom,
                x,
                y,
                series,
                legend,
                move |v: &f64| {
                    labels
                        .get(v.round() as usize)
                        .map_or_else(String::new, |o| tick(*o as f64))
                },
            )
        }
        (Axis::Log { range, ticks, .. }, Axis::Linear { max, .. }) => {
            let xr = range.clone().log_scale().with_key_points(ticks.clone());
            plot(
                area,
                caption,
                xr,
                0.0..*max * headroom,
                x,
                y,
                series,
                legend,
                |v: &f64| tick(*v),
            )
        }
        (Axis::Log { range, ticks, .. }, Axis::Log { range: yr, .. }) => {
            let xr = range.clone().log_scale().with_key_points(ticks.clone());
            // A legend at the bottom gets room below the data.
            let low = match legend {
                SeriesLabelPosition::LowerLeft
                | SeriesLabelPosition::LowerMiddle
                | SeriesLabelPosition::LowerRight => 10f64.powf(0.12 * series.len() as f64),
                _ => 1.0,
            };
            let yr = (yr.start / low..yr.end).log_scale();
            plot(area, caption, xr, yr, x, y, series, legend, |v: &f64| {
                tick(*v)
            })
        }
        (Axis::Linear { max: xmax, .. }, Axis::Linear { max, .. }) => plot(
            area,
            caption,
            0.0..*xmax,
            0.0..*max * headroom,
            x,
            y,
            series,
            legend,
            |v: &f64| tick(*v),
        ),
        _ => Err(anyhow!("no panel of these axes: {caption}")),
    }
}

/// A linear axis with a tick at each of `ticks` and nowhere else. (plotters' `with_key_points`
/// does the same, but over `f64` it leaves the mesh without a label formatter.)
struct Steps {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Steps {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold lines only: a light line between two steps would mean nothing.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn plot<X, Y>(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    xr: X,
    yr: Y,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    legend: SeriesLabelPosition,
    x_label: impl Fn(&f64) -> String,
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(xr, yr)?;
    chart
        .configure_mesh()
        .x_desc(x.desc())
        .y_desc(y.desc())
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v: &f64| y_tick(y, *v))
        .axis_desc_style((FONT, 14))
        .label_style((FONT, 12))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for s in series {
        let style = s.style();
        let color = s.color;
        let mark = s.mark;
        let entry = chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))?
            .label(s.label.as_str());
        // The legend's sample: the line, and the series' marker on it.
        let line = move |(x, y): (i32, i32)| {
            EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (22, 0)], style)
        };
        match mark {
            Mark::Line => entry.legend(line),
            Mark::Circle => {
                entry.legend(move |at| line(at) + Circle::new((11, 0), 3, color.filled()))
            }
            Mark::Triangle => {
                entry.legend(move |at| line(at) + TriangleMarker::new((11, 0), 4, color.filled()))
            }
            Mark::Cross => {
                entry.legend(move |at| line(at) + Cross::new((11, 0), 3, color.stroke_width(1)))
            }
        };
        let points = s.points.iter().copied();
        match mark {
            Mark::Line => {}
            Mark::Circle => {
                chart.draw_series(points.map(|p| Circle::new(p, 3, color.filled())))?;
            }
            Mark::Triangle => {
                chart.draw_series(points.map(|p| TriangleMarker::new(p, 4, color.filled())))?;
            }
            Mark::Cross => {
                chart.draw_series(points.map(|p| Cross::new(p, 3, color.stroke_width(1))))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// The CRD counts of the preflight rows, in order, each with its colour.
fn crd_colors(rows: &[Preflight]) -> Vec<(u64, RGBColor)> {
    let mut crds: Vec<u64> = rows.iter().map(|r| r.crds).collect();
    crds.sort_unstable();
    crds.dedup();
    crds.into_iter()
        .enumerate()
        .map(|(i, c)| (c, PALETTE[i % PALETTE.len()]))
        .collect()
}

/// Inside nsguard (p50, p99), and the server dry run with and without nsguard (p50; p99),
/// against the objects in the namespace, one colour per CRD count.
pub fn latency(rows: &[Preflight]) -> Result<String> {
    let x = Axis::categories("objects in the namespace", rows.iter().map(|r| r.objects));
    let colors = crd_colors(rows);
    let line = |crds: u64, value: &dyn Fn(&Preflight) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.crds == crds)
            .map(|r| (x.at(r.objects), value(r)))
            .collect()
    };
    let mut inside = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for &(crds, color) in &colors {
        inside.push(Series::new(
            format!("{crds} CRDs, p50"),
            color,
            Mark::Circle,
            line(crds, &|r| r.inside[0]),
        ));
        inside.push(
            Series::new(
                format!("{crds} CRDs, p99"),
                color,
                Mark::Triangle,
                line(crds, &|r| r.inside[2]),
            )
            .faint(),
        );
        for (into, i) in [(&mut p50, 0), (&mut p99, 2)] {
            into.push(Series::new(
                format!("{crds} CRDs, with nsguard"),
                color,
                Mark::Circle,
                line(crds, &|r| r.with[i]),
            ));
            into.push(
                Series::new(
                    format!("{crds} CRDs, without"),
                    color,
                    Mark::Cross,
                    line(crds, &|r| r.without[i]),
                )
                .faint(),
            );
        }
    }
    // Both dry-run panels on one scale, so that their heights compare.
    let dry = Axis::linear(
        "ms",
        rows.iter()
            .flat_map(|r| r.with.into_iter().chain(r.without)),
    );
    svg(LATENCY.title, 3, |p| {
        let y = Axis::linear("ms", rows.iter().flat_map(|r| r.inside));
        panel(
            &p[0],
            "inside nsguard (p50, p99)",
            &x,
            &y,
            &inside,
            SeriesLabelPosition::UpperLeft,
        )?;
        panel(
            &p[1],
            "server dry run of DELETE, p50",
            &x,
            &dry,
            &p50,
            SeriesLabelPosition::UpperRight,
        )?;
        panel(
            &p[2],
            "server dry run of DELETE, p99",
            &x,
            &dry,
            &p99,
            SeriesLabelPosition::UpperRight,
        )
    })
}

/// nsguard's RSS in the preflight runs (against the objects in the namespace, one colour per
/// CRD count) and once synced at each scale step (against the objects in the cluster).
pub fn memory(rows: &[Preflight], scale: &[ScaleStep]) -> Result<String> {
    let panels = usize::from(!rows.is_empty()) + usize::from(!scale.is_empty());
    svg(MEMORY.title, panels, |p| {
        let mut p = p.iter();
        if !rows.is_empty() {
            let x = Axis::categories("objects in the namespace", rows.iter().map(|r| r.objects));
            let y = Axis::linear("RSS, MiB", rows.iter().map(|r| r.rss_mib));
            let series: Vec<Series> = crd_colors(rows)
                .into_iter()
                .map(|(crds, color)| {
                    let points = rows
                        .iter()
                        .filter(|r| r.crds == crds)
                        .map(|r| (x.at(r.objects), r.rss_mib))
                        .collect();
                    Series::new(format!("{crds} CRDs"), color, Mark::Circle, points)
                })
                .collect();
            let area = p.next().context("a panel for the preflight runs")?;
            panel(
                area,
                "preflight runs (after the storms)",
                &x,
                &y,
                &series,
                SeriesLabelPosition::LowerRight,
            )?;
        }
        if !scale.is_empty() {
            let x = scale_axis(scale);
            let y = Axis::linear("RSS, MiB", scale.iter().map(|s| s.rss_mib));
            let series = [Series::new(
                "nsguard, index synced",
                PALETTE[0],
                Mark::Circle,
                scale
                    .iter()
                    .map(|s| (s.objects as f64, s.rss_mib))
                    .collect(),
            )];
            let area = p.next().context("a panel for the scale steps")?;
            panel(
                area,
                "scale steps, once synced",
                &x,
                &y,
                &series,
                SeriesLabelPosition::LowerRight,
            )?;
        }
        Ok(())
    })
}

fn scale_axis(scale: &[ScaleStep]) -> Axis {
    let objects: Vec<f64> = scale.iter().map(|s| s.objects as f64).collect();
    Axis::log(
        "objects in the cluster (log scale)",
        objects.clone(),
        objects,
    )
}

/// Start to ready and p99 inside nsguard at each scale step.
pub fn scale(steps: &[ScaleStep]) -> Result<String> {
    let x = scale_axis(steps);
    let points = |value: &dyn Fn(&ScaleStep) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.objects as f64, value(s))).collect()
    };
    svg(SCALE.title, 2, |p| {
        let ready = [Series::new(
            "start to /readyz",
            PALETTE[0],
            Mark::Circle,
            points(&|s| s.ready_s),
        )];
        let y = Axis::linear("seconds", steps.iter().map(|s| s.ready_s));
        panel(
            &p[0],
            "a fresh nsguard, start to ready",
            &x,
            &y,
            &ready,
            SeriesLabelPosition::LowerRight,
        )?;
        let p99 = [Series::new(
            "p99 inside nsguard",
            PALETTE[1],
            Mark::Triangle,
            points(&|s| s.p99_inside_ms),
        )];
        let y = Axis::linear("ms", steps.iter().map(|s| s.p99_inside_ms));
        panel(
            &p[1],
            "decision latency, p99 inside nsguard",
            &x,
            &y,
            &p99,
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// Namespaces remaining against seconds since the deletions were sent, one line per run:
/// nsguard's runs in shades of one colour, the run without a webhook in another. The legend
/// sits below the lines, where they never are (they only fall).
pub fn storms(runs: &[StormTimeline]) -> Result<String> {
    let x = Axis::linear(
        "seconds since the deletions were sent",
        runs.iter().flat_map(|r| r.samples.iter().map(|s| s.0)),
    );
    let y = Axis::linear(
        "namespaces remaining",
        runs.iter().flat_map(|r| r.samples.iter().map(|s| s.1)),
    );
    let guarded = runs.iter().filter(|r| r.webhook).count().max(1);
    let mut shade = 0;
    let series: Vec<Series> = runs
        .iter()
        .map(|r| {
            let color = if r.webhook {
                // From dark to light blue, run after run.
                let t = shade as f64 / guarded as f64;
                shade += 1;
                let c = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
                RGBColor(c(0x0b, 0x8a), c(0x3c, 0xb4), c(0x7d, 0xe0))
            } else {
                PALETTE[1]
            };
            Series::new(r.run.as_str(), color, Mark::Line, r.samples.clone())
        })
        .collect();
    svg(STORMS.title, 1, |p| {
        panel(
            &p[0],
            "namespaces not yet gone, polled every 250 ms",
            &x,
            &y,
            &series,
            SeriesLabelPosition::LowerLeft,
        )
    })
}

/// Bytes per indexed object against objects: the index, its former layout, and the same for
/// the bench's bare objects.
pub fn index_memory(rows: &[IndexMemory]) -> Result<String> {
    let objects: Vec<f64> = rows.iter().map(|m| m.objects as f64).collect();
    let x = Axis::log("objects in the index (log scale)", objects.clone(), objects);
    let y = Axis::log(
        "bytes per object (log scale)",
        rows.iter()
            .flat_map(|m| [m.bytes, m.former, m.bare, m.bare_former]),
        Vec::new(),
    );
    let line = |value: &dyn Fn(&IndexMemory) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|m| (m.objects as f64, value(m))).collect()
    };
    let series = [
        Series::new("index", PALETTE[0], Mark::Circle, line(&|m| m.bytes)),
        Series::new(
            "index, former layout",
            PALETTE[0],
            Mark::Triangle,
            line(&|m| m.former),
        )
        .faint(),
        Series::new("bare objects", PALETTE[1], Mark::Circle, line(&|m| m.bare)),
        Series::new(
            "bare objects, former layout",
            PALETTE[1],
            Mark::Triangle,
            line(&|m| m.bare_former),
        )
        .faint(),
    ];
    svg(INDEX_MEMORY.title, 1, |p| {
        panel(
            &p[0],
            "a counting allocator around the index",
            &x,
            &y,
            &series,
            SeriesLabelPosition::LowerRight,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small summary in the shape `make bench` writes: two CRD counts at two namespace
    /// sizes, two scale steps, two index sizes, a storm with nsguard and one without.
    fn small() -> Value {
        let row = |crds: u64, objects: u64, base: f64| {
            serde_json::json!({
                "crds": crds, "objects": objects, "types": 31 + crds,
                "inside_ms": [base, base * 2.0, base * 3.0],
                "dry_run_with_ms": [1.0 + base, 1.5 + base, 2.0 + base],
                "dry_run_without_ms": [1.0, 1.2, 1.6],
                "api_calls_per_decision": 0.0, "rss_mib": 20.0 + base * 10.0, "kubectl_loop_s": 1.5,
            })
        };
        serde_json::json!({
            "p99_ms_inside": 0.9,
            "preflight": [row(0, 0, 0.1), row(0, 500, 0.2), row(50, 0, 0.2), row(50, 500, 0.3)],
            "scale": [
                {"objects": 1000, "namespaces": 10, "types": 40, "index_objects": 1200.0,
                 "ready_seconds": 0.4, "rss_mib": 30.0, "p99_ms_inside": 0.5, "api_calls_per_allow": 0.0},
                {"objects": 4000, "namespaces": 10, "types": 40, "index_objects": 4200.0,
                 "ready_seconds": 0.9, "rss_mib": 34.0, "p99_ms_inside": 0.6, "api_calls_per_allow": 0.0},
            ],
            "index_memory": [
                {"objects": 1000, "bytes_per_object": 90.0, "former_bytes_per_object": 900.0,
                 "bare_bytes_per_object": 70.0, "bare_former_bytes_per_object": 300.0},
                {"objects": 2000, "bytes_per_object": 85.0, "former_bytes_per_object": 890.0,
                 "bare_bytes_per_object": 68.0, "bare_former_bytes_per_object": 299.0},
            ],
            "storm_timelines": [
                {"run": "nsguard enforce, run 1", "webhook": true,
                 "samples": [[0.0, 20], [0.25, 20], [0.5, 12], [0.75, 3], [1.0, 0]]},
                {"run": "no webhook", "webhook": false,
                 "samples": [[0.0, 20], [0.25, 18], [0.5, 9], [0.75, 0]]},
            ],
        })
    }

    /// Checks that `svg` is well-formed SVG holding `title` and every label of `legend`, and
    /// one line per series: two coloured polylines each, the series and its legend sample
    /// (axes, ticks and the mesh are drawn in black).
    fn check(svg: &str, title: &str, legend: &[&str]) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for label in std::iter::once(&title).chain(legend) {
            assert!(texts.contains(label), "no text {label:?} in {texts:?}");
        }
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("stroke") != Some("#000000"))
            .count();
        assert_eq!(lines, 2 * legend.len(), "coloured polylines of {title}");
    }

    #[test]
    fn every_figure_is_well_formed_svg_with_its_title_and_a_line_and_legend_entry_per_series() {
        let figures = draw(&Data::from_summary(&small()).unwrap()).unwrap();
        let drawn: Vec<Figure> = figures.iter().map(|(f, _)| *f).collect();
        assert_eq!(drawn, [LATENCY, MEMORY, STORMS, SCALE, INDEX_MEMORY]);
        for (figure, svg) in &figures {
            let legend: &[&str] = match *figure {
                LATENCY => &[
                    "0 CRDs, p50",
                    "0 CRDs, p99",
                    "50 CRDs, p50",
                    "50 CRDs, p99",
                    "0 CRDs, with nsguard",
                    "0 CRDs, without",
                    "50 CRDs, with nsguard",
                    "50 CRDs, without",
                    "0 CRDs, with nsguard",
                    "0 CRDs, without",
                    "50 CRDs, with nsguard",
                    "50 CRDs, without",
                ],
                MEMORY => &["0 CRDs", "50 CRDs", "nsguard, index synced"],
                STORMS => &["nsguard enforce, run 1", "no webhook"],
                SCALE => &["start to /readyz", "p99 inside nsguard"],
                INDEX_MEMORY => &[
                    "index",
                    "index, former layout",
                    "bare objects",
                    "bare objects, former layout",
                ],
                other => panic!("unexpected figure {other:?}"),
            };
            check(svg, figure.title, legend);
        }
        // The axes say what they measure, with units.
        let storms = &figures[2].1;
        for desc in [
            "seconds since the deletions were sent",
            "namespaces remaining",
        ] {
            assert!(storms.contains(desc), "{desc}");
        }
        assert!(figures[0].1.contains(">\nms\n</text>"));
        assert!(figures[4].1.contains("bytes per object (log scale)"));
    }

    #[test]
    fn the_summary_of_the_checked_in_figures_draws_all_but_the_storms_it_did_not_record() {
        let summary: Value =
            serde_json::from_str(include_str!("../tests/fixtures/summary-2026-12-04.json"))
                .unwrap();
        let data = Data::from_summary(&summary).unwrap();
        assert_eq!(data.preflight.len(), 9);
        assert_eq!(data.preflight[8].inside, [0.7, 1.0, 1.3]);
        assert_eq!(data.scale.len(), 3);
        assert!(data.storms.is_empty());
        let drawn: Vec<Figure> = draw(&data).unwrap().into_iter().map(|(f, _)| f).collect();
        assert_eq!(drawn, [LATENCY, MEMORY, SCALE, INDEX_MEMORY]);
        // The keys other tools read are still there.
        for key in [
            "bytes_per_object",
            "scale_objects_max",
            "ready_s_at_scale_max",
            "dry_run_p99_delta_ms",
            "p99_ms_inside",
        ] {
            assert!(!summary[key].is_null(), "{key}");
        }
    }

    #[test]
    fn a_figure_not_measured_is_left_out_of_its_line() {
        let mut summary = small();
        summary["scale"][1]["p99_ms_inside"] = Value::Null;
        let svg = scale(&Data::from_summary(&summary).unwrap().scale).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let points: Vec<usize> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("stroke") == Some("#D95F02"))
            .map(|n| n.attribute("points").unwrap().split_whitespace().count())
            .collect();
        // The p99 line keeps one point; its legend sample has two.
        assert_eq!(points, [1, 2]);
    }

    #[test]
    fn a_summary_without_the_figures_keys_draws_nothing_and_a_wrong_one_says_which() {
        assert!(
            draw(&Data::from_summary(&serde_json::json!({"p99_ms_inside": 1.0})).unwrap())
                .unwrap()
                .is_empty()
        );
        let mut summary = small();
        summary["preflight"][1]["inside_ms"] = serde_json::json!([1.0]);
        let error = format!("{:#}", Data::from_summary(&summary).unwrap_err());
        assert!(
            error.contains("preflight[1]") && error.contains("inside_ms"),
            "{error}"
        );
    }

    #[test]
    fn write_all_writes_each_figure_into_the_directory() {
        let dir = std::env::temp_dir().join(format!("nsguard-figures-{}", std::process::id()));
        let written = write_all(&small(), &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "latency.svg",
                "memory.svg",
                "storms.svg",
                "scale.svg",
                "index-memory.svg"
            ]
        );
        for path in &written {
            assert!(std::fs::read_to_string(path).unwrap().starts_with("<svg"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_markdown_links_the_figure_beside_docs_benchmarks_md() {
        assert_eq!(
            STORMS.markdown(),
            "![Deletion storms: namespaces remaining over time](benchmarks/storms.svg)"
        );
    }
}
