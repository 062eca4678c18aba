//! headroom as a Windows service: install, uninstall, status, the service
//! dispatcher `headroom run --service` runs under, and the Event Log sink.
//!
//! **Type-checked on Linux (`cargo check --target x86_64-pc-windows-gnu`,
//! see `scripts/test.sh`), never run in the tests here.** It only carries out
//! the decisions of [`crate::scm`] and [`crate::eventlog`] (compiled and
//! unit-tested everywhere) through the `windows-service` crate and
//! `winsafe`'s registry and Event Log calls; keep it that thin.
//!
//! Install, uninstall and status need an elevated prompt (the SCM's
//! SC_MANAGER_CREATE_SERVICE and the `HKLM` Event Log key).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    Service, ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceFailureActions, ServiceInfo, ServiceSidType, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};
use winsafe::{HEVENTLOG, HKEY, RegistryValue, co};

use crate::error::{Error, Result};
use crate::eventlog::{self, EventLogLayer, EventType, RegValue, Sink};
use crate::scm::{
    self, Control, ControlAnswer, ExitCode, Observed, Phase, Recovery, Report, RunOutcome, ScmService, ScmState,
    StartType,
};

/// How often install and uninstall query the service while waiting for it.
const POLL: Duration = Duration::from_millis(500);

/// How long install waits for the service it started to reach `RUNNING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn scm_err(what: impl Into<String>, name: &str, e: &windows_service::Error) -> Error {
    let why = match e {
        windows_service::Error::Winapi(io) => scm::explain(io.raw_os_error(), name),
        other => other.to_string(),
    };
    Error::Manager { what: what.into(), why }
}

fn winapi_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

fn reg_err(what: impl Into<String>, e: co::ERROR) -> Error {
    let why = if e == co::ERROR::ACCESS_DENIED {
        "access denied: run it from an elevated prompt (Run as administrator)".to_owned()
    } else {
        format!("Windows error {}: {e}", e.raw())
    };
    Error::Manager { what: what.into(), why }
}

fn manager(access: ServiceManagerAccess, name: &str) -> Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| scm_err("connect to the service control manager", name, &e))
}

fn state(s: ServiceState) -> ScmState {
    match s {
        ServiceState::Stopped => ScmState::Stopped,
        ServiceState::StartPending => ScmState::StartPending,
        ServiceState::StopPending => ScmState::StopPending,
        ServiceState::Running => ScmState::Running,
        ServiceState::ContinuePending => ScmState::ContinuePending,
        ServiceState::PausePending => ScmState::PausePending,
        ServiceState::Paused => ScmState::Paused,
    }
}

fn exit(code: ServiceExitCode) -> ExitCode {
    match code {
        ServiceExitCode::Win32(c) => ExitCode::Win32(c),
        ServiceExitCode::ServiceSpecific(c) => ExitCode::ServiceSpecific(c),
    }
}

fn failure_actions(r: &Recovery) -> ServiceFailureActions {
    let plain = headroom_actuate::scm::FailureActions { reset: r.reset_after, actions: r.actions.clone() };
    headroom_actuate::windows::service_failure_actions(&plain)
}

fn recovery_read(fa: &ServiceFailureActions, on_non_crash_failures: bool) -> Recovery {
    // The SCM actuator reads the same settings of the services it restarts.
    let read = headroom_actuate::windows::failure_actions(fa);
    Recovery { actions: read.actions, reset_after: read.reset, on_non_crash_failures }
}

fn status_of(report: &Report) -> ServiceStatus {
    let mut accepted = ServiceControlAccept::empty();
    if report.accepts.stop {
        accepted |= ServiceControlAccept::STOP;
    }
    if report.accepts.preshutdown {
        accepted |= ServiceControlAccept::PRESHUTDOWN;
    }
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: match report.phase {
            Phase::StartPending => ServiceState::StartPending,
            Phase::Running => ServiceState::Running,
            Phase::StopPending => ServiceState::StopPending,
            Phase::Stopped => ServiceState::Stopped,
        },
        controls_accepted: accepted,
        exit_code: match report.exit {
            None | Some(ExitCode::Win32(0)) => ServiceExitCode::NO_ERROR,
            Some(ExitCode::Win32(c)) => ServiceExitCode::Win32(c),
            Some(ExitCode::ServiceSpecific(c)) => ServiceExitCode::ServiceSpecific(c),
        },
        checkpoint: report.checkpoint,
        wait_hint: report.wait_hint,
        process_id: None,
    }
}

fn control(c: ServiceControl) -> Control {
    match c {
        ServiceControl::Stop => Control::Stop,
        ServiceControl::Preshutdown => Control::Preshutdown,
        ServiceControl::Shutdown => Control::Shutdown,
        ServiceControl::Interrogate => Control::Interrogate,
        _ => Control::Other,
    }
}

/// Writes the Event Log source key of `name` with [`eventlog::source_values`].
fn register_event_source(name: &str) -> Result<()> {
    let key = eventlog::source_key(name);
    let shown = eventlog::source_key_display(name);
    let (hkey, _) = HKEY::LOCAL_MACHINE
        .RegCreateKeyEx(&key, None, co::REG_OPTION::NON_VOLATILE, co::KEY::SET_VALUE, None)
        .map_err(|e| reg_err(format!("create {shown}"), e))?;
    for (value, data) in eventlog::source_values(eventlog::EVENT_MESSAGE_FILE) {
        let data = match data {
            RegValue::ExpandSz(s) => RegistryValue::ExpandSz(s),
            RegValue::Dword(n) => RegistryValue::Dword(n),
        };
        hkey.RegSetValueEx(Some(value), data).map_err(|e| reg_err(format!("set {shown}\\{value}"), e))?;
    }
    Ok(())
}

/// Removes the Event Log source key of `name`: `true` if it was there.
fn remove_event_source(name: &str) -> Result<bool> {
    match HKEY::LOCAL_MACHINE.RegDeleteKey(&eventlog::source_key(name)) {
        Ok(()) => Ok(true),
        Err(co::ERROR::FILE_NOT_FOUND) => Ok(false),
        Err(e) => Err(reg_err(format!("delete {}", eventlog::source_key_display(name)), e)),
    }
}

/// Whether the Event Log source key of `name` is the one install writes (its
/// `EventMessageFile` is [`eventlog::EVENT_MESSAGE_FILE`]).
fn event_source_is_ours(name: &str) -> bool {
    let Ok(key) = HKEY::LOCAL_MACHINE.RegOpenKeyEx(
        Some(&eventlog::source_key(name)),
        co::REG_OPTION::NoValue,
        co::KEY::QUERY_VALUE,
    ) else {
        return false;
    };
    matches!(
        key.RegQueryValueEx(Some("EventMessageFile")),
        Ok(RegistryValue::ExpandSz(s) | RegistryValue::Sz(s)) if s.eq_ignore_ascii_case(eventlog::EVENT_MESSAGE_FILE)
    )
}

/// Sets everything `create_service` does not: description, recovery,
/// preshutdown timeout, service SID, Event Log source.
fn configure(service: &Service, s: &ScmService) -> Result<()> {
    let name = s.name.as_str();
    service.set_description(&s.description).map_err(|e| scm_err("set the description", name, &e))?;
    let recovery = scm::recovery();
    service
        .update_failure_actions(failure_actions(&recovery))
        .map_err(|e| scm_err("set the recovery actions", name, &e))?;
    service
        .set_failure_actions_on_non_crash_failures(recovery.on_non_crash_failures)
        .map_err(|e| scm_err("set recovery on non-crash failures", name, &e))?;
    service
        .set_preshutdown_timeout(scm::PRESHUTDOWN_TIMEOUT)
        .map_err(|e| scm_err("set the preshutdown timeout", name, &e))?;
    if s.is_virtual_account() {
        service
            .set_config_service_sid_info(ServiceSidType::Unrestricted)
            .map_err(|e| scm_err("set the service SID type", name, &e))?;
    }
    register_event_source(name)
}

/// Registers and starts the service `s` (see [`ScmService::describe`] for
/// every setting). A failure before the start removes what was registered;
/// a service that does not start stays installed and the error says why.
pub fn install(s: &ScmService) -> Result<String> {
    s.validate()?;
    let name = s.name.as_str();
    let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE, name)?;
    let info = ServiceInfo {
        name: OsString::from(&s.name),
        display_name: OsString::from(&s.display_name),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: s.binary.clone(),
        launch_arguments: s.launch_arguments(),
        dependencies: Vec::new(),
        account_name: Some(OsString::from(s.account_name())),
        account_password: None,
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE,
        )
        .map_err(|e| scm_err(format!("create the service {name:?}"), name, &e))?;
    if let Err(e) = configure(&service, s) {
        let undone = match (service.delete(), remove_event_source(name)) {
            (Ok(()), Ok(_)) => "the service was removed again".to_owned(),
            (Err(d), _) => {
                format!(
                    "removing it again failed too ({}): `headroom service uninstall`",
                    scm_err("delete the service", name, &d)
                )
            }
            (_, Err(r)) => format!("removing its Event Log source failed too ({r})"),
        };
        return Err(Error::Manager { what: format!("install {name:?}"), why: format!("{e}; {undone}") });
    }
    let mut out = format!(
        "Installed the Windows service {name:?} ({}) as {}: {}\nrecovery: {}\nEvent Log source: {}\n",
        s.display_name,
        s.account_name(),
        s.command_line(),
        scm::describe_recovery(&scm::recovery()),
        eventlog::source_key_display(name),
    );
    out.push_str(&s.access_note());
    service
        .start::<&OsStr>(&[])
        .map_err(|e| scm_err(format!("installed {name:?} but could not start it"), name, &e))?;
    let began = Instant::now();
    loop {
        let now = service.query_status().map_err(|e| scm_err("query the service", name, &e))?;
        match now.current_state {
            ServiceState::Running => {
                let pid = now.process_id.map(|p| format!(", pid {p}")).unwrap_or_default();
                out.push_str(&format!("Started: running{pid}.\n"));
                return Ok(out);
            }
            ServiceState::Stopped => {
                return Err(Error::Manager {
                    what: format!("installed {name:?} but it stopped right after starting"),
                    why: format!(
                        "{}; read the Application log (source {name:?}) and check that {} can read {}",
                        exit(now.exit_code),
                        s.account_name(),
                        s.config.display()
                    ),
                });
            }
            other if began.elapsed() >= START_TIMEOUT => {
                out.push_str(&format!(
                    "Started; still {} after {}: `headroom service status` shows how it goes.\n",
                    state(other),
                    scm::human(START_TIMEOUT)
                ));
                return Ok(out);
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// Stops the service `name` (waiting for `STOPPED` at most
/// [`scm::UNINSTALL_STOP_TIMEOUT`]), deletes it and removes its Event Log
/// source. A service whose command line is not one install writes
/// ([`scm::is_ours`]) is left alone.
pub fn uninstall(name: &str) -> Result<String> {
    scm::validate_name(name)?;
    let manager = manager(ServiceManagerAccess::CONNECT, name)?;
    let access =
        ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = match manager.open_service(name, access) {
        Ok(service) => service,
        Err(e) if winapi_code(&e) == Some(scm::ERROR_SERVICE_DOES_NOT_EXIST) => {
            let mut out = format!("No Windows service named {name:?}: nothing to stop or delete.\n");
            if event_source_is_ours(name) && remove_event_source(name)? {
                out.push_str(&format!("Removed the Event Log source {}.\n", eventlog::source_key_display(name)));
            }
            return Ok(out);
        }
        Err(e) => return Err(scm_err(format!("open the service {name:?}"), name, &e)),
    };
    let config = service.query_config().map_err(|e| scm_err("read the service's configuration", name, &e))?;
    let command_line = config.executable_path.to_string_lossy().into_owned();
    if !scm::is_ours(&command_line) {
        return Err(Error::Invalid(format!(
            "the Windows service {name:?} runs {command_line:?}, not `headroom run --service`: it was not installed \
             by `headroom service install` and is not touched"
        )));
    }
    let mut out = String::new();
    let began = Instant::now();
    let mut stop_sent = false;
    let stopped = loop {
        let now = service.query_status().map_err(|e| scm_err("query the service", name, &e))?;
        match now.current_state {
            ServiceState::Stopped => break true,
            _ if began.elapsed() >= scm::UNINSTALL_STOP_TIMEOUT => {
                out.push_str(&format!(
                    "Still {} after {}: deleted anyway; Windows removes it once its process exits.\n",
                    state(now.current_state),
                    scm::human(scm::UNINSTALL_STOP_TIMEOUT)
                ));
                break false;
            }
            ServiceState::Running | ServiceState::Paused if !stop_sent => match service.stop() {
                Ok(_) => stop_sent = true,
                Err(e) => match winapi_code(&e) {
                    Some(scm::ERROR_SERVICE_NOT_ACTIVE) => stop_sent = true,
                    Some(scm::ERROR_SERVICE_CANNOT_ACCEPT_CTRL) => std::thread::sleep(POLL),
                    _ => return Err(scm_err(format!("stop {name:?}"), name, &e)),
                },
            },
            _ => std::thread::sleep(POLL),
        }
    };
    if stopped {
        out.push_str(&format!("Stopped {name:?}{}.\n", if stop_sent { "" } else { " (it was not running)" }));
    }
    service.delete().map_err(|e| scm_err(format!("delete {name:?}"), name, &e))?;
    out.push_str(&format!("Deleted the Windows service {name:?}.\n"));
    if remove_event_source(name)? {
        out.push_str(&format!("Removed the Event Log source {}.\n", eventlog::source_key_display(name)));
    }
    Ok(out)
}

/// The service's state, process id, last exit code, start type, account,
/// command line and recovery actions, in words ([`scm::describe_status`]).
pub fn status(name: &str) -> Result<String> {
    scm::validate_name(name)?;
    let manager = manager(ServiceManagerAccess::CONNECT, name)?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG)
        .map_err(|e| scm_err(format!("open the service {name:?}"), name, &e))?;
    let now = service.query_status().map_err(|e| scm_err("query the service", name, &e))?;
    let config = service.query_config().map_err(|e| scm_err("read the service's configuration", name, &e))?;
    let actions = service.get_failure_actions().map_err(|e| scm_err("read the recovery actions", name, &e))?;
    let non_crash = service
        .get_failure_actions_on_non_crash_failures()
        .map_err(|e| scm_err("read recovery on non-crash failures", name, &e))?;
    let observed = Observed {
        name: name.to_owned(),
        display_name: config.display_name.to_string_lossy().into_owned(),
        state: state(now.current_state),
        pid: now.process_id,
        exit: exit(now.exit_code),
        start_type: match config.start_type {
            ServiceStartType::AutoStart => StartType::Automatic,
            ServiceStartType::OnDemand => StartType::Manual,
            ServiceStartType::Disabled => StartType::Disabled,
            ServiceStartType::BootStart | ServiceStartType::SystemStart => StartType::Driver,
        },
        account: config.account_name.map(|a| a.to_string_lossy().into_owned()),
        command_line: config.executable_path.to_string_lossy().into_owned(),
        recovery: recovery_read(&actions, non_crash),
    };
    Ok(scm::describe_status(&observed))
}

/// The daemon's body, run on its own thread by [`run_as_service`]: runs
/// until the token is cancelled, shuts down, and says how that went.
pub type Body = Box<dyn FnOnce(CancellationToken) -> RunOutcome + Send>;

/// What [`run_as_service`] hands to `service_main` (the dispatcher calls it
/// on its own thread, with no way to pass data).
static PENDING: Mutex<Option<(String, Body)>> = Mutex::new(None);

/// An error of `service_main`, for [`run_as_service`] to return.
static FAILED: Mutex<Option<Error>> = Mutex::new(None);

/// What `service_main` waits for.
enum Event {
    /// The SCM asked the service to stop.
    Stop(Control),
    /// The daemon's body returned.
    Done(RunOutcome),
}

define_windows_service!(ffi_service_main, service_main);

/// Runs `body` as the service `name` under the SCM's dispatcher (this is
/// `headroom run --service`): reports `START_PENDING` then `RUNNING`, cancels
/// the body's token on STOP, PRESHUTDOWN or SHUTDOWN, reports `STOP_PENDING`
/// with increasing checkpoints while the body drains, then `STOPPED` with the
/// exit code of its outcome ([`scm::exit_code`]). Returns when the service
/// has stopped. Fails at once when the process was not started by the SCM.
pub fn run_as_service(name: &str, body: Body) -> Result<()> {
    scm::validate_name(name)?;
    *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = Some((name.to_owned(), body));
    service_dispatcher::start(name, ffi_service_main)
        .map_err(|e| scm_err(format!("run as the service {name:?}"), name, &e))?;
    match FAILED.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let pending = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some((name, body)) = pending else {
        tracing::error!("the service was started twice in one process: ignored");
        return;
    };
    if let Err(e) = serve(&name, body) {
        tracing::error!(service = %name, error = %e, "the service could not run");
        *FAILED.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}

fn serve(name: &str, body: Body) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Event>();
    let handler_tx = tx.clone();
    let handle = service_control_handler::register(name, move |c| {
        let c = control(c);
        match scm::on_control(c) {
            ControlAnswer::BeginShutdown => {
                // The receiver lives until the service has stopped; a send
                // after that has nobody left to tell.
                let _ = handler_tx.send(Event::Stop(c));
                ServiceControlHandlerResult::NoError
            }
            ControlAnswer::Ok => ServiceControlHandlerResult::NoError,
            ControlAnswer::NotImplemented => ServiceControlHandlerResult::NotImplemented,
        }
    })
    .map_err(|e| scm_err("register the service control handler", name, &e))?;
    let set = |report: &Report| -> Result<()> {
        handle.set_service_status(status_of(report)).map_err(|e| scm_err("report the service status", name, &e))
    };
    set(&scm::starting())?;
    let token = CancellationToken::new();
    let body_token = token.clone();
    let spawned = std::thread::Builder::new().name("headroom-daemon".into()).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || body(body_token)))
            .unwrap_or_else(|p| RunOutcome::Failed(format!("the daemon panicked: {}", panic_text(p.as_ref()))));
        let _ = tx.send(Event::Done(outcome));
    });
    if let Err(e) = spawned {
        let outcome = RunOutcome::Failed(format!("cannot start the daemon's thread: {e}"));
        stop_with(&handle, name, &outcome);
        return Err(Error::Manager { what: format!("run the service {name:?}"), why: e.to_string() });
    }
    if let Err(e) = set(&scm::running()) {
        // The SCM cannot be told the service runs: stop the daemon again.
        token.cancel();
        let deadline = Instant::now() + scm::STOP_GIVE_UP;
        while let Ok(event) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if matches!(event, Event::Done(_)) {
                break;
            }
        }
        stop_with(&handle, name, &RunOutcome::Failed(e.to_string()));
        return Err(e);
    }
    let outcome = wait(&rx, &token, &set);
    stop_with(&handle, name, &outcome);
    Ok(())
}

/// Waits for the body's outcome; after a stop control, reports
/// `STOP_PENDING` every [`scm::CHECKPOINT_EVERY`] with the next checkpoint,
/// until the body returns or the stop is overdue ([`scm::stop_overdue`]).
fn wait(rx: &mpsc::Receiver<Event>, token: &CancellationToken, set: &dyn Fn(&Report) -> Result<()>) -> RunOutcome {
    let mut stopping: Option<(Instant, u32)> = None;
    loop {
        let event = match stopping {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(_) => rx.recv_timeout(scm::CHECKPOINT_EVERY),
        };
        match event {
            Ok(Event::Stop(c)) => {
                if stopping.is_none() {
                    tracing::info!(control = ?c, "stop requested by the service control manager: shutting down");
                    token.cancel();
                    stopping = Some((Instant::now(), 1));
                    report_stopping(set, 1, Duration::ZERO);
                }
            }
            Ok(Event::Done(outcome)) => return scm::settle(outcome, stopping.is_some()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some((since, checkpoint)) = &mut stopping {
                    let elapsed = since.elapsed();
                    if scm::stop_overdue(elapsed) {
                        return scm::given_up(elapsed);
                    }
                    *checkpoint = checkpoint.saturating_add(1);
                    report_stopping(set, *checkpoint, elapsed);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return RunOutcome::Failed("the daemon's thread ended without an outcome".into());
            }
        }
    }
}

fn report_stopping(set: &dyn Fn(&Report) -> Result<()>, checkpoint: u32, elapsed: Duration) {
    if let Err(e) = set(&scm::stopping(checkpoint, scm::stop_remaining(elapsed))) {
        tracing::warn!(error = %e, "could not report the stop's progress");
    }
}

fn stop_with(handle: &ServiceStatusHandle, name: &str, outcome: &RunOutcome) {
    match outcome {
        RunOutcome::Clean => tracing::info!(service = %name, "service stopped"),
        RunOutcome::Unclean(why) => tracing::warn!(service = %name, %why, "service stopped, not cleanly"),
        RunOutcome::Failed(why) => tracing::error!(service = %name, %why, "service failed"),
    }
    if let Err(e) = handle.set_service_status(status_of(&scm::stopped(outcome))) {
        tracing::error!(service = %name, error = %scm_err("report STOPPED", name, &e), "could not report the stop");
    }
}

/// The Windows Event Log, as a [`Sink`]: `ReportEvent` under the source the
/// service registered (install writes its key, [`eventlog::source_key`]).
pub struct EventLogSink {
    /// The event source handle; behind a mutex as it is `Send` but not `Sync`.
    handle: Mutex<winsafe::guard::DeregisterEventSourceGuard>,
}

impl fmt::Debug for EventLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLogSink").finish_non_exhaustive()
    }
}

impl EventLogSink {
    /// Opens the event source `name` on this computer.
    pub fn open(name: &str) -> Result<Self> {
        let handle = HEVENTLOG::RegisterEventSource(None, name)
            .map_err(|e| reg_err(format!("open the Event Log source {name:?}"), e))?;
        Ok(Self { handle: Mutex::new(handle) })
    }
}

impl Sink for EventLogSink {
    fn report(&self, kind: EventType, text: &str) {
        let event_type = match kind {
            EventType::Error => co::EVENTLOG::ERROR_TYPE,
            EventType::Warning => co::EVENTLOG::WARNING_TYPE,
            EventType::Information => co::EVENTLOG::INFORMATION_TYPE,
        };
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        // A logger has nowhere to report its own failure.
        let _ = handle.ReportEvent(event_type, 0, eventlog::event_id(kind), None, &[text], &[]);
    }
}

/// A `tracing` layer writing INFO, WARN and ERROR events to the Event Log
/// under source `name`.
pub fn event_log_layer(name: &str) -> Result<EventLogLayer<EventLogSink>> {
    Ok(EventLogLayer::new(EventLogSink::open(name)?))
}
