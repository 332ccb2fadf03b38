//! The experiments' plots, as SVG (plotters' SVG backend: text stays SVG `<text>`, so no font
//! files are needed on the machine that draws them).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use mproc_book::pi::Estimate;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed and without markers (an ideal, a reference).
    pub reference: bool,
}

/// What a chart looks like.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    /// A log y axis (for figures that span orders of magnitude).
    pub log_y: bool,
    /// Extra room at the right of the x range, as a fraction of it, for the legend to sit in.
    pub legend_room: f64,
    /// The legend in the lower right corner instead of the upper right (for rising curves).
    pub legend_low: bool,
    /// A dot at every point (off for dense curves such as a CDF).
    pub markers: bool,
    /// x positions marked with a vertical line (e.g. multiples of the process count).
    pub marks: &'a [f64],
    pub marks_label: &'a str,
}

impl<'a> Chart<'a> {
    /// A linear chart with dots at every point, the legend in the upper right, nothing marked.
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str) -> Chart<'a> {
        Chart {
            title,
            x_label,
            y_label,
            log_x: false,
            log_y: false,
            legend_room: 0.0,
            legend_low: false,
            markers: true,
            marks: &[],
            marks_label: "",
        }
    }
}

const COLORS: [RGBColor; 15] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 128, 128),
    RGBColor(255, 0, 255),
    RGBColor(85, 107, 47),
];

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    format!("drawing the plot: {e}").into()
}

/// Draws `series` into `path`.
pub fn line_chart(path: &Path, c: &Chart<'_>, series: &[Series]) -> crate::Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let mut y1 = all().fold(0.0f64, |m, p| m.max(p.1)) * 1.1;
    let mut y0 = 0.0;
    if !x0.is_finite() || !x1.is_finite() || y1 <= 0.0 {
        return Err("nothing to plot".into());
    }
    if c.log_y {
        let lo = all().map(|p| p.1).filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min);
        (y0, y1) = (lo / 2.0, y1 * 2.0);
    }
    if c.log_x {
        (x0, x1) = (x0 / 1.5, x1 * 1.5 * (x1 / x0).powf(c.legend_room));
    } else {
        let pad = ((x1 - x0) * 0.04).max(0.5);
        (x0, x1) = (x0 - pad, x1 + pad + (x1 - x0) * c.legend_room);
    }
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(c.title, ("sans-serif", 18)).margin(20).x_label_area_size(55).y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(c.x_label)
                .y_desc(c.y_label)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .map_err(err)?;
            let mark = ShapeStyle::from(&RGBColor(255, 127, 14)).stroke_width(2);
            for (i, &m) in c.marks.iter().enumerate() {
                let line = chart.draw_series(LineSeries::new([(m, y0), (m, y1)], mark)).map_err(err)?;
                if i == 0 {
                    line.label(c.marks_label).legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], mark));
                }
            }
            for (i, s) in series.iter().enumerate() {
                let color = if s.reference { BLACK } else { COLORS[i % COLORS.len()] };
                let style = ShapeStyle::from(&color).stroke_width(if s.reference { 1 } else { 2 });
                let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| !c.log_y || p.1 > 0.0).collect();
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), style))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
                if c.markers && !s.reference {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
                }
            }
            chart
                .configure_series_labels()
                .position(if c.legend_low { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }};
    }
    match (c.log_x, c.log_y) {
        (true, true) => draw!(b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()).map_err(err)?),
        (true, false) => draw!(b.build_cartesian_2d((x0..x1).log_scale(), y0..y1).map_err(err)?),
        (false, true) => draw!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(err)?),
        (false, false) => draw!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?),
    }
    root.present().map_err(err)?;
    Ok(())
}

fn create(dir: &Path, name: &str) -> crate::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--svg {}: {e}", dir.display()))?;
    Ok(dir.join(name))
}

/// `pi`: speed-up against workers, one line per (mode, kernel), with the ideal line.
pub fn pi_speedup(dir: &Path, rows: &[(Estimate, f64)], parallelism: f64) -> crate::Result<PathBuf> {
    let path = create(dir, "pi-speedup.svg")?;
    let mut series: Vec<Series> = Vec::new();
    for (e, speedup) in rows {
        let name = format!("{} ({} kernel)", e.mode, e.kernel);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((e.workers as f64, *speedup)),
            None => series.push(Series { name, points: vec![(e.workers as f64, *speedup)], reference: false }),
        }
    }
    let max_w = rows.iter().map(|(e, _)| e.workers).max().unwrap_or(1) as f64;
    series.push(Series {
        name: "ideal (speed-up = workers)".into(),
        points: vec![(1.0, 1.0), (max_w, max_w)],
        reference: true,
    });
    let title = format!("Monte Carlo pi: speed-up over one serial worker (parallelism {parallelism:.2})");
    let chart = Chart::new(&title, "workers (threads or processes)", "speed-up (× one serial worker)");
    line_chart(&path, &chart, &series)?;
    Ok(path)
}

/// `primes --chunksizes`: time against chunk size (log axis), with the serial time beside it.
pub fn chunksizes(dir: &Path, title: &str, points: &[(usize, usize, f64)], serial: f64) -> crate::Result<PathBuf> {
    let path = create(dir, "primes-chunksize.svg")?;
    let xs: Vec<f64> = points.iter().map(|p| p.0 as f64).collect();
    let (lo, hi) = (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max));
    let series = [
        Series {
            name: "Pool".into(),
            points: points.iter().map(|&(c, _, t)| (c as f64, t)).collect(),
            reference: false,
        },
        Series { name: "serial (one process)".into(), points: vec![(lo, serial), (hi, serial)], reference: true },
    ];
    let chart =
        Chart { log_x: true, ..Chart::new(title, "chunk size (tasks per chunk, log scale)", "time (seconds, median)") };
    line_chart(&path, &chart, &series)?;
    Ok(path)
}

/// `primes --nchunks`: the sawtooth, time against the number of chunks, multiples of the process
/// count marked.
pub fn sawtooth(dir: &Path, title: &str, points: &[(usize, usize, f64)], processes: usize) -> crate::Result<PathBuf> {
    let path = create(dir, "primes-sawtooth.svg")?;
    let max = points.iter().map(|p| p.1).max().unwrap_or(1);
    let marks: Vec<f64> = (1..=max / processes.max(1)).map(|k| (k * processes) as f64).collect();
    let series = [Series {
        name: "Pool".into(),
        points: points.iter().map(|&(_, n, t)| (n as f64, t)).collect(),
        reference: false,
    }];
    let label = format!("multiples of {processes} (the process count)");
    let chart =
        Chart { marks: &marks, marks_label: &label, ..Chart::new(title, "number of chunks", "time (seconds, median)") };
    line_chart(&path, &chart, &series)?;
    Ok(path)
}

/// `contention`: throughput against processes (one line per primitive, log y), and the
/// wait-time CDF at 2 processes (one line per lock, log x).
pub fn contention(
    dir: &Path,
    rows: &[(&str, usize, f64)],
    cdfs: &[(&str, Vec<(f64, f64)>)],
    parallelism: f64,
) -> crate::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for &(name, n, mops) in rows {
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((n as f64, mops)),
            None => series.push(Series { name: name.to_owned(), points: vec![(n as f64, mops)], reference: false }),
        }
    }
    if series.iter().any(|s| s.points.len() > 1) {
        let path = create(dir, "throughput.svg")?;
        let title =
            format!("Lock contention: throughput against processes (uninstrumented; parallelism {parallelism:.2})");
        let chart = Chart {
            log_y: true,
            legend_room: 0.35,
            ..Chart::new(&title, "processes", "throughput (Mops/s, all processes, log scale)")
        };
        line_chart(&path, &chart, &series)?;
        out.push(path);
    }
    if !cdfs.is_empty() {
        let path = create(dir, "wait-cdf.svg")?;
        let series: Vec<Series> =
            cdfs.iter().map(|(n, p)| Series { name: (*n).to_owned(), points: p.clone(), reference: false }).collect();
        let title = format!("Lock contention: wait-time CDF, 2 processes (parallelism {parallelism:.2})");
        let chart = Chart {
            log_x: true,
            legend_low: true,
            markers: false,
            ..Chart::new(
                &title,
                "wait per acquisition (ns, log scale; bucket upper bounds)",
                "fraction of acquisitions waiting at most x",
            )
        };
        line_chart(&path, &chart, &series)?;
        out.push(path);
    }
    if out.is_empty() {
        return Err(
            "--svg: nothing to plot (a throughput plot needs two process counts, a CDF needs 2 processes)".into()
        );
    }
    Ok(out)
}
