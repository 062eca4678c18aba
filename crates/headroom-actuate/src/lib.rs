//! headroom's actuation edge: where decisions touch the world.
//!
//! Today it owns the **audit log writer** ([`audit::AuditLog`]): every
//! decision is written and synced to disk as an *intent* before it is
//! carried out, and its *outcome* after, so a crash never repeats or loses
//! an action. The log's record format and its reading (the
//! [`Ledger`](headroom_remediate::audit::Ledger)) are pure and live in
//! `headroom-remediate`; this crate adds the files, fsync, rotation and the
//! one-writer lock.
//!
//! The `Actuator` trait and its backends (Kubernetes, systemd, Windows SCM,
//! process supervisor, dry-run) will live here too.
//!
//! This crate must not decide anything: what to do comes from the policy in
//! `headroom-remediate`, and nothing here reads forecasts (it does not
//! depend on `headroom-forecast` or `headroom-lstm`). It must not carry out
//! an action whose intent is not on disk, nor one the log records as done.

pub mod audit;
pub mod error;

pub use audit::{AuditLog, AuditOptions, Begin, OpenReport, Repair};
pub use error::{Error, Result};
