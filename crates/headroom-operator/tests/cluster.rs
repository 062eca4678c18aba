//! The operator against a real cluster (kind, k3d, minikube…): ignored by
//! default because this machine has no API server. Run it with
//!
//! ```text
//! kind create cluster
//! cargo test --release -p headroom-operator --test cluster -- --ignored --nocapture
//! ```
//!
//! It applies the CRD, creates a namespace with a Deployment (the `pause`
//! image, 2 replicas, 1 CPU limit each), runs the operator in this process
//! (leader election on a Lease in that namespace) with recorded history
//! whose daily peak is three hours ahead, and checks what a user would see:
//! a DryRun recommendation in the status and an Event; after `mode:
//! Enforce`, the Deployment scaled; after the pause annotation, Paused. The
//! namespace is deleted at the end (the CRD is left).

mod common;

use common::Recorded;
use std::sync::Arc;
use std::time::{Duration, Instant};

use headroom_collect::Source;
use headroom_core::{SeriesData, SeriesKey};
use headroom_operator::crd::{CapacityPolicy, CapacityPolicySpec, PolicyMode, WorkloadKind};
use headroom_operator::policy::Defaults;
use headroom_operator::{LeaseOptions, Options, Sources};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Eight days of CPU ending now: 1.0 core, with a daily peak of 1.8 three hours from now.
fn history(entity: &str) -> Vec<SeriesData> {
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let step = 300_000;
    let end = now - now.rem_euclid(step);
    let peak = (end + 3 * 3_600_000).rem_euclid(86_400_000);
    let points: Vec<(i64, f64)> = (0..=(8 * 288))
        .map(|i| {
            let ts = end - (8 * 288 - i) * step;
            let hours = ((ts - peak).rem_euclid(86_400_000) as f64 / 3_600_000.0 + 12.0).rem_euclid(24.0) - 12.0;
            (ts, 1.0 + 0.8 * (-(hours / 2.0).powi(2)).exp())
        })
        .collect();
    vec![SeriesData::from_points(SeriesKey::new(entity, "cpu").unwrap(), &points)]
}

async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG (kind, k3d)"]
async fn the_operator_explains_then_acts_on_a_real_cluster() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.expect("a cluster from KUBECONFIG or ~/.kube/config");
    let ns = format!("headroom-e2e-{}", std::process::id());

    // The CRD, as deploy/crd.yaml has it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply("headroom-e2e").force();
    crds.patch("capacitypolicies.headroom.dev", &apply, &Patch::Apply(CapacityPolicy::crd()))
        .await
        .expect("CRD applied");
    wait_for("the CRD to be established", Duration::from_secs(60), async || {
        let crd = crds.get("capacitypolicies.headroom.dev").await.ok()?;
        let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.expect("namespace");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}},
                 "template": {"metadata": {"labels": {"app": "checkout"}},
                              "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                                       "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1"}}}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.expect("deployment");

    let policies: Api<CapacityPolicy> = Api::namespaced(client.clone(), &ns);
    let spec = CapacityPolicySpec {
        min_replicas: Some(2),
        max_replicas: Some(6),
        interval: Some("10s".into()),
        ..CapacityPolicySpec::new(WorkloadKind::Deployment, "checkout", "http://prometheus.monitoring.svc:9090")
    };
    policies.create(&PostParams::default(), &CapacityPolicy::new("checkout", spec)).await.expect("policy");

    let entity = format!("k8s/{ns}/deployment/checkout");
    let sources: Sources = Arc::new(move |_| Ok(Box::new(Recorded(history(&entity))) as Box<dyn Source>));
    let state = tempfile::tempdir().unwrap();
    let options = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state.path().to_owned(),
        defaults: Defaults { model: "snaive-daily".into(), ..Defaults::default() },
        namespace: Some(ns.clone()),
        lease: Some(LeaseOptions {
            namespace: ns.clone(),
            name: "headroom-operator".into(),
            identity: "e2e".into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }),
        instance: Some("e2e".into()),
    };
    let stop = CancellationToken::new();
    let operator = tokio::spawn(headroom_operator::run_with(client.clone(), options, sources, stop.clone()));

    // DryRun: the recommendation and its explanation, nothing scaled.
    let status = wait_for("a DryRun recommendation", Duration::from_secs(90), async || {
        let s = policies.get_status("checkout").await.ok()?.status?;
        (s.recommended_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.mode.as_deref(), Some("DryRun"));
    assert!(status.last_decision.as_ref().unwrap().reason.contains("p90"), "{status:?}");
    assert_eq!(deployments.get("checkout").await.unwrap().spec.unwrap().replicas, Some(2));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let listed = events.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.iter().any(|e| e.reason.as_deref() == Some("ScaleRecommended")), "{:?}", listed.items);

    // Enforce: the Deployment is scaled.
    let enforce = json!({"spec": {"mode": PolicyMode::Enforce}});
    policies.patch("checkout", &PatchParams::default(), &Patch::Merge(&enforce)).await.unwrap();
    wait_for("the scale-out", Duration::from_secs(90), async || {
        let d = deployments.get("checkout").await.ok()?;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;

    // Paused: the status says so.
    let pause = json!({"metadata": {"annotations": {"headroom.dev/paused": "true"}}});
    policies.patch("checkout", &PatchParams::default(), &Patch::Merge(&pause)).await.unwrap();
    wait_for("Paused", Duration::from_secs(60), async || {
        let s = policies.get_status("checkout").await.ok()?.status?;
        (s.mode.as_deref() == Some("Paused")).then_some(())
    })
    .await;

    stop.cancel();
    operator.await.unwrap().unwrap();
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}
