//! Reconcile scenarios against a scripted API server: a `kube::Client` on a
//! `tower_test` mock whose verifier asserts each request's method, path,
//! query and body, in order, and answers with realistic API objects and
//! `Status` errors. Any request beyond the script fails the test. History
//! comes from recorded series through the `Source` boundary; forecasts are
//! the engine's (daily seasonal naive, so the numbers are exact).

mod common;

use common::Recorded;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use headroom_collect::Source;
use headroom_collect::prometheus::PrometheusConfig;
use headroom_core::{SeriesData, SeriesKey};
use headroom_operator::controller::{Context, FINALIZER, Sources, reconcile};
use headroom_operator::crd::{CapacityPolicy, CapacityPolicySpec, PolicyMode, WorkloadKind};
use headroom_operator::leader::Leadership;
use headroom_operator::policy::Defaults;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const POLICIES: &str = "/apis/headroom.dev/v1alpha1/namespaces/shop/capacitypolicies";
const STATUS: &str = "/apis/headroom.dev/v1alpha1/namespaces/shop/capacitypolicies/checkout/status";
const POLICY: &str = "/apis/headroom.dev/v1alpha1/namespaces/shop/capacitypolicies/checkout";
const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";
const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout/scale";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers";
const HPA: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/checkout";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const APPLY: &str = "force=true&fieldManager=headroom-operator";

/// 2026-12-01T09:00:00Z: three hours before the daily peak.
const NOW: i64 = 1_796_115_600_000;
const STEP: i64 = 300_000;

// ---------- the scripted API server ----------

type Check = Box<dyn Fn(&Value) + Send>;

struct Exchange {
    method: &'static str,
    path: String,
    query: &'static str,
    check: Option<Check>,
    status: u16,
    reply: Value,
    /// Runs when the request arrives (e.g. the lease is lost now).
    hook: Option<Box<dyn FnOnce() + Send>>,
    /// Answer with the request's body (a created object), given a resourceVersion.
    echo: bool,
}

fn ex(method: &'static str, path: &str, query: &'static str, status: u16, reply: Value) -> Exchange {
    Exchange { method, path: path.into(), query, check: None, status, reply, hook: None, echo: false }
}

fn get(path: &str, reply: Value) -> Exchange {
    ex("GET", path, "", 200, reply)
}

impl Exchange {
    fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

/// An Event with `reason` whose note contains `note`.
fn event(warning: bool, reason: &'static str, note: &'static str) -> Exchange {
    let mut e = ex("POST", EVENTS, "", 201, json!({}));
    e.echo = true;
    e.check(move |b| {
        assert_eq!(b["reason"], reason, "event {b}");
        assert_eq!(b["type"], if warning { "Warning" } else { "Normal" }, "event {b}");
        assert_eq!(b["regarding"]["kind"], "CapacityPolicy");
        assert_eq!(b["regarding"]["name"], "checkout");
        assert_eq!(b["reportingController"], "headroom-operator");
        let text = b["note"].as_str().unwrap_or_default();
        assert!(text.contains(note), "event {reason}: {text:?} lacks {note:?}");
    })
}

/// The status write (server-side apply), checked by `f`, answered with `status`.
fn status_patch(status: u16, f: impl Fn(&Value) + Send + 'static) -> Exchange {
    let reply = if status == 409 {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
               "message": "Operation cannot be fulfilled on capacitypolicies.headroom.dev \"checkout\": the object has been modified; please apply your changes to the latest version and try again"})
    } else {
        // The API server answers with the whole object (the status merged in by the verifier).
        serde_json::to_value(policy(PolicyMode::DryRun)).unwrap()
    };
    ex("PATCH", STATUS, APPLY, status, reply).check(move |b| {
        assert_eq!(b["apiVersion"], "headroom.dev/v1alpha1");
        assert_eq!(b["kind"], "CapacityPolicy");
        f(&b["status"])
    })
}

fn server(script: Vec<Exchange>) -> (Client, JoinHandle<()>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        for (i, ex) in script.into_iter().enumerate() {
            let (request, send) = tokio::time::timeout(Duration::from_secs(20), handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("request {i} ({} {}) never came", ex.method, ex.path))
                .unwrap_or_else(|| panic!("the client went away before request {i} ({} {})", ex.method, ex.path));
            let what = format!("request {i}: {} {}", request.method(), request.uri());
            assert_eq!(request.method().as_str(), ex.method, "{what}");
            assert_eq!(request.uri().path(), ex.path, "{what}");
            let query: Vec<&str> = request.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()).collect();
            assert_eq!(query.join("&"), ex.query, "{what}");
            if let Some(hook) = ex.hook {
                hook();
            }
            let bytes = request.into_body().collect_bytes().await.expect("request body");
            let mut reply = ex.reply;
            if let Some(check) = ex.check {
                let body: Value =
                    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
                check(&body);
                if ex.echo {
                    reply = body;
                    reply["metadata"]["resourceVersion"] = json!("60001");
                }
            }
            let response = Response::builder()
                .status(ex.status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
        if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    });
    (Client::new(service, "default"), task)
}

// ---------- realistic API objects ----------

fn not_found(kind: &str, name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{kind}.apps \"{name}\" not found"), "reason": "NotFound",
           "details": {"name": name, "group": "apps", "kind": kind}, "code": 404})
}

fn deployment(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "uid": "3f0c9a52-6a43-4e0b-9d0e-5b1a2c3d4e5f",
                     "resourceVersion": "81234", "generation": 4},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{
                    "name": "app", "image": "shop/checkout:1.42",
                    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
                }]}
            }
        },
        "status": {"observedGeneration": 4, "replicas": replicas, "readyReplicas": replicas,
                   "updatedReplicas": replicas, "availableReplicas": replicas}
    })
}

fn scale(replicas: i32) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "81234"},
           "spec": {"replicas": replicas},
           "status": {"replicas": replicas, "selector": "app=checkout"}})
}

fn hpas(items: Vec<Value>) -> Value {
    json!({"kind": "HorizontalPodAutoscalerList", "apiVersion": "autoscaling/v2",
           "metadata": {"resourceVersion": "90001"}, "items": items})
}

fn hpa(min: i32, raised_from: Option<i32>) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(o) = raised_from {
        annotations.insert("headroom.io/original-min-replicas".into(), json!(o.to_string()));
    }
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "77001", "annotations": annotations},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
                    "minReplicas": min, "maxReplicas": 10,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
           "status": {"currentReplicas": 2, "desiredReplicas": 2}})
}

fn policy_list(items: Vec<&CapacityPolicy>) -> Value {
    json!({"apiVersion": "headroom.dev/v1alpha1", "kind": "CapacityPolicyList",
           "metadata": {"resourceVersion": "55001"}, "items": items})
}

fn policy(mode: PolicyMode) -> CapacityPolicy {
    let spec = CapacityPolicySpec {
        min_replicas: Some(2),
        max_replicas: Some(10),
        mode,
        ..CapacityPolicySpec::new(WorkloadKind::Deployment, "checkout", "http://prometheus.monitoring:9090")
    };
    let mut p = CapacityPolicy::new("checkout", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("9b1c6a1e-0d1f-4c3e-8a55-0c1d2e3f4a5b".into());
    p.metadata.resource_version = Some("55000".into());
    p.metadata.generation = Some(3);
    p.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-20T10:00:00Z".parse().unwrap()));
    p
}

// ---------- recorded history ----------

/// Eight days of a workload's CPU (cores, all pods) on 5-minute bins: 1.0
/// at night, a daily peak of 1.8 at 12:00 UTC (level 1.6 = 0.8 × 1 core × 2
/// replicas, crossed from ~11:00); from `shift_ms` on, every value × `factor`.
fn cpu_history(shift_ms: i64, factor: f64) -> Vec<SeriesData> {
    let key = SeriesKey::new("k8s/shop/deployment/checkout", "cpu").unwrap();
    let start = NOW - 8 * 86_400_000;
    let points: Vec<(i64, f64)> = (0..=(8 * 288))
        .map(|i| {
            let ts = start + i * STEP;
            let hour = (ts.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
            let v = 1.0 + 0.8 * (-((hour - 12.0) / 2.0).powi(2)).exp();
            let v = if ts >= shift_ms { v * factor } else { v };
            (ts, v)
        })
        .collect();
    vec![SeriesData::from_points(key, &points)]
}

fn recorded(series: Vec<SeriesData>) -> Sources {
    Arc::new(move |cfg: PrometheusConfig| {
        // What the operator asks Prometheus: the workload's pods, over the lookback, on the model's step.
        assert_eq!(cfg.url, "http://prometheus.monitoring:9090");
        assert_eq!(cfg.end - cfg.start, 8 * 86_400_000);
        assert!(cfg.queries[0].promql.contains(r#"namespace="shop", pod=~"checkout-"#), "{:?}", cfg.queries[0]);
        Ok(Box::new(Recorded(series.clone())) as Box<dyn Source>)
    })
}

struct Harness {
    ctx: Arc<Context>,
    task: JoinHandle<()>,
    _state: tempfile::TempDir,
}

fn harness(script: Vec<Exchange>, history: Vec<SeriesData>, leader: Leadership) -> Harness {
    let (client, task) = server(script);
    let state = tempfile::tempdir().unwrap();
    let defaults = Defaults { model: "snaive-daily".into(), ..Defaults::default() };
    let mut ctx = Context::new(
        client,
        defaults,
        state.path().to_owned(),
        recorded(history),
        leader,
        Some("headroom-operator-0".into()),
    );
    ctx.clock = || NOW;
    Harness { ctx: Arc::new(ctx), task, _state: state }
}

impl Harness {
    async fn reconcile(&self, p: &CapacityPolicy) -> Action {
        reconcile(Arc::new(p.clone()), self.ctx.clone()).await.expect("reconcile")
    }

    /// Drops the client and waits for the server's verdict.
    async fn finish(self) {
        drop(self.ctx);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server task ended")
            .expect("server verified");
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

fn assert_condition(status: &Value, type_: &str, value: &str, reason: &str) {
    let c = condition(status, type_);
    assert_eq!(c["status"], value, "{type_}: {c}");
    assert_eq!(c["reason"], reason, "{type_}: {c}");
    assert_eq!(c["observedGeneration"], 3, "{type_}: {c}");
    assert!(c["lastTransitionTime"].as_str().is_some_and(|t| t.starts_with("2026-12-01T09:00:00")), "{c}");
}

/// A leader's harness on the usual history, playing `parts` in order.
fn led(parts: Vec<Vec<Exchange>>) -> Harness {
    harness(parts.into_iter().flatten().collect(), history(), Leadership::always())
}

/// The reads every evaluation starts with: the namespace's policies, then the workload.
fn reads(p: &CapacityPolicy, replicas: i32) -> Vec<Exchange> {
    vec![get(POLICIES, policy_list(vec![p])), get(DEPLOY, deployment(replicas))]
}

/// The Kubernetes actuator observing the workload (Enforce): its scale, the HPAs, the Deployment.
fn observed(replicas: i32, hpa_items: Vec<Value>) -> Vec<Exchange> {
    vec![get(SCALE, scale(replicas)), get(HPAS, hpas(hpa_items)), get(DEPLOY, deployment(replicas))]
}

fn history() -> Vec<SeriesData> {
    cpu_history(i64::MAX, 1.0)
}

// ---------- scenarios ----------

#[tokio::test]
async fn dry_run_writes_the_recommendation_and_never_scales() {
    let p = policy(PolicyMode::DryRun);
    let h = led(vec![
        reads(&p, 2),
        vec![
            event(false, "ScaleRecommended", "scale_to 3"),
            event(false, "DryRunRecorded", "scale_to 3"),
            status_patch(200, |s| {
                assert_eq!(s["mode"], "DryRun");
                assert_eq!(s["currentReplicas"], 2);
                assert_eq!(s["recommendedReplicas"], 3);
                assert_eq!(s["observedGeneration"], 3);
                let d = &s["lastDecision"];
                assert_eq!(d["action"], "scale_to 3");
                assert!(d["reason"].as_str().unwrap().contains("p90"), "{d}");
                assert_eq!(s["lastAction"]["outcome"], "dry_run");
                let peak = &s["predictedPeak"];
                assert!((peak["value"].as_f64().unwrap() - 1.8).abs() < 0.01, "{peak}");
                assert!((peak["saturationLevel"].as_f64().unwrap() - 1.6).abs() < 1e-9, "{peak}");
                assert_eq!(peak["at"], "2026-12-01T12:00:00Z");
                assert!(s["saturationEta"].as_str().unwrap().starts_with("2026-12-01T1"), "{s}");
                assert_condition(s, "Ready", "True", "Evaluated");
                assert_condition(s, "Acting", "False", "DryRun");
                assert_condition(s, "Paused", "False", "NotPaused");
            }),
        ],
    ]);
    assert_eq!(h.reconcile(&p).await, Action::requeue(Duration::from_secs(300)));
    h.finish().await;
}

#[tokio::test]
async fn enforce_scales_then_writes_the_event_and_status() {
    let p = policy(PolicyMode::Enforce);
    let h = led(vec![
        reads(&p, 2),
        // The actuator observes, then reads again and scales.
        observed(2, vec![]),
        vec![
            get(SCALE, scale(2)),
            get(HPAS, hpas(vec![])),
            ex("PATCH", SCALE, "fieldManager=headroom", 200, scale(3))
                .check(|b| assert_eq!(b, &json!({"spec": {"replicas": 3}}))),
            event(false, "Scaling", "scale_to 3"),
            event(false, "ActionSucceeded", "scale_to 3"),
            get(HPAS, hpas(vec![])),
            status_patch(200, |s| {
                assert_eq!(s["mode"], "Enforce");
                assert_eq!(s["lastAction"]["outcome"], "succeeded");
                assert_eq!(s["lastAction"]["summary"], "scale_to 3: succeeded");
                assert_condition(s, "Acting", "True", "Enforce");
            }),
        ],
    ]);
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn an_hpa_on_the_target_gets_its_floor_raised_and_the_scale_is_never_patched() {
    let p = policy(PolicyMode::Enforce);
    let h = led(vec![
        reads(&p, 2),
        observed(2, vec![hpa(2, None)]),
        vec![
            get(SCALE, scale(2)),
            get(HPAS, hpas(vec![hpa(2, None)])),
            ex("PATCH", HPA, "fieldManager=headroom", 200, hpa(3, Some(2))).check(|b| {
                assert_eq!(b["spec"], json!({"minReplicas": 3}));
                assert_eq!(b["metadata"]["annotations"]["headroom.io/original-min-replicas"], "2");
                assert_eq!(b["metadata"]["resourceVersion"], "77001");
            }),
            event(false, "Scaling", "scale_to 3"),
            event(false, "ActionSucceeded", "minReplicas"),
            // headroom raised the floor: a finalizer puts it back if the policy is deleted.
            get(HPAS, hpas(vec![hpa(3, Some(2))])),
            ex("PATCH", POLICY, "", 200, serde_json::to_value(policy(PolicyMode::Enforce)).unwrap()).check(|b| {
                assert_eq!(b["metadata"]["finalizers"], json!([FINALIZER]));
                assert_eq!(b["metadata"]["resourceVersion"], "55000");
            }),
            status_patch(200, |s| assert_eq!(s["lastAction"]["outcome"], "succeeded")),
        ],
    ]);
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn a_paused_policy_does_nothing_but_say_so() {
    let mut p = policy(PolicyMode::Enforce);
    p.metadata.annotations = Some(BTreeMap::from([("headroom.dev/paused".to_string(), "true".to_string())]));
    let h = led(vec![vec![
        event(false, "Paused", "headroom.dev/paused"),
        status_patch(200, |s| {
            assert_eq!(s["mode"], "Paused");
            assert_condition(s, "Paused", "True", "Annotated");
            assert_condition(s, "Acting", "False", "Paused");
        }),
    ]]);
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn a_missing_target_is_not_ready_and_not_a_crash() {
    let p = policy(PolicyMode::Enforce);
    let h = led(vec![vec![
        get(POLICIES, policy_list(vec![&p])),
        ex("GET", DEPLOY, "", 404, not_found("deployments", "checkout")),
        event(true, "TargetNotFound", "deployment shop/checkout not found"),
        status_patch(200, |s| {
            assert_condition(s, "Ready", "False", "TargetNotFound");
            assert_condition(s, "Acting", "False", "NotReady");
        }),
    ]]);
    assert_eq!(h.reconcile(&p).await, Action::requeue(Duration::from_secs(300)));
    h.finish().await;
}

#[tokio::test]
async fn an_invalid_spec_lists_every_problem_and_acts_on_nothing() {
    let mut p = policy(PolicyMode::Enforce);
    p.spec.min_replicas = Some(5);
    p.spec.max_replicas = Some(3);
    p.spec.quantile = Some(0.7);
    p.spec.cooldown = Some("soon".into());
    let h = led(vec![vec![
        event(true, "InvalidSpec", "spec.minReplicas"),
        status_patch(200, |s| {
            assert_condition(s, "Ready", "False", "InvalidSpec");
            let m = condition(s, "Ready")["message"].as_str().unwrap().to_owned();
            for want in ["3 problem(s)", "spec.minReplicas", "spec.quantile", "spec.cooldown", "\"soon\""] {
                assert!(m.contains(want), "{want} missing from {m}");
            }
        }),
    ]]);
    assert_eq!(h.reconcile(&p).await, Action::await_change(), "waits for the spec to change");
    h.finish().await;
}

#[tokio::test]
async fn an_unhealthy_forecast_falls_back_to_reactive_scaling_and_says_so() {
    // The last day runs at three times the level the model learned:
    // yesterday's forecast misses badly, and the load is high now.
    let p = policy(PolicyMode::DryRun);
    let h = harness(
        [
            reads(&p, 2),
            vec![
                event(false, "ScaleRecommended", "forecast degraded"),
                event(false, "DryRunRecorded", ""),
                status_patch(200, |s| {
                    assert_condition(s, "ForecastHealthy", "False", "Degraded");
                    let m = condition(s, "ForecastHealthy")["message"].as_str().unwrap();
                    assert!(m.contains("reactive"), "{m}");
                    assert!(s["lastDecision"]["reason"].as_str().unwrap().contains("forecast degraded"), "{s}");
                }),
            ],
        ]
        .into_iter()
        .flatten()
        .collect(),
        cpu_history(NOW - 86_400_000, 3.0),
        Leadership::always(),
    );
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn a_conflict_on_the_status_reads_it_again_and_retries() {
    let p = policy(PolicyMode::DryRun);
    let mut fresh = p.clone();
    fresh.status = Some(Default::default());
    let h = led(vec![
        reads(&p, 2),
        vec![
            event(false, "ScaleRecommended", "scale_to 3"),
            event(false, "DryRunRecorded", "scale_to 3"),
            status_patch(409, |_| {}),
            get(STATUS, serde_json::to_value(&fresh).unwrap()),
            status_patch(200, |s| {
                assert_eq!(s["recommendedReplicas"], 3);
                assert_condition(s, "Ready", "True", "Evaluated");
            }),
        ],
    ]);
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn a_second_policy_on_the_same_workload_is_refused() {
    let mut first = policy(PolicyMode::Enforce);
    first.metadata.name = Some("checkout-first".into());
    first.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-01T10:00:00Z".parse().unwrap()));
    let p = policy(PolicyMode::Enforce);
    let h = led(vec![vec![
        get(POLICIES, policy_list(vec![&p, &first])),
        event(true, "Conflict", "CapacityPolicy checkout-first already manages deployment checkout"),
        status_patch(200, |s| assert_condition(s, "Ready", "False", "Conflict")),
    ]]);
    h.reconcile(&p).await;
    h.finish().await;
}

#[tokio::test]
async fn a_replica_without_the_lease_sends_nothing() {
    let (_tx, rx) = watch::channel(false);
    let h = harness(vec![], history(), Leadership::from_channel(rx));
    let action = h.reconcile(&policy(PolicyMode::Enforce)).await;
    assert_eq!(action, Action::requeue(headroom_operator::controller::FOLLOWER_POLL));
    h.finish().await;
}

#[tokio::test]
async fn losing_the_lease_mid_reconcile_stops_before_acting() {
    let (tx, rx) = watch::channel(true);
    let lost = Arc::new(AtomicBool::new(false));
    let seen = lost.clone();
    let mut read = get(DEPLOY, deployment(2));
    read.hook = Some(Box::new(move || {
        tx.send_replace(false);
        seen.store(true, Ordering::SeqCst);
    }));
    let p = policy(PolicyMode::Enforce);
    let h = harness(vec![get(POLICIES, policy_list(vec![&p])), read], history(), Leadership::from_channel(rx));
    let action = h.reconcile(&p).await;
    assert!(lost.load(Ordering::SeqCst));
    assert_eq!(action, Action::requeue(headroom_operator::controller::FOLLOWER_POLL), "no scale, no status");
    h.finish().await;
}

#[tokio::test]
async fn resuming_a_paused_policy_says_so_once() {
    let mut p = policy(PolicyMode::DryRun);
    p.metadata.annotations = Some(BTreeMap::from([("headroom.dev/paused".to_string(), "true".to_string())]));
    let h = led(vec![vec![
        event(false, "Paused", "no action"),
        status_patch(200, |s| assert_condition(s, "Paused", "True", "Annotated")),
        // Still paused: no second event.
        status_patch(200, |s| assert_condition(s, "Paused", "True", "Annotated")),
    ]]);
    let mut paused = p.clone();
    let mut draft = headroom_operator::status::Draft::new(None, Some(3), NOW);
    draft.paused();
    h.reconcile(&p).await;
    paused.status = Some(draft.status.clone());
    h.reconcile(&paused).await;
    h.finish().await;

    // The annotation removed: one Resumed event, then an ordinary evaluation.
    let mut resumed = policy(PolicyMode::DryRun);
    resumed.status = Some(draft.status);
    let h = led(vec![vec![
        event(false, "Resumed", "evaluating again"),
        get(POLICIES, policy_list(vec![&resumed])),
        get(DEPLOY, deployment(2)),
        event(false, "ScaleRecommended", "scale_to 3"),
        event(false, "DryRunRecorded", "scale_to 3"),
        status_patch(200, |s| {
            assert_eq!(s["mode"], "DryRun");
            let c = condition(s, "Paused");
            assert_eq!(c["status"], "False");
        }),
    ]]);
    h.reconcile(&resumed).await;
    h.finish().await;
}

/// The audit log is on the operator's volume: a restarted operator (a new
/// context on the same state directory) still sees the action it took, so
/// the cooldown holds across the restart.
#[tokio::test]
async fn cooldowns_survive_a_restart_of_the_operator() {
    let p = policy(PolicyMode::Enforce);
    let state = tempfile::tempdir().unwrap();
    let first = harness_in(
        &state,
        || NOW,
        [
            reads(&p, 2),
            observed(2, vec![]),
            vec![
                get(SCALE, scale(2)),
                get(HPAS, hpas(vec![])),
                ex("PATCH", SCALE, "fieldManager=headroom", 200, scale(3)),
                event(false, "Scaling", "scale_to 3"),
                event(false, "ActionSucceeded", "scale_to 3"),
                get(HPAS, hpas(vec![])),
                status_patch(200, |_| {}),
            ],
        ]
        .into_iter()
        .flatten()
        .collect(),
        history(),
    );
    first.reconcile(&p).await;
    first.finish().await;

    // Five minutes later, after a restart: the load grew again and 3 replicas
    // are not enough, but the last action was 5 minutes ago (cooldown 30m).
    let second = harness_in(
        &state,
        || NOW + 300_000,
        [
            reads(&p, 3),
            observed(3, vec![]),
            vec![
                event(true, "ActionBlocked", "cooldown"),
                get(HPAS, hpas(vec![])),
                status_patch(200, |s| {
                    assert_eq!(s["currentReplicas"], 3);
                    assert!(s["lastDecision"]["reason"].as_str().unwrap().contains("cooldown"), "{s}");
                }),
            ],
        ]
        .into_iter()
        .flatten()
        .collect(),
        cpu_history(i64::MIN, 1.5),
    );
    second.reconcile(&p).await;
    second.finish().await;
    let log = std::fs::read_to_string(state.path().join("audit/shop/checkout.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"succeeded\"")).count(), 1, "one action in all:\n{log}");
}

#[tokio::test]
async fn deleting_a_policy_puts_back_the_hpa_floor_it_raised() {
    let mut p = policy(PolicyMode::Enforce);
    p.metadata.finalizers = Some(vec![FINALIZER.into()]);
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-12-01T09:00:00Z".parse().unwrap()));
    let h = led(vec![vec![
        get(SCALE, scale(3)),
        get(HPAS, hpas(vec![hpa(3, Some(2))])),
        get(SCALE, scale(3)),
        get(HPAS, hpas(vec![hpa(3, Some(2))])),
        ex("PATCH", HPA, "fieldManager=headroom", 200, hpa(2, None)).check(|b| {
            assert_eq!(b["spec"], json!({"minReplicas": 2}));
            assert_eq!(b["metadata"]["annotations"]["headroom.io/original-min-replicas"], Value::Null);
        }),
        event(false, "HpaRestored", "restore minReplicas"),
        ex("PATCH", POLICY, "", 200, serde_json::to_value(policy(PolicyMode::Enforce)).unwrap())
            .check(|b| assert_eq!(b["metadata"]["finalizers"], json!([]))),
    ]]);
    let action = headroom_operator::controller::cleanup(Arc::new(p), h.ctx.clone()).await.expect("cleanup");
    assert_eq!(action, Action::await_change());
    h.finish().await;
}

fn harness_in(
    state: &tempfile::TempDir,
    clock: fn() -> i64,
    script: Vec<Exchange>,
    history: Vec<SeriesData>,
) -> Harness {
    let (client, task) = server(script);
    let defaults = Defaults { model: "snaive-daily".into(), ..Defaults::default() };
    let leader = Leadership::always();
    let mut ctx = Context::new(client, defaults, state.path().to_owned(), recorded(history), leader, None);
    ctx.clock = clock;
    Harness { ctx: Arc::new(ctx), task, _state: tempfile::tempdir().unwrap() }
}

/// A workload with six hours of history: the shipped LSTM needs more than
/// its input window, so a baseline forecasts and the status says why.
#[tokio::test]
async fn a_cold_start_with_little_history_says_which_baseline_forecast_and_why() {
    let p = policy(PolicyMode::DryRun);
    let recent: Vec<SeriesData> = history()
        .into_iter()
        .map(|s| {
            let keep: Vec<(i64, f64)> =
                s.ts.iter().zip(&s.values).filter(|(t, _)| **t > NOW - 6 * 3_600_000).map(|(t, v)| (*t, *v)).collect();
            SeriesData::from_points(s.key.clone(), &keep)
        })
        .collect();
    let (client, task) = server(vec![
        get(POLICIES, policy_list(vec![&p])),
        get(DEPLOY, deployment(2)),
        status_patch(200, |s| {
            let fallback = s["fallback"].as_str().unwrap_or_else(|| panic!("no fallback in {s}"));
            assert!(fallback.contains("instead of lstm"), "{fallback}");
            assert_condition(s, "Ready", "True", "Evaluated");
            assert!(fallback.contains("lstm needs at least"), "{fallback}");
            assert_eq!(s["predictedPeak"]["model"], "last (instead of lstm)", "{s}");
        }),
    ]);
    let state = tempfile::tempdir().unwrap();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    let defaults = Defaults { model: "lstm".into(), model_dir: models, ..Defaults::default() };
    let mut ctx = Context::new(client, defaults, state.path().to_owned(), recorded(recent), Leadership::always(), None);
    ctx.clock = || NOW;
    let h = Harness { ctx: Arc::new(ctx), task, _state: state };
    h.reconcile(&p).await;
    h.finish().await;
}
