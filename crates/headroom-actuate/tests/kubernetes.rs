//! The Kubernetes actuator against a scripted API server: a `kube::Client`
//! on a `tower_test` mock whose verifier asserts each request's method,
//! path, query and JSON body, in order, and answers with realistic API
//! objects and `Status` errors. Any request beyond the script fails the test.

use std::time::{Duration, Instant};

use headroom_actuate::kubernetes::{KubernetesActuator, ORIGINAL_MIN_ANNOTATION, RESTARTED_AT_ANNOTATION, Retry};
use headroom_actuate::{Actuator, Error};
use headroom_core::{Action, Decision};
use headroom_remediate::config::{Platform, Target};
use headroom_testing::fixtures;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";
const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout/scale";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers";
const HPA: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/checkout";
const PATCH_QUERY: &str = "fieldManager=headroom";
const DRY_RUN_QUERY: &str = "dryRun=All&fieldManager=headroom";

// ---------- the scripted API server ----------

/// What the verifier expects of a request body.
enum Expect {
    /// No body (GET).
    Empty,
    /// Exactly this JSON.
    Json(Value),
    /// Checked by a function (e.g. a timestamp).
    Check(fn(&Value)),
}

/// One request the server expects, and its answer.
struct Exchange {
    method: &'static str,
    path: String,
    query: &'static str,
    body: Expect,
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    reply: Reply,
}

enum Reply {
    Json(Value),
    Text(&'static str),
}

fn get(path: &str, status: u16, reply: Value) -> Exchange {
    Exchange {
        method: "GET",
        path: path.into(),
        query: "",
        body: Expect::Empty,
        status,
        headers: vec![],
        reply: Reply::Json(reply),
    }
}

fn patch(path: &str, query: &'static str, body: Value, status: u16, reply: Value) -> Exchange {
    Exchange {
        method: "PATCH",
        path: path.into(),
        query,
        body: Expect::Json(body),
        status,
        headers: vec![],
        reply: Reply::Json(reply),
    }
}

/// A client on a mock API server that plays `script` in order. The returned
/// task ends once the client is dropped; it panics (failing the test) on a
/// request that differs from the script or comes after it.
fn server(script: Vec<Exchange>) -> (Client, JoinHandle<()>) {
    // The mock needs no TLS, but install the one provider in case anything builds a connector.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        for (i, ex) in script.into_iter().enumerate() {
            let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("request {i} ({} {}) never came", ex.method, ex.path))
                .unwrap_or_else(|| panic!("the client went away before request {i} ({} {})", ex.method, ex.path));
            let what = format!("request {i}: {} {}", request.method(), request.uri());
            assert_eq!(request.method().as_str(), ex.method, "{what}");
            assert_eq!(request.uri().path(), ex.path, "{what}");
            // kube builds queries as `path?&a=b` (an empty first pair); the API server ignores it, so compare the pairs.
            let query: Vec<&str> = request.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()).collect();
            assert_eq!(query.join("&"), ex.query, "{what}");
            if ex.method == "PATCH" {
                let ctype = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                assert_eq!(ctype, "application/merge-patch+json", "{what}");
            }
            let bytes = request.into_body().collect_bytes().await.expect("request body");
            match ex.body {
                Expect::Empty => assert!(bytes.is_empty(), "{what}: unexpected body {bytes:?}"),
                Expect::Json(want) => {
                    let got: Value = serde_json::from_slice(&bytes).expect("a JSON body");
                    assert_eq!(got, want, "{what}");
                }
                Expect::Check(check) => check(&serde_json::from_slice(&bytes).expect("a JSON body")),
            }
            let mut response = Response::builder().status(ex.status);
            for (k, v) in ex.headers {
                response = response.header(k, v);
            }
            let (ctype, bytes) = match ex.reply {
                Reply::Json(v) => ("application/json", serde_json::to_vec(&v).unwrap()),
                Reply::Text(t) => ("text/plain; charset=utf-8", t.as_bytes().to_vec()),
            };
            send.send_response(response.header("content-type", ctype).body(Body::from(bytes)).unwrap());
        }
        match tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => panic!("unexpected request {} {}", request.method(), request.uri()),
            Err(_) => panic!("the client was never dropped"),
        }
    });
    (Client::new(service, "default"), task)
}

/// Drops the actuator (and with it the client) and waits for the server's verdict.
async fn finish(actuator: KubernetesActuator, task: JoinHandle<()>) {
    drop(actuator);
    tokio::time::timeout(Duration::from_secs(15), task).await.expect("server task ended").expect("server verified");
}

// ---------- realistic API objects ----------

fn meta(name: &str, rv: &str) -> Value {
    json!({
        "name": name,
        "namespace": "shop",
        "uid": "3f0c9a52-6a43-4e0b-9d0e-5b1a2c3d4e5f",
        "resourceVersion": rv,
        "creationTimestamp": "2025-03-01T08:00:00Z"
    })
}

fn scale(replicas: u32, rv: &str) -> Value {
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta("checkout", rv),
        "spec": { "replicas": replicas },
        "status": { "replicas": replicas, "selector": "app=checkout" }
    })
}

fn hpa(min: u32, max: u32, original: Option<&str>, rv: &str) -> Value {
    let mut m = meta("checkout", rv);
    if let Some(o) = original {
        m["annotations"] = json!({ ORIGINAL_MIN_ANNOTATION: o });
    }
    json!({
        "metadata": m,
        "spec": {
            "scaleTargetRef": { "kind": "Deployment", "name": "checkout", "apiVersion": "apps/v1" },
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } }
            }]
        },
        "status": {
            "currentReplicas": min,
            "desiredReplicas": min,
            "currentMetrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "current": { "averageUtilization": 41, "averageValue": "205m" } }
            }],
            "conditions": [{
                "type": "AbleToScale", "status": "True", "lastTransitionTime": "2025-03-01T08:01:00Z",
                "reason": "ReadyForNewScale", "message": "recommended size matches current size"
            }]
        }
    })
}

fn hpa_list(items: Vec<Value>) -> Value {
    // A decoy: an HPA with the same name for a StatefulSet must not count.
    let mut decoy = hpa(1, 3, None, "90");
    decoy["metadata"]["name"] = json!("checkout-cache");
    decoy["spec"]["scaleTargetRef"] = json!({ "kind": "StatefulSet", "name": "checkout", "apiVersion": "apps/v1" });
    let mut all = vec![decoy];
    all.extend(items);
    json!({
        "kind": "HorizontalPodAutoscalerList",
        "apiVersion": "autoscaling/v2",
        "metadata": { "resourceVersion": "1000" },
        "items": all
    })
}

fn deployment(replicas: u32, ready: u32, updated: u32, restarted_at: Option<&str>) -> Value {
    let mut template_meta = json!({ "labels": { "app": "checkout" } });
    if let Some(at) = restarted_at {
        template_meta["annotations"] = json!({ RESTARTED_AT_ANNOTATION: at });
    }
    let mut m = meta("checkout", "512");
    m["generation"] = json!(7);
    json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": m,
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "checkout" } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } },
            "template": {
                "metadata": template_meta,
                "spec": { "containers": [{ "name": "checkout", "image": "registry.example/checkout:1.4.2" }] }
            }
        },
        "status": {
            "observedGeneration": 7,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{
                "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability."
            }]
        }
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": { "name": "checkout", "group": "apps", "kind": "deployments" },
        "code": code
    })
}

fn target() -> Target {
    let mut t = Target::new("checkout", Platform::Kubernetes, "k8s/shop/deployment/checkout", "cpu");
    t.min_replicas = 1;
    t.max_replicas = 12;
    t
}

fn decision(id: &str, action: Action) -> Decision {
    fixtures::decision("checkout", "k8s/shop/deployment/checkout", action)
        .risk("saturation")
        .reason("test")
        .id(id)
        .build()
}

fn scale_to(id: &str, replicas: u32) -> Decision {
    decision(id, Action::ScaleTo { replicas })
}

fn fast() -> Retry {
    Retry { base: Duration::from_millis(5), ..Retry::default() }
}

// ---------- tests ----------

#[tokio::test]
async fn scales_a_deployment_through_its_scale_subresource() {
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "501")),
    ]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d1", 5)).await.expect("scaled");
    assert!(applied.changed);
    assert!(applied.detail.contains("from 3 to 5"), "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn an_hpa_gets_its_min_raised_and_the_scale_is_never_patched() {
    let body = json!({
        "metadata": { "resourceVersion": "777", "annotations": { ORIGINAL_MIN_ANNOTATION: "2" } },
        "spec": { "minReplicas": 6 }
    });
    let (client, task) = server(vec![
        get(SCALE, 200, scale(4, "500")),
        get(HPAS, 200, hpa_list(vec![hpa(2, 10, None, "777")])),
        patch(HPA, PATCH_QUERY, body, 200, hpa(6, 10, Some("2"), "778")),
    ]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d1", 6)).await.expect("HPA raised");
    assert!(applied.changed);
    assert!(applied.detail.contains("minReplicas") && applied.detail.contains("from 2 to 6"), "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn scaling_back_restores_the_hpa_min_and_removes_the_annotation() {
    let body = json!({
        "metadata": { "resourceVersion": "778", "annotations": { ORIGINAL_MIN_ANNOTATION: null } },
        "spec": { "minReplicas": 2 }
    });
    let (client, task) = server(vec![
        get(SCALE, 200, scale(6, "600")),
        get(HPAS, 200, hpa_list(vec![hpa(6, 10, Some("2"), "778")])),
        patch(HPA, PATCH_QUERY, body, 200, hpa(2, 10, None, "779")),
    ]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d2", 2)).await.expect("HPA restored");
    assert!(applied.changed);
    assert!(applied.detail.contains("restore"), "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn an_hpa_already_at_the_asked_min_gets_no_patch() {
    let (client, task) =
        server(vec![get(SCALE, 200, scale(6, "600")), get(HPAS, 200, hpa_list(vec![hpa(6, 10, Some("2"), "778")]))]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d3", 6)).await.expect("nothing to do");
    assert!(!applied.changed, "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn restart_patches_the_pod_template_annotation() {
    fn check(body: &Value) {
        let at = body
            .pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {RESTARTED_AT_ANNOTATION} in {body}"));
        // RFC 3339, UTC, to the second: 2025-03-01T08:00:00Z
        assert_eq!(at.len(), 20, "{at}");
        assert!(at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only spec is patched: {body}");
    }
    let (client, task) = server(vec![Exchange {
        method: "PATCH",
        path: DEPLOY.into(),
        query: PATCH_QUERY,
        body: Expect::Check(check),
        status: 200,
        headers: vec![],
        reply: Reply::Json(deployment(3, 3, 1, Some("2025-03-01T09:00:00Z"))),
    }]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &decision("r1", Action::Restart)).await.expect("restarted");
    assert!(applied.changed);
    assert!(applied.detail.contains("RollingUpdate"), "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn restarting_a_statefulset_patches_the_statefulset() {
    let path = "/apis/apps/v1/namespaces/shop/statefulsets/db";
    let (client, task) = server(vec![Exchange {
        method: "PATCH",
        path: path.into(),
        query: PATCH_QUERY,
        body: Expect::Check(|b| assert!(b.pointer("/spec/template/metadata/annotations").is_some(), "{b}")),
        status: 200,
        headers: vec![],
        reply: Reply::Json(json!({
            "kind": "StatefulSet", "apiVersion": "apps/v1", "metadata": meta("db", "44"),
            "spec": { "updateStrategy": { "type": "RollingUpdate" } }
        })),
    }]);
    let k = KubernetesActuator::new(client);
    let mut t = target();
    t.entity = "k8s/shop/statefulset/db".into();
    let applied = k.apply(&t, &decision("r2", Action::Restart)).await.expect("restarted");
    assert!(applied.changed);
    finish(k, task).await;
}

#[tokio::test]
async fn plan_sends_the_same_patch_as_a_server_dry_run() {
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, DRY_RUN_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "500")),
        Exchange {
            method: "PATCH",
            path: DEPLOY.into(),
            query: DRY_RUN_QUERY,
            body: Expect::Check(|b| assert!(b.pointer("/spec/template/metadata/annotations").is_some(), "{b}")),
            status: 200,
            headers: vec![],
            reply: Reply::Json(deployment(3, 3, 3, Some("2025-03-01T09:00:00Z"))),
        },
    ]);
    let k = KubernetesActuator::new(client);
    let plan = k.plan(&target(), &scale_to("d1", 5)).await.expect("planned");
    assert!(plan.starts_with("would set spec.replicas") && plan.contains("from 3 to 5"), "{plan}");
    assert!(plan.contains("dry run accepted"), "{plan}");
    let plan = k.plan(&target(), &decision("r1", Action::Restart)).await.expect("planned");
    assert!(plan.contains("would restart") && plan.contains("RollingUpdate"), "{plan}");
    finish(k, task).await;
}

#[tokio::test]
async fn a_conflict_is_read_again_and_retried() {
    let conflict = status(
        409,
        "Conflict",
        "Operation cannot be fulfilled on deployments.apps \"checkout\": the object has been modified; please apply your changes to the latest version and try again",
    );
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 409, conflict),
        get(SCALE, 200, scale(4, "503")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "504")),
    ]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d1", 5)).await.expect("scaled after a conflict");
    assert!(applied.detail.contains("from 4 to 5"), "the second try uses the fresh read: {}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn conflicts_are_retried_three_times_then_reported() {
    let conflict = || status(409, "Conflict", "the object has been modified");
    let mut script = vec![];
    for _ in 0..4 {
        script.push(get(SCALE, 200, scale(3, "500")));
        script.push(get(HPAS, 200, hpa_list(vec![])));
        script.push(patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 409, conflict()));
    }
    let (client, task) = server(script);
    let k = KubernetesActuator::new(client);
    let err = k.apply(&target(), &scale_to("d1", 5)).await.expect_err("gave up");
    assert!(err.to_string().contains("409"), "{err}");
    finish(k, task).await;
}

#[tokio::test]
async fn not_found_names_the_object() {
    let (client, task) =
        server(vec![get(SCALE, 404, status(404, "NotFound", "deployments.apps \"checkout\" not found"))]);
    let k = KubernetesActuator::new(client);
    let err = k.apply(&target(), &scale_to("d1", 5)).await.expect_err("not found");
    assert!(matches!(err, Error::Actuator { .. }));
    let text = err.to_string();
    assert!(text.contains("deployment \"checkout\" in namespace \"shop\" not found"), "{text}");
    assert!(text.contains(SCALE), "{text}");
    finish(k, task).await;
}

#[tokio::test]
async fn throttling_honours_retry_after_then_succeeds() {
    let (client, task) = server(vec![
        Exchange {
            method: "GET",
            path: SCALE.into(),
            query: "",
            body: Expect::Empty,
            status: 429,
            headers: vec![("retry-after", "1")],
            // What the API server's max-in-flight filter really sends: plain text.
            reply: Reply::Text("Too many requests, please try again later.\n"),
        },
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "501")),
    ]);
    let k = KubernetesActuator::new(client).with_retry(fast());
    let started = Instant::now();
    let applied = k.apply(&target(), &scale_to("d1", 5)).await.expect("scaled after a 429");
    assert!(applied.changed);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After 1 honoured: {:?}", started.elapsed());
    finish(k, task).await;
}

#[tokio::test]
async fn server_errors_back_off_and_retry() {
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 503, status(503, "ServiceUnavailable", "the server is currently unable to handle the request")),
        get(HPAS, 500, status(500, "InternalError", "etcdserver: request timed out")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "501")),
    ]);
    let k = KubernetesActuator::new(client).with_retry(fast());
    assert!(k.apply(&target(), &scale_to("d1", 5)).await.expect("scaled").changed);
    finish(k, task).await;
}

#[tokio::test]
async fn the_same_decision_twice_patches_once() {
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "501")),
    ]);
    let k = KubernetesActuator::new(client);
    assert!(k.apply(&target(), &scale_to("d1", 5)).await.expect("first").changed);
    let again = k.apply(&target(), &scale_to("d1", 5)).await.expect("second");
    assert!(!again.changed, "{}", again.detail);
    assert!(again.detail.contains("already applied"), "{}", again.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn scaling_to_the_current_count_sends_no_patch() {
    let (client, task) = server(vec![get(SCALE, 200, scale(5, "500")), get(HPAS, 200, hpa_list(vec![]))]);
    let k = KubernetesActuator::new(client);
    let applied = k.apply(&target(), &scale_to("d1", 5)).await.expect("nothing to do");
    assert!(!applied.changed, "{}", applied.detail);
    finish(k, task).await;
}

#[tokio::test]
async fn changes_to_one_workload_never_interleave() {
    // Two decisions at once: the second reads only after the first has patched.
    let (client, task) = server(vec![
        get(SCALE, 200, scale(3, "500")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 5 } }), 200, scale(5, "501")),
        get(SCALE, 200, scale(5, "501")),
        get(HPAS, 200, hpa_list(vec![])),
        patch(SCALE, PATCH_QUERY, json!({ "spec": { "replicas": 6 } }), 200, scale(6, "502")),
    ]);
    let k = KubernetesActuator::new(client);
    let t = target();
    let (a, b) = (scale_to("d1", 5), scale_to("d2", 6));
    let (ra, rb) = tokio::join!(k.apply(&t, &a), k.apply(&t, &b));
    assert!(ra.expect("first").changed && rb.expect("second").changed);
    finish(k, task).await;
}

#[tokio::test]
async fn observe_reads_replicas_rollout_and_hpa_ownership() {
    let (client, task) = server(vec![
        get(SCALE, 200, scale(4, "500")),
        get(HPAS, 200, hpa_list(vec![hpa(4, 10, Some("2"), "777")])),
        get(DEPLOY, 200, deployment(4, 3, 4, None)),
    ]);
    let k = KubernetesActuator::new(client);
    let seen = k.observe(&target()).await.expect("observed");
    assert_eq!(seen.replicas, Some(4));
    assert_eq!(seen.state.as_deref(), Some("3/4 ready, 4 updated, 3 available, rolling out"));
    let detail = seen.detail.unwrap_or_default();
    assert!(detail.contains("HPA checkout owns scaling") && detail.contains("from its own 2"), "{detail}");
    assert!(!detail.contains("checkout-cache"), "the StatefulSet's HPA is not this one's: {detail}");
    finish(k, task).await;
}

#[tokio::test]
async fn a_bad_entity_is_refused_before_any_request() {
    let (client, task) = server(vec![]);
    let k = KubernetesActuator::new(client);
    let mut t = target();
    t.entity = "k8s/shop/daemonset/agent".into();
    let err = k.apply(&t, &scale_to("d1", 5)).await.expect_err("refused");
    assert!(err.to_string().contains("daemonset"), "{err}");
    finish(k, task).await;
}
