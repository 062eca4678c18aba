//! Every decision of headroom as a Windows service, as plain functions
//! compiled and tested on every platform.
//!
//! The `cfg(windows)` shell (`windows.rs`) only carries these out through the
//! `windows-service` crate and the registry. **It is type-checked here
//! (`cargo check --target x86_64-pc-windows-gnu`, see `scripts/test.sh`) but
//! never run: no Windows machine takes part in the tests.** Everything that
//! can be wrong without Windows is here:
//!
//! * **What install registers** ([`ScmService`]): an own-process,
//!   automatic-start service named `headroom`, whose command line is
//!   `headroom.exe run --service --config <config> [--enforce]`
//!   ([`ScmService::launch_arguments`], quoted by [`ScmService::command_line`]
//!   as the SCM stores it), under the virtual account `NT SERVICE\<name>`
//!   ([`ScmService::account_name`]: no password, no rights beyond what is
//!   granted to it), with a [`PRESHUTDOWN_TIMEOUT`] and an Event Log source
//!   (`crate::eventlog`). [`ScmService::describe`] is the `--dry-run` text.
//! * **Recovery** ([`recovery`]): restart after 10 s, three times, then
//!   nothing; the failure count starts again after a day without a failure,
//!   and a non-zero exit code counts as a failure too.
//! * **What the running service reports** ([`Report`]): `START_PENDING` →
//!   `RUNNING` as soon as the daemon's thread is started ([`starting`],
//!   [`running`]); on STOP or PRESHUTDOWN ([`on_control`]) the daemon's
//!   graceful shutdown begins and `STOP_PENDING` is reported with a checkpoint
//!   that increases every [`CHECKPOINT_EVERY`] and a wait hint covering the
//!   rest of the shutdown ([`stopping`], [`stop_remaining`]); then `STOPPED`
//!   with the exit code of the daemon's [`RunOutcome`] ([`stopped`],
//!   [`exit_code`]): 0 clean, service-specific 1 unclean shutdown,
//!   service-specific 2 failure. A non-zero code makes the SCM's recovery
//!   restart the service.
//! * **Status** ([`Observed`], [`describe_status`]) and the SCM's errors in
//!   words ([`explain`]).
//! * **Ownership** ([`is_ours`]): uninstall removes a service only when its
//!   command line is one install writes (`… run --service …`).

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::eventlog;

/// The service name `service install` uses unless told otherwise.
pub const DEFAULT_NAME: &str = "headroom";

/// The display name (as the Services console lists it) of the default service.
pub const DISPLAY_NAME: &str = "headroom capacity daemon";

/// The longest service (and display) name the SCM accepts, in UTF-16 units.
pub const MAX_NAME_LEN: usize = 256;

/// The domain of the virtual accounts the SCM creates for services.
pub const VIRTUAL_ACCOUNT_DOMAIN: &str = "NT SERVICE";

/// How long the SCM waits after a failure before restarting the service.
pub const RESTART_DELAY: Duration = Duration::from_secs(10);

/// How many failures in a row the SCM recovers by a restart.
pub const RESTARTS: usize = 3;

/// After this long without a failure the SCM counts failures from zero again.
pub const RESET_AFTER: Duration = Duration::from_secs(86_400);

/// The daemon's `daemon.shutdown_timeout` unless the config says otherwise:
/// how long the action in flight may take to finish after a stop.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Time beyond the shutdown timeout the daemon needs to stop its supervised
/// children and close the audit log.
pub const STOP_MARGIN: Duration = Duration::from_secs(15);

/// The time a stop is expected to take at most: [`DEFAULT_SHUTDOWN_TIMEOUT`]
/// + [`STOP_MARGIN`].
pub const STOP_BUDGET: Duration = Duration::from_secs(45);

/// The preshutdown timeout install sets: at system shutdown the SCM waits
/// this long for the service to stop (Windows' default of 10 s would cut the
/// graceful shutdown short).
pub const PRESHUTDOWN_TIMEOUT: Duration = STOP_BUDGET;

/// The wait hint of `START_PENDING`: the service reports `RUNNING` as soon as
/// the daemon's thread runs, well within it.
pub const START_WAIT_HINT: Duration = Duration::from_secs(10);

/// While stopping, the checkpoint increases this often (the SCM takes a
/// checkpoint that does not move for a whole wait hint as a hung service).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(3);

/// The shortest wait hint of `STOP_PENDING`, even when the shutdown should be
/// over by now: a few checkpoint intervals.
pub const MIN_STOP_WAIT_HINT: Duration = Duration::from_secs(10);

/// The longest wait hint reported (the SCM takes milliseconds in 32 bits).
pub const MAX_WAIT_HINT: Duration = Duration::from_secs(3_600);

/// How long after a stop the service waits for the daemon at most: past it,
/// it reports `STOPPED` (unclean) and the process exits, so a daemon that
/// never finishes cannot keep the service in `STOP_PENDING` for ever. Well
/// above any sensible `daemon.shutdown_timeout`, which the daemon keeps itself.
pub const STOP_GIVE_UP: Duration = Duration::from_secs(600);

/// How long uninstall waits for the service to reach `STOPPED`.
pub const UNINSTALL_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The service-specific exit code of an unclean shutdown ([`RunOutcome::Unclean`]).
pub const EXIT_UNCLEAN: u32 = 1;

/// The service-specific exit code of a daemon that failed ([`RunOutcome::Failed`]).
pub const EXIT_FAILED: u32 = 2;

/// The arguments that mark a command line as headroom's service (see [`is_ours`]).
pub const SERVICE_ARGS: &str = "run --service";

/// headroom as a Windows service: what `service install` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmService {
    /// The service name (the key of the SCM and of the Event Log source).
    pub name: String,
    /// The name the Services console shows.
    pub display_name: String,
    /// The description the Services console shows.
    pub description: String,
    /// The absolute path of `headroom.exe`.
    pub binary: std::path::PathBuf,
    /// The absolute path of the config file the service runs with.
    pub config: std::path::PathBuf,
    /// Whether the daemon runs with `--enforce` (carries out the decisions of
    /// targets whose config says `mode = "enforce"`) or dry-run.
    pub enforce: bool,
    /// The account the service runs as; `None`: the virtual account
    /// `NT SERVICE\<name>`.
    pub account: Option<String>,
}

impl ScmService {
    /// The service `name`, running `binary run --service --config <config>`
    /// (with `--enforce` when `enforce`), as `account` (`None`: the virtual
    /// account `NT SERVICE\<name>`).
    pub fn new(
        name: &str,
        binary: std::path::PathBuf,
        config: std::path::PathBuf,
        enforce: bool,
        account: Option<String>,
    ) -> Self {
        let display_name =
            if name == DEFAULT_NAME { DISPLAY_NAME.to_owned() } else { format!("{DISPLAY_NAME} ({name})") };
        let mode = if enforce {
            "carries out the decisions of targets whose config says mode = \"enforce\""
        } else {
            "dry-run: records its decisions in the audit log without carrying them out"
        };
        let description = format!(
            "Forecasts resource use from collected metrics and scales or restarts the targets configured in {} \
             before they run out of capacity; {mode}. Installed by `headroom service install`.",
            config.display()
        );
        Self { name: name.to_owned(), display_name, description, binary, config, enforce, account }
    }

    /// The account the service runs as: the one given, or the virtual account
    /// `NT SERVICE\<name>`.
    pub fn account_name(&self) -> String {
        match &self.account {
            Some(account) => account.clone(),
            None => format!(r"{VIRTUAL_ACCOUNT_DOMAIN}\{}", self.name),
        }
    }

    /// Whether the service runs as a virtual account (`NT SERVICE\…`): it
    /// then gets an unrestricted service SID, which is what the account is.
    pub fn is_virtual_account(&self) -> bool {
        let account = self.account_name();
        account.len() > VIRTUAL_ACCOUNT_DOMAIN.len()
            && account.is_char_boundary(VIRTUAL_ACCOUNT_DOMAIN.len())
            && account[..VIRTUAL_ACCOUNT_DOMAIN.len()].eq_ignore_ascii_case(VIRTUAL_ACCOUNT_DOMAIN)
            && account[VIRTUAL_ACCOUNT_DOMAIN.len()..].starts_with('\\')
    }

    /// The arguments after the binary: `run --service --config <config>`,
    /// then `--enforce` when asked. `--service` belongs to `run`, so it
    /// follows it.
    pub fn launch_arguments(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["run".into(), "--service".into(), "--config".into(), self.config.as_os_str().to_owned()];
        if self.enforce {
            args.push("--enforce".into());
        }
        // The dispatcher and the Event Log source take the service's own name.
        if self.name != crate::spec::DEFAULT_NAME {
            args.extend(["--service-name".into(), self.name.clone().into()]);
        }
        args
    }

    /// The command line as the SCM stores it (`ImagePath`): the binary and
    /// each argument quoted the way `windows-service` quotes them.
    pub fn command_line(&self) -> String {
        let mut line = quote_arg(&self.binary.to_string_lossy());
        for arg in self.launch_arguments() {
            line.push(' ');
            line.push_str(&quote_arg(&arg.to_string_lossy()));
        }
        line
    }

    /// Checks everything before any SCM call: the service name (1–256 UTF-16
    /// units, no `/` or `\`, no control characters), the display name, the
    /// binary and config (absolute paths: the SCM starts the service in
    /// `C:\Windows\System32`), and the account.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        let len = self.display_name.encode_utf16().count();
        if self.display_name.trim().is_empty() || len > MAX_NAME_LEN {
            return Err(Error::Invalid(format!(
                "display name {:?}: must be 1 to {MAX_NAME_LEN} characters long (it is {len})",
                self.display_name
            )));
        }
        if self.display_name.chars().any(char::is_control) || self.description.contains('\0') {
            return Err(Error::Invalid(format!(
                "display name {:?} or description contains a control character",
                self.display_name
            )));
        }
        check_path("binary", &self.binary, "the SCM starts it by this path")?;
        check_path("config", &self.config, r"the service runs in C:\Windows\System32, not where install was run")?;
        if let Some(account) = &self.account
            && (account.trim().is_empty() || account.chars().any(char::is_control))
        {
            return Err(Error::Invalid(format!(
                "account {account:?}: empty or contains a control character; leave it out for the virtual account \
                 {VIRTUAL_ACCOUNT_DOMAIN}\\{}",
                self.name
            )));
        }
        if self.is_virtual_account() {
            let account = self.account_name();
            let named = &account[VIRTUAL_ACCOUNT_DOMAIN.len() + 1..];
            if !named.eq_ignore_ascii_case(&self.name) {
                return Err(Error::Invalid(format!(
                    "account {account:?}: a virtual account is named after its own service; for the service \
                     {:?} it is {VIRTUAL_ACCOUNT_DOMAIN}\\{} (leave the account out to get it)",
                    self.name, self.name
                )));
            }
        }
        Ok(())
    }

    /// The `--dry-run` text: every setting install would register, and that
    /// nothing was changed.
    pub fn describe(&self) -> String {
        let account = self.account_name();
        let account_note = if self.is_virtual_account() {
            " (virtual account: no password, service SID type unrestricted)"
        } else if self.account.is_some() {
            " (no password is set: use a virtual, managed or built-in account)"
        } else {
            ""
        };
        let rec = recovery();
        let mut out = format!(
            "Would install the Windows service {name:?}:\n\
             \x20 service type:        own process (SERVICE_WIN32_OWN_PROCESS)\n\
             \x20 start type:          automatic (SERVICE_AUTO_START)\n\
             \x20 error control:       normal (SERVICE_ERROR_NORMAL)\n\
             \x20 command line:        {cmd}\n\
             \x20 account:             {account}{account_note}\n\
             \x20 display name:        {display}\n\
             \x20 description:         {description}\n\
             \x20 failure actions:     {recovery}\n\
             \x20 non-crash failures:  {non_crash}\n\
             \x20 preshutdown timeout: {pre} (the daemon's default shutdown timeout {shutdown} + {margin} to stop \
             children and close the audit log)\n\
             \x20 controls accepted:   stop, preshutdown\n\
             \x20 Event Log source:    {key}\n",
            name = self.name,
            cmd = self.command_line(),
            display = self.display_name,
            description = self.description,
            recovery = describe_recovery(&rec),
            non_crash = if rec.on_non_crash_failures {
                "recovered too (FailureActionsOnNonCrashFailures = 1: a non-zero exit code counts as a failure)"
            } else {
                "not recovered (only crashes are)"
            },
            pre = human(PRESHUTDOWN_TIMEOUT),
            shutdown = human(DEFAULT_SHUTDOWN_TIMEOUT),
            margin = human(STOP_MARGIN),
            key = eventlog::source_key_display(&self.name),
        );
        for (value, data) in eventlog::source_values(eventlog::EVENT_MESSAGE_FILE) {
            out.push_str(&format!("      {value} = {data}\n"));
        }
        out.push_str("  then:                start the service\n");
        out.push_str(&self.access_note());
        out.push_str("Dry run: nothing was changed.\n");
        out
    }
}

impl ScmService {
    /// What the account needs that install does not grant: read access to
    /// the config, write access to the audit log and store it names (install
    /// reads no config, so it cannot know those paths).
    pub fn access_note(&self) -> String {
        let account = self.account_name();
        format!(
            "{account} must be able to read the config and write the audit log and store it names, e.g. \
             icacls {config} /grant \"{account}:R\" and icacls <data directory> /grant \"{account}:(OI)(CI)M\".\n",
            config = quote_arg(&self.config.to_string_lossy()),
        )
    }
}

/// Checks a service name: 1–256 UTF-16 units, no `/` or `\` (the SCM rejects
/// them), no control characters.
pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Invalid("service name: empty; the SCM needs a name (e.g. \"headroom\")".into()));
    }
    let len = name.encode_utf16().count();
    if len > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "service name {name:?}: {len} characters long; the SCM allows at most {MAX_NAME_LEN}"
        )));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(Error::Invalid(format!("service name {name:?}: contains {c:?}, which the SCM does not allow")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("service name {name:?}: contains a control character")));
    }
    Ok(())
}

/// An absolute Windows path (`C:\…`, `C:/…`, `\\server\share\…`), or an
/// absolute path of the platform this runs on.
fn is_absolute(path: &Path) -> bool {
    if path.is_absolute() {
        return true;
    }
    let s = path.to_string_lossy();
    let b = s.as_bytes();
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    let unc = s.starts_with(r"\\") && s.len() > 2;
    drive || unc
}

fn check_path(field: &str, path: &Path, why: &str) -> Result<()> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(Error::Invalid(format!("{field}: empty path")));
    }
    if !is_absolute(path) {
        return Err(Error::Invalid(format!(
            "{field} {shown:?}: not an absolute path ({why}); give it as C:\\…\\{}",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        )));
    }
    let s = path.to_string_lossy();
    if s.contains('"') || s.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{field} {shown:?}: contains a double quote or control character, which Windows paths cannot"
        )));
    }
    Ok(())
}

/// Quotes one command-line argument as `windows-service` (and
/// `CommandLineToArgvW`) expects: unchanged unless empty or containing a
/// space, tab, newline, vertical tab or `"`; otherwise in double quotes, with
/// backslashes before a `"` (or the closing quote) doubled and `"` escaped.
pub fn quote_arg(arg: &str) -> String {
    let needs = arg.is_empty() || arg.chars().any(|c| matches!(c, '"' | ' ' | '\n' | '\t' | '\u{b}'));
    if !needs {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    let mut chars = arg.chars().peekable();
    loop {
        let mut slashes = 0;
        while chars.peek() == Some(&'\\') {
            chars.next();
            slashes += 1;
        }
        match chars.next() {
            Some('"') => {
                out.extend(std::iter::repeat_n('\\', slashes * 2 + 1));
                out.push('"');
            }
            Some(c) => {
                out.extend(std::iter::repeat_n('\\', slashes));
                out.push(c);
            }
            None => {
                out.extend(std::iter::repeat_n('\\', slashes * 2));
                break;
            }
        }
    }
    out.push('"');
    out
}

/// Whether a service's command line (`ImagePath`) is one `service install`
/// writes: it runs `… run --service …`. Uninstall touches no other service.
pub fn is_ours(command_line: &str) -> bool {
    command_line.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["run", "--service"])
}

/// What the SCM does on one failure, and when: the SCM actuator's types
/// (it reads the same settings of the services it restarts).
pub use headroom_actuate::scm::{RecoveryAction, RecoveryKind};

/// A service's recovery settings (failure actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The action for the 1st, 2nd, … failure; the SCM repeats the last one
    /// for later failures.
    pub actions: Vec<RecoveryAction>,
    /// After this long without a failure the failure count starts from zero
    /// again; `None`: never.
    pub reset_after: Option<Duration>,
    /// Whether stopping with a non-zero exit code counts as a failure (not
    /// only a crash): `FailureActionsOnNonCrashFailures`.
    pub on_non_crash_failures: bool,
}

/// The recovery install writes: restart after [`RESTART_DELAY`] for each of
/// the first [`RESTARTS`] failures, then nothing (a last `none` action, as the
/// SCM repeats the last action for every later failure); failures counted
/// from zero after [`RESET_AFTER`]; a non-zero exit code (an unclean or
/// failed daemon, see [`exit_code`]) counts as a failure.
pub fn recovery() -> Recovery {
    let mut actions = vec![RecoveryAction { kind: RecoveryKind::Restart, delay: RESTART_DELAY }; RESTARTS];
    actions.push(RecoveryAction { kind: RecoveryKind::None, delay: Duration::ZERO });
    Recovery { actions, reset_after: Some(RESET_AFTER), on_non_crash_failures: true }
}

/// Recovery settings in words: `1st failure: restart after 10 s, …, later
/// failures: none; failure count reset after 1 day (86400 s) without a failure`.
pub fn describe_recovery(r: &Recovery) -> String {
    if r.actions.is_empty() {
        return "none: the SCM does not restart the service after a failure".into();
    }
    let last = r.actions.len() - 1;
    let mut parts: Vec<String> = r
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let what = match a.kind {
                RecoveryKind::None => "none".to_owned(),
                RecoveryKind::Restart => format!("restart after {}", human(a.delay)),
                RecoveryKind::Reboot => format!("reboot after {}", human(a.delay)),
                RecoveryKind::RunCommand => format!("run command after {}", human(a.delay)),
            };
            if i == last {
                format!("{} and later failures: {what}", ordinal(i + 1))
            } else {
                format!("{} failure: {what}", ordinal(i + 1))
            }
        })
        .collect();
    parts.push(match r.reset_after {
        Some(d) if !d.is_zero() => format!("failure count reset after {} without a failure", human(d)),
        _ => "failure count never reset".into(),
    });
    parts.join("; ")
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A duration as people read it: `10 s`, `1.5 s`, `1 day (86400 s)`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs >= 86_400 && secs.is_multiple_of(86_400) {
        let days = secs / 86_400;
        format!("{days} day{} ({secs} s)", if days == 1 { "" } else { "s" })
    } else {
        format!("{secs} s")
    }
}

/// The states headroom's service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Starting (`SERVICE_START_PENDING`).
    StartPending,
    /// Running (`SERVICE_RUNNING`).
    Running,
    /// The daemon is shutting down (`SERVICE_STOP_PENDING`).
    StopPending,
    /// Stopped (`SERVICE_STOPPED`), with an exit code.
    Stopped,
}

/// The controls the service accepts in a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Accepts {
    /// `SERVICE_ACCEPT_STOP`.
    pub stop: bool,
    /// `SERVICE_ACCEPT_PRESHUTDOWN` (the SCM then sends PRESHUTDOWN, not
    /// SHUTDOWN, and waits up to the preshutdown timeout).
    pub preshutdown: bool,
}

/// An exit code the service reports with `STOPPED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// A Win32 error code (0: no error).
    Win32(u32),
    /// headroom's own code ([`EXIT_UNCLEAN`], [`EXIT_FAILED`]); the SCM shows
    /// Win32 code 1066 (`ERROR_SERVICE_SPECIFIC_ERROR`) with it.
    ServiceSpecific(u32),
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitCode::Win32(code) => match win32_meaning(code) {
                Some(m) => write!(f, "win32 exit code {code} ({m})"),
                None => write!(f, "win32 exit code {code}"),
            },
            ExitCode::ServiceSpecific(EXIT_UNCLEAN) => write!(
                f,
                "service-specific exit code {EXIT_UNCLEAN} (the daemon's shutdown was not clean: read the Event Log)"
            ),
            ExitCode::ServiceSpecific(EXIT_FAILED) => {
                write!(f, "service-specific exit code {EXIT_FAILED} (the daemon failed: read the Event Log)")
            }
            ExitCode::ServiceSpecific(code) => write!(f, "service-specific exit code {code}"),
        }
    }
}

/// One status the service reports to the SCM (`SetServiceStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The state.
    pub phase: Phase,
    /// The controls accepted: stop and preshutdown while running, none otherwise.
    pub accepts: Accepts,
    /// Progress of a pending state (0 when not pending).
    pub checkpoint: u32,
    /// How long until the next checkpoint or state change at most.
    pub wait_hint: Duration,
    /// The exit code, with `STOPPED` only (`None` is reported as no error).
    pub exit: Option<ExitCode>,
}

/// The first report: starting, no control accepted yet.
pub fn starting() -> Report {
    Report {
        phase: Phase::StartPending,
        accepts: Accepts::default(),
        checkpoint: 1,
        wait_hint: START_WAIT_HINT,
        exit: None,
    }
}

/// Running: accepts stop and preshutdown (never pause: the daemon has no
/// paused state).
pub fn running() -> Report {
    Report {
        phase: Phase::Running,
        accepts: Accepts { stop: true, preshutdown: true },
        checkpoint: 0,
        wait_hint: Duration::ZERO,
        exit: None,
    }
}

/// Stopping, at `checkpoint` (1 for the first report, one more at each
/// next), with `remaining` of the stop budget left: the wait hint covers it,
/// but is never below [`MIN_STOP_WAIT_HINT`] nor above [`MAX_WAIT_HINT`].
pub fn stopping(checkpoint: u32, remaining: Duration) -> Report {
    Report {
        phase: Phase::StopPending,
        accepts: Accepts::default(),
        checkpoint: checkpoint.max(1),
        wait_hint: remaining.clamp(MIN_STOP_WAIT_HINT, MAX_WAIT_HINT),
        exit: None,
    }
}

/// What is left of [`STOP_BUDGET`] `elapsed` after the stop began.
pub fn stop_remaining(elapsed: Duration) -> Duration {
    STOP_BUDGET.saturating_sub(elapsed)
}

/// Whether a stop begun `elapsed` ago has lasted past [`STOP_GIVE_UP`]: the
/// service then stops without the daemon, with [`given_up`] as its outcome.
pub fn stop_overdue(elapsed: Duration) -> bool {
    elapsed >= STOP_GIVE_UP
}

/// The outcome of a stop the service gave up waiting for.
pub fn given_up(elapsed: Duration) -> RunOutcome {
    RunOutcome::Unclean(format!(
        "the daemon had not finished {} after the stop: the process exits without it",
        human(elapsed)
    ))
}

/// Stopped, with the exit code of `outcome`.
pub fn stopped(outcome: &RunOutcome) -> Report {
    Report {
        phase: Phase::Stopped,
        accepts: Accepts::default(),
        checkpoint: 0,
        wait_hint: Duration::ZERO,
        exit: Some(exit_code(outcome)),
    }
}

/// What the daemon's body returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Shut down gracefully when asked.
    Clean,
    /// Shut down, but not cleanly (jobs still running at the shutdown
    /// timeout, or stopped without being asked): why.
    Unclean(String),
    /// Could not run (a config error, a port in use, …) or stopped on an
    /// error: why.
    Failed(String),
}

/// The exit code of an outcome: `Clean` → Win32 0 (no error: the SCM does
/// nothing); `Unclean` → service-specific [`EXIT_UNCLEAN`] (1); `Failed` →
/// service-specific [`EXIT_FAILED`] (2). Both non-zero codes make the SCM
/// apply its recovery ([`recovery`] sets `on_non_crash_failures`).
pub fn exit_code(outcome: &RunOutcome) -> ExitCode {
    match outcome {
        RunOutcome::Clean => ExitCode::Win32(0),
        RunOutcome::Unclean(_) => ExitCode::ServiceSpecific(EXIT_UNCLEAN),
        RunOutcome::Failed(_) => ExitCode::ServiceSpecific(EXIT_FAILED),
    }
}

/// The outcome reported, given whether a stop was asked for: a daemon that
/// returns cleanly without being asked stopped on its own, which is unclean
/// (so the SCM restarts it); otherwise the outcome is as returned.
pub fn settle(outcome: RunOutcome, stop_requested: bool) -> RunOutcome {
    match outcome {
        RunOutcome::Clean if !stop_requested => RunOutcome::Unclean("the daemon stopped without being asked to".into()),
        other => other,
    }
}

/// A control the SCM sends, as the service reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// `SERVICE_CONTROL_STOP`.
    Stop,
    /// `SERVICE_CONTROL_PRESHUTDOWN`: the system is shutting down.
    Preshutdown,
    /// `SERVICE_CONTROL_SHUTDOWN` (not accepted, but handled like a stop).
    Shutdown,
    /// `SERVICE_CONTROL_INTERROGATE`: report the status again.
    Interrogate,
    /// Anything else (pause, parameter change, …).
    Other,
}

/// What the control handler does with a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlAnswer {
    /// Begin the daemon's graceful shutdown; answer no error.
    BeginShutdown,
    /// Nothing to do; answer no error.
    Ok,
    /// Answer `ERROR_CALL_NOT_IMPLEMENTED`.
    NotImplemented,
}

/// The answer to a control: stop, preshutdown and shutdown begin the
/// graceful shutdown; interrogate is answered; the rest is not implemented.
pub fn on_control(control: Control) -> ControlAnswer {
    match control {
        Control::Stop | Control::Preshutdown | Control::Shutdown => ControlAnswer::BeginShutdown,
        Control::Interrogate => ControlAnswer::Ok,
        Control::Other => ControlAnswer::NotImplemented,
    }
}

/// The SCM's state of a service, as `status` reads it: the SCM actuator's.
pub use headroom_actuate::scm::State as ScmState;

/// A service's start type, as `status` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartType {
    /// Started at boot by the SCM (`SERVICE_AUTO_START`).
    Automatic,
    /// Started when asked (`SERVICE_DEMAND_START`).
    Manual,
    /// Cannot be started (`SERVICE_DISABLED`).
    Disabled,
    /// A driver started by the boot loader or at kernel initialisation.
    Driver,
}

impl StartType {
    /// The start type in words.
    pub fn as_str(self) -> &'static str {
        match self {
            StartType::Automatic => "automatic",
            StartType::Manual => "manual",
            StartType::Disabled => "disabled",
            StartType::Driver => "boot/system (driver)",
        }
    }
}

/// What `service status` read from the SCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The service name.
    pub name: String,
    /// The display name.
    pub display_name: String,
    /// The state.
    pub state: ScmState,
    /// The process id, while it runs.
    pub pid: Option<u32>,
    /// The last exit code.
    pub exit: ExitCode,
    /// The start type.
    pub start_type: StartType,
    /// The account it runs as (`None`: LocalSystem).
    pub account: Option<String>,
    /// Its command line.
    pub command_line: String,
    /// Its recovery settings.
    pub recovery: Recovery,
}

/// The `service status` text: state, process id, exit code, start type,
/// account, command line, recovery.
pub fn describe_status(o: &Observed) -> String {
    let pid = match o.pid.filter(|&p| p != 0) {
        Some(p) => format!(", pid {p}"),
        None => String::new(),
    };
    let non_crash = if o.recovery.on_non_crash_failures {
        "a non-zero exit code counts as a failure"
    } else {
        "only crashes count as failures"
    };
    let ours = if is_ours(&o.command_line) { "" } else { " (not installed by `headroom service install`)" };
    format!(
        "Windows service {name:?} ({display}){ours}\n\
         \x20 state:           {state}{pid}\n\
         \x20 last exit:       {exit}\n\
         \x20 start type:      {start}\n\
         \x20 account:         {account}\n\
         \x20 command line:    {cmd}\n\
         \x20 recovery:        {recovery} ({non_crash})\n",
        name = o.name,
        display = o.display_name,
        state = o.state,
        exit = o.exit,
        start = o.start_type.as_str(),
        account = o.account.as_deref().unwrap_or("LocalSystem"),
        cmd = o.command_line,
        recovery = describe_recovery(&o.recovery),
    )
}

/// `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: i32 = 5;
/// `ERROR_SERVICE_REQUEST_TIMEOUT`.
pub const ERROR_SERVICE_REQUEST_TIMEOUT: i32 = 1053;
/// `ERROR_SERVICE_ALREADY_RUNNING`.
pub const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
/// `ERROR_INVALID_SERVICE_ACCOUNT`.
pub const ERROR_INVALID_SERVICE_ACCOUNT: i32 = 1057;
/// `ERROR_SERVICE_DOES_NOT_EXIST`.
pub const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
/// `ERROR_SERVICE_CANNOT_ACCEPT_CTRL`.
pub const ERROR_SERVICE_CANNOT_ACCEPT_CTRL: i32 = 1061;
/// `ERROR_SERVICE_NOT_ACTIVE`.
pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
/// `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`: not started by the SCM.
pub const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
/// `ERROR_SERVICE_LOGON_FAILED`.
pub const ERROR_SERVICE_LOGON_FAILED: i32 = 1069;
/// `ERROR_SERVICE_MARKED_FOR_DELETE`.
pub const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;
/// `ERROR_SERVICE_EXISTS`.
pub const ERROR_SERVICE_EXISTS: i32 = 1073;
/// `ERROR_DUPLICATE_SERVICE_NAME` (the display name is taken).
pub const ERROR_DUPLICATE_SERVICE_NAME: i32 = 1078;

/// A Win32 error `code` from an SCM call about service `name`, in words,
/// with what to do.
pub fn explain(code: Option<i32>, name: &str) -> String {
    match code {
        Some(ERROR_ACCESS_DENIED) => "access denied: run it from an elevated prompt (Run as administrator)".to_owned(),
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            format!("no service named {name:?} (`headroom service install` creates it)")
        }
        Some(ERROR_SERVICE_EXISTS) => format!(
            "a service named {name:?} already exists: `headroom service uninstall` it first, or choose another name"
        ),
        Some(ERROR_DUPLICATE_SERVICE_NAME) => {
            format!("another service already uses the display name of {name:?}: choose another service name")
        }
        Some(ERROR_SERVICE_MARKED_FOR_DELETE) => format!(
            "{name:?} is marked for deletion and goes once its process exits and the Services console is closed: \
             try again then"
        ),
        Some(ERROR_INVALID_SERVICE_ACCOUNT) => {
            format!("the account of {name:?} does not exist or is not valid for a service")
        }
        Some(ERROR_SERVICE_LOGON_FAILED) => format!("{name:?} could not log on as its account"),
        Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => format!(
            "`run --service` must be started by the service control manager (`headroom service install` registers \
             {name:?}); from a console, run `headroom run` without --service"
        ),
        Some(ERROR_SERVICE_REQUEST_TIMEOUT) => format!("{name:?} did not answer in time"),
        Some(ERROR_SERVICE_ALREADY_RUNNING) => format!("{name:?} is already running"),
        Some(ERROR_SERVICE_NOT_ACTIVE) => format!("{name:?} is not running"),
        Some(ERROR_SERVICE_CANNOT_ACCEPT_CTRL) => format!("{name:?} cannot accept the control now"),
        Some(c) => match u32::try_from(c).ok().and_then(win32_meaning) {
            Some(m) => format!("Windows error {c} ({m})"),
            None => format!("Windows error {c}"),
        },
        None => "the call failed without an error code".into(),
    }
}

fn win32_meaning(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "no error",
        5 => "access denied",
        1053 => "the service did not respond in time",
        1058 => "the service is disabled",
        1066 => "the service reported a service-specific error",
        1067 => "the process terminated unexpectedly",
        1069 => "the service did not start due to a logon failure",
        1077 => "no attempts to start the service since the last boot",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn svc(enforce: bool) -> ScmService {
        ScmService::new(
            "headroom",
            PathBuf::from(r"C:\Program Files\headroom\headroom.exe"),
            PathBuf::from(r"C:\ProgramData\headroom\headroom.toml"),
            enforce,
            None,
        )
    }

    fn invalid(r: Result<()>) -> String {
        match r {
            Err(Error::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn new_names_and_describes_the_service() {
        let s = svc(false);
        assert_eq!(s.display_name, "headroom capacity daemon");
        assert!(s.description.contains(r"C:\ProgramData\headroom\headroom.toml"), "{}", s.description);
        assert!(s.description.contains("dry-run"), "{}", s.description);
        assert!(svc(true).description.contains("mode = \"enforce\""));
        let other = ScmService::new("hr2", PathBuf::from(r"C:\h.exe"), PathBuf::from(r"C:\h.toml"), false, None);
        assert_eq!(other.display_name, "headroom capacity daemon (hr2)");
    }

    #[test]
    fn account_is_the_virtual_account_by_default() {
        let s = svc(false);
        assert_eq!(s.account_name(), r"NT SERVICE\headroom");
        assert!(s.is_virtual_account());
        let mut given = svc(false);
        given.account = Some(r"NT AUTHORITY\LocalService".into());
        assert_eq!(given.account_name(), r"NT AUTHORITY\LocalService");
        assert!(!given.is_virtual_account());
        given.account = Some(r"nt service\other".into());
        assert!(given.is_virtual_account());
    }

    #[test]
    fn launch_arguments_put_service_after_run() {
        let args =
            |s: &ScmService| s.launch_arguments().iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        assert_eq!(args(&svc(false)), ["run", "--service", "--config", r"C:\ProgramData\headroom\headroom.toml"]);
        assert_eq!(
            args(&svc(true)),
            ["run", "--service", "--config", r"C:\ProgramData\headroom\headroom.toml", "--enforce"]
        );
        let mut other = svc(false);
        other.name = "headroom-eu".into();
        assert_eq!(args(&other)[4..], ["--service-name", "headroom-eu"]);
    }

    #[test]
    fn command_line_is_quoted_as_the_scm_stores_it() {
        assert_eq!(
            svc(true).command_line(),
            r#""C:\Program Files\headroom\headroom.exe" run --service --config C:\ProgramData\headroom\headroom.toml --enforce"#
        );
        let mut s = svc(false);
        s.config = PathBuf::from(r"D:\my configs\headroom.toml");
        assert!(s.command_line().ends_with(r#" --config "D:\my configs\headroom.toml""#), "{}", s.command_line());
    }

    #[test]
    fn quote_arg_follows_windows_rules() {
        assert_eq!(quote_arg("plain"), "plain");
        assert_eq!(quote_arg(r"C:\a\b"), r"C:\a\b");
        assert_eq!(quote_arg(""), r#""""#);
        assert_eq!(quote_arg("a b"), r#""a b""#);
        // A trailing backslash is doubled so it does not escape the closing quote.
        assert_eq!(quote_arg(r"C:\dir with space\"), r#""C:\dir with space\\""#);
        // An embedded quote is escaped, and the backslashes before it doubled.
        assert_eq!(quote_arg(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote_arg(r#"a\"b"#), r#""a\\\"b""#);
    }

    #[test]
    fn validate_accepts_the_default_install() {
        svc(true).validate().expect("valid");
        let mut unc = svc(false);
        unc.config = PathBuf::from(r"\\fileserver\share\headroom.toml");
        unc.validate().expect("UNC paths are absolute");
    }

    #[test]
    fn validate_names_the_field_and_value() {
        let mut s = svc(false);
        s.name = String::new();
        assert!(invalid(s.validate()).contains("service name: empty"));
        s.name = "a".repeat(257);
        let why = invalid(s.validate());
        assert!(why.contains("257 characters") && why.contains("at most 256"), "{why}");
        s.name = "a".repeat(256);
        s.display_name = "d".into();
        s.validate().expect("256 characters are allowed");
        s.name = "head/room".into();
        let why = invalid(s.validate());
        assert!(why.contains("\"head/room\"") && why.contains("'/'"), "{why}");
        s.name = r"head\room".into();
        assert!(invalid(s.validate()).contains(r"'\\'"));

        let mut s = svc(false);
        s.binary = PathBuf::from("headroom.exe");
        let why = invalid(s.validate());
        assert!(why.starts_with("binary \"headroom.exe\": not an absolute path"), "{why}");
        let mut s = svc(false);
        s.config = PathBuf::from(r"conf\headroom.toml");
        let why = invalid(s.validate());
        assert!(why.starts_with(r#"config "conf\\headroom.toml": not an absolute path"#), "{why}");
        assert!(why.contains(r"C:\Windows\System32"), "{why}");
        let mut s = svc(false);
        s.config = PathBuf::new();
        assert_eq!(invalid(s.validate()), "config: empty path");
        let mut s = svc(false);
        s.account = Some(r"NT SERVICE\other".into());
        let why = invalid(s.validate());
        assert!(
            why.starts_with(r#"account "NT SERVICE\\other": a virtual account is named after its own service"#),
            "{why}"
        );
        assert!(why.contains(r"NT SERVICE\headroom"), "{why}");
        s.account = Some(r"nt service\HEADROOM".into());
        s.validate().expect("account names are case-insensitive");
        let mut s = svc(false);
        s.account = Some("  ".into());
        assert!(invalid(s.validate()).starts_with("account \"  \""));
    }

    #[test]
    fn recovery_restarts_three_times_then_stops_and_resets_after_a_day() {
        let r = recovery();
        let restarts: Vec<_> = r.actions.iter().filter(|a| a.kind == RecoveryKind::Restart).collect();
        assert_eq!(restarts.len(), 3);
        assert!(restarts.iter().all(|a| a.delay == Duration::from_secs(10)));
        assert_eq!(r.actions[..3].iter().filter(|a| a.kind == RecoveryKind::Restart).count(), 3);
        // The SCM repeats the last action: it must be `none`, or the 4th failure would restart too.
        assert_eq!(r.actions.last().map(|a| a.kind), Some(RecoveryKind::None));
        assert_eq!(r.actions.len(), 4);
        assert_eq!(r.reset_after, Some(Duration::from_secs(86_400)));
        assert!(r.on_non_crash_failures);
        assert_eq!(
            describe_recovery(&r),
            "1st failure: restart after 10 s; 2nd failure: restart after 10 s; 3rd failure: restart after 10 s; \
             4th and later failures: none; failure count reset after 1 day (86400 s) without a failure"
        );
        let none = Recovery { actions: vec![], reset_after: None, on_non_crash_failures: false };
        assert!(describe_recovery(&none).starts_with("none"));
    }

    #[test]
    fn describe_names_every_setting_and_changes_nothing() {
        let text = svc(true).describe();
        for needle in [
            "own process (SERVICE_WIN32_OWN_PROCESS)",
            "automatic (SERVICE_AUTO_START)",
            "normal (SERVICE_ERROR_NORMAL)",
            r#""C:\Program Files\headroom\headroom.exe" run --service --config C:\ProgramData\headroom\headroom.toml --enforce"#,
            r"account:             NT SERVICE\headroom (virtual account",
            "display name:        headroom capacity daemon",
            "description:         Forecasts resource use",
            "1st failure: restart after 10 s",
            "failure count reset after 1 day (86400 s)",
            "FailureActionsOnNonCrashFailures = 1",
            "preshutdown timeout: 45 s",
            "controls accepted:   stop, preshutdown",
            r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\headroom",
            r"EventMessageFile = (REG_EXPAND_SZ) %SystemRoot%\System32\EventCreate.exe",
            "TypesSupported = (REG_DWORD) 7",
            "start the service",
            r#"icacls C:\ProgramData\headroom\headroom.toml /grant "NT SERVICE\headroom:R""#,
            "Dry run: nothing was changed.",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_service_reports_start_then_running_promptly() {
        let s = starting();
        assert_eq!(s.phase, Phase::StartPending);
        assert_eq!(s.accepts, Accepts { stop: false, preshutdown: false });
        assert!(s.checkpoint >= 1 && s.wait_hint == START_WAIT_HINT && s.exit.is_none());
        let r = running();
        assert_eq!(r.phase, Phase::Running);
        assert_eq!(r.accepts, Accepts { stop: true, preshutdown: true });
        assert_eq!((r.checkpoint, r.wait_hint, r.exit), (0, Duration::ZERO, None));
    }

    #[test]
    fn stopping_wait_hint_covers_the_shutdown_timeout() {
        let first = stopping(1, stop_remaining(Duration::ZERO));
        assert_eq!(first.phase, Phase::StopPending);
        assert_eq!(first.accepts, Accepts::default(), "no control is accepted while stopping");
        assert!(first.wait_hint >= DEFAULT_SHUTDOWN_TIMEOUT, "{:?}", first.wait_hint);
        assert_eq!(first.wait_hint, STOP_BUDGET);
        // Every few seconds a higher checkpoint, and a hint covering the rest.
        let mut last = first.checkpoint;
        let mut elapsed = Duration::ZERO;
        for n in 2..=30u32 {
            elapsed += CHECKPOINT_EVERY;
            let r = stopping(n, stop_remaining(elapsed));
            assert!(r.checkpoint > last);
            last = r.checkpoint;
            assert!(r.wait_hint >= stop_remaining(elapsed));
            assert!(r.wait_hint >= MIN_STOP_WAIT_HINT && r.wait_hint > CHECKPOINT_EVERY);
        }
        // Past the budget the hint stays at its floor; a huge remaining time is capped.
        assert_eq!(stopping(40, stop_remaining(Duration::from_secs(600))).wait_hint, MIN_STOP_WAIT_HINT);
        assert_eq!(stopping(2, Duration::from_secs(10_000_000)).wait_hint, MAX_WAIT_HINT);
        assert_eq!(stopping(0, Duration::ZERO).checkpoint, 1, "a pending state's checkpoint starts at 1");
        assert!(STOP_BUDGET >= DEFAULT_SHUTDOWN_TIMEOUT + STOP_MARGIN);
        assert!(PRESHUTDOWN_TIMEOUT >= STOP_BUDGET);
    }

    #[test]
    fn stopped_carries_the_exit_code_of_the_outcome() {
        assert_eq!(stopped(&RunOutcome::Clean).exit, Some(ExitCode::Win32(0)));
        assert_eq!(stopped(&RunOutcome::Unclean("jobs left".into())).exit, Some(ExitCode::ServiceSpecific(1)));
        assert_eq!(stopped(&RunOutcome::Failed("port in use".into())).exit, Some(ExitCode::ServiceSpecific(2)));
        let s = stopped(&RunOutcome::Clean);
        assert_eq!(
            (s.phase, s.accepts, s.checkpoint, s.wait_hint),
            (Phase::Stopped, Accepts::default(), 0, Duration::ZERO)
        );
        assert!(ExitCode::ServiceSpecific(1).to_string().contains("not clean"));
        assert!(ExitCode::ServiceSpecific(2).to_string().contains("failed"));
        assert_eq!(ExitCode::Win32(1067).to_string(), "win32 exit code 1067 (the process terminated unexpectedly)");
    }

    #[test]
    fn a_stop_that_never_ends_is_given_up_after_ten_minutes() {
        assert!(!stop_overdue(STOP_BUDGET));
        assert!(!stop_overdue(Duration::from_secs(599)));
        assert!(stop_overdue(Duration::from_secs(600)));
        assert!(STOP_GIVE_UP > STOP_BUDGET * 10);
        let outcome = given_up(Duration::from_secs(601));
        assert_eq!(exit_code(&outcome), ExitCode::ServiceSpecific(EXIT_UNCLEAN));
        assert!(matches!(&outcome, RunOutcome::Unclean(why) if why.contains("601 s")), "{outcome:?}");
    }

    #[test]
    fn a_daemon_that_stops_unasked_is_unclean() {
        assert!(matches!(settle(RunOutcome::Clean, false), RunOutcome::Unclean(_)));
        assert_eq!(settle(RunOutcome::Clean, true), RunOutcome::Clean);
        assert_eq!(settle(RunOutcome::Failed("x".into()), false), RunOutcome::Failed("x".into()));
        assert_eq!(settle(RunOutcome::Unclean("y".into()), true), RunOutcome::Unclean("y".into()));
    }

    #[test]
    fn controls_map_to_graceful_shutdown() {
        assert_eq!(on_control(Control::Stop), ControlAnswer::BeginShutdown);
        assert_eq!(on_control(Control::Preshutdown), ControlAnswer::BeginShutdown);
        assert_eq!(on_control(Control::Shutdown), ControlAnswer::BeginShutdown);
        assert_eq!(on_control(Control::Interrogate), ControlAnswer::Ok);
        assert_eq!(on_control(Control::Other), ControlAnswer::NotImplemented);
    }

    #[test]
    fn only_services_running_run_service_are_ours() {
        assert!(is_ours(&svc(true).command_line()));
        assert!(is_ours(r"C:\h.exe run --service --config C:\h.toml"));
        assert!(!is_ours(r"C:\Windows\System32\svchost.exe -k netsvcs"));
        assert!(!is_ours(r"C:\h.exe run --config C:\h.toml"));
    }

    #[test]
    fn status_names_state_pid_exit_account_and_recovery() {
        let o = Observed {
            name: "headroom".into(),
            display_name: DISPLAY_NAME.into(),
            state: ScmState::Running,
            pid: Some(4242),
            exit: ExitCode::Win32(0),
            start_type: StartType::Automatic,
            account: Some(r"NT SERVICE\headroom".into()),
            command_line: svc(false).command_line(),
            recovery: recovery(),
        };
        let text = describe_status(&o);
        for needle in [
            "Windows service \"headroom\" (headroom capacity daemon)\n",
            "state:           running, pid 4242",
            "last exit:       win32 exit code 0 (no error)",
            "start type:      automatic",
            r"account:         NT SERVICE\headroom",
            "recovery:        1st failure: restart after 10 s",
            "(a non-zero exit code counts as a failure)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        let foreign = Observed {
            state: ScmState::Stopped,
            pid: None,
            exit: ExitCode::ServiceSpecific(2),
            account: None,
            command_line: r"C:\other.exe".into(),
            ..o
        };
        let text = describe_status(&foreign);
        assert!(text.contains("not installed by `headroom service install`"), "{text}");
        assert!(text.contains("state:           stopped\n"), "{text}");
        assert!(text.contains("service-specific exit code 2 (the daemon failed"), "{text}");
        assert!(text.contains("account:         LocalSystem"), "{text}");
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(explain(Some(5), "headroom").contains("elevated prompt"));
        assert!(explain(Some(1073), "headroom").contains("already exists"));
        assert!(explain(Some(1063), "headroom").contains("run `headroom run` without --service"));
        assert!(explain(Some(1060), "headroom").contains("no service named \"headroom\""));
        assert_eq!(explain(Some(1067), "x"), "Windows error 1067 (the process terminated unexpectedly)");
        assert_eq!(explain(Some(99999), "x"), "Windows error 99999");
        assert_eq!(explain(None, "x"), "the call failed without an error code");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(10)), "10 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_secs(86_400)), "1 day (86400 s)");
        assert_eq!(human(Duration::from_secs(172_800)), "2 days (172800 s)");
    }
}
