//! Every decision of the Windows SCM actuator, as plain functions compiled
//! and tested on every platform.
//!
//! The `cfg(windows)` module (`windows.rs`, `WindowsScmActuator`) only maps
//! these onto the `windows-service` crate's calls. **That module is
//! type-checked here (`cargo check --target x86_64-pc-windows-gnu`, see
//! `scripts/test.sh`) but never run: no Windows machine takes part in the
//! tests.** Everything that can be wrong without Windows is here:
//!
//! * **Names**: a target's entity is `winsvc/<service name>`; the name is
//!   checked ([`validate_name`]: 1–256 UTF-16 units, no `/`, `\`, NUL or
//!   control characters) before any SCM call.
//! * **States**: [`State`] mirrors the SCM's seven states; [`interpret`]
//!   turns a [`Status`] into running / stopped / failed with its exit code /
//!   paused / pending, and [`describe`] into the words `observe` reports.
//! * **Restart** ([`Restart`]): a small state machine. Each call to
//!   [`Restart::next_step`] with the status just queried and the time since
//!   the restart began answers one [`Step`]: send STOP, send START, wait,
//!   done, or fail with the state named. Decisions taken:
//!   - `STOPPED` at the beginning → start only (nothing to stop); a service
//!     that crashed (stopped with an error exit code) is started the same way.
//!   - `STOP_PENDING` → wait for `STOPPED` (never a second STOP).
//!   - `START_PENDING`, `PAUSE_PENDING`, `CONTINUE_PENDING` before the stop →
//!     wait for the service to settle (a pending service refuses controls).
//!   - `PAUSED` → STOP directly, no CONTINUE first (resuming work only to
//!     stop it gains nothing, and CONTINUE needs a right headroom does not
//!     ask for). After the restart the service is running, not paused.
//!   - A running service that does not accept STOP → fail before touching it.
//!   - A disabled service is never stopped ([`check_restartable`]): it
//!     could not be started again.
//!   - After START, `STOPPED` again → fail with its exit code: the service is
//!     down and the message says so.
//!   - Polling: a tenth of the service's `wait_hint`, within
//!     [`Timing::min_poll`]..[`Timing::max_poll`]. Each phase (stop, start)
//!     has [`Timing::phase_timeout`]; a service that shows progress (its
//!     checkpoint or state changes) gets its `wait_hint` more from that
//!     moment, never beyond [`Timing::max_phase`] in all.
//! * **Recovery (failure actions)** ([`FailureActions`]): the SCM restarts a
//!   crashed service by the k-th action of its list for the k-th failure
//!   (the last action repeats), and counts failures back to zero after the
//!   reset period. [`start_limit`] reads that as headroom's
//!   [`StartLimit`]: burst = the leading `restart` actions, interval = the
//!   reset period, so the policy never makes the restart that would leave the
//!   SCM without a recovery to make. [`recovery_for`] computes the list to
//!   write when headroom configures recovery (the inverse).
//! * **Idempotency**: the shared [`Claims`](crate::guard::Claims) (the
//!   service name is the target key): a decision id carried out is not
//!   carried out again, and at most one restart per service is in flight.

use std::fmt;
use std::time::Duration;

use headroom_core::Span;
use headroom_remediate::config::StartLimit;

/// The actuator's name, in errors and the audit log.
pub const ACTUATOR: &str = "windows";

/// The entity prefix of a Windows service target: `winsvc/<service name>`.
pub const ENTITY_PREFIX: &str = "winsvc/";

/// The longest service name the SCM accepts, in UTF-16 units.
pub const MAX_NAME_LEN: usize = 256;

/// The reset period written for "never reset" (`INFINITE`, in seconds).
pub const NEVER_RESET_SECS: u64 = u32::MAX as u64;

/// Checks a service name before it reaches any SCM call: 1–256 UTF-16 units,
/// no `/` or `\` (the SCM rejects them), no NUL or control characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the Windows service name is empty".into());
    }
    let len = name.encode_utf16().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "the Windows service name is {len} characters long; the SCM allows at most {MAX_NAME_LEN}"
        ));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(format!("the Windows service name {name:?} contains {c:?}, which the SCM does not allow"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the Windows service name {name:?} contains a control character"));
    }
    Ok(())
}

/// The service name of a target's entity (`winsvc/<name>`), checked.
pub fn service_name(entity: &str) -> Result<&str, String> {
    let name = entity.strip_prefix(ENTITY_PREFIX).ok_or_else(|| {
        format!("entity {entity:?} is not a Windows service: write it as \"{ENTITY_PREFIX}<service name>\"")
    })?;
    validate_name(name).map_err(|why| format!("entity {entity:?}: {why}"))?;
    Ok(name)
}

/// The SCM's state of a service (`SERVICE_STOPPED` … `SERVICE_PAUSED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running.
    Stopped,
    /// Starting.
    StartPending,
    /// Stopping.
    StopPending,
    /// Running.
    Running,
    /// Resuming from pause.
    ContinuePending,
    /// Pausing.
    PausePending,
    /// Paused.
    Paused,
}

impl State {
    /// The state's name as `observe` reports it (`running`, `stop_pending`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::StartPending => "start_pending",
            State::StopPending => "stop_pending",
            State::Running => "running",
            State::ContinuePending => "continue_pending",
            State::PausePending => "pause_pending",
            State::Paused => "paused",
        }
    }

    /// Whether the service is between two states.
    pub fn is_pending(self) -> bool {
        matches!(self, State::StartPending | State::StopPending | State::ContinuePending | State::PausePending)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exit code a service reports (`dwWin32ExitCode`, or its own code when
/// that is `ERROR_SERVICE_SPECIFIC_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// A Win32 error code (0: no error).
    Win32(u32),
    /// The service's own code.
    ServiceSpecific(u32),
}

/// `ERROR_SERVICE_NEVER_STARTED`: stopped, and not started since boot.
pub const ERROR_SERVICE_NEVER_STARTED: u32 = 1077;

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCode::Win32(code) => match win32_name(*code) {
                Some(name) => write!(f, "win32 exit code {code} ({name})"),
                None => write!(f, "win32 exit code {code}"),
            },
            ExitCode::ServiceSpecific(code) => write!(f, "service-specific exit code {code}"),
        }
    }
}

/// One answer of the SCM's status query, as the decisions here need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The current state.
    pub state: State,
    /// The last exit code the service reported.
    pub exit_code: ExitCode,
    /// Progress counter of a pending operation.
    pub checkpoint: u32,
    /// The service's own estimate of how long its pending operation takes.
    pub wait_hint: Duration,
    /// The process id, while it runs.
    pub pid: Option<u32>,
    /// Whether the service accepts the STOP control now.
    pub accepts_stop: bool,
}

impl Status {
    /// A settled service in `state` (no error, no pending operation; accepts STOP).
    pub fn new(state: State) -> Self {
        Self {
            state,
            exit_code: ExitCode::Win32(0),
            checkpoint: 0,
            wait_hint: Duration::ZERO,
            pid: None,
            accepts_stop: true,
        }
    }
}

/// What a status means for headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Running.
    Running,
    /// Stopped cleanly (or never started since boot).
    Stopped,
    /// Stopped with an error exit code: it crashed or failed to start.
    Failed(ExitCode),
    /// Paused.
    Paused,
    /// Between two states.
    Pending(State),
}

/// Reads a status: a stopped service with an exit code other than 0 (and
/// other than "never started") failed; a service-specific code always means
/// failure.
pub fn interpret(status: &Status) -> Condition {
    match status.state {
        State::Running => Condition::Running,
        State::Paused => Condition::Paused,
        State::Stopped => match status.exit_code {
            ExitCode::Win32(0 | ERROR_SERVICE_NEVER_STARTED) => Condition::Stopped,
            code => Condition::Failed(code),
        },
        pending => Condition::Pending(pending),
    }
}

/// The words `observe` reports for a status: `running`, `stopped`,
/// `failed (win32 exit code 1067 (…))`, `paused`, `stop_pending`, ….
pub fn describe(status: &Status) -> String {
    match interpret(status) {
        Condition::Failed(code) => format!("failed ({code})"),
        _ => status.state.as_str().into(),
    }
}

/// Which half of a restart is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Getting the service to `STOPPED`.
    Stopped,
    /// Getting the service to `RUNNING`.
    Running,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the STOP control, then query again.
    SendStop,
    /// Start the service, then query again.
    SendStart,
    /// Sleep this long, then query again.
    Wait(Duration),
    /// The service is running again.
    Done,
    /// Give up; the reason names the state and what to do.
    Fail(String),
}

/// Polling intervals and timeouts of a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Shortest sleep between two status queries.
    pub min_poll: Duration,
    /// Longest sleep between two status queries.
    pub max_poll: Duration,
    /// Time each phase (stop, start) is given at least.
    pub phase_timeout: Duration,
    /// Time a phase is given at most, however long the service's wait hint.
    pub max_phase: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            min_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(10),
            phase_timeout: Duration::from_secs(30),
            max_phase: Duration::from_secs(300),
        }
    }
}

impl Timing {
    /// The sleep before the next query: a tenth of the wait hint, within the bounds.
    pub fn poll(&self, wait_hint: Duration) -> Duration {
        (wait_hint / 10).clamp(self.min_poll, self.max_poll.max(self.min_poll))
    }
}

/// What to do in `state` for `goal`, given whether this phase's control was
/// already sent: `None` means "wait", `Some(Ok(step))` a control or done,
/// `Some(Err(why))` a state the restart cannot go on from.
fn wanted(status: &Status, goal: Goal, sent: bool) -> Option<Result<Step, String>> {
    use State::*;
    match (goal, status.state) {
        (Goal::Stopped, Stopped) => Some(Ok(Step::Done)),
        (Goal::Stopped, Running | Paused) if !sent => Some(if status.accepts_stop {
            Ok(Step::SendStop)
        } else {
            Err(format!("it is {} and does not accept the stop control now", status.state))
        }),
        // Sent and not yet stopping, or stopping, or settling into another state first.
        (Goal::Stopped, _) => None,
        (Goal::Running, Running) => Some(Ok(Step::Done)),
        (Goal::Running, Stopped) if !sent => Some(Ok(Step::SendStart)),
        (Goal::Running, Stopped) => Some(Err(match interpret(status) {
            Condition::Failed(code) => format!("it stopped again while starting, with {code}"),
            _ => "it stopped again while starting, without an error code".into(),
        })),
        (Goal::Running, Paused) => Some(Err("it was paused by someone else while headroom started it".into())),
        (Goal::Running, _) => None,
    }
}

/// The restart state machine (see the module docs). One per restart.
#[derive(Debug, Clone)]
pub struct Restart {
    timing: Timing,
    goal: Goal,
    sent: bool,
    phase_started: Duration,
    deadline: Duration,
    last: Option<(State, u32)>,
    /// State changes seen, with the time since the restart began.
    trail: Vec<(Duration, State)>,
    stopped_by_us: bool,
    outcome: Option<Result<(), String>>,
    /// The SCM refused the last control for now: wait before sending it again.
    refused: bool,
}

impl Restart {
    /// A restart about to begin (its first status query not yet made).
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            goal: Goal::Stopped,
            sent: false,
            phase_started: Duration::ZERO,
            deadline: timing.phase_timeout.min(timing.max_phase),
            last: None,
            trail: Vec::new(),
            stopped_by_us: false,
            outcome: None,
            refused: false,
        }
    }

    /// The half of the restart under way.
    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// The next step, from the status just queried and the time since the
    /// restart began. A `SendStop`/`SendStart` answered here counts as sent.
    pub fn next_step(&mut self, status: &Status, elapsed: Duration) -> Step {
        if let Some(outcome) = &self.outcome {
            return match outcome {
                Ok(()) => Step::Done,
                Err(why) => Step::Fail(why.clone()),
            };
        }
        self.observe(status, elapsed);
        loop {
            match wanted(status, self.goal, self.sent) {
                Some(Ok(Step::Done)) if self.goal == Goal::Stopped => {
                    // Stopped (by us, or it was already): the second half begins.
                    self.begin_phase(Goal::Running, elapsed);
                }
                Some(Ok(Step::Done)) => {
                    self.outcome = Some(Ok(()));
                    return Step::Done;
                }
                Some(Ok(step)) if self.refused => {
                    // Refused a moment ago: wait a poll before sending it again, until the deadline.
                    if elapsed >= self.deadline {
                        let since = secs(elapsed.saturating_sub(self.phase_started));
                        let what = if step == Step::SendStop { "stop" } else { "start" };
                        return self.fail(
                            status.pid,
                            format!("it is {} and refused the {what} control for {since}", status.state),
                        );
                    }
                    self.refused = false;
                    return Step::Wait(self.timing.poll(status.wait_hint).min(self.deadline - elapsed));
                }
                Some(Ok(step)) => {
                    self.sent = true;
                    if step == Step::SendStop {
                        self.stopped_by_us = true;
                    }
                    return step;
                }
                Some(Err(why)) => return self.fail(status.pid, why),
                None if elapsed >= self.deadline => {
                    let since = elapsed.saturating_sub(self.phase_started);
                    let why = match (self.goal, self.sent) {
                        (Goal::Stopped, true) => {
                            format!("it is still {} {} after the stop control", status.state, secs(since))
                        }
                        (Goal::Stopped, false) => {
                            format!(
                                "it stayed {} for {} and never settled so it could be stopped",
                                status.state,
                                secs(since)
                            )
                        }
                        (Goal::Running, _) => format!("it is still {} {} after the start", status.state, secs(since)),
                    };
                    let why = format!("{why} (wait hint {}, checkpoint {})", secs(status.wait_hint), status.checkpoint);
                    return self.fail(status.pid, why);
                }
                None => {
                    let poll = self.timing.poll(status.wait_hint);
                    return Step::Wait(poll.min(self.deadline - elapsed));
                }
            }
        }
    }

    /// Marks the control just answered as not sent after all (the SCM said
    /// the service could not accept it now): it is sent again once the
    /// service allows it.
    pub fn control_refused(&mut self) {
        self.sent = false;
        self.refused = true;
    }

    fn begin_phase(&mut self, goal: Goal, elapsed: Duration) {
        self.goal = goal;
        self.sent = false;
        self.phase_started = elapsed;
        self.deadline = elapsed + self.timing.phase_timeout.min(self.timing.max_phase);
    }

    /// Records state changes, and extends the deadline by the wait hint when
    /// the service shows progress (never beyond `max_phase` in the phase).
    fn observe(&mut self, status: &Status, elapsed: Duration) {
        let now = (status.state, status.checkpoint);
        if self.last.map(|(s, _)| s) != Some(status.state) {
            self.trail.push((elapsed, status.state));
        }
        let progressed = self.last.is_some_and(|last| last != now);
        self.last = Some(now);
        if progressed && status.state.is_pending() {
            let cap = self.phase_started + self.timing.max_phase;
            self.deadline = self.deadline.max((elapsed + status.wait_hint).min(cap));
        }
    }

    /// Reads the SCM's error for the control `step` just answered: `None`
    /// to query again and go on (see [`on_control_error`]), or the reason
    /// the restart failed (the restart is then over).
    pub fn control_error(&mut self, step: &Step, code: Option<i32>, name: &str) -> Option<String> {
        match on_control_error(step, code, name) {
            OnControlError::Ignore => None,
            OnControlError::Retry => {
                self.control_refused();
                None
            }
            OnControlError::Fail(why) => match self.fail(None, why) {
                Step::Fail(why) => Some(why),
                _ => None,
            },
        }
    }

    fn fail(&mut self, pid: Option<u32>, why: String) -> Step {
        let then = match (self.goal, self.stopped_by_us) {
            (Goal::Stopped, false) => "nothing was sent to it",
            (Goal::Stopped, true) => {
                "the stop was sent and headroom did not start it again: look at the service (`sc queryex`) and its event log"
            }
            (Goal::Running, true) => {
                "headroom stopped it and it is not running now: start it by hand (`sc start`) and read its event log"
            }
            (Goal::Running, false) => "it is not running: read its event log before starting it by hand",
        };
        let pid = pid.filter(|&p| p != 0).map(|p| format!(", pid {p}")).unwrap_or_default();
        let why = format!("restart failed while {}: {why}{pid}; {then}", self.doing());
        self.outcome = Some(Err(why.clone()));
        Step::Fail(why)
    }

    fn doing(&self) -> &'static str {
        match self.goal {
            Goal::Stopped => "stopping",
            Goal::Running => "starting",
        }
    }

    /// What happened, in words (`running → stop_pending 0.0s → stopped 3.0s → …`).
    pub fn summary(&self) -> String {
        let trail: Vec<String> = self
            .trail
            .iter()
            .enumerate()
            .map(|(i, (at, s))| if i == 0 { s.to_string() } else { format!("{s} {}", secs(*at)) })
            .collect();
        let what = if self.stopped_by_us { "stopped and started" } else { "was not running: started" };
        format!("{what} ({})", trail.join(" → "))
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Refuses a restart that could not end with the service running: a
/// disabled service would be stopped and then refused its start.
pub fn check_restartable(disabled: bool) -> Result<(), String> {
    if disabled {
        Err("the service is disabled: headroom will not stop a service it cannot start again (enable it first)".into())
    } else {
        Ok(())
    }
}

/// `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: i32 = 5;
/// `ERROR_INVALID_SERVICE_CONTROL`.
pub const ERROR_INVALID_SERVICE_CONTROL: i32 = 1052;
/// `ERROR_SERVICE_REQUEST_TIMEOUT`.
pub const ERROR_SERVICE_REQUEST_TIMEOUT: i32 = 1053;
/// `ERROR_SERVICE_ALREADY_RUNNING`.
pub const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
/// `ERROR_SERVICE_DISABLED`.
pub const ERROR_SERVICE_DISABLED: i32 = 1058;
/// `ERROR_SERVICE_DOES_NOT_EXIST`.
pub const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
/// `ERROR_SERVICE_CANNOT_ACCEPT_CTRL`.
pub const ERROR_SERVICE_CANNOT_ACCEPT_CTRL: i32 = 1061;
/// `ERROR_SERVICE_NOT_ACTIVE`.
pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

/// What to do when the SCM answers a control with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnControlError {
    /// The service is already where the control would take it: query again.
    Ignore,
    /// The service cannot take the control now: [`Restart::control_refused`], query again.
    Retry,
    /// Stop, with this message.
    Fail(String),
}

/// Reads the SCM's error `code` for the control `step` sent to `name`.
pub fn on_control_error(step: &Step, code: Option<i32>, name: &str) -> OnControlError {
    match (step, code) {
        (Step::SendStop, Some(ERROR_SERVICE_NOT_ACTIVE)) => OnControlError::Ignore,
        (Step::SendStart, Some(ERROR_SERVICE_ALREADY_RUNNING)) => OnControlError::Ignore,
        (_, Some(ERROR_SERVICE_CANNOT_ACCEPT_CTRL)) => OnControlError::Retry,
        _ => {
            let what = if *step == Step::SendStart { "start" } else { "stop" };
            OnControlError::Fail(format!("could not {what} it: {}", explain(code, name)))
        }
    }
}

/// Words for a Win32 error `code` from any SCM call about service `name`,
/// with what to do.
pub fn explain(code: Option<i32>, name: &str) -> String {
    match code {
        Some(ERROR_ACCESS_DENIED) => format!(
            "access denied: run headroom as a user with SERVICE_STOP, SERVICE_START, SERVICE_QUERY_STATUS, \
             SERVICE_QUERY_CONFIG and SERVICE_CHANGE_CONFIG rights on {name:?}"
        ),
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            format!("no service named {name:?} (use the service name, not its display name: `sc query`)")
        }
        Some(ERROR_SERVICE_DISABLED) => format!("{name:?} is disabled: enable it before headroom can start it"),
        Some(ERROR_SERVICE_REQUEST_TIMEOUT) => {
            format!("{name:?} did not answer the control in time (its process may be hung)")
        }
        Some(ERROR_INVALID_SERVICE_CONTROL) => format!("{name:?} does not accept this control"),
        Some(c) => match win32_name(c as u32) {
            Some(n) => format!("Windows error {c} ({n})"),
            None => format!("Windows error {c}"),
        },
        None => "the SCM call failed without an error code".into(),
    }
}

fn win32_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "no error",
        5 => "access denied",
        1053 => "the service did not respond in time",
        1058 => "the service is disabled",
        1060 => "the service does not exist",
        1061 => "the service cannot accept control messages now",
        1062 => "the service has not been started",
        1066 => "the service reported a service-specific error",
        1067 => "the process terminated unexpectedly",
        1069 => "the service did not start due to a logon failure",
        1077 => "no attempts to start the service since the last boot",
        _ => return None,
    })
}

/// What the SCM does on one failure of a service (`SC_ACTION` type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryKind {
    /// Nothing: the service stays down.
    None,
    /// Restart the service.
    Restart,
    /// Reboot the computer.
    Reboot,
    /// Run the configured command.
    RunCommand,
}

/// One failure action: what, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecoveryAction {
    /// What the SCM does.
    pub kind: RecoveryKind,
    /// How long after the failure.
    pub delay: Duration,
}

/// A service's failure actions (recovery settings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailureActions {
    /// After this long without a failure the SCM counts failures from zero
    /// again; `None`: never.
    pub reset: Option<Duration>,
    /// The action for the 1st, 2nd, … failure; the last repeats for later ones.
    pub actions: Vec<RecoveryAction>,
}

/// Starts the SCM makes on its own, read as headroom's [`StartLimit`]:
///
/// * `burst` = the number of leading `restart` actions: the failures the SCM
///   recovers before its list says something else (none, a command, a
///   reboot) and the service stays down;
/// * `interval` = the reset period (never, or 0, which the SCM does not
///   document as a reset: [`NEVER_RESET_SECS`], the safe reading);
/// * `None` when the SCM recovers every failure (the last action is a
///   restart, so it repeats) or none at all (no restart action first):
///   there is then no recovery budget to use up.
pub fn start_limit(fa: &FailureActions) -> Option<StartLimit> {
    let burst = fa.actions.iter().take_while(|a| a.kind == RecoveryKind::Restart).count();
    if burst == 0 || burst == fa.actions.len() {
        return None;
    }
    let interval = match fa.reset {
        Some(d) if !d.is_zero() && d.as_secs() < NEVER_RESET_SECS => d,
        _ => Duration::from_secs(NEVER_RESET_SECS),
    };
    Some(StartLimit { burst: u32::try_from(burst).unwrap_or(u32::MAX), interval: Span(interval) })
}

/// The failure actions in words (`restart after 1m, restart after 2m, none; reset after 1d`).
pub fn describe_recovery(fa: &FailureActions) -> String {
    if fa.actions.is_empty() {
        return "no failure actions: the SCM does not restart it after a crash".into();
    }
    let list: Vec<String> = fa
        .actions
        .iter()
        .map(|a| match a.kind {
            RecoveryKind::None => "none".to_owned(),
            RecoveryKind::Restart => format!("restart after {}", Span(a.delay)),
            RecoveryKind::Reboot => format!("reboot after {}", Span(a.delay)),
            RecoveryKind::RunCommand => format!("run command after {}", Span(a.delay)),
        })
        .collect();
    let reset = match fa.reset {
        Some(d) if !d.is_zero() && d.as_secs() < NEVER_RESET_SECS => format!("reset after {}", Span(d)),
        _ => "never reset".into(),
    };
    format!("{}; {reset}", list.join(", "))
}

/// Most restarts [`recovery_for`] writes.
pub const MAX_RECOVERY_RESTARTS: u32 = 16;

/// The failure actions headroom writes for a start limit: `restarts`
/// restarts (the first after `first_delay`, each next one after twice the
/// previous delay, at most an hour), then `none`, counted from zero again
/// after `reset`. `start_limit(&recovery_for(..)?)` reads back
/// `StartLimit { burst: restarts, interval: reset }` (reset in whole seconds,
/// rounded up).
pub fn recovery_for(restarts: u32, first_delay: Duration, reset: Duration) -> Result<FailureActions, String> {
    if restarts < 2 {
        return Err(format!(
            "{restarts} restart(s): at least 2 are needed, as headroom always leaves one to the SCM and \
             would otherwise never restart the service"
        ));
    }
    if restarts > MAX_RECOVERY_RESTARTS {
        return Err(format!("{restarts} restarts: at most {MAX_RECOVERY_RESTARTS}"));
    }
    let reset_secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    if reset_secs == 0 || reset_secs >= NEVER_RESET_SECS {
        return Err(format!("reset period {}: must be between 1s and {}s", secs(reset), NEVER_RESET_SECS - 1));
    }
    let max_delay = Duration::from_secs(3600);
    if first_delay > max_delay {
        return Err(format!("first delay {}: at most 1h", secs(first_delay)));
    }
    let mut delay = first_delay;
    let mut actions = Vec::new();
    for _ in 0..restarts {
        actions.push(RecoveryAction { kind: RecoveryKind::Restart, delay });
        delay = (delay * 2).min(max_delay);
    }
    actions.push(RecoveryAction { kind: RecoveryKind::None, delay: Duration::ZERO });
    Ok(FailureActions { reset: Some(Duration::from_secs(reset_secs)), actions })
}

/// What a restart of a service in `status` would do, in words (for `plan`).
pub fn plan_restart(name: &str, status: &Status, disabled: bool, timing: &Timing) -> String {
    if let Err(why) = check_restartable(disabled) {
        return format!("would not restart {ENTITY_PREFIX}{name}: {why}");
    }
    let limits =
        format!("{} per phase, up to {} if its wait hint asks", secs(timing.phase_timeout), secs(timing.max_phase));
    let now = describe(status);
    match status.state {
        State::Stopped => format!(
            "would start {ENTITY_PREFIX}{name} (it is {now}: nothing to stop) and wait until running ({limits})"
        ),
        State::Running | State::Paused if !status.accepts_stop => {
            format!("would not restart {ENTITY_PREFIX}{name}: it is {now} and does not accept the stop control now")
        }
        _ => format!(
            "would restart {ENTITY_PREFIX}{name} (it is {now}): stop it, wait until stopped, start it, wait until running ({limits})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use headroom_core::{Action, SeriesKey, Verdict};
    use headroom_remediate::config::{Config, Global, Platform, Target};
    use headroom_remediate::risk::{RestartLoop, Risk};
    use headroom_remediate::state::TargetState;

    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn pending(state: State, checkpoint: u32, hint: Duration) -> Status {
        Status { checkpoint, wait_hint: hint, pid: Some(4242), ..Status::new(state) }
    }

    /// Feeds `(seconds since start, status)` to a restart; returns the steps.
    fn walk(r: &mut Restart, seq: &[(u64, Status)]) -> Vec<Step> {
        seq.iter().map(|(t, s)| r.next_step(s, Duration::from_secs(*t))).collect()
    }

    #[test]
    fn a_running_service_is_stopped_waited_for_started_and_waited_for() {
        let mut r = Restart::new(Timing::default());
        let steps = walk(
            &mut r,
            &[
                (0, Status { pid: Some(10), ..Status::new(State::Running) }),
                (0, pending(State::StopPending, 1, 20 * S)),
                (2, pending(State::StopPending, 2, 20 * S)),
                (4, Status::new(State::Stopped)),
                (4, pending(State::StartPending, 1, 3 * S)),
                (5, Status { pid: Some(11), ..Status::new(State::Running) }),
            ],
        );
        assert_eq!(
            steps,
            vec![
                Step::SendStop,
                Step::Wait(2 * S), // a tenth of the 20 s wait hint
                Step::Wait(2 * S),
                Step::SendStart,                        // stopped: the second half begins at once
                Step::Wait(Duration::from_millis(500)), // 0.3 s raised to the 0.5 s floor
                Step::Done,
            ]
        );
        assert_eq!(r.next_step(&Status::new(State::Running), 6 * S), Step::Done, "done stays done");
        let summary = r.summary();
        assert!(summary.starts_with("stopped and started"), "{summary}");
        assert!(
            summary.contains("running → stop_pending 0.0s → stopped 4.0s → start_pending 4.0s → running 5.0s"),
            "{summary}"
        );
    }

    #[test]
    fn a_service_that_never_stops_fails_after_the_timeout_with_its_state_named() {
        let timing = Timing::default();
        let mut r = Restart::new(timing);
        assert_eq!(r.next_step(&Status::new(State::Running), Duration::ZERO), Step::SendStop);
        // Stuck: stop_pending, no progress, no wait hint.
        let stuck = pending(State::StopPending, 3, Duration::ZERO);
        let mut t = Duration::ZERO;
        let why = loop {
            match r.next_step(&stuck, t) {
                Step::Wait(d) => {
                    assert!(d <= timing.min_poll, "polls at the floor without a hint: {d:?}");
                    t += d;
                }
                Step::Fail(why) => break why,
                other => panic!("unexpected {other:?} at {t:?}"),
            }
            assert!(t <= timing.phase_timeout, "no failure by {t:?}");
        };
        assert_eq!(t, timing.phase_timeout, "fails exactly at the phase timeout");
        assert!(
            why.contains("while stopping") && why.contains("still stop_pending 30.0s after the stop control"),
            "{why}"
        );
        assert!(
            why.contains("checkpoint 3") && why.contains("pid 4242") && why.contains("did not start it again"),
            "{why}"
        );
        // A service that ignores the stop (still running) fails the same way.
        let mut r = Restart::new(timing);
        r.next_step(&Status::new(State::Running), Duration::ZERO);
        assert_eq!(r.next_step(&Status::new(State::Running), 10 * S), Step::Wait(timing.min_poll));
        let Step::Fail(why) = r.next_step(&Status::new(State::Running), 31 * S) else { panic!() };
        assert!(why.contains("still running 31.0s after the stop control"), "{why}");
    }

    #[test]
    fn progress_earns_the_wait_hint_but_never_more_than_max_phase() {
        let timing = Timing::default();
        let mut r = Restart::new(timing);
        r.next_step(&Status::new(State::Running), Duration::ZERO);
        // A slow but honest service: 60 s hints, checkpoint rising.
        for (i, t) in (0..=120).step_by(10).enumerate() {
            let step = r.next_step(&pending(State::StopPending, i as u32, 60 * S), Duration::from_secs(t));
            assert_eq!(step, Step::Wait(6 * S), "at {t}s");
        }
        assert_eq!(r.next_step(&Status::new(State::Stopped), 125 * S), Step::SendStart);
        // Start phase: progress keeps extending, but 300 s is the ceiling.
        let mut t = 125;
        let mut cp = 0;
        let why = loop {
            cp += 1;
            match r.next_step(&pending(State::StartPending, cp, 600 * S), Duration::from_secs(t)) {
                Step::Wait(d) => t += d.as_secs().max(1),
                Step::Fail(why) => break why,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(t, 125 + 300, "the phase ends at max_phase");
        assert!(why.contains("while starting") && why.contains("still start_pending 300.0s after the start"), "{why}");
        assert!(why.contains("headroom stopped it and it is not running now: start it by hand"), "{why}");
    }

    #[test]
    fn an_already_stopped_service_is_only_started() {
        let mut r = Restart::new(Timing::default());
        let crashed = Status { exit_code: ExitCode::Win32(1067), ..Status::new(State::Stopped) };
        let steps = walk(
            &mut r,
            &[(0, crashed), (0, pending(State::StartPending, 0, 2 * S)), (1, Status::new(State::Running))],
        );
        assert_eq!(steps, vec![Step::SendStart, Step::Wait(Duration::from_millis(500)), Step::Done]);
        assert!(r.summary().starts_with("was not running: started"), "{}", r.summary());
    }

    #[test]
    fn a_service_that_dies_while_starting_fails_with_its_exit_code() {
        let mut r = Restart::new(Timing::default());
        let died = Status { exit_code: ExitCode::ServiceSpecific(3), ..Status::new(State::Stopped) };
        let steps = walk(
            &mut r,
            &[
                (0, Status::new(State::Running)),
                (1, Status::new(State::Stopped)),
                (1, pending(State::StartPending, 0, S)),
                (2, died),
            ],
        );
        let Step::Fail(why) = &steps[3] else { panic!("{steps:?}") };
        assert!(why.contains("stopped again while starting, with service-specific exit code 3"), "{why}");
        assert!(why.contains("start it by hand"), "{why}");
    }

    #[test]
    fn paused_pending_and_unstoppable_states() {
        // Paused: stopped directly, never continued.
        let mut r = Restart::new(Timing::default());
        assert_eq!(r.next_step(&Status::new(State::Paused), Duration::ZERO), Step::SendStop);
        // Starting when the restart begins: wait for it to settle, then stop.
        let mut r = Restart::new(Timing::default());
        assert!(matches!(r.next_step(&pending(State::StartPending, 1, 5 * S), Duration::ZERO), Step::Wait(_)));
        assert_eq!(r.next_step(&Status::new(State::Running), S), Step::SendStop);
        // Stopping already: no second stop.
        let mut r = Restart::new(Timing::default());
        assert!(matches!(r.next_step(&pending(State::StopPending, 1, 5 * S), Duration::ZERO), Step::Wait(_)));
        assert_eq!(r.next_step(&Status::new(State::Stopped), S), Step::SendStart);
        // Does not accept STOP: nothing is sent.
        let mut r = Restart::new(Timing::default());
        let Step::Fail(why) =
            r.next_step(&Status { accepts_stop: false, ..Status::new(State::Running) }, Duration::ZERO)
        else {
            panic!()
        };
        assert!(why.contains("does not accept the stop control") && why.contains("nothing was sent"), "{why}");
        // A control the SCM refused for now is sent again once the service allows it.
        let mut r = Restart::new(Timing::default());
        assert_eq!(r.next_step(&Status::new(State::Running), Duration::ZERO), Step::SendStop);
        r.control_refused();
        assert_eq!(
            r.next_step(&Status::new(State::Running), S),
            Step::Wait(Duration::from_millis(500)),
            "a poll first"
        );
        assert_eq!(r.next_step(&Status::new(State::Running), 2 * S), Step::SendStop, "then sent again");
        assert_eq!(r.control_error(&Step::SendStop, Some(ERROR_SERVICE_CANNOT_ACCEPT_CTRL), "svc"), Option::None);
        assert!(matches!(r.next_step(&Status::new(State::Running), 3 * S), Step::Wait(_)));
        assert_eq!(r.next_step(&Status::new(State::Stopped), 3 * S), Step::SendStart);
        let why = r.control_error(&Step::SendStart, Some(ERROR_SERVICE_DISABLED), "svc").unwrap();
        let mut stubborn = Restart::new(Timing::default());
        assert_eq!(stubborn.next_step(&Status::new(State::Running), Duration::ZERO), Step::SendStop);
        stubborn.control_refused();
        let Step::Fail(refused) = stubborn.next_step(&Status::new(State::Running), 40 * S) else { panic!() };
        assert!(refused.contains("it is running and refused the stop control for 40.0s"), "{refused}");
        assert!(why.contains("could not start it") && why.contains("headroom stopped it"), "{why}");
        assert_eq!(r.next_step(&Status::new(State::Stopped), 4 * S), Step::Fail(why), "a failed restart stays failed");
        assert_eq!(
            on_control_error(&Step::SendStop, Some(ERROR_SERVICE_CANNOT_ACCEPT_CTRL), "svc"),
            OnControlError::Retry
        );
        assert_eq!(on_control_error(&Step::SendStop, Some(ERROR_SERVICE_NOT_ACTIVE), "svc"), OnControlError::Ignore);
        assert_eq!(
            on_control_error(&Step::SendStart, Some(ERROR_SERVICE_ALREADY_RUNNING), "svc"),
            OnControlError::Ignore
        );
        let OnControlError::Fail(why) = on_control_error(&Step::SendStart, Some(ERROR_ACCESS_DENIED), "svc") else {
            panic!()
        };
        assert!(why.contains("could not start it") && why.contains("SERVICE_START"), "{why}");
    }

    #[test]
    fn states_are_read_as_running_stopped_failed_or_pending() {
        assert_eq!(describe(&Status::new(State::Running)), "running");
        assert_eq!(describe(&Status::new(State::Stopped)), "stopped");
        let never = Status { exit_code: ExitCode::Win32(ERROR_SERVICE_NEVER_STARTED), ..Status::new(State::Stopped) };
        assert_eq!(interpret(&never), Condition::Stopped);
        let crashed = Status { exit_code: ExitCode::Win32(1067), ..Status::new(State::Stopped) };
        assert_eq!(interpret(&crashed), Condition::Failed(ExitCode::Win32(1067)));
        assert_eq!(describe(&crashed), "failed (win32 exit code 1067 (the process terminated unexpectedly))");
        let own = Status { exit_code: ExitCode::ServiceSpecific(0), ..Status::new(State::Stopped) };
        assert_eq!(describe(&own), "failed (service-specific exit code 0)");
        assert_eq!(interpret(&pending(State::StopPending, 1, S)), Condition::Pending(State::StopPending));
        assert_eq!(describe(&pending(State::StopPending, 1, S)), "stop_pending");
    }

    #[test]
    fn names_are_checked_before_any_call() {
        assert_eq!(service_name("winsvc/Spooler"), Ok("Spooler"));
        assert_eq!(service_name("winsvc/My Service"), Ok("My Service"));
        assert!(service_name(&format!("winsvc/{}", "a".repeat(256))).is_ok());
        let long = service_name(&format!("winsvc/{}", "a".repeat(257))).unwrap_err();
        assert!(long.contains("257") && long.contains("256"), "{long}");
        for bad in ["winsvc/", "winsvc/  ", "winsvc/a/b", "winsvc/a\\b", "winsvc/a\0b", "winsvc/a\nb"] {
            assert!(service_name(bad).is_err(), "{bad:?} accepted");
        }
        let wrong = service_name("systemd/x.service").unwrap_err();
        assert!(wrong.contains("winsvc/<service name>"), "{wrong}");
        assert!(check_restartable(true).unwrap_err().contains("disabled"));
        let plan = plan_restart("Spooler", &Status::new(State::Stopped), false, &Timing::default());
        assert!(plan.starts_with("would start winsvc/Spooler (it is stopped: nothing to stop)"), "{plan}");
        let plan = plan_restart("Spooler", &Status::new(State::Running), true, &Timing::default());
        assert!(plan.starts_with("would not restart") && plan.contains("disabled"), "{plan}");
    }

    fn recovery(kinds: &[(RecoveryKind, u64)], reset: Option<u64>) -> FailureActions {
        FailureActions {
            reset: reset.map(Duration::from_secs),
            actions: kinds.iter().map(|&(kind, s)| RecoveryAction { kind, delay: Duration::from_secs(s) }).collect(),
        }
    }

    #[test]
    fn failure_actions_map_to_a_start_limit_that_the_policy_respects() {
        use RecoveryKind::*;
        const DAY: u64 = 86_400;
        let fa = recovery(&[(Restart, 60), (Restart, 120), (None, 0)], Some(DAY));
        let limit = start_limit(&fa).expect("a limited recovery");
        assert_eq!(limit, StartLimit { burst: 2, interval: Span(Duration::from_secs(DAY)) });
        assert_eq!(describe_recovery(&fa), "restart after 1m, restart after 2m, none; reset after 1d");
        // What headroom writes for that limit is that very list.
        assert_eq!(recovery_for(2, Duration::from_secs(60), Duration::from_secs(DAY)), Ok(fa.clone()));

        // The real policy: with 1 crash the SCM recovered in the last day, headroom's
        // restart would leave the SCM nothing for the next crash: blocked.
        const NOW: i64 = 1_704_067_200_000;
        let mut t = Target::new("spooler", Platform::Windows, "winsvc/Spooler", "cpu");
        t.start_limit = Some(limit);
        let cfg = Config { global: Global::default(), detect: Default::default(), targets: vec![t.clone()] };
        let risk = Risk::RestartLoop(RestartLoop {
            key: SeriesKey { entity: t.entity.clone(), metric: "restarts".into() },
            restarts: 3,
            window_ms: 3_600_000,
            first_at_ms: NOW - 1_800_000,
            last_at_ms: NOW - 60_000,
        });
        let decide = |starts: Vec<i64>| {
            let s = TargetState { last_sample_ms: Some(NOW - 60_000), recent_starts_ms: starts, ..Default::default() };
            let plan = headroom_remediate::plan(
                std::slice::from_ref(&risk),
                &BTreeMap::from([(t.name.clone(), s)]),
                &cfg,
                NOW,
            );
            plan.decisions.into_iter().next().unwrap()
        };
        let d = decide(vec![]);
        assert_eq!(d.action, Action::Restart, "{}", d.reason);
        let d = decide(vec![NOW - 2 * 3_600_000]);
        assert_eq!(d.action, Action::None, "{}", d.reason);
        let g = d.guardrails.iter().find(|g| g.name == "start_limit").unwrap();
        assert_eq!(g.verdict, Verdict::Blocked);
        assert!(g.detail.contains("1 starts within the last 1d and the platform allows 2"), "{}", g.detail);
        // A crash older than the reset period no longer counts.
        assert_eq!(decide(vec![NOW - 2 * DAY as i64 * 1000]).action, Action::Restart);
    }

    #[test]
    fn recovery_lists_without_a_budget_or_with_odd_reset_periods() {
        use RecoveryKind::*;
        // Restarts forever (the last action repeats) or never: no budget to use up.
        assert_eq!(start_limit(&recovery(&[(Restart, 60)], Some(60))), Option::None);
        assert_eq!(start_limit(&recovery(&[(Restart, 1), (Restart, 2)], Some(60))), Option::None);
        assert_eq!(start_limit(&recovery(&[(None, 0), (Restart, 60)], Some(60))), Option::None);
        assert_eq!(start_limit(&FailureActions::default()), Option::None);
        // Only leading restarts count: after a reboot or a command the service stays down.
        let fa = recovery(&[(Restart, 1), (Reboot, 1), (Restart, 1)], Some(3600));
        assert_eq!(start_limit(&fa).unwrap().burst, 1);
        assert_eq!(describe_recovery(&fa), "restart after 1s, reboot after 1s, restart after 1s; reset after 1h");
        // Never reset (or 0) is read as forever.
        let forever = Span(Duration::from_secs(NEVER_RESET_SECS));
        assert_eq!(start_limit(&recovery(&[(Restart, 1), (None, 0)], Option::None)).unwrap().interval, forever);
        assert_eq!(start_limit(&recovery(&[(Restart, 1), (None, 0)], Some(0))).unwrap().interval, forever);
        // What headroom writes: doubling delays capped at 1 h, whole seconds, bounded.
        let fa = recovery_for(4, Duration::from_secs(1200), Duration::from_millis(1500)).unwrap();
        let delays: Vec<u64> = fa.actions.iter().map(|a| a.delay.as_secs()).collect();
        assert_eq!(delays, vec![1200, 2400, 3600, 3600, 0]);
        assert_eq!(fa.reset, Some(Duration::from_secs(2)));
        assert!(recovery_for(1, S, S).unwrap_err().contains("at least 2"));
        assert!(recovery_for(2, S, Duration::ZERO).is_err());
        assert!(recovery_for(2, S, Duration::from_secs(NEVER_RESET_SECS)).is_err());
        assert!(recovery_for(2, Duration::from_secs(3601), S).is_err());
        assert!(recovery_for(17, S, S).is_err());
    }
}
