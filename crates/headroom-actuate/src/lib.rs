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
//! It also owns the [`Actuator`] trait (observe, plan, apply — idempotent by
//! decision id), [`execute`] (every apply wrapped in the audit log: intent
//! fsynced first, outcome after, a crash reconciled by observing, never by
//! acting again) and the backends: dry-run ([`DryRun`]) and, per platform,
//! systemd, the process supervisor, Kubernetes and the Windows SCM.
//!
//! This crate must not decide anything: what to do comes from the policy in
//! `headroom-remediate`, and nothing here reads forecasts (it does not
//! depend on `headroom-forecast` or `headroom-lstm`). It must not carry out
//! an action whose intent is not on disk, nor one the log records as done.

pub mod actuator;
pub mod audit;
#[cfg(unix)]
pub mod cgroup;
pub mod error;
pub mod guard;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "process")]
pub mod process;
pub mod registry;
pub mod scm;
#[cfg(feature = "systemd")]
pub mod systemd;
#[cfg(all(windows, feature = "windows"))]
pub mod windows;

pub use actuator::{Actuator, Applied, DryRun, Executed, Observed, execute, reconcile};
pub use audit::{AuditLog, AuditOptions, Begin, OpenReport, Repair};
pub use error::{Error, Result};
pub use registry::Platforms;
