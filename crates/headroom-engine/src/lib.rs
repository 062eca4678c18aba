//! headroom's cycle: forecast → detect → plan, over the data up to `now`.
//!
//! One implementation serves `headroom plan`, the daemon and the backtest:
//! they differ only in where `now`, the data and the history of past actions
//! come from. The cycle itself does no IO and reads no clock ([`cycle::cycle`]
//! takes `now_ms`); carrying decisions out is the actuators' job
//! (`headroom-actuate`), after the audit log has the intent.

pub mod cycle;
pub mod error;
pub mod replay;

pub use cycle::{CycleReport, ForecastBook, Models, World, cycle, decide};
pub use error::{Error, Result};
