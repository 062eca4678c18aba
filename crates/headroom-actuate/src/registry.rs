//! The actuator each target's platform needs, built once and shared.
//!
//! One actuator serves every target of its platform (a Kubernetes client,
//! one system-bus connection, the daemon's supervisor, the SCM), so an id
//! carried out is remembered across targets and cycles, and connections are
//! made once. Built lazily: a run that enforces nothing never connects.
//!
//! `headroom act` builds one per run; the daemon keeps one for its lifetime
//! and hands it the process supervisor it runs ([`Platforms::with_supervisor`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use headroom_remediate::config::{Platform, Target};

use crate::actuator::Actuator;
use crate::error::{Error, Result};

/// The actuators of every platform, built on first use.
#[derive(Debug, Default)]
pub struct Platforms {
    built: BTreeMap<&'static str, Arc<dyn Actuator>>,
    #[cfg(feature = "process")]
    supervisor: Option<Arc<crate::process::Supervisor>>,
}

fn unavailable(target: &Target, why: impl Into<String>) -> Error {
    Error::Actuator { actuator: target.platform.to_string(), target: target.name.clone(), why: why.into() }
}

impl Platforms {
    /// No actuator built yet; process targets have no supervisor to act through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Process targets act through `supervisor` (the daemon's).
    #[cfg(feature = "process")]
    pub fn with_supervisor(mut self, supervisor: Arc<crate::process::Supervisor>) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    /// Uses `actuator` for every target of `platform` (tests, or a bus at another address).
    pub fn with(mut self, platform: Platform, actuator: Arc<dyn Actuator>) -> Self {
        self.built.insert(key(platform), actuator);
        self
    }

    /// The actuator for `target`'s platform, connecting on first use.
    ///
    /// # Errors
    /// The platform cannot be reached from here: no kubeconfig or in-cluster
    /// configuration, no system bus, no supervisor (process targets outside
    /// the daemon), or Windows services from another operating system.
    pub async fn actuator(&mut self, target: &Target) -> Result<Arc<dyn Actuator>> {
        if let Some(a) = self.built.get(key(target.platform)) {
            return Ok(a.clone());
        }
        let a = self.build(target).await?;
        self.built.insert(key(target.platform), a.clone());
        Ok(a)
    }

    #[allow(clippy::unused_async)] // every backend can be compiled out
    async fn build(&self, target: &Target) -> Result<Arc<dyn Actuator>> {
        match target.platform {
            #[cfg(feature = "kubernetes")]
            Platform::Kubernetes => {
                let client = kube::Client::try_default().await.map_err(|e| {
                    unavailable(target, format!("no Kubernetes client (kubeconfig or in-cluster config): {e}"))
                })?;
                Ok(Arc::new(crate::kubernetes::KubernetesActuator::new(client)))
            }
            #[cfg(feature = "systemd")]
            Platform::Systemd => Ok(Arc::new(crate::systemd::SystemdActuator::system().await?)),
            #[cfg(feature = "process")]
            Platform::Process => match &self.supervisor {
                Some(s) => Ok(Arc::new(crate::process::ProcessActuator::new(s.clone()))),
                None => Err(unavailable(
                    target,
                    "process targets are run by headroom's own supervisor, which lives in the daemon \
                     (`headroom run`); `act` cannot reach it",
                )),
            },
            #[cfg(all(windows, feature = "windows"))]
            Platform::Windows => Ok(Arc::new(crate::windows::WindowsScmActuator::new())),
            #[cfg(not(windows))]
            Platform::Windows => Err(unavailable(target, "Windows services can only be acted on from Windows")),
            #[allow(unreachable_patterns)] // reached only in builds without that backend's feature
            other => Err(unavailable(target, format!("this build of headroom has no {other} actuator"))),
        }
    }
}

fn key(platform: Platform) -> &'static str {
    match platform {
        Platform::Kubernetes => "kubernetes",
        Platform::Systemd => "systemd",
        Platform::Windows => "windows",
        Platform::Process => "process",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_process_target_outside_the_daemon_says_where_it_can_be_acted_on() {
        let t = Target::new("worker", Platform::Process, "proc/worker", "cpu");
        let err = rt().block_on(Platforms::new().actuator(&t)).unwrap_err().to_string();
        assert!(err.contains("worker") && err.contains("headroom run"), "{err}");
    }

    #[test]
    fn one_actuator_serves_every_target_of_its_platform() {
        let dry: Arc<dyn Actuator> = Arc::new(crate::actuator::DryRun::new());
        let mut p = Platforms::new().with(Platform::Kubernetes, dry.clone());
        let a = Target::new("a", Platform::Kubernetes, "k8s/shop/deployment/a", "cpu");
        let b = Target::new("b", Platform::Kubernetes, "k8s/shop/deployment/b", "cpu");
        let (x, y) = rt().block_on(async { (p.actuator(&a).await.unwrap(), p.actuator(&b).await.unwrap()) });
        assert!(Arc::ptr_eq(&x, &y) && Arc::ptr_eq(&x, &dry));
    }
}
