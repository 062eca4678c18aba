//! The Windows SCM actuator: restarts Windows services and reads (and, when
//! asked, writes) their recovery settings through the `windows-service`
//! crate.
//!
//! **Type-checked on Linux (`cargo check --target x86_64-pc-windows-gnu`),
//! never run in the tests here.** It only maps the decisions of
//! [`crate::scm`] (which are compiled and unit-tested everywhere) onto SCM
//! calls; keep it that thin.
//!
//! A target's entity is `winsvc/<service name>`. headroom needs
//! SERVICE_STOP, SERVICE_START, SERVICE_QUERY_STATUS, SERVICE_QUERY_CONFIG
//! and SERVICE_CHANGE_CONFIG (the last only for [`WindowsScmActuator::set_recovery`])
//! on the service. Every SCM call blocks, so each operation runs on a
//! blocking thread (`spawn_blocking`); a restart carries on to its end there
//! even if the caller stops waiting.

use std::ffi::OsStr;
use std::fmt;
use std::time::{Duration, Instant};

use headroom_core::{Action, Decision};
use headroom_remediate::config::Target;
use tracing::{debug, info, instrument, warn};
use windows_service::service::{
    Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceControlAccept, ServiceExitCode,
    ServiceFailureActions, ServiceFailureResetPeriod, ServiceStartType, ServiceState, ServiceStatus,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::actuator::{Actuator, Applied, Observed};
use crate::error::{Error, Result};
use crate::guard::{Claim, Claims};
use crate::scm::{
    self, ACTUATOR, ExitCode, FailureActions, RecoveryAction, RecoveryKind, Restart, State, Status, Step, Timing,
};
use headroom_core::BoxFuture;

/// Restarts Windows services through the SCM (see the module docs).
#[derive(Clone, Default)]
pub struct WindowsScmActuator {
    timing: Timing,
    claims: Claims,
}

impl fmt::Debug for WindowsScmActuator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowsScmActuator").field("timing", &self.timing).finish_non_exhaustive()
    }
}

fn err(target: &str, why: impl Into<String>) -> Error {
    Error::Actuator { actuator: ACTUATOR.into(), target: target.into(), why: why.into() }
}

/// An SCM error in words, with what to do.
fn scm_err(e: &windows_service::Error, name: &str) -> String {
    match e {
        windows_service::Error::Winapi(io) => scm::explain(io.raw_os_error(), name),
        other => other.to_string(),
    }
}

fn status(s: &ServiceStatus) -> Status {
    Status {
        state: match s.current_state {
            ServiceState::Stopped => State::Stopped,
            ServiceState::StartPending => State::StartPending,
            ServiceState::StopPending => State::StopPending,
            ServiceState::Running => State::Running,
            ServiceState::ContinuePending => State::ContinuePending,
            ServiceState::PausePending => State::PausePending,
            ServiceState::Paused => State::Paused,
        },
        exit_code: match s.exit_code {
            ServiceExitCode::Win32(c) => ExitCode::Win32(c),
            ServiceExitCode::ServiceSpecific(c) => ExitCode::ServiceSpecific(c),
        },
        checkpoint: s.checkpoint,
        wait_hint: s.wait_hint,
        pid: s.process_id,
        accepts_stop: s.controls_accepted.contains(ServiceControlAccept::STOP),
    }
}

/// A service's failure actions as the SCM answers them, read as plain data.
pub fn failure_actions(fa: &ServiceFailureActions) -> FailureActions {
    FailureActions {
        reset: match fa.reset_period {
            ServiceFailureResetPeriod::Never => None,
            ServiceFailureResetPeriod::After(d) => Some(d),
        },
        actions: fa
            .actions
            .iter()
            .flatten()
            .map(|a| RecoveryAction {
                kind: match a.action_type {
                    ServiceActionType::None => RecoveryKind::None,
                    ServiceActionType::Restart => RecoveryKind::Restart,
                    ServiceActionType::Reboot => RecoveryKind::Reboot,
                    ServiceActionType::RunCommand => RecoveryKind::RunCommand,
                },
                delay: a.delay,
            })
            .collect(),
    }
}

/// Failure actions as the SCM takes them (no reboot message, no command).
pub fn service_failure_actions(fa: &FailureActions) -> ServiceFailureActions {
    ServiceFailureActions {
        reset_period: match fa.reset {
            Some(d) => ServiceFailureResetPeriod::After(d),
            None => ServiceFailureResetPeriod::Never,
        },
        // Unchanged: headroom writes no reboot message and no command.
        reboot_msg: None,
        command: None,
        actions: Some(
            fa.actions
                .iter()
                .map(|a| ServiceAction {
                    action_type: match a.kind {
                        RecoveryKind::None => ServiceActionType::None,
                        RecoveryKind::Restart => ServiceActionType::Restart,
                        RecoveryKind::Reboot => ServiceActionType::Reboot,
                        RecoveryKind::RunCommand => ServiceActionType::RunCommand,
                    },
                    delay: a.delay,
                })
                .collect(),
        ),
    }
}

/// Opens service `name` with `access` on the local SCM.
fn open(name: &str, access: ServiceAccess) -> std::result::Result<Service, String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("cannot connect to the service control manager: {}", scm_err(&e, name)))?;
    manager.open_service(name, access).map_err(|e| format!("cannot open the service: {}", scm_err(&e, name)))
}

fn query(service: &Service, name: &str) -> std::result::Result<Status, String> {
    service.query_status().map(|s| status(&s)).map_err(|e| format!("cannot query its status: {}", scm_err(&e, name)))
}

fn disabled(service: &Service, name: &str) -> std::result::Result<bool, String> {
    let config = service.query_config().map_err(|e| format!("cannot read its configuration: {}", scm_err(&e, name)))?;
    Ok(config.start_type == ServiceStartType::Disabled)
}

/// What `observe` reads, on a blocking thread.
fn observe_blocking(name: &str) -> std::result::Result<Observed, String> {
    let service = open(name, ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG)?;
    let now = query(&service, name)?;
    let recovery = service
        .get_failure_actions()
        .map(|fa| failure_actions(&fa))
        .map_err(|e| format!("cannot read its recovery settings: {}", scm_err(&e, name)))?;
    let pid = now.pid.filter(|&p| p != 0).map(|p| format!("pid {p}; ")).unwrap_or_default();
    Ok(Observed {
        replicas: None,
        state: Some(scm::describe(&now)),
        restarts: None,
        start_limit: scm::start_limit(&recovery),
        detail: Some(format!("{pid}recovery: {}", scm::describe_recovery(&recovery))),
    })
}

fn plan_blocking(name: &str, timing: &Timing) -> std::result::Result<String, String> {
    let service = open(name, ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG)?;
    Ok(scm::plan_restart(name, &query(&service, name)?, disabled(&service, name)?, timing))
}

/// The restart, on a blocking thread: query, ask the state machine, act, repeat.
fn restart_blocking(name: &str, timing: Timing) -> std::result::Result<String, String> {
    let service = open(
        name,
        ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG | ServiceAccess::STOP | ServiceAccess::START,
    )?;
    scm::check_restartable(disabled(&service, name)?)?;
    let mut restart = Restart::new(timing);
    let began = Instant::now();
    loop {
        let now = query(&service, name).map_err(|why| {
            format!("{why}; the restart was under way ({}): check the service with `sc queryex`", restart.summary())
        })?;
        let step = restart.next_step(&now, began.elapsed());
        debug!(service = name, state = %now.state, checkpoint = now.checkpoint, ?step, "restart step");
        let sent = match step {
            Step::SendStop => service.stop().map(drop),
            Step::SendStart => service.start::<&OsStr>(&[]),
            Step::Wait(d) => {
                std::thread::sleep(d.max(Duration::from_millis(1)));
                continue;
            }
            Step::Done => return Ok(restart.summary()),
            Step::Fail(why) => return Err(why),
        };
        if let Err(e) = sent {
            let code = match &e {
                windows_service::Error::Winapi(io) => io.raw_os_error(),
                _ => None,
            };
            if let Some(why) = restart.control_error(&step, code, name) {
                return Err(why);
            }
        }
    }
}

impl WindowsScmActuator {
    /// An actuator with the default [`Timing`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, with other polling intervals and timeouts.
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Writes `recovery` (see [`scm::recovery_for`]) as the failure actions
    /// of the target's service. Needs SERVICE_CHANGE_CONFIG.
    pub async fn set_recovery(&self, target: &Target, recovery: &FailureActions) -> Result<()> {
        let name = scm::service_name(&target.entity).map_err(|why| err(&target.name, why))?.to_owned();
        let update = service_failure_actions(recovery);
        info!(service = %name, recovery = %scm::describe_recovery(recovery), "writing failure actions");
        blocking(&target.name, move || {
            let service = open(&name, ServiceAccess::CHANGE_CONFIG)?;
            service
                .update_failure_actions(update)
                .map_err(|e| format!("cannot write its recovery settings: {}", scm_err(&e, &name)))
        })
        .await
    }
}

/// Runs `f` on a blocking thread; its error becomes an actuator error about `target`.
async fn blocking<T: Send + 'static>(
    target: &str,
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|why| err(target, why)),
        Err(e) => Err(err(target, format!("the SCM call did not finish: {e}"))),
    }
}

impl Actuator for WindowsScmActuator {
    fn name(&self) -> &str {
        ACTUATOR
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>> {
        Box::pin(async move {
            let name = scm::service_name(&target.entity).map_err(|why| err(&target.name, why))?.to_owned();
            blocking(&target.name, move || observe_blocking(&name)).await
        })
    }

    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let name = scm::service_name(&target.entity).map_err(|why| err(&target.name, why))?.to_owned();
            match decision.action {
                Action::None => Ok(format!("nothing for {}", target.name)),
                Action::ScaleTo { .. } => Err(not_scaled(target)),
                Action::Restart => {
                    let timing = self.timing;
                    blocking(&target.name, move || plan_blocking(&name, &timing)).await
                }
            }
        })
    }

    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.do_apply(target, decision))
    }
}

fn not_scaled(target: &Target) -> Error {
    err(
        &target.name,
        "Windows services are not scaled: use platform = \"process\" or \"kubernetes\" for a target with replicas",
    )
}

impl WindowsScmActuator {
    #[instrument(skip_all, fields(target = %target.name, decision = %decision.id))]
    async fn do_apply(&self, target: &Target, decision: &Decision) -> Result<Applied> {
        let name = scm::service_name(&target.entity).map_err(|why| err(&target.name, why))?.to_owned();
        match decision.action {
            Action::None => return Ok(Applied { changed: false, detail: format!("nothing for {}", target.name) }),
            Action::ScaleTo { .. } => return Err(not_scaled(target)),
            Action::Restart => {}
        }
        let ticket = match self.claims.claim(&decision.id, &name) {
            Claim::Proceed(ticket) => ticket,
            Claim::AlreadyDone => {
                return Ok(Applied {
                    changed: false,
                    detail: format!("decision {} already applied to {}: not repeated", decision.id, target.entity),
                });
            }
            Claim::Busy(why) => return Err(err(&target.name, why)),
        };
        let timing = self.timing;
        let entity = target.entity.clone();
        // The ticket goes with the work: the id counts as done only when the
        // restart ended well, however the caller's wait ends.
        let detail = blocking(&target.name, move || {
            let out = restart_blocking(&name, timing);
            match &out {
                Ok(summary) => {
                    info!(service = %name, %summary, "restarted");
                    ticket.done();
                }
                Err(why) => warn!(service = %name, %why, "restart failed"),
            }
            out
        })
        .await?;
        Ok(Applied { changed: true, detail: format!("{entity}: {detail}") })
    }
}
