//! The columns of every score table, defined once per score type: each
//! column's name (in CSV and Parquet files), its value, and how the terminal
//! table and the HTML report show it. CSV, Parquet, the terminal and the
//! report all read these lists, so adding a metric is one entry.
//!
//! * [`MODEL_SCORES`] — one model over all series (the terminal table, the
//!   report's accuracy table; scores.json holds them as serde writes them).
//! * [`SERIES_SCORES`] — one model on one series (scores.csv, scores.parquet).
//! * [`POLICY_SCORES`] — one replayed policy (decision_scores.csv, the
//!   terminal's decision table, the report's decisions table): the reactive
//!   one, one per model, and the risk trade-off's `model@0.95`, `model@0.99`.

use std::fmt::Write as _;

use headroom_engine::replay::PolicyScore;
use headroom_forecast::metrics::{ModelScore, SeriesScore};
use polars::prelude::{Column as FrameColumn, DataFrame, PolarsResult};

/// How a column gets its value from a row, and so its type in Parquet.
/// CSV writes the value as Rust displays it.
#[derive(Debug)]
pub enum Get<T: 'static> {
    /// Text (a Parquet string column).
    Text(fn(&T) -> String),
    /// A count (a Parquet Int64 column).
    Count(fn(&T) -> usize),
    /// A measure (a Parquet Float64 column; `NaN` where undefined).
    Number(fn(&T) -> f64),
}

impl<T> Get<T> {
    /// The value in `row` as text (CSV).
    pub fn text(&self, row: &T) -> String {
        match self {
            Get::Text(f) => f(row),
            Get::Count(f) => f(row).to_string(),
            Get::Number(f) => f(row).to_string(),
        }
    }

    /// The value in `row` as a number, for finding a column's best row (text: NaN).
    pub fn number(&self, row: &T) -> f64 {
        match self {
            Get::Text(_) => f64::NAN,
            Get::Count(f) => f(row) as f64,
            Get::Number(f) => f(row),
        }
    }
}

/// Which row of a column the report marks as best.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Best {
    /// None.
    None,
    /// The lowest finite value.
    Lowest,
    /// The highest finite value.
    Highest,
    /// The finite value closest to this one.
    Closest(f64),
    /// The row the report picked (the model it draws), whatever the value.
    Picked,
}

/// How one output (the terminal table or the report) shows a column.
#[derive(Debug)]
pub struct Shown<T: 'static> {
    /// The column's header there.
    pub header: &'static str,
    /// The cell's text.
    pub show: fn(&T) -> String,
    /// The row marked best (the report only).
    pub best: Best,
    /// Shown right after this column (by name) rather than in list order.
    pub after: Option<&'static str>,
}

impl<T> Shown<T> {
    /// A column shown under `header`, in list order, no row marked.
    pub const fn new(header: &'static str, show: fn(&T) -> String) -> Self {
        Self { header, show, best: Best::None, after: None }
    }

    /// Marks the `best` row.
    pub const fn best(self, best: Best) -> Self {
        Self { best, ..self }
    }

    /// Shows the column right after the column named `name`.
    pub const fn after(self, name: &'static str) -> Self {
        Self { after: Some(name), ..self }
    }
}

/// One column of a score table.
#[derive(Debug)]
pub struct Column<T: 'static> {
    /// Its name in CSV and Parquet files.
    pub name: &'static str,
    /// Its value in a row.
    pub get: Get<T>,
    /// How the terminal table shows it (`None`: not there).
    pub text: Option<Shown<T>>,
    /// How the report shows it (`None`: not there).
    pub html: Option<Shown<T>>,
}

/// Where a table is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The terminal table.
    Text,
    /// The HTML report.
    Html,
}

/// The columns one view shows, with how it shows them, in its order: list
/// order, each column with `after` moved behind the column it names.
pub fn shown<T>(columns: &'static [Column<T>], view: View) -> Vec<(&'static Column<T>, &'static Shown<T>)> {
    let mut out: Vec<(&'static Column<T>, &'static Shown<T>)> = columns
        .iter()
        .filter_map(|c| {
            match view {
                View::Text => c.text.as_ref(),
                View::Html => c.html.as_ref(),
            }
            .map(|s| (c, s))
        })
        .collect();
    for (column, cell) in out.clone() {
        let Some(after) = cell.after else { continue };
        let from = out.iter().position(|(c, _)| c.name == column.name).expect("a listed column");
        let moved = out.remove(from);
        let to = out.iter().position(|(c, _)| c.name == after).map_or(out.len(), |i| i + 1);
        out.insert(to, moved);
    }
    out
}

/// The terminal table of `rows`: left-aligned columns, as [`table`] draws them.
pub fn text_table<T>(columns: &'static [Column<T>], rows: &[T]) -> String {
    let cells = shown(columns, View::Text);
    let header: Vec<&str> = cells.iter().map(|(_, s)| s.header).collect();
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells.iter().map(|(_, s)| (s.show)(r)).collect()).collect();
    table(&header, &body)
}

/// Renders rows under a header as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Writes `rows` as CSV: a header of the column names, then one record per
/// row; a field is quoted only when it holds a comma, a quote or a line break.
pub fn write_csv<T, W: std::io::Write>(out: W, columns: &[Column<T>], rows: &[T]) -> csv::Result<()> {
    let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Necessary).from_writer(out);
    w.write_record(columns.iter().map(|c| c.name))?;
    for row in rows {
        w.write_record(columns.iter().map(|c| c.get.text(row)))?;
    }
    w.flush()?;
    Ok(())
}

/// `rows` as a frame with one typed column per column (for Parquet).
pub fn frame<T>(columns: &[Column<T>], rows: &[T]) -> PolarsResult<DataFrame> {
    let series = columns
        .iter()
        .map(|c| {
            let name = c.name.into();
            match c.get {
                Get::Text(f) => FrameColumn::new(name, rows.iter().map(f).collect::<Vec<String>>()),
                Get::Count(f) => FrameColumn::new(name, rows.iter().map(|r| f(r) as i64).collect::<Vec<i64>>()),
                Get::Number(f) => FrameColumn::new(name, rows.iter().map(f).collect::<Vec<f64>>()),
            }
        })
        .collect();
    DataFrame::new(rows.len(), series)
}

// ---------------------------------------------------------------- formats

/// A number with `decimals` places, `–` when missing.
pub fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() { format!("{v:.decimals$}") } else { "–".into() }
}

/// A share as a percentage.
pub fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.1} %", v * 100.0) } else { "–".into() }
}

/// Minutes as `3h 20m` or `45m`.
pub fn minutes(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let m = v.round() as i64;
    if m.abs() >= 60 { format!("{}h {:02}m", m / 60, (m % 60).abs()) } else { format!("{m}m") }
}

// ---------------------------------------------------------------- the lists

/// One model over all series (MASE and sMAPE averaged per series first).
pub static MODEL_SCORES: [Column<ModelScore>; 20] = [
    Column {
        name: "model",
        get: Get::Text(|s| s.model.clone()),
        text: Some(Shown::new("model", |s| s.model.clone())),
        html: Some(Shown::new("model", |s: &ModelScore| s.model.clone()).best(Best::Picked)),
    },
    Column {
        name: "series",
        get: Get::Count(|s| s.series),
        text: Some(Shown::new("series", |s| s.series.to_string())),
        html: Some(Shown::new("series", |s| s.series.to_string())),
    },
    Column {
        name: "pairs",
        get: Get::Count(|s| s.pairs),
        text: Some(Shown::new("pairs", |s| s.pairs.to_string())),
        html: Some(Shown::new("pairs", |s| s.pairs.to_string())),
    },
    Column {
        name: "mean_mae",
        get: Get::Number(|s| s.mean_mae),
        text: Some(Shown::new("MAE", |s| format!("{:.4}", s.mean_mae))),
        html: None,
    },
    Column {
        name: "mean_smape",
        get: Get::Number(|s| s.mean_smape),
        text: Some(Shown::new("sMAPE %", |s| format!("{:.2}", s.mean_smape))),
        html: Some(
            Shown::new("sMAPE %", |s: &ModelScore| num(s.mean_smape, 2)).best(Best::Lowest).after("median_mase"),
        ),
    },
    Column {
        name: "mean_mase",
        get: Get::Number(|s| s.mean_mase),
        text: Some(Shown::new("MASE", |s| format!("{:.3}", s.mean_mase))),
        html: Some(Shown::new("mean MASE", |s: &ModelScore| num(s.mean_mase, 3)).best(Best::Lowest)),
    },
    Column {
        name: "median_mase",
        get: Get::Number(|s| s.median_mase),
        text: Some(Shown::new("median MASE", |s| format!("{:.3}", s.median_mase))),
        html: Some(Shown::new("median MASE", |s: &ModelScore| num(s.median_mase, 3)).best(Best::Lowest)),
    },
    Column {
        name: "coverage",
        get: Get::Number(|s| s.coverage),
        text: Some(Shown::new("p10-p90 cov", |s| format!("{:.3}", s.coverage))),
        html: Some(Shown::new("p10–p90 coverage", |s: &ModelScore| pct(s.coverage)).best(Best::Closest(0.8))),
    },
    Column {
        name: "series_covered",
        get: Get::Number(|s| s.series_covered),
        text: Some(Shown::new("series cov 0.7-0.9", |s| format!("{:.3}", s.series_covered))),
        html: Some(
            Shown::new("series with p10–p90 coverage 0.70–0.90", |s: &ModelScore| pct(s.series_covered))
                .best(Best::Highest),
        ),
    },
    Column { name: "pinball", get: Get::Number(|s| s.pinball), text: None, html: None },
    Column {
        name: "sat_p50_precision",
        get: Get::Number(|s| s.sat_p50.precision()),
        // The terminal shows precision and recall in one cell.
        text: Some(Shown::new("sat P/R p50", |s| format!("{:.2}/{:.2}", s.sat_p50.precision(), s.sat_p50.recall()))),
        html: None,
    },
    Column { name: "sat_p50_recall", get: Get::Number(|s| s.sat_p50.recall()), text: None, html: None },
    Column {
        name: "sat_p90_precision",
        get: Get::Number(|s| s.sat_p90.precision()),
        text: Some(Shown::new("sat P/R p90", |s| format!("{:.2}/{:.2}", s.sat_p90.precision(), s.sat_p90.recall()))),
        html: Some(Shown::new("saturation precision (p90)", |s| num(s.sat_p90.precision(), 2))),
    },
    Column {
        name: "sat_p90_recall",
        get: Get::Number(|s| s.sat_p90.recall()),
        text: None,
        html: Some(Shown::new("saturation recall (p90)", |s| num(s.sat_p90.recall(), 2))),
    },
    // The risk tails: flagged when p95's (p99's) max is above the threshold.
    Column {
        name: "sat_p95_precision",
        get: Get::Number(|s| s.sat_p95.precision()),
        text: Some(Shown::new("sat P/R p95", |s| format!("{:.2}/{:.2}", s.sat_p95.precision(), s.sat_p95.recall()))),
        html: Some(Shown::new("saturation precision (p95)", |s| num(s.sat_p95.precision(), 2))),
    },
    Column {
        name: "sat_p95_recall",
        get: Get::Number(|s| s.sat_p95.recall()),
        text: None,
        html: Some(Shown::new("saturation recall (p95)", |s| num(s.sat_p95.recall(), 2))),
    },
    Column {
        name: "sat_p99_precision",
        get: Get::Number(|s| s.sat_p99.precision()),
        text: Some(Shown::new("sat P/R p99", |s| format!("{:.2}/{:.2}", s.sat_p99.precision(), s.sat_p99.recall()))),
        html: Some(Shown::new("saturation precision (p99)", |s| num(s.sat_p99.precision(), 2))),
    },
    Column {
        name: "sat_p99_recall",
        get: Get::Number(|s| s.sat_p99.recall()),
        text: None,
        html: Some(Shown::new("saturation recall (p99)", |s| num(s.sat_p99.recall(), 2))),
    },
    // Discrimination, whatever the calibration: the best precision of p90's
    // peak at recall ≥ 0.95 (0.99) with every threshold moved by one factor.
    Column {
        name: "sat_p90_precision_at_recall_95",
        get: Get::Number(|s| s.sat_p90_precision_at_recall[0]),
        text: None,
        html: Some(
            Shown::new("saturation precision at recall ≥ 0.95 (p90 peak, any level)", |s: &ModelScore| {
                num(s.sat_p90_precision_at_recall[0], 3)
            })
            .best(Best::Highest),
        ),
    },
    Column {
        name: "sat_p90_precision_at_recall_99",
        get: Get::Number(|s| s.sat_p90_precision_at_recall[1]),
        text: None,
        html: Some(
            Shown::new("saturation precision at recall ≥ 0.99 (p90 peak, any level)", |s: &ModelScore| {
                num(s.sat_p90_precision_at_recall[1], 3)
            })
            .best(Best::Highest),
        ),
    },
];

/// One model on one series, averaged over its origins: the rows of scores.csv and scores.parquet.
pub static SERIES_SCORES: [Column<SeriesScore>; 10] = [
    Column { name: "model", get: Get::Text(|r| r.model.clone()), text: None, html: None },
    Column { name: "group", get: Get::Text(|r| r.group.clone()), text: None, html: None },
    Column { name: "entity", get: Get::Text(|r| r.entity.clone()), text: None, html: None },
    Column { name: "metric", get: Get::Text(|r| r.metric.clone()), text: None, html: None },
    Column { name: "pairs", get: Get::Count(|r| r.pairs), text: None, html: None },
    Column { name: "mae", get: Get::Number(|r| r.mae), text: None, html: None },
    Column { name: "smape", get: Get::Number(|r| r.smape), text: None, html: None },
    Column { name: "mase", get: Get::Number(|r| r.mase), text: None, html: None },
    Column { name: "pinball", get: Get::Number(|r| r.pinball), text: None, html: None },
    Column { name: "coverage", get: Get::Number(|r| r.coverage), text: None, html: None },
];

/// One replayed policy: the rows of decision_scores.csv.
pub static POLICY_SCORES: [Column<PolicyScore>; 11] = [
    Column {
        name: "policy",
        get: Get::Text(|p| p.policy.clone()),
        text: Some(Shown::new("policy", |p| p.policy.clone())),
        html: Some(Shown::new("policy", |p| p.policy.clone())),
    },
    Column {
        name: "targets",
        get: Get::Count(|p| p.targets),
        text: Some(Shown::new("targets", |p| p.targets.to_string())),
        html: Some(Shown::new("targets", |p| p.targets.to_string())),
    },
    Column {
        name: "events",
        get: Get::Count(|p| p.events),
        text: Some(Shown::new("events", |p| p.events.to_string())),
        html: Some(Shown::new("events", |p| p.events.to_string())),
    },
    Column {
        name: "caught",
        get: Get::Count(|p| p.caught),
        text: Some(Shown::new("caught", |p| p.caught.to_string())),
        html: Some(Shown::new("caught", |p| p.caught.to_string())),
    },
    Column {
        name: "recall",
        get: Get::Number(|p| p.recall),
        text: Some(Shown::new("recall", |p| format!("{:.2}", p.recall))),
        html: Some(Shown::new("recall", |p: &PolicyScore| num(p.recall, 2)).best(Best::Highest)),
    },
    Column {
        name: "precision",
        get: Get::Number(|p| p.precision),
        text: Some(Shown::new("precision", |p| format!("{:.2}", p.precision))),
        html: Some(Shown::new("precision", |p: &PolicyScore| num(p.precision, 2)).best(Best::Highest)),
    },
    Column {
        name: "mean_lead_minutes",
        get: Get::Number(|p| p.mean_lead_minutes),
        text: Some(Shown::new("lead (h)", |p| format!("{:.1}", p.mean_lead_minutes / 60.0))),
        html: Some(Shown::new("mean lead", |p| minutes(p.mean_lead_minutes))),
    },
    Column {
        name: "under_provisioned_minutes",
        get: Get::Number(|p| p.under_provisioned_minutes),
        text: Some(Shown::new("under-prov. (h)", |p| format!("{:.0}", p.under_provisioned_minutes / 60.0))),
        html: Some(
            Shown::new("under-provisioned min", |p: &PolicyScore| num(p.under_provisioned_minutes, 0))
                .best(Best::Lowest),
        ),
    },
    Column {
        name: "slack_replica_hours",
        get: Get::Number(|p| p.slack_replica_hours),
        text: Some(Shown::new("slack (replica-h)", |p| format!("{:.0}", p.slack_replica_hours))),
        html: Some(Shown::new("slack replica-h", |p: &PolicyScore| num(p.slack_replica_hours, 1)).best(Best::Lowest)),
    },
    Column {
        name: "actions",
        get: Get::Count(|p| p.actions),
        text: Some(Shown::new("actions", |p| p.actions.to_string())),
        html: Some(Shown::new("actions", |p| p.actions.to_string())),
    },
    Column {
        name: "churn",
        get: Get::Count(|p| p.churn),
        text: Some(Shown::new("churn", |p| p.churn.to_string())),
        html: Some(Shown::new("churn", |p| p.churn.to_string())),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(&["a", "bb"], &[vec!["long".into(), "x".into()], vec!["s".into(), "y".into()]]);
        assert_eq!(t, "a     bb\nlong  x\ns     y\n");
    }

    /// A field as the CSV writer writes it.
    fn csv_field(s: &str) -> String {
        let mut out = Vec::new();
        let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Necessary).from_writer(&mut out);
        w.write_record([s, "x"]).unwrap();
        drop(w);
        let line = String::from_utf8(out).unwrap();
        line.strip_suffix(",x\n").unwrap().to_owned()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("nab/a"), "nab/a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn every_column_named_once_and_every_after_names_a_shown_column() {
        fn check<T>(columns: &'static [Column<T>]) {
            for (i, c) in columns.iter().enumerate() {
                assert!(!columns[..i].iter().any(|d| d.name == c.name), "{} twice", c.name);
            }
            for view in [View::Text, View::Html] {
                let cells = shown(columns, view);
                for (column, cell) in &cells {
                    if let Some(after) = cell.after {
                        let at = cells.iter().position(|(c, _)| c.name == column.name).unwrap();
                        let name = column.name;
                        assert!(at > 0 && cells[at - 1].0.name == after, "{name} after {after} in {view:?}");
                    }
                }
            }
        }
        check(&MODEL_SCORES);
        check(&SERIES_SCORES);
        check(&POLICY_SCORES);
    }

    #[test]
    fn the_report_shows_smape_after_the_mase_columns_and_the_terminal_before() {
        let headers = |view| shown(&MODEL_SCORES, view).iter().map(|(_, s)| s.header).collect::<Vec<_>>();
        assert_eq!(
            headers(View::Text),
            [
                "model",
                "series",
                "pairs",
                "MAE",
                "sMAPE %",
                "MASE",
                "median MASE",
                "p10-p90 cov",
                "series cov 0.7-0.9",
                "sat P/R p50",
                "sat P/R p90",
                "sat P/R p95",
                "sat P/R p99"
            ]
        );
        assert_eq!(
            headers(View::Html),
            [
                "model",
                "series",
                "pairs",
                "mean MASE",
                "median MASE",
                "sMAPE %",
                "p10–p90 coverage",
                "series with p10–p90 coverage 0.70–0.90",
                "saturation precision (p90)",
                "saturation recall (p90)",
                "saturation precision (p95)",
                "saturation recall (p95)",
                "saturation precision (p99)",
                "saturation recall (p99)",
                "saturation precision at recall ≥ 0.95 (p90 peak, any level)",
                "saturation precision at recall ≥ 0.99 (p90 peak, any level)"
            ]
        );
    }

    #[test]
    fn series_scores_in_csv_quote_names_and_write_numbers_as_rust_does() {
        let row = SeriesScore {
            model: "m".into(),
            group: "nab".into(),
            entity: "nab/a,b".into(),
            metric: "cpu".into(),
            pairs: 3,
            mae: 0.5,
            smape: 12.0,
            mase: f64::NAN,
            pinball: 0.1,
            coverage: 1.0,
        };
        let mut out = Vec::new();
        write_csv(&mut out, &SERIES_SCORES, &[row]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "model,group,entity,metric,pairs,mae,smape,mase,pinball,coverage\nm,nab,\"nab/a,b\",cpu,3,0.5,12,NaN,0.1,1\n"
        );
    }
}
