//! headroom as an operating-system service.
//!
//! `headroom service install|uninstall|status` makes the daemon
//! (`headroom run`) a service the operating system keeps alive, with the
//! fewest privileges that still let it act:
//!
//! * **systemd** ([unit](crate::unit), [`polkit`], `linux`): a hardened `Type=notify`
//!   unit with a watchdog (or a `.timer` + oneshot `.service` pair for the
//!   scheduled forecast job), its user (a `sysusers.d` entry, or
//!   `DynamicUser=`), and a polkit rule that lets that user start, stop and
//!   restart exactly the units the config's systemd targets name. Files are
//!   written, then enabled and started over systemd's D-Bus API (never
//!   `systemctl`).
//! * **Windows** ([`scm`], [`eventlog`], `windows`): an own-process,
//!   automatic-start SCM service under a virtual account, with recovery
//!   actions, an Event Log source, and the dispatcher `headroom run
//!   --service` runs under.
//!
//! What to write — unit text, the rule, recovery settings, service state
//! transitions, log level mapping — is decided by plain functions, tested
//! on every platform; the IO shells (`linux`, `windows`) only carry those
//! decisions out. This crate reads no config file: the binary turns
//! `headroom.toml` into a [`spec::Service`].
//!
//! **Invariant:** nothing here runs `systemctl`, `sc.exe` or a shell; what
//! an install writes carries [`MARKER`], and uninstall removes only files
//! that carry it.

pub mod error;
pub mod eventlog;
#[cfg(unix)]
pub mod linux;
pub mod polkit;
pub mod scm;
pub mod spec;
pub mod unit;
#[cfg(windows)]
pub mod windows;

pub use error::{Error, Result};
pub use spec::{Kind, Service, UnitGrant, User};

/// The first line of every file `service install` writes, after the file
/// type's comment sign (`# ` in unit and sysusers files, `// ` in polkit's
/// JavaScript): uninstall removes a file only when it starts with this
/// line, so a hand-written file of the same name is never deleted.
pub const MARKER: &str = "Written by `headroom service install`; `headroom service uninstall` removes it.";

/// Whether `text` (a file's contents) was written by `service install`.
pub fn is_ours(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    first.strip_prefix("# ").or_else(|| first.strip_prefix("// ")) == Some(MARKER)
}
