//! The Kubernetes actuator: scales Deployments and StatefulSets through
//! their `scale` subresource, defers to a HorizontalPodAutoscaler when one
//! owns the workload, and restarts by a rollout.
//!
//! A target's entity names the workload: `k8s/<namespace>/<kind>/<name>`,
//! kind `deployment` or `statefulset`.
//!
//! * **Scale**, no HPA: merge patch `{"spec":{"replicas":N}}` on
//!   `…/<kind>s/<name>/scale`.
//! * **Scale**, an `autoscaling/v2` HPA targets the workload: the scale is
//!   never patched (the HPA would undo it). Raising patches the HPA's
//!   `spec.minReplicas` and records the HPA's own value in the annotation
//!   [`ORIGINAL_MIN_ANNOTATION`]; a `ScaleTo` at or below that value puts
//!   it back and removes the annotation. The HPA patch carries the
//!   `resourceVersion` read, so a concurrent change is a 409, not a lost
//!   update.
//! * **Restart**: merge patch of the pod-template annotation
//!   [`RESTARTED_AT_ANNOTATION`] (what `kubectl rollout restart` does); the
//!   rollout follows the workload's own update strategy.
//! * **Plan** sends the very same PATCH with `dryRun=All` and describes the
//!   server's answer.
//!
//! Failures: 409 → read again and retry ([`Retry::conflicts`] times);
//! 404 → an error naming the kind, namespace and name; 429 and 5xx (and a
//! lost connection) → wait (the `Retry-After` seconds when given,
//! exponential otherwise) and retry ([`Retry::attempts`] tries in all).
//! At most one change per workload is in flight (the shared [`Claims`]: a
//! second change waits for the first to end), and a decision id already
//! applied is not applied again.
//!
//! What to send is decided by plain functions ([`Workload::parse`],
//! [`owning_hpa`], [`scale_step`], [`restart_call`], [`retry_wait`]),
//! tested without any client; the actuator only reads, calls them and sends.

use std::fmt;
use std::time::Duration;

use headroom_core::retry::{Backoff, parse_retry_after};
use headroom_core::{Action, Decision};
use headroom_remediate::config::Target;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Client;
use kube::api::{GetParams, ListParams, Patch, PatchParams};
use kube::client::Body;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, instrument, warn};

use crate::actuator::{Actuator, Applied, Observed};
use crate::error::{Error, Result};
use crate::guard::Claims;
use headroom_core::BoxFuture;

/// The HPA annotation holding the HPA's own `minReplicas` while headroom has raised it.
pub const ORIGINAL_MIN_ANNOTATION: &str = "headroom.io/original-min-replicas";

/// The pod-template annotation whose change rolls a workload out again (as `kubectl rollout restart`).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// The field manager named on every PATCH.
pub const FIELD_MANAGER: &str = "headroom";

const ACTUATOR: &str = "kubernetes";

/// A workload kind headroom can scale and restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl Kind {
    /// The API kind (`Deployment`), as an HPA's `scaleTargetRef.kind` names it.
    pub fn api_kind(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
        }
    }

    /// The resource (`deployments`), as in URL paths and RBAC rules.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
        }
    }

    /// The entity's word (`deployment`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

/// The workload a target's entity names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Deployment or StatefulSet.
    pub kind: Kind,
    /// Object name.
    pub name: String,
}

impl Workload {
    /// Reads `k8s/<namespace>/<kind>/<name>` (kind `deployment` or `statefulset`).
    pub fn parse(entity: &str) -> std::result::Result<Workload, String> {
        let expected = "expected `k8s/<namespace>/<kind>/<name>` with kind `deployment` or `statefulset`";
        let parts: Vec<&str> = entity.split('/').collect();
        let [prefix, namespace, kind, name] = parts.as_slice() else {
            return Err(format!("entity `{entity}` does not name a Kubernetes workload: {expected}"));
        };
        if *prefix != "k8s" || namespace.is_empty() || name.is_empty() {
            return Err(format!("entity `{entity}` does not name a Kubernetes workload: {expected}"));
        }
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "statefulset" | "statefulsets" | "sts" => Kind::StatefulSet,
            other => {
                return Err(format!(
                    "entity `{entity}`: kind `{other}` cannot be scaled or restarted here; {expected}"
                ));
            }
        };
        Ok(Workload { namespace: (*namespace).to_owned(), kind, name: (*name).to_owned() })
    }

    /// `/apis/apps/v1/namespaces/<ns>/<kind>s`.
    pub fn collection(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/{}", self.namespace, self.kind.resource())
    }

    /// The workload's key in the actuator's [`Claims`]: one change at a time each.
    fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind.resource(), self.name)
    }

    /// GET of the `scale` subresource.
    pub fn get_scale(&self) -> Call {
        Call::get(self.collection(), &self.name, Some("scale"), self.to_string())
    }

    /// GET of the workload itself.
    pub fn get(&self) -> Call {
        Call::get(self.collection(), &self.name, None, self.to_string())
    }

    /// LIST of the HPAs of the workload's namespace.
    pub fn list_hpas(&self) -> Call {
        Call {
            verb: Verb::List,
            collection: hpa_collection(&self.namespace),
            name: None,
            subresource: None,
            body: None,
            about: format!("horizontalpodautoscalers in namespace \"{}\"", self.namespace),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\" in namespace \"{}\"", self.kind.word(), self.name, self.namespace)
    }
}

fn hpa_collection(namespace: &str) -> String {
    format!("/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers")
}

/// An HTTP verb headroom uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// PATCH (JSON merge patch).
    Patch,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Get | Verb::List => "GET",
            Verb::Patch => "PATCH",
        })
    }
}

/// One API call, as data: what to send and what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// GET, LIST or PATCH.
    pub verb: Verb,
    /// The collection's path, e.g. `/apis/apps/v1/namespaces/shop/deployments`.
    pub collection: String,
    /// The object's name (none for a LIST).
    pub name: Option<String>,
    /// The subresource (`scale`), if any.
    pub subresource: Option<&'static str>,
    /// The merge patch (PATCH only).
    pub body: Option<Value>,
    /// The object in words, for errors: `deployment "checkout" in namespace "shop"`.
    pub about: String,
}

impl Call {
    fn get(collection: String, name: &str, subresource: Option<&'static str>, about: String) -> Call {
        Call { verb: Verb::Get, collection, name: Some(name.to_owned()), subresource, body: None, about }
    }

    /// The request path, without query.
    pub fn path(&self) -> String {
        let mut path = self.collection.clone();
        for part in [self.name.as_deref(), self.subresource].into_iter().flatten() {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    /// The query pairs sent (`fieldManager=headroom`, with `dryRun=All` first on a dry run); kube writes
    /// them as `path?&dryRun=All&…`, an empty first pair the API server ignores.
    pub fn query(&self, dry_run: bool) -> String {
        match (self.verb, dry_run) {
            (Verb::Patch, true) => format!("dryRun=All&fieldManager={FIELD_MANAGER}"),
            (Verb::Patch, false) => format!("fieldManager={FIELD_MANAGER}"),
            _ => String::new(),
        }
    }

    /// `PATCH /apis/…/scale`.
    pub fn line(&self) -> String {
        format!("{} {}", self.verb, self.path())
    }
}

/// An HPA that targets a workload, as far as scaling decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hpa {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.minReplicas` (1 when unset, as the API defaults it).
    pub min_replicas: u32,
    /// `spec.maxReplicas`.
    pub max_replicas: u32,
    /// The HPA's own `minReplicas` recorded by headroom when it raised it.
    pub original_min: Option<u32>,
    /// `metadata.resourceVersion` as read.
    pub resource_version: Option<String>,
}

impl Hpa {
    /// `horizontalpodautoscaler "checkout" in namespace "shop"`.
    pub fn about(&self) -> String {
        format!("horizontalpodautoscaler \"{}\" in namespace \"{}\"", self.name, self.namespace)
    }

    fn patch(&self, body: Value) -> Call {
        Call {
            verb: Verb::Patch,
            collection: hpa_collection(&self.namespace),
            name: Some(self.name.clone()),
            subresource: None,
            body: Some(body),
            about: self.about(),
        }
    }
}

/// The first HPA (by name) whose `spec.scaleTargetRef` names `workload` (kind and name; apiVersion `apps/*` or unset).
pub fn owning_hpa(hpas: &[HorizontalPodAutoscaler], workload: &Workload) -> Option<Hpa> {
    let mut owners: Vec<Hpa> = hpas
        .iter()
        .filter_map(|h| {
            let spec = h.spec.as_ref()?;
            let target = &spec.scale_target_ref;
            let group_ok = target.api_version.as_deref().is_none_or(|v| v.starts_with("apps/"));
            if target.kind != workload.kind.api_kind() || target.name != workload.name || !group_ok {
                return None;
            }
            let annotations = h.metadata.annotations.as_ref();
            let original_min = annotations.and_then(|a| a.get(ORIGINAL_MIN_ANNOTATION)).and_then(|v| {
                let parsed = v.trim().parse::<u32>().ok();
                if parsed.is_none() {
                    warn!(hpa = ?h.metadata.name, value = %v, "ignoring an unreadable {ORIGINAL_MIN_ANNOTATION} annotation");
                }
                parsed
            });
            Some(Hpa {
                namespace: h.metadata.namespace.clone().unwrap_or_else(|| workload.namespace.clone()),
                name: h.metadata.name.clone().unwrap_or_default(),
                min_replicas: to_u32(spec.min_replicas.unwrap_or(1)),
                max_replicas: to_u32(spec.max_replicas),
                original_min,
                resource_version: h.metadata.resource_version.clone(),
            })
        })
        .collect();
    owners.sort_by(|a, b| a.name.cmp(&b.name));
    if owners.len() > 1 {
        warn!(workload = %workload, hpas = ?owners.iter().map(|h| &h.name).collect::<Vec<_>>(), "several HPAs target one workload; using the first");
    }
    owners.into_iter().next()
}

fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// What a change comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to send: the workload (or its HPA) is already as asked.
    Nothing {
        /// Why, in words.
        why: String,
    },
    /// Send this PATCH.
    Send {
        /// The PATCH.
        call: Call,
        /// What it does, in words (`set spec.replicas of … from 3 to 5`).
        summary: String,
    },
}

/// What a `ScaleTo { replicas: want }` sends, given the workload's scale
/// `spec.replicas` and the HPA that owns it, if one does.
///
/// Without an HPA: the scale's merge patch, or nothing when already there.
/// With one: never the scale. Above the HPA's floor it raises `minReplicas`
/// (recording the HPA's own value once); at or below the recorded value it
/// restores it and removes the record; at the current floor, or below a
/// floor headroom did not raise, nothing. Above `maxReplicas` it refuses
/// (the API server would reject `minReplicas > maxReplicas`).
pub fn scale_step(
    workload: &Workload,
    spec_replicas: u32,
    hpa: Option<&Hpa>,
    want: u32,
) -> std::result::Result<Step, String> {
    let Some(hpa) = hpa else {
        if spec_replicas == want {
            return Ok(Step::Nothing { why: format!("{workload} already has spec.replicas {want}") });
        }
        let call = Call {
            verb: Verb::Patch,
            collection: workload.collection(),
            name: Some(workload.name.clone()),
            subresource: Some("scale"),
            body: Some(json!({ "spec": { "replicas": want } })),
            about: workload.to_string(),
        };
        return Ok(Step::Send {
            call,
            summary: format!("set spec.replicas of {workload} from {spec_replicas} to {want}"),
        });
    };
    let mut metadata = serde_json::Map::new();
    if let Some(rv) = &hpa.resource_version {
        metadata.insert("resourceVersion".into(), Value::String(rv.clone()));
    }
    if let Some(original) = hpa.original_min
        && want <= original
    {
        metadata.insert("annotations".into(), json!({ ORIGINAL_MIN_ANNOTATION: null }));
        let call = hpa.patch(json!({ "metadata": metadata, "spec": { "minReplicas": original } }));
        let summary = format!(
            "restore minReplicas of {} from {} to its own {original} and remove {ORIGINAL_MIN_ANNOTATION} (it owns the scaling of {workload})",
            hpa.about(),
            hpa.min_replicas
        );
        return Ok(Step::Send { call, summary });
    }
    if want == hpa.min_replicas {
        return Ok(Step::Nothing {
            why: format!("{} already has minReplicas {want} (it owns {workload})", hpa.about()),
        });
    }
    if hpa.original_min.is_none() && want < hpa.min_replicas {
        return Ok(Step::Nothing {
            why: format!(
                "{} owns {workload} with its own minReplicas {}; headroom only lowers a floor it raised, so scaling to {want} is left to the HPA",
                hpa.about(),
                hpa.min_replicas
            ),
        });
    }
    if want > hpa.max_replicas {
        return Err(format!(
            "{} owns {workload} and allows at most maxReplicas {}; raising its minReplicas to {want} would be rejected: raise the HPA's maxReplicas or lower the target's max_replicas",
            hpa.about(),
            hpa.max_replicas
        ));
    }
    let original = hpa.original_min.unwrap_or(hpa.min_replicas);
    metadata.insert("annotations".into(), json!({ ORIGINAL_MIN_ANNOTATION: original.to_string() }));
    let call = hpa.patch(json!({ "metadata": metadata, "spec": { "minReplicas": want } }));
    let summary = format!(
        "set minReplicas of {} from {} to {want} (its own value {original} kept in {ORIGINAL_MIN_ANNOTATION}); the HPA owns the scaling of {workload}",
        hpa.about(),
        hpa.min_replicas
    );
    Ok(Step::Send { call, summary })
}

/// The restart PATCH: the pod template's [`RESTARTED_AT_ANNOTATION`] set to `at` (RFC 3339).
pub fn restart_call(workload: &Workload, at: &str) -> Call {
    Call {
        verb: Verb::Patch,
        collection: workload.collection(),
        name: Some(workload.name.clone()),
        subresource: None,
        body: Some(
            json!({ "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT_ANNOTATION: at } } } } }),
        ),
        about: workload.to_string(),
    }
}

/// How hard to try when the API server pushes back. The waits follow the
/// shared [`Backoff`] ([`Retry::backoff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Re-reads and retries after a 409 Conflict (3: four PATCHes at most).
    pub conflicts: u32,
    /// Tries of one request in all when answered 429 or 5xx or not answered (5).
    pub attempts: u32,
    /// The first wait when the server gives no `Retry-After`; doubled each time (250 ms).
    pub base: Duration,
    /// No single wait is longer, `Retry-After` included (30 s).
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { conflicts: 3, attempts: 5, base: Duration::from_millis(250), max_wait: Duration::from_secs(30) }
    }
}

impl Retry {
    /// The waits between the tries of one request (at least one try).
    pub fn backoff(&self) -> Backoff {
        Backoff { base: self.base, max: self.max_wait, attempts: self.attempts.max(1) }
    }
}

/// The wait before retry number `retry` (0 = the first retry): the
/// `Retry-After` header's seconds, else the `Status` body's
/// `details.retryAfterSeconds`, else `base · 2^retry`; never over `max_wait`.
pub fn retry_wait(retry: u32, retry_after: Option<&str>, status_seconds: Option<u32>, policy: &Retry) -> Duration {
    policy.backoff().wait(retry, told(retry_after, status_seconds))
}

/// The wait the server asked for: the `Retry-After` header's seconds, else
/// the `Status` body's `details.retryAfterSeconds` (when positive).
fn told(retry_after: Option<&str>, status_seconds: Option<u32>) -> Option<Duration> {
    retry_after
        .and_then(parse_retry_after)
        .or(status_seconds.filter(|s| *s > 0).map(|s| Duration::from_secs(u64::from(s))))
}

/// Why a call failed.
#[derive(Debug)]
enum Failure {
    /// 409: read again and retry.
    Conflict(String),
    /// Anything else: give up with this message.
    Fatal(String),
}

impl Failure {
    fn why(self) -> String {
        match self {
            Failure::Conflict(w) | Failure::Fatal(w) => w,
        }
    }
}

/// An answer's `Status` body, as far as messages need it.
#[derive(Debug, Default, Deserialize)]
struct StatusBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<StatusDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusDetails {
    #[serde(default)]
    retry_after_seconds: Option<u32>,
}

fn status_of(body: &[u8]) -> StatusBody {
    serde_json::from_slice::<StatusBody>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.chars().count() > 200 {
            text.chars().take(200).collect::<String>() + "…"
        } else {
            text.to_owned()
        };
        StatusBody { message, ..StatusBody::default() }
    })
}

/// What a refusal (`code` not 2xx, with `body`) of `call` (shown as
/// `line`) means: give up (`Err`: a 409 conflict or a fatal answer), or
/// retry (429, 5xx) after what the server asked for; `Ok` says why.
fn refused(
    call: &Call,
    line: &str,
    code: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> std::result::Result<(String, Option<Duration>), Failure> {
    let status = status_of(body);
    let said = if status.reason.is_empty() {
        format!("{code}: {}", status.message)
    } else {
        format!("{code} {}: {}", status.reason, status.message)
    };
    match code {
        409 => Err(Failure::Conflict(format!("{} changed while headroom acted ({line}: {said})", call.about))),
        404 => Err(Failure::Fatal(format!(
            "{} not found ({line}: {said}); check the target's entity (k8s/<namespace>/<kind>/<name>) and that the object exists",
            call.about
        ))),
        401 | 403 => Err(Failure::Fatal(format!(
            "not allowed to {line} ({said}); grant headroom's service account the RBAC verbs in the README section \"Kubernetes\""
        ))),
        429 | 500..=599 => {
            let seconds = status.details.and_then(|d| d.retry_after_seconds);
            Ok((format!("the API server answered {line} with {said}"), told(retry_after, seconds)))
        }
        _ => Err(Failure::Fatal(format!("{line} refused for {}: {said}", call.about))),
    }
}

#[derive(Debug, Deserialize)]
struct HpaList {
    #[serde(default)]
    items: Vec<HorizontalPodAutoscaler>,
}

/// Scales and restarts Kubernetes workloads (see the module docs).
pub struct KubernetesActuator {
    client: Client,
    retry: Retry,
    /// Decision ids applied, and the workloads being changed now.
    claims: Claims,
}

impl fmt::Debug for KubernetesActuator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesActuator").field("retry", &self.retry).finish_non_exhaustive()
    }
}

/// The workload as `observe` reads it.
struct Reading {
    spec_replicas: u32,
    hpa: Option<Hpa>,
}

impl KubernetesActuator {
    /// An actuator talking through `client` (e.g. `Client::try_default()`), with the default [`Retry`].
    pub fn new(client: Client) -> Self {
        Self { client, retry: Retry::default(), claims: Claims::new() }
    }

    /// The same, with another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn err(target: &Target, why: impl Into<String>) -> Error {
        Error::Actuator { actuator: ACTUATOR.into(), target: target.name.clone(), why: why.into() }
    }

    fn workload(target: &Target) -> Result<Workload> {
        Workload::parse(&target.entity).map_err(|why| Self::err(target, why))
    }

    /// Sends `call` (dry run or not), retrying 429, 5xx and lost connections; returns the answer's body.
    async fn send(&self, call: &Call, dry_run: bool) -> std::result::Result<Vec<u8>, Failure> {
        let line = call.line();
        let backoff = self.retry.backoff();
        let attempts = backoff.attempts;
        let mut last = String::new();
        let params = PatchParams { dry_run, field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        for attempt in 0..attempts {
            // kube's own request builders make the path, query and content type.
            let prefix = kube::core::Request::new(call.collection.clone());
            let patch = Patch::Merge(call.body.clone().unwrap_or(Value::Null));
            let request = match (call.verb, call.name.as_deref(), call.subresource) {
                (Verb::List, _, _) | (_, None, _) => prefix.list(&ListParams::default()),
                (Verb::Get, Some(name), Some(sub)) => prefix.get_subresource(sub, name),
                (Verb::Get, Some(name), None) => prefix.get(name, &GetParams::default()),
                (Verb::Patch, Some(name), Some(sub)) => prefix.patch_subresource(sub, name, &params, &patch),
                (Verb::Patch, Some(name), None) => prefix.patch(name, &params, &patch),
            }
            .map_err(|e| Failure::Fatal(format!("could not build {line}: {e}")))?;
            let (code, retry_after, body) = match self.client.send(request.map(Body::from)).await {
                Ok(response) => {
                    let code = response.status().as_u16();
                    let retry_after =
                        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    match response.into_body().collect_bytes().await {
                        Ok(bytes) => (code, retry_after, bytes.to_vec()),
                        Err(e) => {
                            last = format!("{line}: the answer was cut off: {e}");
                            self.pause(&backoff, attempt, None, &last).await;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    last = format!("could not reach the API server for {line}: {e}");
                    self.pause(&backoff, attempt, None, &last).await;
                    continue;
                }
            };
            if (200..300).contains(&code) {
                debug!(call = %line, code, dry_run, "kubernetes answered");
                return Ok(body);
            }
            let (why, asked) = refused(call, &line, code, retry_after.as_deref(), &body)?;
            last = why;
            self.pause(&backoff, attempt, asked, &last).await;
        }
        Err(Failure::Fatal(format!("{last} (gave up after {attempts} tries)")))
    }

    /// After try number `attempt` (0 = the first) failed, waits before the
    /// next one (what the server `asked` for, if it did), unless it was the last.
    async fn pause(&self, backoff: &Backoff, attempt: u32, asked: Option<Duration>, why: &str) {
        if let Some(wait) = backoff.next(attempt + 1, asked) {
            warn!(attempt = attempt + 1, wait_ms = wait.as_millis() as u64, why, "kubernetes: retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, call: &Call) -> std::result::Result<T, Failure> {
        let body = self.send(call, false).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Fatal(format!("could not read the answer to {} ({}): {e}", call.line(), call.about)))
    }

    async fn reading(&self, workload: &Workload) -> std::result::Result<(Scale, Reading), Failure> {
        let scale: Scale = self.read(&workload.get_scale()).await?;
        let hpas: HpaList = self.read(&workload.list_hpas()).await?;
        let spec_replicas = scale.spec.as_ref().and_then(|s| s.replicas).map(to_u32).unwrap_or(0);
        let hpa = owning_hpa(&hpas.items, workload);
        Ok((scale, Reading { spec_replicas, hpa }))
    }

    /// A decision's replica count must lie within the target's bounds
    /// (restoring an HPA's own floor is not a decision and is not bounded).
    fn bounded(target: &Target, workload: &Workload, want: u32) -> Result<u32> {
        if want < target.min_replicas || want > target.max_replicas {
            return Err(Self::err(
                target,
                format!(
                    "refusing to scale {workload} to {want}: outside the target's min_replicas {} and max_replicas {}",
                    target.min_replicas, target.max_replicas
                ),
            ));
        }
        Ok(want)
    }

    /// Reads, decides and sends (dry run or not), re-reading after a 409.
    /// Returns the step taken and the server's answer to it.
    async fn scale(
        &self,
        target: &Target,
        workload: &Workload,
        want: u32,
        dry_run: bool,
    ) -> Result<(Step, Option<Value>)> {
        let mut conflict = String::new();
        for _ in 0..=self.retry.conflicts {
            let (_, reading) = self.reading(workload).await.map_err(|f| Self::err(target, f.why()))?;
            let step = scale_step(workload, reading.spec_replicas, reading.hpa.as_ref(), want)
                .map_err(|why| Self::err(target, why))?;
            let Step::Send { call, .. } = &step else {
                return Ok((step, None));
            };
            match self.send(call, dry_run).await {
                Ok(body) => return Ok((step, serde_json::from_slice(&body).ok())),
                Err(Failure::Conflict(why)) => {
                    warn!(%workload, why, "kubernetes: conflict; reading again");
                    conflict = why;
                }
                Err(Failure::Fatal(why)) => return Err(Self::err(target, why)),
            }
        }
        Err(Self::err(
            target,
            format!("{conflict}; still conflicting after {} re-reads, try again later", self.retry.conflicts),
        ))
    }

    async fn restart(&self, target: &Target, workload: &Workload, dry_run: bool) -> Result<(Call, Option<Value>)> {
        let call = restart_call(workload, &now_rfc3339());
        let mut conflict = String::new();
        for _ in 0..=self.retry.conflicts {
            match self.send(&call, dry_run).await {
                Ok(body) => return Ok((call, serde_json::from_slice(&body).ok())),
                Err(Failure::Conflict(why)) => conflict = why,
                Err(Failure::Fatal(why)) => return Err(Self::err(target, why)),
            }
        }
        Err(Self::err(
            target,
            format!("{conflict}; still conflicting after {} retries, try again later", self.retry.conflicts),
        ))
    }

    /// Puts back the own `minReplicas` of the HPA that owns `target`'s
    /// workload when headroom raised it (the annotation
    /// [`ORIGINAL_MIN_ANNOTATION`] holds it), and removes the annotation:
    /// what the operator does when a policy is deleted. Returns what was
    /// done, or `None` when headroom had raised nothing.
    pub async fn restore_hpa(&self, target: &Target) -> Result<Option<String>> {
        let workload = Self::workload(target)?;
        let (_, reading) = self.reading(&workload).await.map_err(|f| Self::err(target, f.why()))?;
        let Some(original) = reading.hpa.as_ref().and_then(|h| h.original_min) else {
            return Ok(None);
        };
        let (step, _) = self.scale(target, &workload, original, false).await?;
        Ok(match step {
            Step::Send { summary, .. } => Some(summary),
            Step::Nothing { .. } => None,
        })
    }

    #[instrument(skip_all, fields(target = %target.name))]
    async fn do_observe(&self, target: &Target) -> Result<Observed> {
        let workload = Self::workload(target)?;
        let (scale, reading) = self.reading(&workload).await.map_err(|f| Self::err(target, f.why()))?;
        let status_replicas = scale.status.as_ref().map(|s| to_u32(s.replicas)).unwrap_or(0);
        let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let counts = match workload.kind {
            Kind::Deployment => {
                let d: Deployment = self.read(&workload.get()).await.map_err(|f| Self::err(target, f.why()))?;
                let s = d.status.unwrap_or_default();
                let behind = s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0);
                (s.ready_replicas, s.updated_replicas, s.available_replicas, behind)
            }
            Kind::StatefulSet => {
                let d: StatefulSet = self.read(&workload.get()).await.map_err(|f| Self::err(target, f.why()))?;
                let s = d.status.unwrap_or_default();
                let behind = s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0);
                (s.ready_replicas, s.updated_replicas, s.available_replicas, behind)
            }
        };
        let (ready, updated, available, behind) = counts;
        let (ready, updated, available) =
            (to_u32(ready.unwrap_or(0)), to_u32(updated.unwrap_or(0)), to_u32(available.unwrap_or(0)));
        let desired = reading.spec_replicas;
        let mut state = format!("{ready}/{desired} ready, {updated} updated, {available} available");
        if behind || updated < desired || ready < desired {
            state.push_str(", rolling out");
        }
        let owner = match &reading.hpa {
            Some(h) => {
                let raised =
                    h.original_min.map(|o| format!(", raised by headroom from its own {o}")).unwrap_or_default();
                format!(
                    "the HPA {} owns scaling (minReplicas {}{raised}, maxReplicas {})",
                    h.name, h.min_replicas, h.max_replicas
                )
            }
            None => "no HPA targets it".to_owned(),
        };
        let detail = format!(
            "{workload}: spec.replicas {desired}, status.replicas {status_replicas}, selector `{selector}`; {owner}"
        );
        Ok(Observed { replicas: Some(desired), state: Some(state), detail: Some(detail), ..Observed::default() })
    }

    #[instrument(skip_all, fields(target = %target.name, decision = %decision.id))]
    async fn do_plan(&self, target: &Target, decision: &Decision) -> Result<String> {
        let workload = Self::workload(target)?;
        match decision.action {
            Action::None => Ok(format!("nothing for {}", target.name)),
            Action::ScaleTo { replicas } => {
                let want = Self::bounded(target, &workload, replicas)?;
                match self.scale(target, &workload, want, true).await? {
                    (Step::Nothing { why }, _) => Ok(format!("would do nothing: {why}")),
                    (Step::Send { call, summary }, answer) => Ok(format!(
                        "would {summary} ({}; server dry run accepted{})",
                        call.line(),
                        answered(&call, answer.as_ref())
                    )),
                }
            }
            Action::Restart => {
                let (call, answer) = self.restart(target, &workload, true).await?;
                Ok(format!(
                    "would restart {workload} by setting the pod-template annotation {RESTARTED_AT_ANNOTATION} ({}; server dry run accepted{})",
                    call.line(),
                    strategy(answer.as_ref())
                ))
            }
        }
    }

    #[instrument(skip_all, fields(target = %target.name, decision = %decision.id))]
    async fn do_apply(&self, target: &Target, decision: &Decision) -> Result<Applied> {
        let workload = Self::workload(target)?;
        if !decision.action.is_some() {
            return Ok(Applied { changed: false, detail: format!("nothing for {}", target.name) });
        }
        // A change to this workload in flight is waited for; a failed one leaves the id to try again.
        let Some(ticket) = self.claims.claim_when_free(&decision.id, &workload.key()).await else {
            return Ok(Applied {
                changed: false,
                detail: format!("decision {} already applied to {workload}: not repeated", decision.id),
            });
        };
        let applied = match decision.action {
            Action::None => unreachable!("handled above"),
            Action::ScaleTo { replicas } => {
                let want = Self::bounded(target, &workload, replicas)?;
                match self.scale(target, &workload, want, false).await? {
                    (Step::Nothing { why }, _) => Applied { changed: false, detail: why },
                    (Step::Send { call, summary }, answer) => Applied {
                        changed: true,
                        detail: format!("{summary} ({}{})", call.line(), answered(&call, answer.as_ref())),
                    },
                }
            }
            Action::Restart => {
                let (call, answer) = self.restart(target, &workload, false).await?;
                let at = call.body.as_ref().and_then(|b| b.pointer(&restart_pointer()).cloned()).unwrap_or(Value::Null);
                Applied {
                    changed: true,
                    detail: format!(
                        "restarted {workload}: {} set {RESTARTED_AT_ANNOTATION}={at}{}",
                        call.line(),
                        strategy(answer.as_ref())
                    ),
                }
            }
        };
        ticket.done();
        Ok(applied)
    }
}

fn restart_pointer() -> String {
    format!("/spec/template/metadata/annotations/{}", RESTARTED_AT_ANNOTATION.replace('~', "~0").replace('/', "~1"))
}

/// What the server's answer says about the field a PATCH set.
fn answered(call: &Call, answer: Option<&Value>) -> String {
    let Some(answer) = answer else { return String::new() };
    let field = if call.subresource == Some("scale") { "/spec/replicas" } else { "/spec/minReplicas" };
    match answer.pointer(field) {
        Some(v) => format!("; the server now has {} {v}", &field[1..].replace('/', ".")),
        None => String::new(),
    }
}

/// The rollout strategy named in a workload's answer.
fn strategy(answer: Option<&Value>) -> String {
    let Some(answer) = answer else { return String::new() };
    let kind = answer.pointer("/spec/strategy/type").or_else(|| answer.pointer("/spec/updateStrategy/type"));
    match kind.and_then(Value::as_str) {
        Some(kind) => format!("; the rollout follows its {kind} strategy"),
        None => String::new(),
    }
}

/// Now, RFC 3339 in UTC to the second (as `kubectl rollout restart` writes it).
fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Actuator for KubernetesActuator {
    fn name(&self) -> &str {
        ACTUATOR
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>> {
        Box::pin(self.do_observe(target))
    }

    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.do_plan(target, decision))
    }

    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.do_apply(target, decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> Workload {
        Workload::parse("k8s/shop/deployment/checkout").unwrap()
    }

    fn hpa(min: u32, max: u32, original: Option<u32>) -> Hpa {
        Hpa {
            namespace: "shop".into(),
            name: "checkout".into(),
            min_replicas: min,
            max_replicas: max,
            original_min: original,
            resource_version: Some("7".into()),
        }
    }

    fn sent(step: Step) -> (String, Value) {
        match step {
            Step::Send { call, .. } => {
                assert_eq!(call.verb, Verb::Patch);
                (call.path(), call.body.unwrap())
            }
            Step::Nothing { why } => panic!("expected a PATCH, got nothing: {why}"),
        }
    }

    #[test]
    fn entities_name_a_namespace_kind_and_name() {
        let w = Workload::parse("k8s/shop/statefulset/db").unwrap();
        assert_eq!((w.namespace.as_str(), w.kind, w.name.as_str()), ("shop", Kind::StatefulSet, "db"));
        assert_eq!(w.get_scale().path(), "/apis/apps/v1/namespaces/shop/statefulsets/db/scale");
        assert_eq!(w.list_hpas().path(), "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers");
        assert_eq!(w.to_string(), "statefulset \"db\" in namespace \"shop\"");
        for bad in ["k8s/shop/deployment", "svc/shop/deployment/x", "k8s//deployment/x", "k8s/shop/daemonset/x"] {
            let e = Workload::parse(bad).unwrap_err();
            assert!(e.contains(bad) || e.contains("daemonset"), "{e}");
        }
    }

    #[test]
    fn without_an_hpa_the_scale_is_patched_unless_already_there() {
        let (path, body) = sent(scale_step(&checkout(), 3, None, 5).unwrap());
        assert_eq!(path, "/apis/apps/v1/namespaces/shop/deployments/checkout/scale");
        assert_eq!(body, json!({ "spec": { "replicas": 5 } }));
        assert!(matches!(scale_step(&checkout(), 5, None, 5).unwrap(), Step::Nothing { .. }));
    }

    #[test]
    fn an_hpa_is_raised_with_its_own_min_recorded_once() {
        let (path, body) = sent(scale_step(&checkout(), 3, Some(&hpa(2, 10, None)), 6).unwrap());
        assert_eq!(path, "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/checkout");
        assert_eq!(
            body,
            json!({
                "metadata": { "resourceVersion": "7", "annotations": { ORIGINAL_MIN_ANNOTATION: "2" } },
                "spec": { "minReplicas": 6 }
            })
        );
        // Raised again: the recorded value stays the HPA's own, not headroom's 6.
        let (_, body) = sent(scale_step(&checkout(), 6, Some(&hpa(6, 10, Some(2))), 8).unwrap());
        assert_eq!(body["metadata"]["annotations"][ORIGINAL_MIN_ANNOTATION], "2");
        assert_eq!(body["spec"]["minReplicas"], 8);
        // Lowered, but still above its own value: only minReplicas moves.
        let (_, body) = sent(scale_step(&checkout(), 8, Some(&hpa(8, 10, Some(2))), 4).unwrap());
        assert_eq!(body["spec"]["minReplicas"], 4);
        assert_eq!(body["metadata"]["annotations"][ORIGINAL_MIN_ANNOTATION], "2");
    }

    #[test]
    fn at_or_below_the_recorded_min_the_hpa_is_restored() {
        for want in [2, 1] {
            let (_, body) = sent(scale_step(&checkout(), 6, Some(&hpa(6, 10, Some(2))), want).unwrap());
            assert_eq!(
                body,
                json!({
                    "metadata": { "resourceVersion": "7", "annotations": { ORIGINAL_MIN_ANNOTATION: null } },
                    "spec": { "minReplicas": 2 }
                })
            );
        }
    }

    #[test]
    fn an_hpa_already_there_or_with_a_higher_own_floor_gets_nothing() {
        assert!(matches!(scale_step(&checkout(), 4, Some(&hpa(4, 10, None)), 4).unwrap(), Step::Nothing { .. }));
        assert!(matches!(scale_step(&checkout(), 4, Some(&hpa(6, 10, Some(2))), 6).unwrap(), Step::Nothing { .. }));
        // headroom never lowers a floor it did not raise.
        match scale_step(&checkout(), 4, Some(&hpa(4, 10, None)), 2).unwrap() {
            Step::Nothing { why } => assert!(why.contains("only lowers a floor it raised"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raising_an_hpa_above_its_max_is_refused() {
        let e = scale_step(&checkout(), 4, Some(&hpa(2, 5, None)), 6).unwrap_err();
        assert!(e.contains("maxReplicas 5") && e.contains("horizontalpodautoscaler \"checkout\""), "{e}");
    }

    #[test]
    fn only_an_hpa_naming_this_kind_and_name_owns_it() {
        let list: HpaList = serde_json::from_value(json!({ "items": [
            { "metadata": { "name": "b", "namespace": "shop" },
              "spec": { "scaleTargetRef": { "kind": "StatefulSet", "name": "checkout" }, "maxReplicas": 3 } },
            { "metadata": { "name": "c", "namespace": "shop" },
              "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "other", "apiVersion": "apps/v1" }, "maxReplicas": 3 } },
            { "metadata": { "name": "a", "namespace": "shop", "resourceVersion": "9",
                            "annotations": { ORIGINAL_MIN_ANNOTATION: "3" } },
              "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "checkout", "apiVersion": "apps/v1" },
                        "minReplicas": 5, "maxReplicas": 12 } }
        ]}))
        .unwrap();
        let h = owning_hpa(&list.items, &checkout()).unwrap();
        assert_eq!((h.name.as_str(), h.min_replicas, h.max_replicas, h.original_min), ("a", 5, 12, Some(3)));
        assert_eq!(h.resource_version.as_deref(), Some("9"));
        assert_eq!(owning_hpa(&list.items[..2], &checkout()), None);
    }

    #[test]
    fn restart_sets_the_pod_template_annotation_only() {
        let call = restart_call(&checkout(), "2025-03-01T08:00:00Z");
        assert_eq!(call.path(), "/apis/apps/v1/namespaces/shop/deployments/checkout");
        assert_eq!(
            call.body.clone().unwrap(),
            json!({ "spec": { "template": { "metadata": { "annotations": {
                RESTARTED_AT_ANNOTATION: "2025-03-01T08:00:00Z"
            } } } } })
        );
        assert_eq!(call.query(true), "dryRun=All&fieldManager=headroom");
        assert_eq!(call.query(false), "fieldManager=headroom");
        assert_eq!(now_rfc3339().len(), 20);
    }

    #[test]
    fn waits_honour_retry_after_then_double_and_are_capped() {
        let p = Retry::default();
        assert_eq!(retry_wait(0, Some("3"), None, &p), Duration::from_secs(3));
        assert_eq!(retry_wait(0, None, Some(2), &p), Duration::from_secs(2));
        assert_eq!(retry_wait(0, Some("4"), Some(2), &p), Duration::from_secs(4));
        assert_eq!(retry_wait(0, Some("3600"), None, &p), p.max_wait);
        // An HTTP-date (not seconds) falls back to the exponential wait.
        assert_eq!(retry_wait(2, Some("Wed, 21 Oct 2025 07:28:00 GMT"), None, &p), Duration::from_millis(1000));
        assert_eq!(retry_wait(0, None, None, &p), Duration::from_millis(250));
        assert_eq!(retry_wait(1, None, None, &p), Duration::from_millis(500));
        assert_eq!(retry_wait(30, None, None, &p), p.max_wait);
    }

    #[test]
    fn refusals_are_retried_only_for_429_and_5xx() {
        let call = checkout().get_scale();
        let line = call.line();
        let body =
            br#"{"kind":"Status","reason":"TooManyRequests","message":"slow down","details":{"retryAfterSeconds":2}}"#;
        let (why, asked) = refused(&call, &line, 429, None, body).unwrap();
        assert!(why.ends_with("with 429 TooManyRequests: slow down"), "{why}");
        assert_eq!(asked, Some(Duration::from_secs(2)));
        assert_eq!(refused(&call, &line, 503, Some("7"), body).unwrap().1, Some(Duration::from_secs(7)));
        assert_eq!(refused(&call, &line, 500, None, b"oops").unwrap().1, None);
        assert!(matches!(refused(&call, &line, 409, None, body), Err(Failure::Conflict(_))));
        for code in [400, 401, 403, 404, 422] {
            assert!(matches!(refused(&call, &line, code, None, body), Err(Failure::Fatal(_))), "{code}");
        }
    }

    #[test]
    fn error_bodies_are_read_as_status_or_text() {
        let s = status_of(br#"{"kind":"Status","code":429,"reason":"TooManyRequests","message":"slow down","details":{"retryAfterSeconds":2}}"#);
        assert_eq!((s.reason.as_str(), s.message.as_str()), ("TooManyRequests", "slow down"));
        assert_eq!(s.details.and_then(|d| d.retry_after_seconds), Some(2));
        let s = status_of(b"Too many requests, please try again later.\n");
        assert_eq!(s.message, "Too many requests, please try again later.");
    }
}
