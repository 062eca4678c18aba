//! `OUT/report.html`: a backtest in one self-contained page. Inline CSS and
//! inline SVG (drawn with plotters' SVG backend, text left to the browser),
//! no script and no external reference, so the file can be mailed, archived
//! as a CI artifact or opened offline.
//!
//! Sections: forecast accuracy per model, decisions per policy, forecasts of
//! the best model on its best, median and worst series, the distribution of
//! MASE per model, calibration (nominal vs observed quantile levels), and a
//! decision timeline for saturating targets. A section without data says so
//! in a sentence instead of drawing an empty plot.
//!
//! The tables are drawn from the column lists of [`crate::columns`], the
//! calibration from [`headroom_forecast::metrics::calibration`].

use std::fmt::Write as _;
use std::path::Path;

use headroom_core::{Action, Forecast, ResampledSeries};
use headroom_engine::replay::{Policy, ReplayReport, Timeline};
use headroom_forecast::metrics::{Calibration, ModelScore, SeriesScore, calibration};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::columns::{Best, Column, MODEL_SCORES, POLICY_SCORES, View, num, pct, shown};
use crate::error::{Error, Result};

/// plotters' errors (drawing into a string fails only on a bug), before
/// they become [`Error::Plot`] naming the plot.
type Drawn<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Names the plot a plotters error came from.
fn plot(plot: &'static str) -> impl FnOnce(Box<dyn std::error::Error>) -> Error {
    move |e| Error::Plot { plot, message: e.to_string() }
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// Page title, e.g. `headroom backtest: data/sample/metrics.parquet`.
    pub title: String,
    /// The actuals, on the forecasts' grid.
    pub series: &'a [ResampledSeries],
    /// Every forecast of every model from every origin.
    pub forecasts: &'a [Forecast],
    /// One score per model, over all series.
    pub scores: &'a [ModelScore],
    /// One score per model and series.
    pub series_scores: &'a [SeriesScore],
    /// The decision replay, when one was run.
    pub replay: Option<&'a ReplayReport>,
}

/// Writes the report to `path` (one HTML file, written whole or not at all).
pub fn write_report(path: &Path, input: &ReportInput<'_>) -> Result<()> {
    let html = render_report(input)?;
    headroom_collect::store::write_atomically(path, |file| {
        std::io::Write::write_all(file, html.as_bytes()).map_err(headroom_collect::Error::io(path))
    })
    .map_err(|source| Error::Report { path: path.into(), source })
}

/// The report as one HTML document.
pub fn render_report(input: &ReportInput<'_>) -> Result<String> {
    let best = best_model(input.scores);
    let mut h = String::with_capacity(256 * 1024);
    let title = esc(&input.title);
    let _ =
        write!(h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n");
    let _ = write!(h, "<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n");
    h.push_str(&summary(input));
    h.push_str(
        "<nav><a href=\"#accuracy\">Accuracy</a> · <a href=\"#decisions\">Decisions</a> · \
         <a href=\"#forecasts\">Forecasts</a> · <a href=\"#mase\">MASE per series</a> · \
         <a href=\"#calibration\">Calibration</a> · <a href=\"#timeline\">Decision timeline</a></nav>\n",
    );
    h.push_str(&accuracy_section(input.scores, best.as_deref()));
    h.push_str(&decisions_section(input.replay));
    h.push_str(&forecasts_section(input, best.as_deref())?);
    h.push_str(&mase_section(input)?);
    h.push_str(&calibration_section(input)?);
    h.push_str(&timeline_section(input.replay)?);
    let _ = write!(h, "<footer>headroom {}</footer>\n</body>\n</html>\n", env!("CARGO_PKG_VERSION"));
    Ok(h)
}

const CSS: &str = concat!(
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1280px;",
    "padding:0 1em;color:#222;line-height:1.4}",
    "h1{font-size:1.6em;margin-bottom:.2em}",
    "h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}",
    "nav{margin:.5em 0 1em}nav a{color:#1f77b4;text-decoration:none}",
    "table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}",
    "th,td{padding:.3em .7em;border-bottom:1px solid #e4e4e4;text-align:right}",
    "th{background:#f5f5f5;font-weight:600}th:first-child,td:first-child{text-align:left}",
    "td:first-child{white-space:nowrap}",
    "td.best{font-weight:700;color:#0b6e2e}",
    "p.meta{color:#555;margin-top:0}p.note,figcaption{color:#555;font-size:.9em}p.empty{font-style:italic;color:#666}",
    "figure{margin:1em 0}svg.plot{max-width:100%;height:auto;display:block}",
    "footer{margin-top:3em;color:#888;font-size:.8em}",
);

/// Series colours (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const FONT: &str = "sans-serif";

// ---------------------------------------------------------------- tables

fn summary(input: &ReportInput<'_>) -> String {
    let origins = input.forecasts.iter().map(|f| f.origin_ms);
    let span = match (origins.clone().min(), origins.max()) {
        (Some(a), Some(b)) => format!(", origins {} to {}", esc(&day_time(a)), esc(&day_time(b))),
        _ => String::new(),
    };
    let horizon = input
        .forecasts
        .first()
        .map(|f| format!(", horizon {}", headroom_core::format_duration(f.q.len() as i64 * f.step_ms)))
        .unwrap_or_default();
    format!(
        "<p class=\"meta\">{} series · {} models · {} forecasts{span}{horizon}. All times UTC.</p>\n",
        input.series.len(),
        input.scores.len(),
        input.forecasts.len()
    )
}

/// The model with the lowest mean MASE (the first model if none has a finite one).
fn best_model(scores: &[ModelScore]) -> Option<String> {
    scores
        .iter()
        .filter(|s| s.mean_mase.is_finite())
        .min_by(|a, b| a.mean_mase.total_cmp(&b.mean_mase))
        .or(scores.first())
        .map(|s| s.model.clone())
}

/// A table: header cells, then rows of (text, whether to mark it best).
fn table(header: &[&str], rows: &[Vec<(String, bool)>]) -> String {
    let mut t = String::from("<table>\n<thead><tr>");
    for h in header {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        t.push_str("<tr>");
        for (cell, best) in row {
            let _ = write!(t, "<td{}>{}</td>", if *best { " class=\"best\"" } else { "" }, esc(cell));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody>\n</table>\n");
    t
}

/// Marks the best value of a column: `lower` is better, or closest to `target`.
fn best_index(values: &[f64], better: impl Fn(f64) -> f64) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .min_by(|a, b| better(*a.1).total_cmp(&better(*b.1)))
        .map(|(i, _)| i)
}

/// The table of `rows` as the report shows `columns`, each column's best row
/// marked; `picked` says which rows a [`Best::Picked`] column marks.
fn column_table<T>(columns: &'static [Column<T>], rows: &[T], picked: &dyn Fn(&T) -> bool) -> String {
    let cells = shown(columns, View::Html);
    let header: Vec<&str> = cells.iter().map(|(_, s)| s.header).collect();
    let best: Vec<Option<usize>> = cells
        .iter()
        .map(|(c, s)| {
            let values = || rows.iter().map(|r| c.get.number(r)).collect::<Vec<f64>>();
            match s.best {
                Best::Lowest => best_index(&values(), |v| v),
                Best::Highest => best_index(&values(), |v| -v),
                Best::Closest(target) => best_index(&values(), |v| (v - target).abs()),
                Best::None | Best::Picked => None,
            }
        })
        .collect();
    let body: Vec<Vec<(String, bool)>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            cells
                .iter()
                .zip(&best)
                .map(|((_, s), b)| ((s.show)(r), if s.best == Best::Picked { picked(r) } else { *b == Some(i) }))
                .collect()
        })
        .collect();
    table(&header, &body)
}

fn accuracy_section(scores: &[ModelScore], best: Option<&str>) -> String {
    let mut h = String::from("<section id=\"accuracy\">\n<h2>Forecast accuracy</h2>\n");
    if scores.is_empty() {
        h.push_str("<p class=\"empty\">No model was scored.</p>\n</section>\n");
        return h;
    }
    h.push_str(&column_table(&MODEL_SCORES, scores, &|s| Some(s.model.as_str()) == best));
    h.push_str(
        "<p class=\"note\">MASE: mean absolute error of p50 over the in-sample seasonal-naive (1 day) error, \
         averaged per series then over series (below 1 beats seasonal naive). sMAPE of p50. Coverage: share of \
         actuals inside [p10, p90] (nominal 80 %). Saturation: a (series, origin) pair is an event when the \
         actuals cross the series' threshold within the horizon, flagged when p90 (p95, p99) does. Bold: best in \
         the column (coverage: closest to 80 %); the best model by mean MASE is drawn below.</p>\n</section>\n",
    );
    h
}

fn decisions_section(replay: Option<&ReplayReport>) -> String {
    let mut h = String::from("<section id=\"decisions\">\n<h2>Decisions</h2>\n");
    let Some(replay) = replay.filter(|r| !r.policies.is_empty()) else {
        h.push_str("<p class=\"empty\">No decision replay was run for this backtest.</p>\n</section>\n");
        return h;
    };
    h.push_str(&column_table(&POLICY_SCORES, &replay.policies, &|_| false));
    h.push_str(
        "<p class=\"note\">The policy replayed over the recorded load with each model's forecasts, and the \
         reactive baseline; <i>model</i>@<i>q</i>: the same policy with every target acting on quantile <i>q</i> \
         (the risk trade-off, for the LSTM and the baseline with the fewest under-provisioned minutes). An event \
         is a run of bins above the saturation level at the starting replica count; caught when the policy had \
         scaled out before it started. Precision: scale-outs followed by an event within the horizon. Lead: from \
         the first scale-out to the event. Churn: actions reversed within an hour.</p>\n</section>\n",
    );
    h
}

// ---------------------------------------------------------------- forecasts

fn forecasts_section(input: &ReportInput<'_>, best: Option<&str>) -> Result<String> {
    let mut h = String::from("<section id=\"forecasts\">\n");
    let Some(best) = best else {
        h.push_str("<h2>Forecasts</h2>\n<p class=\"empty\">No model was scored.</p>\n</section>\n");
        return Ok(h);
    };
    let _ = writeln!(h, "<h2>Forecasts of the best model, {}</h2>", esc(best));
    // Series forecast exactly (MASE 0: constant ones) say nothing about the model: left out.
    let mut ranked: Vec<&SeriesScore> =
        input.series_scores.iter().filter(|s| s.model == best && s.mase.is_finite() && s.mase > 0.0).collect();
    ranked.sort_by(|a, b| a.mase.total_cmp(&b.mase));
    let mut picks: Vec<(&str, &SeriesScore)> = Vec::new();
    if let (Some(first), Some(last)) = (ranked.first(), ranked.last()) {
        picks.push(("best", first));
        if ranked.len() > 2 {
            picks.push(("median", ranked[ranked.len() / 2]));
        }
        if ranked.len() > 1 {
            picks.push(("worst", last));
        }
    }
    let mut drawn = 0;
    for (rank, score) in picks {
        let Some(series) = input.series.iter().find(|s| s.key.entity == score.entity && s.key.metric == score.metric)
        else {
            continue;
        };
        let mut fcs: Vec<&Forecast> =
            input.forecasts.iter().filter(|f| f.model == best && f.key == series.key && !f.q.is_empty()).collect();
        if fcs.is_empty() {
            continue;
        }
        fcs.sort_by_key(|f| f.origin_ms);
        let name = series.key.to_string();
        let svg =
            forecast_plot(series, &fcs, &format!("{rank}: MASE {}", num(score.mase, 2))).map_err(plot("forecast"))?;
        let _ = write!(
            h,
            "<figure>\n{}<figcaption>{rank} series for {} by MASE: <b>{}</b> (MASE {}, sMAPE {} %, coverage {}, \
             {} origins). Black: actuals; band: p10–p90; line: p50. Dashed vertical lines mark the origins; each \
             origin's forecast is drawn until the next one.</figcaption>\n</figure>\n",
            tag_svg(&svg, &format!("{best} forecasts of {name}")),
            esc(best),
            esc(&name),
            num(score.mase, 3),
            num(score.smape, 1),
            pct(score.coverage),
            fcs.len()
        );
        drawn += 1;
    }
    if drawn == 0 {
        let _ = writeln!(
            h,
            "<p class=\"empty\">No series has both a finite MASE and forecasts for {}: nothing to draw.</p>",
            esc(best)
        );
    }
    h.push_str("</section>\n");
    Ok(h)
}

fn forecast_plot(series: &ResampledSeries, fcs: &[&Forecast], caption: &str) -> Drawn<String> {
    let step = series.grid.step_ms;
    let first_origin = fcs[0].origin_ms;
    let end = fcs.iter().map(|f| f.ts(f.q.len())).max().unwrap_or(first_origin);
    // Two days of history before the first origin give the eye the daily pattern.
    let start = (first_origin - 2 * 86_400_000).max(series.grid.start_ms);
    let actual: Vec<(i64, f64)> = (0..series.values.len())
        .map(|i| (series.grid.start_ms + i as i64 * step, series.values[i]))
        .filter(|(t, _)| *t >= start && *t < end)
        .collect();
    // Each forecast until the next origin (the last one in full).
    let mut segments: Vec<(&Forecast, usize)> = Vec::new();
    for (k, f) in fcs.iter().enumerate() {
        let until = fcs.get(k + 1).map_or(f.q.len(), |next| {
            (((next.origin_ms - f.origin_ms) / f.step_ms.max(1)).max(1) as usize).min(f.q.len())
        });
        segments.push((f, until));
    }
    let values = actual.iter().map(|p| p.1).chain(
        segments.iter().flat_map(|(f, n)| f.q.p10[..*n].iter().chain(&f.q.p90[..*n]).copied().collect::<Vec<_>>()),
    );
    let (lo, hi) = y_range(values);
    let hi = hi + (hi - lo) * 0.25; // room for the legend
    let ticks = time_ticks(start, end);
    let colour = PALETTE[0];

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((start..end).with_key_points(ticks), lo..hi)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|t| day_time(*t))
            .y_desc(series.key.metric.as_str())
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.08))
            .draw()?;
        for (k, (f, n)) in segments.iter().enumerate() {
            let n = *n;
            let mut band: Vec<(i64, f64)> = (0..n).map(|i| (f.ts(i), f.q.p10[i])).collect();
            band.extend((0..n).rev().map(|i| (f.ts(i), f.q.p90[i])));
            let area = chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.22).filled())))?;
            if k == 0 {
                area.label("p10–p90")
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], colour.mix(0.3).filled()));
            }
            let line =
                chart.draw_series(LineSeries::new((0..n).map(|i| (f.ts(i), f.q.p50[i])), colour.stroke_width(2)))?;
            if k == 0 {
                line.label("p50")
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            }
            chart.draw_series(DashedLineSeries::new(
                [(f.origin_ms, lo), (f.origin_ms, hi)],
                3,
                4,
                BLACK.mix(0.35).stroke_width(1),
            ))?;
        }
        draw_runs(&mut chart, &actual, BLACK.stroke_width(1), Some("actual"))?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present()?;
    }
    Ok(svg)
}

/// Draws a line through the finite points, broken at gaps (NaN).
fn draw_runs<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: &[(X::ValueType, f64)],
    style: ShapeStyle,
    label: Option<&str>,
) -> Drawn
where
    X: plotters::coord::ranged1d::Ranged,
    X::ValueType: Clone + 'static,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    let mut labelled = false;
    for run in points.split(|p| !p.1.is_finite()).filter(|r| !r.is_empty()) {
        let s = chart.draw_series(LineSeries::new(run.iter().cloned(), style)).map_err(|e| e.to_string())?;
        if let (Some(label), false) = (label, labelled) {
            s.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            labelled = true;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- MASE distribution

fn mase_section(input: &ReportInput<'_>) -> Result<String> {
    let mut h = String::from("<section id=\"mase\">\n<h2>MASE per series</h2>\n");
    let mut models: Vec<&str> = input.scores.iter().map(|s| s.model.as_str()).collect();
    for s in input.series_scores {
        if !models.contains(&s.model.as_str()) {
            models.push(&s.model);
        }
    }
    let per_model: Vec<(&str, Vec<f64>)> = models
        .iter()
        .map(|m| {
            let v = input.series_scores.iter().filter(|s| s.model == *m && s.mase.is_finite()).map(|s| s.mase);
            (*m, v.collect::<Vec<f64>>())
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if per_model.is_empty() {
        h.push_str("<p class=\"empty\">No series has a finite MASE.</p>\n</section>\n");
        return Ok(h);
    }
    let svg = mase_plot(&per_model).map_err(plot("MASE"))?;
    let _ = write!(
        h,
        "<figure>\n{}<figcaption>One dot per series (mean MASE over its origins), on a log scale. Box: quartiles \
         and median; whiskers: the most extreme series within 1.5 × IQR of the box. Dashed: MASE 1, the \
         in-sample error of seasonal naive.</figcaption>\n</figure>\n</section>\n",
        tag_svg(&svg, "distribution of MASE per model")
    );
    Ok(h)
}

fn mase_plot(per_model: &[(&str, Vec<f64>)]) -> Drawn<String> {
    // Coordinates in thousandths (x: of a model slot, y: of a decade of MASE), as integers:
    // plotters only takes hand-placed ticks on integer axes.
    let milli = |v: f64| (v * 1000.0).round() as i64;
    let floor = 1e-3;
    let logs: Vec<Vec<f64>> = per_model.iter().map(|(_, v)| v.iter().map(|m| m.max(floor).log10()).collect()).collect();
    let all = logs.iter().flatten().copied();
    let lo = all.clone().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = all.fold(f64::NEG_INFINITY, f64::max).max(0.0);
    let pad = ((hi - lo) * 0.06).max(0.05);
    let (lo, hi) = (lo - pad, hi + pad);
    let nice =
        [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];
    let mut ticks: Vec<f64> = nice.iter().map(|v: &f64| v.log10()).filter(|t| *t >= lo && *t <= hi).collect();
    if ticks.len() > 9 {
        // Wide ranges: powers of ten only.
        ticks.retain(|t| (t - t.round()).abs() < 1e-9);
    }
    let n = per_model.len();
    let names: Vec<String> = per_model.iter().map(|(m, _)| m.to_string()).collect();
    let width = (240 + 150 * n as u32).clamp(640, 1200);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_range = (-500..n as i64 * 1000 - 500).with_key_points((0..n as i64).map(|i| i * 1000).collect());
        let y_range = (milli(lo)..milli(hi)).with_key_points(ticks.iter().map(|t| milli(*t)).collect());
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                if x % 1000 == 0 { names.get((x / 1000) as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_label_formatter(&|y| trim_num(10f64.powf(*y as f64 / 1000.0)))
            .y_desc("MASE (log scale)")
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.08))
            .label_style((FONT, 13))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(-500, 0), (n as i64 * 1000 - 500, 0)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        for (i, v) in logs.iter().enumerate() {
            let c = colour(i);
            let x = i as i64 * 1000;
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let (q1, med, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.5), quantile(&sorted, 0.75));
            let iqr = q3 - q1;
            let lo_w = sorted.iter().copied().find(|v| *v >= q1 - 1.5 * iqr).unwrap_or(q1);
            let hi_w = sorted.iter().rev().copied().find(|v| *v <= q3 + 1.5 * iqr).unwrap_or(q3);
            let (q1, med, q3, lo_w, hi_w) = (milli(q1), milli(med), milli(q3), milli(lo_w), milli(hi_w));
            let w = 280;
            chart.draw_series(std::iter::once(Rectangle::new([(x - w, q1), (x + w, q3)], c.mix(0.15).filled())))?;
            chart.draw_series(std::iter::once(Rectangle::new([(x - w, q1), (x + w, q3)], c.stroke_width(1))))?;
            for seg in [
                vec![(x - w, med), (x + w, med)],
                vec![(x, q3), (x, hi_w)],
                vec![(x, q1), (x, lo_w)],
                vec![(x - w / 2, hi_w), (x + w / 2, hi_w)],
                vec![(x - w / 2, lo_w), (x + w / 2, lo_w)],
            ] {
                chart.draw_series(std::iter::once(PathElement::new(seg, c.stroke_width(2))))?;
            }
            // Deterministic jitter (golden-ratio sequence) so that equal values stay visible.
            chart.draw_series(v.iter().enumerate().map(|(k, y)| {
                let jitter = milli(((k as f64 * 0.618_034).fract() - 0.5) * 0.5);
                Circle::new((x + jitter, milli(*y)), 2, c.mix(0.55).filled())
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let r = q * (sorted.len() - 1) as f64;
    let (i, d) = (r.floor() as usize, r - r.floor());
    if i + 1 < sorted.len() { sorted[i] + (sorted[i + 1] - sorted[i]) * d } else { sorted[i] }
}

// ---------------------------------------------------------------- calibration

fn calibration_section(input: &ReportInput<'_>) -> Result<String> {
    let mut h = String::from("<section id=\"calibration\">\n<h2>Calibration</h2>\n");
    let cal = calibration(input.series, input.forecasts);
    if cal.is_empty() {
        h.push_str(
            "<p class=\"empty\">No forecast overlaps the actuals, so calibration cannot be measured.</p>\n</section>\n",
        );
        return Ok(h);
    }
    let svg = calibration_plot(&cal).map_err(plot("calibration"))?;
    let rows: Vec<Vec<(String, bool)>> = cal
        .iter()
        .map(|c| {
            let observed = c.observed().map(|o| (pct(o), false));
            [(c.model.clone(), false), (c.total.to_string(), false)].into_iter().chain(observed).collect()
        })
        .collect();
    let _ = write!(
        h,
        "<figure>\n{}<figcaption>Share of actuals at or below each forecast quantile, over every origin and step. \
         A calibrated model lies on the diagonal; above it the quantiles are too high (over-forecast), below it \
         too low.</figcaption>\n</figure>\n{}</section>\n",
        tag_svg(&svg, "calibration: nominal vs observed quantile level"),
        table(
            &[
                "model",
                "actuals",
                "≤ p10 (nominal 10 %)",
                "≤ p50 (50 %)",
                "≤ p90 (90 %)",
                "≤ p95 (95 %)",
                "≤ p99 (99 %)"
            ],
            &rows
        )
    );
    Ok(h)
}

fn calibration_plot(cal: &[Calibration]) -> Drawn<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("nominal quantile")
            .y_desc("share of actuals at or below")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.08))
            .draw()?;
        chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, BLACK.mix(0.5).stroke_width(1)))?;
        for (i, c) in cal.iter().enumerate() {
            let col = colour(i);
            let pts: Vec<(f64, f64)> = Calibration::NOMINAL.into_iter().zip(c.observed()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
                .label(c.model.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present()?;
    }
    Ok(svg)
}

/// The legend of a chart, drawn the same way on every plot.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

// ---------------------------------------------------------------- decision timeline

/// At most this many targets get a timeline.
const MAX_TIMELINES: usize = 3;

fn timeline_section(replay: Option<&ReplayReport>) -> Result<String> {
    let mut h = String::from("<section id=\"timeline\">\n<h2>Decision timeline</h2>\n");
    let Some(replay) = replay else {
        h.push_str("<p class=\"empty\">No decision replay was run, so there is no timeline.</p>\n</section>\n");
        return Ok(h);
    };
    let mut timelines: Vec<&Timeline> =
        replay.timelines.iter().filter(|t| !t.actual.is_empty() && !t.replicas.is_empty()).collect();
    if timelines.is_empty() {
        h.push_str("<p class=\"empty\">The replay recorded no timeline.</p>\n</section>\n");
        return Ok(h);
    }
    // Saturating targets first (most events), then the rest in replay order.
    timelines.sort_by_key(|t| std::cmp::Reverse(t.events.len()));
    let saturating = timelines.iter().filter(|t| !t.events.is_empty()).count();
    let shown: Vec<&Timeline> = if saturating > 0 {
        timelines.into_iter().filter(|t| !t.events.is_empty()).take(MAX_TIMELINES).collect()
    } else {
        h.push_str("<p class=\"empty\">No target saturated during the replay; the first target is shown.</p>\n");
        timelines.into_iter().take(1).collect()
    };
    if saturating > shown.len() {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} of {saturating} saturating targets shown (most events first).</p>",
            shown.len()
        );
    }
    for t in shown {
        let svg = timeline_plot(t, replay).map_err(plot("decision timeline"))?;
        let _ = write!(
            h,
            "<figure>\n{}<figcaption>Target <b>{}</b> ({}): {} saturation events (shaded) above the level {} at \
             {} replicas. Right axis: each policy's replica count; ▲ scale out, ▼ scale in, ✕ restart.\
             </figcaption>\n</figure>\n",
            tag_svg(&svg, &format!("decision timeline of {}", t.target)),
            esc(&t.target),
            esc(&t.series),
            t.events.len(),
            num(t.level, 2),
            t.start_replicas
        );
    }
    h.push_str("</section>\n");
    Ok(h)
}

/// A replica count as a step line's corner points, ending at `end`.
fn step_points(steps: &[headroom_engine::replay::Step], end: i64) -> Vec<(i64, f64)> {
    let mut pts = Vec::with_capacity(2 * steps.len() + 1);
    for (k, s) in steps.iter().enumerate() {
        if k > 0 {
            pts.push((s.at_ms, f64::from(steps[k - 1].replicas)));
        }
        pts.push((s.at_ms, f64::from(s.replicas)));
    }
    if let Some(last) = steps.last() {
        pts.push((end.max(last.at_ms), f64::from(last.replicas)));
    }
    pts
}

fn timeline_plot(t: &Timeline, replay: &ReplayReport) -> Drawn<String> {
    let step = t.step_ms.max(1);
    let start = t.start_ms;
    let end = start + t.actual.len() as i64 * step;
    let load: Vec<(i64, f64)> = t.actual.iter().enumerate().map(|(i, v)| (start + i as i64 * step, *v)).collect();
    let (_, hi) = y_range(t.actual.iter().copied().chain([t.level]));
    let y_hi = hi.max(t.level * 1.1) * 1.3; // room for the legend
    let max_replicas = t.replicas.iter().flat_map(|(_, s)| s.iter().map(|s| s.replicas)).max().unwrap_or(1);
    let r_hi = f64::from(max_replicas) + 2.0;
    let ticks = time_ticks(start, end);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .right_y_label_area_size(50)
            .build_cartesian_2d((start..end).with_key_points(ticks.clone()), 0f64..y_hi)?
            .set_secondary_coord((start..end).with_key_points(ticks), 0f64..r_hi);
        chart
            .configure_mesh()
            .x_label_formatter(&|t| day_time(*t))
            .y_desc("load")
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.08))
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("replicas")
            .y_labels(r_hi as usize + 1)
            .y_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() })
            .draw()?;
        let red = RGBColor(214, 39, 40);
        for (k, (a, b)) in t.events.iter().enumerate() {
            let s =
                chart.draw_series(std::iter::once(Rectangle::new([(*a, 0.0), (*b, y_hi)], red.mix(0.15).filled())))?;
            if k == 0 {
                s.label("saturation event")
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], red.mix(0.25).filled()));
            }
        }
        draw_runs(&mut chart, &load, BLACK.stroke_width(1), Some("load"))?;
        chart
            .draw_series(DashedLineSeries::new([(start, t.level), (end, t.level)], 6, 4, red.stroke_width(2)))?
            .label("level")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        for (i, (policy, steps)) in t.replicas.iter().enumerate() {
            // A policy at another quantile (`lstm@0.99`) is dashed (its model's first variant long dashes,
            // the next dots), in the colour of the policy it varies.
            let varied = Policy::varied(policy);
            let col = colour(t.replicas.iter().position(|(p, _)| p == varied).unwrap_or(i));
            // A small vertical offset keeps equal replica counts of different policies apart.
            let off = 0.06 * (i as f64 - (t.replicas.len() as f64 - 1.0) / 2.0);
            let pts: Vec<(i64, f64)> = step_points(steps, end).into_iter().map(|(x, y)| (x, y + off)).collect();
            let label = format!("{policy} replicas");
            if varied == policy {
                chart
                    .draw_secondary_series(LineSeries::new(pts, col.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            } else {
                let nth = t.replicas[..i].iter().filter(|(p, _)| p != varied && Policy::varied(p) == varied).count();
                let (dash, gap) = [(6, 4), (2, 3)][nth % 2];
                chart
                    .draw_secondary_series(DashedLineSeries::new(pts, dash, gap, col.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + 20, y)], dash, gap, col.stroke_width(2))
                    });
            }
            let changes: Vec<(i64, f64, bool)> = steps
                .windows(2)
                .filter(|w| w[1].replicas != w[0].replicas)
                .map(|w| (w[1].at_ms, f64::from(w[1].replicas) + off, w[1].replicas > w[0].replicas))
                .collect();
            let size = 6;
            chart.draw_secondary_series(
                changes.iter().filter(|c| c.2).map(|c| TriangleMarker::new((c.0, c.1), size, col.filled())),
            )?;
            // ▼: a triangle in pixels around the point.
            chart.draw_secondary_series(changes.iter().filter(|c| !c.2).map(|c| {
                EmptyElement::at((c.0, c.1))
                    + Polygon::new(vec![(-size, -size), (size, -size), (0, size)], col.filled())
            }))?;
            let restarts = replay.decisions.iter().filter(|d| {
                d.policy == *policy && d.decision.target == t.target && d.decision.action == Action::Restart
            });
            let replicas_at =
                |ms: i64| steps.iter().take_while(|s| s.at_ms <= ms).last().map_or(t.start_replicas, |s| s.replicas);
            chart.draw_secondary_series(restarts.map(|d| {
                let at = d.decision.decided_at_ms;
                Cross::new((at, f64::from(replicas_at(at)) + off), 6, col.stroke_width(2))
            }))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------- helpers

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Makes plotters' SVG fit inline HTML: no namespace URL (HTML needs none), scalable, labelled.
fn tag_svg(svg: &str, label: &str) -> String {
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    svg.replacen("<svg ", &format!("<svg class=\"plot\" role=\"img\" aria-label=\"{}\" ", esc(label)), 1)
}

/// A tick label: as few digits as the value needs.
fn trim_num(v: f64) -> String {
    let s = if v >= 1.0 { format!("{v:.0}") } else { format!("{v:.3}") };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// `05-14 12:00` (UTC), or `05-14` at midnight.
fn day_time(ms: i64) -> String {
    let ts = headroom_core::format_ts(ms); // 2014-05-14T12:00:00Z
    match (ts.get(5..10), ts.get(11..16)) {
        (Some(day), Some("00:00")) => day.to_owned(),
        (Some(day), Some(time)) => format!("{day} {time}"),
        _ => ts,
    }
}

/// Tick positions on whole days (or hours for short spans), at most about eight.
fn time_ticks(start: i64, end: i64) -> Vec<i64> {
    const HOUR: i64 = 3_600_000;
    let span = (end - start).max(1);
    let step =
        [HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 48 * HOUR, 7 * 24 * HOUR, 14 * 24 * HOUR, 28 * 24 * HOUR]
            .into_iter()
            .find(|s| span / s <= 8)
            .unwrap_or((span + 7) / 8);
    let first = start.div_euclid(step) * step + if start.rem_euclid(step) == 0 { 0 } else { step };
    (0..).map(|k| first + k * step).take_while(|t| *t <= end).collect()
}

/// A padded y range over the finite values (0..1 if there are none).
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs().max(1e-9) * 0.01);
    // Loads are mostly non-negative: start the axis at 0 when it is close.
    let lo = if lo >= 0.0 && lo - pad < (hi - lo) * 0.5 { 0.0 } else { lo - pad };
    (lo, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::minutes;

    #[test]
    fn escapes_markup_in_names() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(f64::NAN, 2), "–");
        assert_eq!(pct(0.8123), "81.2 %");
        assert_eq!(minutes(200.0), "3h 20m");
        assert_eq!(minutes(45.2), "45m");
        assert_eq!(trim_num(0.5), "0.5");
        assert_eq!(trim_num(10.0), "10");
        assert_eq!(day_time(1_704_067_200_000), "01-01");
        assert_eq!(day_time(1_704_067_200_000 + 90 * 60_000), "01-01 01:30");
    }

    #[test]
    fn time_ticks_fall_on_whole_days() {
        let day = 86_400_000;
        let t0 = 1_704_067_200_000;
        let ticks = time_ticks(t0 + 3_600_000, t0 + 6 * day);
        assert_eq!(ticks.first(), Some(&(t0 + day)));
        assert!(ticks.iter().all(|t| t % day == 0) && ticks.len() <= 8);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[5.0], 0.25), 5.0);
    }
}
