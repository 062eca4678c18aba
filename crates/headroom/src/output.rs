//! Printing: aligned tables for people, JSON for programs.

pub use headroom_backtest::columns::table;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document.
    Json,
}
