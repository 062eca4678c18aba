//! What a backtest reports while it runs. The library prints nothing: the
//! CLI writes each note to stderr and draws the replay's progress bar.

/// Receives a backtest's progress. Called from the replay's worker threads
/// too, hence `Sync`.
pub trait Progress: Sync {
    /// A line for the user, worded in full (`backtest: lstm done in 1.6 s`).
    fn note(&self, line: &str);

    /// The decision replay starts: `runs` (policy, target) runs to go.
    fn replay_started(&self, runs: u64) {
        let _ = runs;
    }

    /// One (policy, target) run of the replay starts.
    fn replaying(&self, policy: &str, target: &str) {
        let _ = (policy, target);
    }

    /// The replay is over (its summary note follows).
    fn replay_finished(&self) {}
}

/// Progress nobody watches (tests, callers that log elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn note(&self, _line: &str) {}
}
