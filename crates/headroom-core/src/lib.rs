//! headroom's data model.
//!
//! This crate owns the shapes that every other crate exchanges: series keys
//! and units ([`series`]), the canonical long sample frame and the resampled
//! frame, both defined once ([`frame`]), forecasts and their schema ([`forecast`]), decisions
//! ([`decision`]), the time grid ([`grid`]), timestamps
//! and durations as users write them ([`time`]), per-series limits
//! ([`limits`]) and the report of every repair made to a series ([`repair`]).
//!
//! It must not do IO, spawn tasks or read a clock: everything here is pure
//! data and functions, so it builds and tests in seconds and the backtest can
//! trust it.

pub mod decision;
pub mod error;
pub mod fnv;
pub mod forecast;
pub mod frame;
pub mod grid;
pub mod interrupt;
pub mod limits;
pub mod repair;
pub mod retry;
pub mod series;
pub mod time;

pub use decision::{Action, Decision, Evidence, Guardrail, Mode, Verdict, decision_id};
pub use error::{Error, Result};
pub use fnv::Fnv1a64;
pub use forecast::{Forecast, Quantiles};
#[cfg(feature = "frames")]
pub use frame::SampleFrame;
pub use frame::{ResampledSeries, SeriesData};
pub use grid::Grid;
pub use interrupt::{Interrupt, Interrupted};
pub use limits::{Limit, Limits};
pub use repair::{Gap, RepairReport};
pub use series::{SeriesKey, Unit};
pub use time::{Span, TimeUnit, format_duration, format_ts, parse_duration, parse_timestamp};

/// A boxed future, for the async methods of the plug-in traits (`Source`,
/// `Actuator`) that must stay object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
