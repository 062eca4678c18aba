//! headroom's cycle and runner: forecast → detect → plan → act, over the data up to `now`.
//!
//! One implementation serves `headroom plan` and `act`, the daemon, the
//! operator and the backtest: they differ only in where `now`, the data and
//! the history of past actions come from. The cycle ([`cycle::cycle`]) does
//! no IO and reads no clock (it takes `now_ms`); the runner ([`runner`])
//! adds resampling the targets' series, settling intents a crash left, and
//! carrying decisions out through the actuators with the audit log around
//! each. The model registry ([`models`]) turns a model name into a
//! forecaster and its fallback chain, the same way for every command.

pub mod cycle;
pub mod error;
pub mod models;
pub mod replay;
pub mod runner;
pub mod settings;
pub mod shard;

pub use cycle::{CycleReport, ForecastBook, Forecasts, Models, World, cycle, decide, decide_with, forecast};
pub use error::{Error, Result};
pub use models::ModelSet;
pub use runner::{Data, Forecasting, Reach, Step, plan, step};
pub use settings::Settings;
pub use shard::Shard;
