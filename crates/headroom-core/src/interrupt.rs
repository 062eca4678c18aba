//! Stopping long work on a signal: a flag the binary raises when SIGINT or
//! SIGTERM arrives, and that long loops (evaluation, training, replay,
//! forecasting) check between units of work.
//!
//! The flag is plain shared data (no signal handling, no IO here): the edge
//! that receives the signal calls [`Interrupt::raise`]; library code calls
//! [`Interrupt::check`] at its loop boundaries and returns the
//! [`Interrupted`] error, so nothing half-done is written (every writer of a
//! result file writes a temporary file and renames it once complete).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// A shared "stop now" flag, raised once with the signal that asked for it.
/// Cloning shares the flag. `Interrupt::default()` is never raised unless
/// someone raises it (tests, the backtest without a terminal).
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicI32>);

/// Work was stopped by a signal before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}: stopped before finishing", signal_name(*signal))]
pub struct Interrupted {
    /// The signal number (2 = SIGINT, 15 = SIGTERM).
    pub signal: i32,
}

impl Interrupted {
    /// The conventional exit code of a process stopped by this signal (128 + n: 130, 143).
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.signal.clamp(1, 127)).unwrap_or(1)
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        1 => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

impl Interrupt {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag for `signal` (a positive signal number). The first
    /// signal is kept; returns whether this call was the first.
    pub fn raise(&self, signal: i32) -> bool {
        self.0.compare_exchange(0, signal.max(1), Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// The signal that raised the flag, if it is raised.
    pub fn raised(&self) -> Option<Interrupted> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(Interrupted { signal }),
        }
    }

    /// `Err` once the flag is raised: call between units of work.
    pub fn check(&self) -> Result<(), Interrupted> {
        self.raised().map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_is_kept_and_seen_by_every_clone() {
        let flag = Interrupt::new();
        let seen_by_worker = flag.clone();
        assert_eq!(seen_by_worker.check(), Ok(()));
        assert!(flag.raise(15));
        assert!(!flag.raise(2), "a second signal does not replace the first");
        let err = seen_by_worker.check().unwrap_err();
        assert_eq!(err, Interrupted { signal: 15 });
        assert_eq!(err.exit_code(), 143);
        assert_eq!(err.to_string(), "interrupted by SIGTERM: stopped before finishing");
        assert_eq!(Interrupted { signal: 2 }.exit_code(), 130);
    }
}
