//! The controller: one reconcile per `CapacityPolicy` runs one step of the
//! engine's runner for that policy's one target and writes what it saw,
//! predicts and did into the status, the audit log and Events.
//!
//! reconcile: leader? → paused? → spec valid? → only policy on its workload?
//! → workload there (replicas, capacity)? → history from Prometheus → the
//! runner's `step` (forecast, decide, act through the Kubernetes actuator in
//! Enforce, record in the policy's audit log) → Events → status (server-side
//! apply; a 409 reads the status again and retries) → `requeue(interval)`.
//! Every "cannot" on the way is `Ready=False` with its reason and no action,
//! never a crash; errors talking to the API server go to [`error_policy`],
//! which retries with backoff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use headroom_actuate::kubernetes::KubernetesActuator;
use headroom_actuate::{Actuator, AuditLog, AuditOptions, Platforms};
use headroom_collect::Source;
use headroom_collect::prometheus::{PrometheusConfig, PrometheusSource};
use headroom_core::{Interrupt, Limits, Mode, SeriesData};
use headroom_engine::{Data, Forecasting, ModelSet, Reach, Step};
use headroom_remediate::config::Platform;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::crd::{CapacityPolicy, WorkloadKind};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::policy::{Defaults, LOOKBACK, Resolved, paused, resolve, template_capacity};
use crate::status::{Draft, NotReady, notes};

/// The field manager of every status write and the controller's name in Events.
pub const MANAGER: &str = "headroom-operator";

/// How soon a replica that does not hold the lease looks again.
pub const FOLLOWER_POLL: Duration = Duration::from_secs(15);

/// Builds the source of a policy's history (Prometheus in the operator; recorded data in tests).
pub type Sources = Arc<dyn Fn(PrometheusConfig) -> Result<Box<dyn Source>, String> + Send + Sync>;

/// Sources that read Prometheus.
pub fn prometheus_sources() -> Sources {
    Arc::new(|cfg| PrometheusSource::new(cfg).map(|s| Box::new(s) as Box<dyn Source>).map_err(|e| e.to_string()))
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Model and secrets defaults.
    pub defaults: Defaults,
    /// Where each policy's audit log is kept: `<dir>/audit/<namespace>/<policy>.jsonl`.
    pub state_dir: PathBuf,
    /// Where history comes from.
    pub sources: Sources,
    /// Whether this replica may act.
    pub leader: Leadership,
    /// The time now, ms since the epoch.
    pub clock: fn() -> i64,
    /// The operator's own metrics.
    pub metrics: Arc<Metrics>,
    actuator: Arc<KubernetesActuator>,
    recorder: Recorder,
    models: Mutex<BTreeMap<(String, PathBuf), Arc<ModelSet>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

impl Context {
    /// A context on `client`; `instance` names this replica in Events (its pod name).
    pub fn new(
        client: Client,
        defaults: Defaults,
        state_dir: PathBuf,
        sources: Sources,
        leader: Leadership,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance };
        Self {
            actuator: Arc::new(KubernetesActuator::new(client.clone())),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            state_dir,
            sources,
            leader,
            clock: || k8s_openapi::jiff::Timestamp::now().as_millisecond(),
            metrics: Arc::new(Metrics::default()),
            models: Mutex::new(BTreeMap::new()),
        }
    }

    /// The audit log file of a policy.
    pub fn audit_path(&self, namespace: &str, name: &str) -> PathBuf {
        self.state_dir.join("audit").join(namespace).join(format!("{name}.jsonl"))
    }

    fn models(&self, name: &str, dir: &std::path::Path) -> Result<Arc<ModelSet>, String> {
        let key = (name.to_owned(), dir.to_owned());
        let mut cache = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(ModelSet::load(name, dir).map_err(|e| e.to_string())?);
        cache.insert(key, m.clone());
        Ok(m)
    }
}

/// Errors that end a reconcile early and are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(String),
    /// The runner failed.
    #[error("{0}")]
    Engine(String),
}

/// The workload as read: its replicas and pod template.
struct Workload {
    replicas: u32,
    template: PodTemplateSpec,
}

async fn read_workload(client: &Client, ns: &str, kind: WorkloadKind, name: &str) -> kube::Result<Option<Workload>> {
    let (replicas, template) = match kind {
        WorkloadKind::Deployment => {
            let Some(d) = Api::<Deployment>::namespaced(client.clone(), ns).get_opt(name).await? else {
                return Ok(None);
            };
            let spec = d.spec.unwrap_or_default();
            (spec.replicas, spec.template)
        }
        WorkloadKind::StatefulSet => {
            let Some(s) = Api::<StatefulSet>::namespaced(client.clone(), ns).get_opt(name).await? else {
                return Ok(None);
            };
            let spec = s.spec.unwrap_or_default();
            (spec.replicas, spec.template)
        }
    };
    Ok(Some(Workload { replicas: u32::try_from(replicas.unwrap_or(1)).unwrap_or(0), template }))
}

/// The policy that owns `policy`'s workload when it is not `policy`: the
/// oldest of those naming the same workload (then by name).
fn owner_of_target<'a>(policy: &CapacityPolicy, all: &'a [CapacityPolicy]) -> Option<&'a CapacityPolicy> {
    let same = |p: &&CapacityPolicy| {
        p.spec.target_ref.kind == policy.spec.target_ref.kind && p.spec.target_ref.name == policy.spec.target_ref.name
    };
    let key = |p: &CapacityPolicy| (p.creation_timestamp().map(|t| t.0), p.name_any());
    let first = all.iter().filter(same).filter(|p| p.meta().deletion_timestamp.is_none()).min_by_key(|p| key(p))?;
    (first.name_any() != policy.name_any()).then_some(first)
}

/// One reconcile of `policy` (see the module docs).
pub async fn reconcile(policy: Arc<CapacityPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(FOLLOWER_POLL));
    }
    let started = std::time::Instant::now();
    let result = evaluate(&policy, &ctx).await;
    ctx.metrics.reconciled(
        &policy.namespace().unwrap_or_default(),
        &policy.name_any(),
        result.is_ok(),
        started.elapsed(),
    );
    result
}

/// One reconcile of `policy` by the leader: pause → checks and reads →
/// the runner's step → Events and status.
async fn evaluate(policy: &CapacityPolicy, ctx: &Context) -> Result<Action, Error> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let api: Api<CapacityPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let now = (ctx.clock)();
    let mut draft = Draft::new(policy.status.as_ref(), policy.meta().generation, now);
    let reference = policy.object_ref(&());
    let resolved = resolve(policy, &ctx.defaults);
    let interval = resolved.as_ref().map_or(crate::policy::DEFAULT_INTERVAL, |r| r.interval);

    if paused(policy) {
        let was = draft.was("Paused") == Some(true);
        draft.paused();
        if !was {
            publish(ctx, &reference, false, "Paused", "headroom.dev/paused is \"true\": no forecast, no action").await;
        }
        write_status(&api, &name, draft).await?;
        return Ok(Action::requeue(interval));
    }
    if draft.was("Paused") == Some(true) {
        publish(ctx, &reference, false, "Resumed", "headroom.dev/paused removed: evaluating again").await;
    }
    draft.unpaused();

    let resolved = match resolved {
        Ok(r) => r,
        Err(problems) => {
            let message = problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ");
            let why = NotReady { reason: "InvalidSpec", message: format!("{} problem(s): {message}", problems.len()) };
            return not_ready(ctx, &api, &name, &reference, draft, why, Action::await_change()).await;
        }
    };
    let inputs = match gather(policy, ctx, &api, resolved, now).await {
        Ok(inputs) => inputs,
        Err(Halt::NotReady(why)) => {
            return not_ready(ctx, &api, &name, &reference, draft, why, Action::requeue(interval)).await;
        }
        Err(Halt::Failed(e)) => return Err(e),
    };
    if !ctx.leader.is_leader() {
        // Lost the lease while reading: the new leader acts and writes the status.
        return Ok(Action::requeue(FOLLOWER_POLL));
    }
    act(policy, ctx, &api, &reference, draft, inputs, now).await?;
    Ok(Action::requeue(interval))
}

/// What one step of the runner needs, read for a valid policy.
struct Inputs {
    /// The policy as a one-target config, capacity filled in.
    resolved: Resolved,
    /// The workload's replicas now.
    replicas: u32,
    /// Its history.
    raw: Vec<SeriesData>,
    /// The models that forecast it.
    models: Arc<ModelSet>,
}

/// Why a reconcile stops before the step: the policy is not ready (its
/// status says why), or the API server failed (retried with backoff).
enum Halt {
    NotReady(NotReady),
    Failed(Error),
}

impl Halt {
    fn not_ready(reason: &'static str, message: String) -> Self {
        Halt::NotReady(NotReady { reason, message })
    }
}

impl From<kube::Error> for Halt {
    fn from(e: kube::Error) -> Self {
        Halt::Failed(e.into())
    }
}

/// The checks and reads before a step: the only (oldest) policy on its
/// workload? the workload there? a capacity (spec, else the pod
/// template)? history from the source? the models?
async fn gather(
    policy: &CapacityPolicy,
    ctx: &Context,
    api: &Api<CapacityPolicy>,
    mut resolved: Resolved,
    now: i64,
) -> Result<Inputs, Halt> {
    let all = api.list(&ListParams::default()).await?.items;
    if let Some(owner) = owner_of_target(policy, &all) {
        let message = format!(
            "CapacityPolicy {} already manages {} {}: one policy per workload; delete one of them",
            owner.name_any(),
            policy.spec.target_ref.kind.word(),
            policy.spec.target_ref.name
        );
        return Err(Halt::not_ready("Conflict", message));
    }
    let (ns, kind, target) =
        (policy.namespace().unwrap_or_default(), policy.spec.target_ref.kind, &policy.spec.target_ref.name);
    let Some(workload) = read_workload(&ctx.client, &ns, kind, target).await? else {
        let message = format!("{} {}/{} not found: create it or fix spec.targetRef", kind.word(), ns, target);
        return Err(Halt::not_ready("TargetNotFound", message));
    };
    let scale_on = policy.spec.metrics.scale_on;
    if resolved.target().capacity.is_none() {
        let Some((c, _)) = template_capacity(&workload.template, scale_on) else {
            let message = format!(
                "no capacity for {}: set spec.capacity (per replica) or give the pod template's containers {} limits or requests",
                scale_on.metric(),
                scale_on.metric()
            );
            return Err(Halt::not_ready("NoCapacity", message));
        };
        resolved.cfg.targets[0].capacity = Some(c);
    }
    let raw = history(ctx, &resolved, now).await.map_err(|e| {
        let message = format!("{e}; no action this time (an HPA on the workload, if any, keeps scaling it reactively)");
        Halt::not_ready("MetricsUnavailable", message)
    })?;
    let (model, dir) = &resolved.model;
    let models = ctx.models(model, dir).map_err(|e| Halt::not_ready("ModelUnavailable", e))?;
    Ok(Inputs { resolved, replicas: workload.replicas, raw, models })
}

/// The runner's step for the policy's one target (acting through the
/// shared Kubernetes actuator in Enforce, every decision in the policy's
/// audit log first), then its Events, metrics, the HPA finalizer and the status.
async fn act(
    policy: &CapacityPolicy,
    ctx: &Context,
    api: &Api<CapacityPolicy>,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    mut draft: Draft,
    inputs: Inputs,
    now: i64,
) -> Result<(), Error> {
    let (ns, name) = (policy.namespace().unwrap_or_default(), policy.name_any());
    let Inputs { resolved, replicas, raw, models } = inputs;
    let enforce = resolved.target().mode == Mode::Enforce;
    let mut reach = if enforce {
        let actuator: Arc<dyn Actuator> = ctx.actuator.clone();
        let mut platforms = Platforms::new().with(Platform::Kubernetes, actuator);
        Reach::enforced(&resolved.cfg, &mut platforms).await
    } else {
        Reach::none()
    };
    let target = resolved.target().clone();
    let replicas = *reach.replicas.entry(target.name.clone()).or_insert(replicas);
    // Watched until the status is written, as the step's interrupt.
    let lost = ctx.leader.watch_loss();
    let path = ctx.audit_path(&ns, &name);
    let step = run_step(&path, &resolved, &models, &raw, &reach, now, &lost.interrupt).await?;

    let last = draft.status.last_decision.as_ref().map(|d| d.id.clone());
    for n in notes(&step.report.plan.decisions, &step.executed, last.as_deref()) {
        publish(ctx, reference, n.warning, &n.reason, &n.message).await;
    }
    for (d, e) in step.report.plan.decisions.iter().zip(&step.executed) {
        ctx.metrics.decided(&d.action.to_string(), &d.mode.to_string(), e.label());
    }
    draft.stepped(&target, &step, replicas, enforce && reach.unreachable.is_empty());
    if let Some(u) = reach.unreachable.first() {
        let why =
            NotReady { reason: "Unreachable", message: format!("could not read the workload to act: {}", u.error) };
        draft.not_ready(&why);
    }
    ctx.metrics.observe(&ns, &name, &draft.status);
    // Only while the finalizer is missing is there anything to learn from the HPAs.
    let finalized = policy.finalizers().iter().any(|f| f == FINALIZER);
    if enforce && !finalized && hpa_raised(ctx, &ns, policy.spec.target_ref.kind, &policy.spec.target_ref.name).await? {
        ensure_finalizer(api, policy).await?;
    }
    write_status(api, &name, draft).await?;
    info!(policy = %format!("{ns}/{name}"), replicas, "reconciled");
    Ok(())
}

/// One `runner::step` with the policy's audit log at `path` (made if
/// missing), stopped between decisions by `interrupt` (the lease lost).
async fn run_step(
    path: &std::path::Path,
    resolved: &Resolved,
    models: &ModelSet,
    raw: &[SeriesData],
    reach: &Reach,
    now: i64,
    interrupt: &Interrupt,
) -> Result<Step, Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Audit(format!("{}: {e}", parent.display())))?;
    }
    let (mut log, _) =
        AuditLog::open(path, AuditOptions::default()).map_err(|e| Error::Audit(format!("{}: {e}", path.display())))?;
    let limits = Limits::new();
    let data = Data { raw, limits: &limits };
    headroom_engine::step(&data, Forecasting::Fresh(models), &resolved.cfg, &mut log, reach, now, interrupt)
        .await
        .map_err(|e| Error::Engine(e.to_string()))
}

/// Reads the policy's history: the lookback ending now, from its source.
async fn history(ctx: &Context, resolved: &Resolved, now: i64) -> Result<Vec<SeriesData>, String> {
    let cfg = resolved.prometheus.clone().with_range(LOOKBACK, None, now);
    let source = (ctx.sources)(cfg)?;
    let frame = source.collect(&CancellationToken::new()).await.map_err(|e| e.to_string())?;
    frame.series().map_err(|e| e.to_string())
}

async fn not_ready(
    ctx: &Context,
    api: &Api<CapacityPolicy>,
    name: &str,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    mut draft: Draft,
    why: NotReady,
    action: Action,
) -> Result<Action, Error> {
    let previous = draft.status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.reason.clone());
    draft.not_ready(&why);
    if previous.as_deref() != Some(why.reason) {
        publish(ctx, reference, true, why.reason, &why.message).await;
    }
    ctx.metrics.observe(&reference.namespace.clone().unwrap_or_default(), name, &draft.status);
    write_status(api, name, draft).await?;
    Ok(action)
}

/// Publishes one Event; a failure is logged, never fatal (the status says the same).
async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(reason, error = %e, "could not publish an Event");
    }
}

/// Writes `draft` with server-side apply; a 409 reads the status again and retries (3 tries).
async fn write_status(api: &Api<CapacityPolicy>, name: &str, mut draft: Draft) -> Result<(), Error> {
    let params = PatchParams::apply(MANAGER).force();
    let mut attempt = 0;
    loop {
        let body = json!({
            "apiVersion": "headroom.dev/v1alpha1",
            "kind": "CapacityPolicy",
            "status": draft.status,
        });
        match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => {
                attempt += 1;
                warn!(policy = name, "status conflict; reading it again");
                let fresh = api.get_status(name).await?;
                draft = draft.rebase(fresh.status.as_ref());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether an HPA on the workload has a `minReplicas` headroom raised.
async fn hpa_raised(ctx: &Context, ns: &str, kind: WorkloadKind, name: &str) -> Result<bool, Error> {
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?;
    let workload =
        headroom_actuate::kubernetes::Workload::parse(&crate::policy::entity(ns, kind, name)).map_err(Error::Engine)?;
    Ok(headroom_actuate::kubernetes::owning_hpa(&hpas.items, &workload).is_some_and(|h| h.original_min.is_some()))
}

/// The finalizer that restores an HPA's `minReplicas` when the policy is deleted.
pub const FINALIZER: &str = "headroom.dev/restore-hpa";

async fn ensure_finalizer(api: &Api<CapacityPolicy>, policy: &CapacityPolicy) -> Result<(), Error> {
    let mut finalizers = policy.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": policy.resource_version()}});
    api.patch(&policy.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// A policy being deleted: put back the HPA's own `minReplicas` (when
/// headroom raised it), then let the policy go. Its audit log is kept.
pub async fn cleanup(policy: Arc<CapacityPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(FOLLOWER_POLL));
    }
    let ns = policy.namespace().unwrap_or_default();
    let api: Api<CapacityPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let target = crate::policy::entity(&ns, policy.spec.target_ref.kind, &policy.spec.target_ref.name);
    let t = headroom_remediate::config::Target::new(&policy.name_any(), Platform::Kubernetes, &target, "cpu");
    if let Some(detail) = ctx.actuator.restore_hpa(&t).await.map_err(|e| Error::Engine(e.to_string()))? {
        publish(&ctx, &policy.object_ref(&()), false, "HpaRestored", &detail).await;
    }
    let finalizers: Vec<String> = policy.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": policy.resource_version()}});
    api.patch(&policy.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Action::await_change())
}

/// Requeue after a failed reconcile: 5 s, doubling with each failure in a row, at most 5 min.
pub fn error_policy(policy: Arc<CapacityPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.metrics.failure(&policy.namespace().unwrap_or_default(), &policy.name_any());
    warn!(policy = %policy.name_any(), %error, failures, "reconcile failed; retrying");
    Action::requeue(backoff(failures))
}

/// The wait after `failures` failed reconciles in a row.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Runs the controller until `stop` is cancelled: CapacityPolicies, and the
/// Deployments, StatefulSets and HPAs they name (a change to one reconciles
/// its policies).
///
/// Only changes that matter trigger a reconcile: a policy's spec
/// (generation), annotations (pause) or finalizers, and a workload's or an
/// HPA's spec (generation). The status the controller writes itself, and
/// the status churn of workloads and HPAs, do not (else every status write
/// would start the next reconcile); `requeue(interval)` keeps the schedule.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    let client = ctx.client.clone();
    let (policies, deployments, statefulsets, hpas) = match &namespace {
        Some(ns) => (
            Api::<CapacityPolicy>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
    };
    let (store, writer) = reflector::store();
    let changed = predicates::generation.combine(predicates::annotations).combine(predicates::finalizers);
    let policies = watcher(policies, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(changed, Default::default());
    let naming = {
        let store = store.clone();
        move |kind: WorkloadKind, ns: Option<String>, name: String| {
            store
                .state()
                .into_iter()
                .filter(|p| p.spec.target_ref.kind == kind && p.spec.target_ref.name == name && p.namespace() == ns)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        }
    };
    let (by_deploy, by_sts, by_hpa) = (naming.clone(), naming.clone(), naming);
    Controller::for_stream(policies, store)
        .watches_stream(spec_changes(deployments), move |d: Deployment| {
            by_deploy(WorkloadKind::Deployment, d.namespace(), d.name_any())
        })
        .watches_stream(spec_changes(statefulsets), move |s: StatefulSet| {
            by_sts(WorkloadKind::StatefulSet, s.namespace(), s.name_any())
        })
        .watches_stream(spec_changes(hpas), move |h: HorizontalPodAutoscaler| {
            let target = h.spec.map(|s| s.scale_target_ref).unwrap_or_default();
            let kind = match target.kind.as_str() {
                "StatefulSet" => WorkloadKind::StatefulSet,
                _ => WorkloadKind::Deployment,
            };
            by_hpa(kind, h.metadata.namespace, target.name)
        })
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(
            |policy, ctx| async move {
                if policy.meta().deletion_timestamp.is_some() {
                    cleanup(policy, ctx).await
                } else {
                    reconcile(policy, ctx).await
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller");
            }
        })
        .await;
}

/// The objects of `api` whose spec changed (a new generation), not their status.
fn spec_changes<K>(api: Api<K>) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
