//! headroom's remediation brain: from forecasts and recent samples to
//! explained, bounded decisions.
//!
//! * [`detect`] turns forecasts and samples into [`risk::Risk`]s (predicted
//!   saturation; restart loops, OOM kills, memory leaks, flapping) and scores
//!   recent forecasts against what happened ([`risk::ForecastHealth`]).
//! * [`policy`] turns risks, the observed state and the configuration into
//!   [`headroom_core::Decision`]s, checking every guardrail and saying which fired.
//! * [`config`] is the typed `headroom.toml`, validated once at load.
//! * [`audit`] is the audit log's record format and the reading of a log
//!   (what was done, what is pending); the writer, which does IO, is in
//!   `headroom-actuate`.
//!
//! Everything here is pure: no IO, no clock (time is always passed in as
//! `now_ms`), no randomness. The backtest runs the very same functions.

pub mod audit;
pub mod config;
pub mod detect;
pub mod error;
pub mod policy;
pub mod risk;
pub mod state;

pub use config::Config;
pub use error::{Error, Result};
pub use policy::plan;
pub use risk::{ForecastHealth, Risk};
pub use state::{PastAction, TargetState};
