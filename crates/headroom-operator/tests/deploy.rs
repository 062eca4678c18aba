//! `deploy/`, the Dockerfile and the Grafana dashboard: what a user applies
//! must parse as the Kubernetes objects it claims to be, grant exactly the
//! access the operator uses, run locked down, and agree with the code (the
//! CRD is generated from the Rust type; the dashboard names only the
//! operator's metrics).
//!
//! `HEADROOM_BLESS=1` rewrites `deploy/crd.yaml` from the Rust type.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use headroom_operator::crd::{CapacityPolicy, crd_yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Probe, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const NAMESPACE: &str = "headroom-system";
const SERVICE_ACCOUNT: &str = "headroom-operator";
const LEASE: &str = "headroom-operator";

/// The operator's own metrics, as the dashboard may use them.
const OPERATOR_METRICS: &[&str] = &[
    "headroom_operator_reconciliations_total",
    "headroom_operator_reconcile_duration_seconds",
    "headroom_operator_decisions_total",
    "headroom_operator_actions_total",
    "headroom_operator_leader",
    "headroom_operator_policy_condition",
    "headroom_operator_predicted_peak_ratio",
    "headroom_operator_current_replicas",
    "headroom_operator_recommended_replicas",
];
/// Of those, the histograms (exposed as `_bucket`, `_sum`, `_count`).
const OPERATOR_HISTOGRAMS: &[&str] = &["headroom_operator_reconcile_duration_seconds"];

// ---------------------------------------------------------------- helpers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// `path` relative to the repository, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", shown(path)))
}

/// Every YAML document of `path` (empty documents skipped).
fn documents(path: &Path) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&read(path)).unwrap_or_else(|e| panic!("{}: not YAML: {e}", shown(path)));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", shown(dir))) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml" || n == "kustomization.yml")
}

/// The manifests under deploy/: every YAML file but kustomizations and the dashboard.
fn manifests() -> Vec<PathBuf> {
    let grafana = deploy().join("grafana");
    yaml_files(&deploy()).into_iter().filter(|p| !is_kustomization(p) && !p.starts_with(&grafana)).collect()
}

/// The files a kustomization directory applies, following directories; panics
/// on an entry that does not exist.
fn kustomize_files(dir: &Path) -> Vec<PathBuf> {
    let file = dir.join("kustomization.yaml");
    let k = documents(&file).pop().unwrap_or_else(|| panic!("{}: empty", shown(&file)));
    let mut out = Vec::new();
    for entry in k["resources"].as_array().unwrap_or_else(|| panic!("{}: no resources list", shown(&file))) {
        let name = entry.as_str().unwrap_or_else(|| panic!("{}: resource {entry} is not a path", shown(&file)));
        let path = dir.join(name);
        assert!(path.exists(), "{}: lists {name}, which does not exist", shown(&file));
        if path.is_dir() {
            assert!(
                path.join("kustomization.yaml").exists(),
                "{}: lists directory {name} without a kustomization.yaml",
                shown(&file)
            );
            out.extend(kustomize_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every document `kubectl apply -k dir` would send, with where it comes from.
fn kustomize_docs(dir: &Path) -> Vec<(String, Value)> {
    kustomize_files(dir)
        .iter()
        .flat_map(|p| {
            documents(p).into_iter().enumerate().map(move |(i, d)| (format!("{} (document {})", shown(p), i + 1), d))
        })
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// The one document of `kind` named `name` among `docs`, as its type.
fn one<T: DeserializeOwned + Serialize>(docs: &[(String, Value)], kind_: &str, name_: &str) -> T {
    let found: Vec<&(String, Value)> = docs.iter().filter(|(_, d)| kind(d) == kind_ && name(d) == name_).collect();
    assert_eq!(found.len(), 1, "exactly one {kind_} {name_:?} expected, found {}", found.len());
    typed(&found[0].1, &found[0].0)
}

/// `doc` as `T`; fails on fields `T` does not know (a misspelled field is
/// otherwise dropped silently, and the API server drops or refuses it).
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, at: &str) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{at}: not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&t).unwrap();
    let mut lost = Vec::new();
    lost_fields(doc, &back, "", &mut lost);
    assert!(
        lost.is_empty(),
        "{at}: fields {} does not know (misspelled or misplaced?): {lost:?}",
        std::any::type_name::<T>()
    );
    t
}

/// Paths of `original` that are missing or different in `back`.
fn lost_fields(original: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                match b.get(k) {
                    Some(bv) => lost_fields(v, bv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (v, bv)) in o.iter().zip(b).enumerate() {
                lost_fields(v, bv, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(o), Value::Number(b)) if o.as_f64() == b.as_f64() => {}
        (o, b) if o == b => {}
        (o, b) => out.push(format!("{path}: {o} read as {b}")),
    }
}

/// The value following `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn install() -> Vec<(String, Value)> {
    kustomize_docs(&deploy())
}

fn operator_pod() -> (Deployment, PodSpec, Container) {
    let d: Deployment = one(&install(), "Deployment", "headroom-operator");
    let pod = d.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    let c = pod.containers[0].clone();
    (d, pod, c)
}

fn forecast_example() -> Vec<(String, Value)> {
    let path = deploy().join("examples/forecast-cronjob.yaml");
    documents(&path).into_iter().map(|d| (shown(&path), d)).collect()
}

// ---------------------------------------------------------------- the CRD

#[test]
fn deploy_crd_yaml_is_generated_from_the_rust_type() {
    let path = deploy().join("crd.yaml");
    let generated = crd_yaml();
    if std::env::var("HEADROOM_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "deploy/crd.yaml differs from the CapacityPolicy type in crates/headroom-operator/src/crd.rs: \
         regenerate it with `headroom operator crd > deploy/crd.yaml` \
         (or `HEADROOM_BLESS=1 cargo nextest run --workspace --cargo-profile release -E 'test(deploy_crd_yaml)'`)"
    );
}

#[test]
fn the_crd_schema_is_structural() {
    let text = crd_yaml();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("the generated CRD parses");
    assert_eq!(crd.metadata.name.as_deref(), Some("capacitypolicies.headroom.dev"));
    let crd = serde_json::to_value(&crd).unwrap();
    let mut problems = Vec::new();
    for (i, v) in crd["spec"]["versions"].as_array().unwrap().iter().enumerate() {
        let root = &v["schema"]["openAPIV3Schema"];
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        assert_eq!(root["type"], "object", "{path}: the root is an object");
        if let Some(meta) = root["properties"].get("metadata") {
            let keys: BTreeSet<&str> = meta.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(
                keys.is_subset(&BTreeSet::from(["type", "description"])),
                "{path}.properties.metadata restricts more than name: {meta}"
            );
        }
        structural(root, &path, None, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "the CRD schema is not structural (the API server refuses it):\n{}",
        problems.join("\n")
    );
}

/// Kubernetes' structural-schema rules, on one node and below. `junctor` is the
/// enclosing `anyOf`/`oneOf`/`allOf`/`not`, if any.
fn structural(node: &Value, path: &str, junctor: Option<&str>, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: a schema must be an object, found {node}"));
        return;
    };
    for k in ["$ref", "definitions", "$defs"] {
        if obj.contains_key(k) {
            problems.push(format!("{path}: has `{k}` (references are not allowed: inline the schema)"));
        }
    }
    let escaped = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match (junctor, obj.get("type")) {
        (Some(j), _) => {
            for k in ["type", "properties", "additionalProperties", "description", "default", "nullable"] {
                if obj.contains_key(k) {
                    problems.push(format!("{path}: `{k}` inside `{j}` (only value validations may go there)"));
                }
            }
        }
        (None, Some(Value::String(t))) if !t.is_empty() => {}
        (None, Some(t)) => problems.push(format!("{path}: `type` must be one non-empty string, found {t}")),
        (None, None) if escaped => {}
        (None, None) => problems.push(format!("{path}: no `type`")),
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            structural(v, &format!("{path}.properties.{k}"), junctor, problems);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(v) = obj.get(k).filter(|v| v.is_object()) {
            structural(v, &format!("{path}.{k}"), junctor, problems);
        }
    }
    for j in ["anyOf", "oneOf", "allOf"] {
        for (i, branch) in obj.get(j).and_then(Value::as_array).into_iter().flatten().enumerate() {
            // The one exception: the int-or-string pattern `anyOf: [{type: integer}, {type: string}]`.
            let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                && j == "anyOf"
                && branch
                    .as_object()
                    .is_some_and(|b| b.len() == 1 && (b["type"] == "integer" || b["type"] == "string"));
            if !int_or_string {
                structural(branch, &format!("{path}.{j}[{i}]"), Some(j), problems);
            }
        }
    }
    if let Some(not) = obj.get("not") {
        structural(not, &format!("{path}.not"), Some("not"), problems);
    }
}

#[test]
fn the_structural_check_refuses_what_the_api_server_refuses() {
    let schema = serde_json::json!({"type": "object", "properties": {
        "untyped": {"description": "no type"},
        "referenced": {"type": "object", "$ref": "#/definitions/B"},
        "two_types": {"type": ["string", "null"]},
        "junctor": {"type": "object", "anyOf": [{"type": "object", "properties": {"x": {"type": "string"}}}]},
        "untyped_items": {"type": "array", "items": {"properties": {}}},
        "int_or_string": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free_form": {"x-kubernetes-preserve-unknown-fields": true},
        "fine": {"type": "string", "nullable": true, "oneOf": [{"pattern": "^a"}, {"pattern": "^b"}]},
    }});
    let mut problems = Vec::new();
    structural(&schema, "s", None, &mut problems);
    let failing: BTreeSet<&str> =
        problems.iter().map(|p| p.split(':').next().unwrap().trim_start_matches("s.properties.")).collect();
    assert_eq!(
        failing,
        BTreeSet::from([
            "untyped",
            "referenced",
            "two_types",
            "junctor.anyOf[0]",
            "junctor.anyOf[0].properties.x",
            "untyped_items.items"
        ]),
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------- every manifest

#[test]
fn every_manifest_under_deploy_parses_as_the_kind_it_declares() {
    let files = manifests();
    assert!(files.len() >= 9, "deploy/ holds its manifests: {files:?}");
    for path in files {
        let docs = documents(&path);
        assert!(!docs.is_empty(), "{}: no document", shown(&path));
        for (i, doc) in docs.iter().enumerate() {
            let at = format!("{} (document {}: {} {:?})", shown(&path), i + 1, kind(doc), name(doc));
            assert!(!name(doc).is_empty(), "{at}: no metadata.name");
            parse_as_kind(doc, &at);
        }
    }
}

fn parse_as_kind(doc: &Value, at: &str) {
    match kind(doc) {
        "Namespace" => drop(typed::<Namespace>(doc, at)),
        "PersistentVolumeClaim" => drop(typed::<PersistentVolumeClaim>(doc, at)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc, at)),
        "ClusterRole" => drop(typed::<ClusterRole>(doc, at)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc, at)),
        "Role" => drop(typed::<Role>(doc, at)),
        "RoleBinding" => drop(typed::<RoleBinding>(doc, at)),
        "Deployment" => drop(typed::<Deployment>(doc, at)),
        "Service" => drop(typed::<Service>(doc, at)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc, at)),
        "CronJob" => drop(typed::<CronJob>(doc, at)),
        "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(doc, at)),
        "CapacityPolicy" => {
            assert_eq!(doc["apiVersion"], "headroom.dev/v1alpha1", "{at}: apiVersion");
            drop(typed::<CapacityPolicy>(doc, at));
        }
        other => panic!("{at}: kind {other:?} is not one this test knows: add its type to parse_as_kind"),
    }
}

#[test]
fn kustomizations_list_existing_files_and_every_manifest_is_listed() {
    let kustomizations: Vec<PathBuf> = yaml_files(&deploy()).into_iter().filter(|p| is_kustomization(p)).collect();
    assert!(kustomizations.contains(&deploy().join("kustomization.yaml")));
    assert!(kustomizations.contains(&deploy().join("operator/kustomization.yaml")));
    let listed: BTreeSet<PathBuf> = kustomizations.iter().flat_map(|k| kustomize_files(k.parent().unwrap())).collect();
    let (examples, grafana) = (deploy().join("examples"), deploy().join("grafana"));
    for m in manifests().into_iter().filter(|m| !m.starts_with(&examples) && !m.starts_with(&grafana)) {
        assert!(
            listed.contains(&m),
            "{} is listed by no kustomization.yaml: `kubectl apply -k deploy/` would skip it",
            shown(&m)
        );
    }
}

#[test]
fn uninstalling_the_operator_keeps_the_namespace_the_history_and_the_policies() {
    let operator = kustomize_docs(&deploy().join("operator"));
    for (at, doc) in &operator {
        assert!(
            !matches!(kind(doc), "Namespace" | "PersistentVolumeClaim" | "CustomResourceDefinition"),
            "{at}: `kubectl delete -k deploy/operator/` would delete this {}",
            kind(doc)
        );
    }
    let all = install();
    let _: Namespace = one(&all, "Namespace", NAMESPACE);
    let _: CustomResourceDefinition = one(&all, "CustomResourceDefinition", "capacitypolicies.headroom.dev");
    let state: PersistentVolumeClaim = one(&all, "PersistentVolumeClaim", "headroom-state");
    assert_eq!(state.metadata.namespace.as_deref(), Some(NAMESPACE));
    // Everything namespaced that the operator kustomization applies lands in headroom-system.
    for (at, doc) in &operator {
        if !kind(doc).starts_with("Cluster") {
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{at}: namespace");
        }
    }
}

// ---------------------------------------------------------------- RBAC

#[test]
fn rbac_grants_exactly_what_the_operator_calls() {
    let expected: BTreeSet<(&str, &str, &str, &str)> = [
        ("ClusterRole", "headroom.dev", "capacitypolicies", &["get", "list", "watch", "patch"][..]),
        ("ClusterRole", "headroom.dev", "capacitypolicies/status", &["get", "patch"]),
        ("ClusterRole", "apps", "deployments", &["get", "list", "watch", "patch"]),
        ("ClusterRole", "apps", "statefulsets", &["get", "list", "watch", "patch"]),
        ("ClusterRole", "apps", "deployments/scale", &["get", "patch"]),
        ("ClusterRole", "apps", "statefulsets/scale", &["get", "patch"]),
        ("ClusterRole", "autoscaling", "horizontalpodautoscalers", &["get", "list", "watch", "patch"]),
        ("ClusterRole", "events.k8s.io", "events", &["create", "patch"]),
        ("Role", "coordination.k8s.io", "leases", &["get", "create", "patch"]),
    ]
    .into_iter()
    .flat_map(|(k, g, r, verbs)| verbs.iter().map(move |v| (k, g, r, *v)))
    .collect();

    let mut granted = BTreeSet::new();
    for (at, kind_, rules) in roles() {
        for rule in rules {
            assert!(rule.non_resource_urls.is_none(), "{at}: nonResourceURLs granted: {rule:?}");
            let everything = rule.api_groups.iter().flatten().chain(rule.resources.iter().flatten()).chain(&rule.verbs);
            assert!(
                everything.clone().all(|s| !s.contains('*')),
                "{at}: a wildcard grants more than the operator uses: {rule:?}"
            );
            for g in rule.api_groups.iter().flatten() {
                for r in rule.resources.iter().flatten() {
                    for v in &rule.verbs {
                        granted.insert((kind_.clone(), g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    let granted: BTreeSet<(&str, &str, &str, &str)> =
        granted.iter().map(|(k, g, r, v)| (k.as_str(), g.as_str(), r.as_str(), v.as_str())).collect();
    let extra: Vec<_> = granted.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "RBAC: granted but not used: {extra:?}; used but not granted: {missing:?}"
    );
}

#[test]
fn the_lease_rules_name_the_one_lease_and_create_stands_alone() {
    for (at, _, rules) in roles().into_iter().filter(|(_, k, _)| k == "Role") {
        for rule in rules.iter().filter(|r| r.resources.iter().flatten().any(|r| r == "leases")) {
            let names = rule.resource_names.clone().unwrap_or_default();
            if rule.verbs.iter().any(|v| v == "create") {
                assert_eq!(
                    rule.verbs,
                    ["create"],
                    "{at}: create cannot be limited to a name: keep it a rule of its own"
                );
                assert!(names.is_empty(), "{at}: resourceNames on create never match (the object does not exist yet)");
            } else {
                assert_eq!(names, [LEASE], "{at}: get/patch of leases only on the operator's Lease");
            }
        }
    }
    let role: Role = one(&install(), "Role", "headroom-operator-leader-election");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE), "the Lease lives in the operator's namespace");
}

/// (where, kind, rules) of every ClusterRole and Role the install applies.
fn roles() -> Vec<(String, String, Vec<PolicyRule>)> {
    let mut out = Vec::new();
    for (at, doc) in install() {
        match kind(&doc) {
            "ClusterRole" => {
                let r: ClusterRole = typed(&doc, &at);
                assert!(r.aggregation_rule.is_none(), "{at}: an aggregated ClusterRole grants what others add");
                out.push((at, "ClusterRole".into(), r.rules.unwrap_or_default()));
            }
            "Role" => out.push((at.clone(), "Role".into(), typed::<Role>(&doc, &at).rules.unwrap_or_default())),
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no ClusterRole or Role in deploy/");
    out
}

#[test]
fn every_role_is_bound_to_the_operator_service_account_only() {
    let all = install();
    let _: ServiceAccount = one(&all, "ServiceAccount", SERVICE_ACCOUNT);
    let expected = vec![Subject {
        kind: "ServiceAccount".into(),
        name: SERVICE_ACCOUNT.into(),
        namespace: Some(NAMESPACE.into()),
        api_group: None,
    }];
    let mut bound = BTreeSet::new();
    for (at, doc) in &all {
        let (role_ref, subjects, namespace) = match kind(doc) {
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = typed(doc, at);
                (b.role_ref, b.subjects, None)
            }
            "RoleBinding" => {
                let b: RoleBinding = typed(doc, at);
                (b.role_ref, b.subjects, b.metadata.namespace)
            }
            _ => continue,
        };
        assert_eq!(subjects.unwrap_or_default(), expected, "{at}: subjects");
        assert_eq!(role_ref.api_group, "rbac.authorization.k8s.io", "{at}: roleRef.apiGroup");
        let role = all.iter().find(|(_, d)| {
            kind(d) == role_ref.kind
                && name(d) == role_ref.name
                && d["metadata"]["namespace"].as_str().map(String::from) == namespace
        });
        assert!(
            role.is_some(),
            "{at}: binds {} {:?}, which deploy/ does not define (in the same namespace)",
            role_ref.kind,
            role_ref.name
        );
        bound.insert((role_ref.kind, role_ref.name));
    }
    for (_, doc) in all.iter().filter(|(_, d)| matches!(kind(d), "ClusterRole" | "Role")) {
        assert!(
            bound.contains(&(kind(doc).to_string(), name(doc).to_string())),
            "{} {:?} is bound by nothing",
            kind(doc),
            name(doc)
        );
    }
    let (_, pod, _) = operator_pod();
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT), "the operator runs as its ServiceAccount");
}

// ---------------------------------------------------------------- the operator Deployment

#[test]
fn the_operator_runs_non_root_read_only_with_no_capabilities() {
    let (_, pod, c) = operator_pod();
    let psc = pod.security_context.expect("a pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true), "runAsNonRoot");
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "runAsUser is not root: {:?}", psc.run_as_user);
    assert_eq!(psc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"), "seccompProfile");
    let sc = c.security_context.expect("a container securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "allowPrivilegeEscalation");
    assert_eq!(sc.read_only_root_filesystem, Some(true), "readOnlyRootFilesystem");
    assert_ne!(sc.privileged, Some(true), "privileged");
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop.unwrap_or_default(), ["ALL"], "capabilities.drop");
    assert!(caps.add.unwrap_or_default().is_empty(), "no capability added");
    let res = c.resources.expect("resources");
    for (what, map) in [("requests", res.requests), ("limits", res.limits)] {
        let map = map.unwrap_or_default();
        assert!(map.contains_key("cpu") && map.contains_key("memory"), "resources.{what} sets cpu and memory: {map:?}");
    }
}

#[test]
fn the_operator_is_probed_on_its_metrics_port_and_knows_its_pod() {
    let (_, _, c) = operator_pod();
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("operator"), "args: {args:?}");
    let ports = c.ports.clone().unwrap_or_default();
    let metrics = ports.iter().find(|p| p.name.as_deref() == Some("metrics")).expect("a port named metrics");
    let listen = flag(&args, "--listen").expect("--listen");
    assert_eq!(
        listen.rsplit(':').next(),
        Some(metrics.container_port.to_string().as_str()),
        "--listen {listen} serves the metrics port"
    );
    assert!(
        listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:"),
        "--listen {listen}: reachable from the kubelet and Prometheus"
    );
    let on_metrics = |probe: Option<&Probe>, path: &str, what: &str| {
        let get = probe.and_then(|p| p.http_get.clone()).unwrap_or_else(|| panic!("an HTTP {what}"));
        assert_eq!(get.path.as_deref(), Some(path), "{what} path");
        assert!(
            get.port == IntOrString::String("metrics".into()) || get.port == IntOrString::Int(metrics.container_port),
            "{what} on the metrics port, not {:?}",
            get.port
        );
    };
    on_metrics(c.liveness_probe.as_ref(), "/healthz", "livenessProbe");
    on_metrics(c.readiness_probe.as_ref(), "/readyz", "readinessProbe");
    for (var, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let env = c.env.iter().flatten().find(|e| e.name == var).unwrap_or_else(|| panic!("env {var}"));
        let from = env.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
        assert_eq!(from, Some(field), "{var} from the downward API");
    }
}

#[test]
fn the_operator_keeps_its_state_on_the_claim_and_runs_alone() {
    let (d, pod, c) = operator_pod();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(1), "one operator pod");
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate"),
        "a ReadWriteOnce claim cannot be attached to the old and the new pod at once"
    );
    let args = c.args.unwrap_or_default();
    let state_dir = flag(&args, "--state-dir").expect("--state-dir");
    let volumes = pod.volumes.unwrap_or_default();
    let mount_of = |path: &str| {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        assert_ne!(m.read_only, Some(true), "{path} is writable");
        volumes.iter().find(|v| v.name == m.name).unwrap_or_else(|| panic!("volume {} of {path}", m.name)).clone()
    };
    let claim = mount_of(state_dir)
        .persistent_volume_claim
        .unwrap_or_else(|| panic!("--state-dir {state_dir} is a PersistentVolumeClaim"));
    let pvc: PersistentVolumeClaim = one(&install(), "PersistentVolumeClaim", &claim.claim_name);
    assert_eq!(pvc.spec.unwrap().access_modes.unwrap_or_default(), ["ReadWriteOnce"]);
    assert!(mount_of("/tmp").empty_dir.is_some(), "/tmp is an emptyDir (the root filesystem is read-only)");
}

#[test]
fn the_metrics_service_selects_the_operator_pod() {
    let all = install();
    let svc: Service = one(&all, "Service", "headroom-operator-metrics");
    let (d, _, c) = operator_pod();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap_or_default();
    for (k, v) in spec.selector.unwrap_or_default() {
        assert_eq!(labels.get(&k), Some(&v), "the Service selects {k}={v}, the pod template lacks it");
    }
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("port metrics");
    assert_eq!(port.port, 9464);
    let container_port =
        c.ports.unwrap_or_default().into_iter().find(|p| p.name.as_deref() == Some("metrics")).unwrap();
    assert!(
        port.target_port == Some(IntOrString::String("metrics".into()))
            || port.target_port == Some(IntOrString::Int(container_port.container_port)),
        "targetPort {:?} is the container's metrics port",
        port.target_port
    );
}

// ---------------------------------------------------------------- the forecast CronJob example

#[test]
fn the_forecast_cronjob_runs_one_pod_per_shard() {
    let docs = forecast_example();
    let cron: CronJob = one(&docs, "CronJob", "headroom-forecast");
    let job = cron.spec.unwrap().job_template.spec.unwrap();
    assert_eq!(job.completion_mode.as_deref(), Some("Indexed"), "JOB_COMPLETION_INDEX is set in Indexed jobs only");
    let c = job.template.spec.clone().unwrap().containers.remove(0);
    let args = c.args.unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("forecast"));
    let shard = flag(&args, "--shard").expect("--shard");
    let n: i32 = shard
        .strip_prefix("$(JOB_COMPLETION_INDEX)/")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("--shard {shard}: $(JOB_COMPLETION_INDEX)/n"));
    assert_eq!(job.completions, Some(n), "completions = n of --shard: else shards are skipped or run twice");
    assert!(job.parallelism.is_some_and(|p| p >= 1 && p <= n), "parallelism {:?}", job.parallelism);
    let out = flag(&args, "--out").expect("--out");
    assert!(out.contains("$(JOB_COMPLETION_INDEX)"), "--out {out}: one file per shard, or they overwrite each other");
}

#[test]
fn the_forecast_cronjob_config_is_a_valid_headroom_toml_it_mounts() {
    let docs = forecast_example();
    let cron: CronJob = one(&docs, "CronJob", "headroom-forecast");
    let pod = cron.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap_or_default();
    let config = Path::new(flag(&args, "--config").expect("--config"));
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| config.starts_with(&m.mount_path))
        .expect("--config is on a mounted volume");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).expect("the mounted volume");
    let cm_name = &volume.config_map.as_ref().expect("--config comes from a ConfigMap").name;
    let cm: ConfigMap = one(&docs, "ConfigMap", cm_name);
    let key = config.strip_prefix(&mount.mount_path).unwrap().to_str().unwrap();
    let text =
        cm.data.unwrap_or_default().remove(key).unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key {key}"));
    let settings = headroom_engine::settings::Settings::parse(
        &text,
        Path::new("headroom.toml (deploy/examples/forecast-cronjob.yaml)"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !settings.policy.targets.is_empty(),
        "forecast --config forecasts only the targets' series: with none, the job does nothing"
    );
    // The store it reads and the file it writes are on a writable volume.
    let out = flag(&args, "--out").expect("--out");
    for path in [settings.store.path.as_path(), Path::new(out)] {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| path.starts_with(&m.mount_path))
            .unwrap_or_else(|| panic!("{} is on no volume", path.display()));
        assert_ne!(m.read_only, Some(true), "{} is writable", path.display());
    }
}

#[test]
fn the_forecast_cronjob_is_locked_down_like_the_operator() {
    let cron: CronJob = one(&forecast_example(), "CronJob", "headroom-forecast");
    let pod = cron.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
    let (_, operator, operator_c) = operator_pod();
    assert_eq!(pod.security_context, operator.security_context, "pod securityContext");
    for c in &pod.containers {
        assert_eq!(c.security_context, operator_c.security_context, "container {} securityContext", c.name);
        assert_eq!(c.image, operator_c.image, "container {} image", c.name);
    }
}

// ---------------------------------------------------------------- the dashboard

#[test]
fn the_dashboard_uses_only_the_operators_metrics_and_all_of_them() {
    let path = deploy().join("grafana/headroom-operator.json");
    let dash: Value = serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: not JSON: {e}", shown(&path)));
    assert_eq!(dash["schemaVersion"], 39);
    let vars: Vec<&str> =
        dash["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(vars.contains(&"DS_PROMETHEUS"), "a DS_PROMETHEUS datasource variable: {vars:?}");
    let mut allowed: BTreeSet<String> = OPERATOR_METRICS.iter().map(|m| m.to_string()).collect();
    for h in OPERATOR_HISTOGRAMS {
        allowed.extend(["_bucket", "_sum", "_count"].map(|s| format!("{h}{s}")));
    }
    let mut exprs = Vec::new();
    queries(&dash, &mut exprs);
    assert!(exprs.len() >= OPERATOR_METRICS.len(), "queries found: {exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        for m in metric_names(e) {
            assert!(allowed.contains(&m), "{}: `{e}` uses {m}, which the operator does not expose", shown(&path));
            used.insert(m.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_string());
        }
    }
    let unused: Vec<_> = OPERATOR_METRICS.iter().filter(|m| !used.contains(**m)).collect();
    assert!(unused.is_empty(), "no panel shows {unused:?}");
    for p in dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}: datasource", p["title"]);
    }
}

/// Every PromQL string of a dashboard: targets' `expr` and query variables' queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            if m.get("type") == Some(&Value::String("query".into())) {
                match &m["query"] {
                    Value::String(q) => out.push(q.clone()),
                    Value::Object(q) => out.extend(q.get("query").and_then(Value::as_str).map(String::from)),
                    _ => {}
                }
            }
            m.values().for_each(|v| queries(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The metric names of a PromQL expression (or a Grafana `label_values(metric, label)`):
/// identifiers that are not functions, keywords, label matchers, grouping labels,
/// strings, durations or `$variables`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = match expr.trim().strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')) {
        Some(inner) => inner.rsplit_once(',').map_or(inner, |(m, _label)| m).to_string(),
        None => expr.to_string(),
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening char to its matching close, minding strings.
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => i = skip_string(&chars, i),
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(&chars, i) + 1,
            '{' => i = skip_group(i, '{', '}'),
            '[' => i = skip_group(i, '[', ']'),
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(i, '{', '}');
                } else {
                    while i < chars.len() && ident(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if ident(c) => {
                let start = i;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                match word.as_str() {
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" if call => {
                        i = skip_group(next, '(', ')')
                    }
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool" | "and" | "or"
                    | "unless" | "offset" | "atan2" | "inf" | "nan" | "Inf" | "NaN" => {}
                    // Aggregations, also when `by (..)` comes before their parentheses.
                    "sum" | "min" | "max" | "avg" | "group" | "stddev" | "stdvar" | "count" | "count_values"
                    | "bottomk" | "topk" | "quantile" | "limitk" | "limit_ratio" => {}
                    _ if call => {}
                    _ => {
                        names.insert(word);
                    }
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The index of the quote closing the string that opens at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    j
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x", le!="+Inf"}[$__rate_interval])))"#),
        ["a_bucket"]
    );
    assert_eq!(names(r#"count(b{condition="Ready"} == 0) or vector(0)"#), ["b"]);
    assert_eq!(names("sum(rate(c[5m])) / ignoring (x) sum(d offset 1h)"), ["c", "d"]);
    assert_eq!(names(r#"label_values(e{namespace=~"$namespace"}, policy)"#), ["e"]);
    assert_eq!(names("${DS} f"), ["f"]);
}

// ---------------------------------------------------------------- the image

/// The Dockerfile's stages: (image, alias, instructions as (INSTRUCTION, rest)).
/// A build stage: its base image, its name (`AS …`), and its instructions (keyword, rest).
type Stage = (String, Option<String>, Vec<(String, String)>);

fn dockerfile_stages() -> Vec<Stage> {
    let text = read(&repo().join("Dockerfile")).replace("\\\n", " ");
    let mut stages: Vec<Stage> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (instr, rest) = (instr.to_uppercase(), rest.trim().to_string());
        if instr == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let alias = match words.as_slice() {
                [_, as_, alias] if as_.eq_ignore_ascii_case("as") => Some(alias.to_string()),
                _ => None,
            };
            stages.push((words[0].to_string(), alias, Vec::new()));
        } else {
            stages.last_mut().expect("FROM comes first").2.push((instr, rest));
        }
    }
    stages
}

#[test]
fn the_image_is_built_in_rust_and_runs_non_root_on_distroless_with_the_model() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a builder stage and a runtime stage");
    let (builder, alias, steps) = &stages[0];
    assert!(builder.starts_with("rust:"), "builder image {builder}");
    assert!(
        steps
            .iter()
            .any(|(i, r)| i == "RUN" && r.contains("cargo build --release --locked") && r.contains("--bin headroom")),
        "the builder runs cargo build --release --locked --bin headroom"
    );
    let alias = alias.as_deref().expect("the builder stage is named");
    let (runtime, _, steps) = stages.last().unwrap();
    assert!(runtime.contains("distroless") || runtime.contains("-slim"), "runtime image {runtime}: distroless or slim");
    let user =
        steps.iter().rev().find(|(i, _)| i == "USER").map(|(_, u)| u.clone()).expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "USER {user}: the image must not run as root");
    let copies: Vec<&str> = steps.iter().filter(|(i, _)| i == "COPY").map(|(_, r)| r.as_str()).collect();
    assert!(
        copies.iter().any(|c| c.starts_with(&format!("--from={alias} ")) && c.ends_with(" /usr/local/bin/headroom")),
        "the binary is copied from {alias} to /usr/local/bin/headroom: {copies:?}"
    );
    assert!(
        steps.iter().any(|(i, r)| i == "ENTRYPOINT" && r.contains("/usr/local/bin/headroom")),
        "ENTRYPOINT headroom"
    );
    let model_dir = copies
        .iter()
        .find_map(|c| c.strip_prefix("models/default "))
        .map(str::trim)
        .expect("models/default is copied into the image");
    // deploy/ points at the model and the user the image has.
    let (_, pod, c) = operator_pod();
    assert_eq!(
        flag(&c.args.unwrap_or_default(), "--model-dir"),
        Some(model_dir.trim_end_matches('/')),
        "the operator's --model-dir is in the image"
    );
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_user).map(|u| u.to_string()).as_deref(),
        Some(uid),
        "runAsUser is the image's USER"
    );
    let dockerignore = read(&repo().join(".dockerignore"));
    let ignored: BTreeSet<&str> =
        dockerignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(
        ignored.contains("target") && ignored.contains(".git"),
        ".dockerignore leaves out target and .git: {ignored:?}"
    );
    assert!(!ignored.iter().any(|l| l.starts_with("models")), ".dockerignore keeps models/: {ignored:?}");
}

#[test]
fn the_example_policy_is_the_documented_one() {
    let path = deploy().join("examples/capacitypolicy.yaml");
    let docs: Vec<(String, Value)> = documents(&path).into_iter().map(|d| (shown(&path), d)).collect();
    let p: CapacityPolicy = one(&docs, "CapacityPolicy", "checkout");
    assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(p.spec.target_ref.name, "checkout");
    assert_eq!(p.spec.mode, headroom_operator::crd::PolicyMode::DryRun, "the example changes nothing");
    let (min, max) = (p.spec.min_replicas.unwrap(), p.spec.max_replicas.unwrap());
    assert!(min <= max, "the CRD's rule minReplicas <= maxReplicas");
}
