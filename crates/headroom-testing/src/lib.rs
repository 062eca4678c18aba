//! What headroom's tests and benchmarks share: fixtures and harnesses for
//! the real components of TESTING.md, written once instead of copied into
//! each test crate or included across crates by `#[path]`.
//!
//! * [`fixtures`] — small builders of the core types tests hand around (a
//!   [`Decision`](headroom_core::Decision)).
//! * [`Process`], [`free_port`], [`require_binary`], [`http_get_status`] —
//!   a child process stopped by its PID when dropped, a free loopback port, a
//!   binary that must be installed, and a plain HTTP probe.
//! * [`prometheus`] (feature `prometheus`) — a real Prometheus on a free
//!   loopback port, OpenMetrics text backfilled by `promtool`, and a scripted
//!   HTTP server that answers as a test tells it.
//! * [`sample`] (feature `sample`) — the recorded series of `data/sample`.
//! * [`systemd`] (feature `systemd`) — a real systemd booted in a sandbox by
//!   `scripts/testing/systemd-sandbox.sh`.
//!
//! It must never be a dependency of a non-test target (only
//! `[dev-dependencies]`, and the end-to-end test package `tests/`): it starts
//! processes, binds ports and panics on failure, as a test should and a
//! library must not. It depends on `headroom-core` only, so the unit tests
//! (`src/`) of every crate but core can use it too: a crate it depended on
//! would be built twice for its own unit tests, and their types would differ.

pub mod fixtures;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "sample")]
pub mod sample;
#[cfg(feature = "systemd")]
pub mod systemd;

mod process;

pub use process::Process;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// A loopback port nothing listens on right now (another process may take it
/// before the test binds it: harnesses that start a server try a few).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The path of `binary` on `PATH`. Panics naming the Debian package to
/// install when it is missing: a machine without it fails the test rather
/// than skipping it (scripts/test.sh installs it).
pub fn require_binary(binary: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{binary}` is not on PATH: this test runs the real one. Install it with \
             `apt-get install -y --no-install-recommends {package}` (scripts/test.sh does)"
        )
    })
}

/// The status code of a plain HTTP/1.0 GET to 127.0.0.1:`port`, if it answered.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
