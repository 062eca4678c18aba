//! The [`ProcessActuator`]: decisions on `proc/<name>` targets carried out
//! through a [`Supervisor`].

use std::sync::Arc;

use headroom_core::{Action, BoxFuture, Decision};
use headroom_remediate::config::{Platform, Target};
use tracing::{Instrument, info_span};

use super::{ACTUATOR, Supervisor, fail};
use crate::actuator::{Actuator, Applied, Observed, describe};
use crate::error::Result;
use crate::guard::Claims;

/// The [`Actuator`] over a [`Supervisor`]: targets with `platform =
/// "process"` and entity `proc/<name>`. `ScaleTo n` sets the instance count,
/// `Restart` restarts every instance gracefully, one at a time. A decision
/// id already applied, or a scale to the current count, changes nothing;
/// one change at a time is in flight per process (a second waits for the
/// first to end).
#[derive(Debug)]
pub struct ProcessActuator {
    supervisor: Arc<Supervisor>,
    /// Decision ids applied, and the processes being changed now.
    claims: Claims,
}

impl ProcessActuator {
    /// An actuator acting through `supervisor`.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor, claims: Claims::new() }
    }

    /// The supervisor acted through.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The supervised process `target` names: its entity `proc/<name>`.
    fn process<'t>(&self, target: &'t Target) -> Result<&'t str> {
        if target.platform != Platform::Process {
            return Err(fail(
                &target.name,
                format!("platform is {}: the process actuator acts on platform = \"process\" only", target.platform),
            ));
        }
        let name = target
            .entity
            .strip_prefix("proc/")
            .ok_or_else(|| fail(&target.name, format!("entity {:?} is not proc/<name>", target.entity)))?;
        self.supervisor.proc(name)?;
        Ok(name)
    }
}

impl Actuator for ProcessActuator {
    fn name(&self) -> &str {
        ACTUATOR
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>> {
        Box::pin(async move {
            let status = self.supervisor.status(self.process(target)?)?;
            Ok(Observed {
                replicas: Some(status.live()),
                state: Some(status.state().into()),
                restarts: Some(status.restarts),
                start_limit: Some(status.start_limit),
                detail: Some(status.summary()),
            })
        })
    }

    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let name = self.process(target)?;
            if self.claims.is_done(&decision.id) {
                return Ok(format!("decision {} was already applied: nothing to do", decision.id));
            }
            let proc = self.supervisor.proc(name)?;
            let now = proc.status().instances.len() as u32;
            let stop_timeout = proc.spec.stop_timeout;
            Ok(match decision.action {
                Action::None => format!("nothing for {}", target.name),
                Action::ScaleTo { replicas } if replicas == now => {
                    format!("{} already has {now} instances: nothing to do", target.entity)
                }
                Action::ScaleTo { replicas } if replicas > now => {
                    format!(
                        "would scale {} from {now} to {replicas} instances (start {})",
                        target.entity,
                        replicas - now
                    )
                }
                Action::ScaleTo { replicas } => format!(
                    "would scale {} from {now} to {replicas} instances (stop {}: SIGTERM, SIGKILL after {stop_timeout})",
                    target.entity,
                    now - replicas
                ),
                Action::Restart => format!(
                    "would restart the {now} instances of {} one at a time (SIGTERM, SIGKILL after {stop_timeout}, start)",
                    target.entity
                ),
            })
        })
    }

    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
        let span =
            info_span!("process.apply", target = %target.name, decision = %decision.id, action = %decision.action);
        Box::pin(
            async move {
                let name = self.process(target)?;
                let Some(ticket) = self.claims.claim_when_free(&decision.id, name).await else {
                    return Ok(Applied {
                        changed: false,
                        detail: format!("decision {} was already applied: not repeated", decision.id),
                    });
                };
                let result = match decision.action {
                    Action::None => Applied { changed: false, detail: describe(target, decision) },
                    Action::ScaleTo { replicas } => {
                        let from = self.supervisor.scale(name, replicas).await?;
                        if from == replicas {
                            Applied {
                                changed: false,
                                detail: format!("{} already had {replicas} instances", target.entity),
                            }
                        } else {
                            Applied {
                                changed: true,
                                detail: format!("scaled {} from {from} to {replicas} instances", target.entity),
                            }
                        }
                    }
                    Action::Restart => {
                        let n = self.supervisor.restart(name).await?;
                        Applied { changed: n > 0, detail: format!("restarted {n} instances of {}", target.entity) }
                    }
                };
                // An error above dropped the ticket: the decision may be tried again.
                ticket.done();
                Ok(result)
            }
            .instrument(span),
        )
    }
}
