//! Leader election (`headroom_operator::leader`, on kube-lease-manager)
//! against a mock API server that keeps one `coordination.k8s.io/v1` Lease
//! and answers every request for it as the real API server would: GET (404
//! while missing), POST (201, or 409 AlreadyExists), and PATCH — server-side
//! apply with field ownership (409 Conflict with a `Status` body when another
//! field manager owns a field with a different value; the crate never
//! forces) and strategic merge patches (accepted: no resourceVersion, no
//! conflict check; `null` removes a field). The test plays the other replica
//! by writing the stored Lease directly. Any request that is not for the
//! Lease is recorded and fails the test.
//!
//! Durations are real and short (lease 2 s, grace 1 s: this replica renews
//! about once a second).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_core::Interrupted;
use headroom_operator::controller::{FOLLOWER_POLL, reconcile};
use headroom_operator::crd::{CapacityPolicy, CapacityPolicySpec, WorkloadKind};
use headroom_operator::policy::Defaults;
use headroom_operator::{Context, Election, Leadership, LeaseOptions, Sources};
use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

const NS: &str = "headroom-system";
const NAME: &str = "headroom-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/headroom-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/headroom-system/leases/headroom-operator";
/// This replica (its pod name).
const ME: &str = "headroom-operator-6d5f7c9b8-x2k4q";
/// The other replica.
const OTHER: &str = "headroom-operator-6d5f7c9b8-p7rtn";
const APPLY: &str = "application/apply-patch+yaml";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
/// Every field of a Lease's spec.
const SPEC_FIELDS: [&str; 5] =
    ["holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions"];

fn options() -> LeaseOptions {
    LeaseOptions {
        namespace: NS.into(),
        name: NAME.into(),
        identity: ME.into(),
        duration: Duration::from_secs(2),
        grace: Duration::from_secs(1),
    }
}

/// The field manager `leader.rs` gives a replica.
fn field_manager(identity: &str) -> String {
    format!("headroom-operator-{identity}")
}

fn micro(t: Timestamp) -> Value {
    serde_json::to_value(MicroTime(t)).unwrap()
}

fn ago(secs: i64) -> Timestamp {
    Timestamp::now().checked_sub(SignedDuration::from_secs(secs)).unwrap()
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code
    })
}

fn lease_details() -> Value {
    json!({ "name": NAME, "group": "coordination.k8s.io", "kind": "leases" })
}

// ---------- the API server ----------

/// One request the server answered.
#[derive(Debug, Clone)]
struct Seen {
    /// Since the server started.
    at: Duration,
    method: String,
    path: String,
    /// The query's pairs, joined by `&`.
    query: String,
    content_type: String,
    body: Value,
    status: u16,
}

impl Seen {
    fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type == APPLY
    }

    fn is_strategic(&self) -> bool {
        self.method == "PATCH" && self.content_type == STRATEGIC
    }

    /// A renewal: a strategic patch of renewTime only (not the release, which nulls it).
    fn is_renewal(&self) -> bool {
        self.is_strategic()
            && self.body["spec"]["renewTime"].is_string()
            && self.body["spec"].get("holderIdentity").is_none()
    }

    fn writes_holder(&self) -> bool {
        self.method != "GET" && self.body["spec"]["holderIdentity"].is_string()
    }
}

/// The stored Lease: its spec and which field manager owns each field.
struct Stored {
    spec: Map<String, Value>,
    /// Field → (manager, operation: `Apply` or `Update`).
    owners: BTreeMap<String, (String, &'static str)>,
}

struct Server {
    started: Instant,
    lease: Option<Stored>,
    resource_version: u64,
    seen: Vec<Seen>,
    /// Requests that are not for the Lease (or malformed): each fails the test.
    strays: Vec<String>,
    /// When set, this replica's server-side apply on a free lease loses a
    /// race: the named replica's own apply lands just before it.
    race: Option<&'static str>,
}

impl Server {
    fn render(&self) -> Value {
        let lease = self.lease.as_ref().expect("a lease to render");
        let mut entries: BTreeMap<(String, &'static str), Map<String, Value>> = BTreeMap::new();
        for (field, (manager, operation)) in &lease.owners {
            entries.entry((manager.clone(), *operation)).or_default().insert(format!("f:{field}"), json!({}));
        }
        let now = k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", Timestamp::now()).unwrap();
        let managed: Vec<Value> = entries
            .into_iter()
            .map(|((manager, operation), fields)| {
                json!({
                    "manager": manager,
                    "operation": operation,
                    "apiVersion": "coordination.k8s.io/v1",
                    "time": now,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": { "f:spec": fields }
                })
            })
            .collect();
        json!({
            "kind": "Lease",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {
                "name": NAME,
                "namespace": NS,
                "uid": "5b0e6c1a-93f4-4d2e-8a7b-0c1d2e3f4a5b",
                "resourceVersion": self.resource_version.to_string(),
                "creationTimestamp": "2025-03-01T08:00:00Z",
                "managedFields": managed
            },
            "spec": lease.spec
        })
    }

    fn not_found(&self) -> (u16, Value) {
        (404, status(404, "NotFound", format!("leases.coordination.k8s.io \"{NAME}\" not found"), lease_details()))
    }

    /// Another replica's write, as if it had sent it: holds the lease as `identity`.
    fn hold(&mut self, identity: &str, renewed: Timestamp, duration: i64, operation: &'static str) {
        let lease = self.lease.get_or_insert_with(|| Stored { spec: Map::new(), owners: BTreeMap::new() });
        let same = lease.spec.get("holderIdentity").and_then(Value::as_str) == Some(identity);
        let transitions = lease.spec.get("leaseTransitions").and_then(Value::as_i64).unwrap_or(0);
        lease.spec.insert("holderIdentity".into(), json!(identity));
        lease.spec.insert("renewTime".into(), micro(renewed));
        lease.spec.insert("leaseDurationSeconds".into(), json!(duration));
        if !same {
            lease.spec.insert("acquireTime".into(), micro(renewed));
            lease.spec.insert("leaseTransitions".into(), json!(transitions + 1));
        }
        for field in SPEC_FIELDS {
            if lease.spec.contains_key(field) {
                lease.owners.insert(field.into(), (field_manager(identity), operation));
            }
        }
        self.resource_version += 1;
    }

    fn handle(&mut self, method: &str, path: &str, query: &str, content_type: &str, body: &Value) -> (u16, Value) {
        let manager = query.split('&').find_map(|p| p.strip_prefix("fieldManager=")).map(str::to_owned);
        match (method, path) {
            ("GET", LEASE) => match self.lease {
                Some(_) => (200, self.render()),
                None => self.not_found(),
            },
            ("POST", LEASES) => {
                if body["metadata"]["name"] != NAME || body["kind"] != "Lease" {
                    self.strays.push(format!("a POST of something else than our Lease: {body}"));
                    return (400, status(400, "BadRequest", "not the lease".into(), json!({})));
                }
                if self.lease.is_some() {
                    let message = format!("leases.coordination.k8s.io \"{NAME}\" already exists");
                    return (409, status(409, "AlreadyExists", message, lease_details()));
                }
                let spec = body["spec"].as_object().cloned().unwrap_or_default();
                let owners =
                    spec.keys().map(|k| (k.clone(), (manager.clone().unwrap_or("unknown".into()), "Update"))).collect();
                self.lease = Some(Stored { spec, owners });
                self.resource_version += 1;
                (201, self.render())
            }
            ("PATCH", LEASE) => {
                let Some(manager) = manager else {
                    if content_type == APPLY {
                        let message = "PATCH, application/apply-patch+yaml requires fieldManager to be set".into();
                        return (400, status(400, "BadRequest", message, json!({})));
                    }
                    self.strays.push(format!("a PATCH without fieldManager: {body}"));
                    return (400, status(400, "BadRequest", "no fieldManager".into(), json!({})));
                };
                if self.lease.is_none() {
                    return self.not_found();
                }
                let patch = body["spec"].as_object().cloned().unwrap_or_default();
                match content_type {
                    APPLY => {
                        if let Some(winner) = self.race.take() {
                            let free = self.lease.as_ref().is_some_and(|l| !l.spec.contains_key("holderIdentity"));
                            if free && manager != field_manager(winner) {
                                self.hold(winner, Timestamp::now(), 2, "Apply");
                            }
                        }
                        let lease = self.lease.as_mut().unwrap();
                        let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for (field, value) in &patch {
                            let Some((owner, _)) = lease.owners.get(field) else { continue };
                            if lease.spec.get(field).is_some_and(|v| v != value) && *owner != manager {
                                conflicts.entry(owner.clone()).or_default().push(format!(".spec.{field}"));
                            }
                        }
                        if !conflicts.is_empty() {
                            let n: usize = conflicts.values().map(Vec::len).sum();
                            let mut message =
                                format!("Apply failed with {n} conflict{}: ", if n == 1 { "" } else { "s" });
                            let mut causes = vec![];
                            for (owner, fields) in &conflicts {
                                let with = format!("conflict with \"{owner}\" using coordination.k8s.io/v1");
                                message.push_str(&format!("{with}: {}", fields.join(", ")));
                                for f in fields {
                                    causes
                                        .push(json!({ "reason": "FieldManagerConflict", "message": with, "field": f }));
                                }
                            }
                            let mut details = lease_details();
                            details["causes"] = json!(causes);
                            return (409, status(409, "Conflict", message, details));
                        }
                        for (field, value) in patch {
                            lease.owners.insert(field.clone(), (manager.clone(), "Apply"));
                            lease.spec.insert(field, value);
                        }
                    }
                    STRATEGIC => {
                        let lease = self.lease.as_mut().unwrap();
                        for (field, value) in patch {
                            if value.is_null() {
                                lease.spec.remove(&field);
                                lease.owners.remove(&field);
                            } else {
                                lease.owners.insert(field.clone(), (manager.clone(), "Update"));
                                lease.spec.insert(field, value);
                            }
                        }
                    }
                    other => {
                        self.strays.push(format!("a PATCH of type {other}: {body}"));
                        return (
                            415,
                            status(415, "UnsupportedMediaType", format!("{other} is unsupported"), json!({})),
                        );
                    }
                }
                self.resource_version += 1;
                (200, self.render())
            }
            _ => {
                self.strays.push(format!("{method} {path}?{query}"));
                (500, status(500, "InternalError", format!("the test did not expect {method} {path}"), json!({})))
            }
        }
    }
}

/// The test's side of the API server.
#[derive(Clone)]
struct LeaseApi(Arc<Mutex<Server>>);

impl LeaseApi {
    fn server(&self) -> std::sync::MutexGuard<'_, Server> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spec(&self) -> Map<String, Value> {
        self.server().lease.as_ref().map(|l| l.spec.clone()).unwrap_or_default()
    }

    fn holder(&self) -> Option<String> {
        self.spec().get("holderIdentity").and_then(Value::as_str).map(str::to_owned)
    }

    fn seen(&self) -> Vec<Seen> {
        self.server().seen.clone()
    }

    /// The other replica takes the lease (it renews it from now on: see [`Self::other_replica_renews`]).
    fn take_over(&self, identity: &str) {
        self.server().hold(identity, Timestamp::now(), 2, "Update");
    }

    /// The other replica keeps its lease fresh, renewing every 400 ms while it holds it.
    fn other_replica_renews(&self) -> JoinHandle<()> {
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let mut s = api.server();
                let held =
                    s.lease.as_ref().and_then(|l| l.spec.get("holderIdentity")).and_then(Value::as_str) == Some(OTHER);
                if held {
                    s.hold(OTHER, Timestamp::now(), 2, "Update");
                }
            }
        })
    }

    /// Fails the test if anything but the Lease was asked for.
    fn assert_only_the_lease_was_touched(&self) {
        let strays = self.server().strays.clone();
        assert!(strays.is_empty(), "requests that are not for the Lease: {strays:#?}");
    }

    /// Prints what was asked, for `--no-capture` and failures.
    fn dump(&self, label: &str) {
        eprintln!("--- {label}: the requests the lease API answered ---");
        for s in self.seen() {
            let body = if s.body.is_null() { String::new() } else { s.body.to_string() };
            eprintln!(
                "{:>7.3}s {} {} {} [{}] {} {body}",
                s.at.as_secs_f64(),
                s.status,
                s.method,
                s.path,
                s.query,
                s.content_type
            );
        }
    }
}

/// A client on the Lease API server.
fn lease_api(lease: Option<Stored>) -> (Client, LeaseApi) {
    // The mock needs no TLS, but install the one provider in case anything builds a connector.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = LeaseApi(Arc::new(Mutex::new(Server {
        started: Instant::now(),
        lease,
        resource_version: 4100,
        seen: vec![],
        strays: vec![],
        race: None,
    })));
    let server = api.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().as_str().to_owned();
            let path = request.uri().path().to_owned();
            // kube builds queries as `path?&a=b` (an empty first pair); the API server ignores it.
            let query: Vec<&str> = request.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()).collect();
            let query = query.join("&");
            let content_type =
                request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let mut s = server.server();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    s.strays.push(format!("{method} {path}: a body that is not JSON ({e})"));
                    Value::Null
                })
            };
            let (code, reply) = s.handle(&method, &path, &query, &content_type, &body);
            let at = s.started.elapsed();
            s.seen.push(Seen { at, method, path, query, content_type, body, status: code });
            drop(s);
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), api)
}

/// A Lease held by `identity`, last renewed `renewed_ago` seconds ago, owned by its server-side apply.
fn held_by(identity: &str, renewed_ago: i64, duration: i64) -> Stored {
    let spec = json!({
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": micro(ago(600)),
        "renewTime": micro(ago(renewed_ago)),
        "leaseTransitions": 3
    });
    let spec = spec.as_object().unwrap().clone();
    let owners = spec.keys().map(|k| (k.clone(), (field_manager(identity), "Apply"))).collect();
    Stored { spec, owners }
}

/// A Lease nobody holds (as `kubectl create` or the crate's POST leaves it).
fn free() -> Stored {
    Stored { spec: Map::new(), owners: BTreeMap::new() }
}

/// A client whose every request fails the test (answered 500 so nothing hangs).
fn strict_api() -> (Client, Arc<Mutex<Vec<String>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            log.lock().unwrap().push(format!("{} {}", request.method(), request.uri()));
            let reply = status(500, "InternalError", "a follower must not ask anything".into(), json!({}));
            send.send_response(
                Response::builder()
                    .status(500)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), asked)
}

fn policy() -> CapacityPolicy {
    let spec = CapacityPolicySpec::new(WorkloadKind::Deployment, "checkout", "http://prometheus:9090");
    let mut p = CapacityPolicy::new("checkout", spec);
    p.metadata.namespace = Some("shop".into());
    p
}

/// One reconcile of the `shop/checkout` policy with `leadership`, on an API
/// that fails on any request: its result, the requests it made, and whether
/// the state directory (audit logs) stayed empty.
async fn reconcile_with(leadership: Leadership) -> (Result<Action, String>, Vec<String>, bool) {
    let (client, asked) = strict_api();
    let dir = tempfile::tempdir().unwrap();
    let sources: Sources = Arc::new(|_| panic!("a follower must not read any history"));
    let ctx = Arc::new(Context::new(
        client,
        Defaults::default(),
        dir.path().to_owned(),
        sources,
        leadership,
        Some(ME.into()),
    ));
    let result = reconcile(Arc::new(policy()), ctx.clone()).await.map_err(|e| e.to_string());
    drop(ctx);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = asked.lock().unwrap().clone();
    let empty = std::fs::read_dir(dir.path()).unwrap().next().is_none();
    (result, asked, empty)
}

/// Polls `f` every 20 ms for at most `limit`; how long it took, if it came true.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn recent(value: &Value, within: Duration) -> bool {
    let Some(t) = value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) else { return false };
    let age = Timestamp::now().duration_since(t);
    age >= -SignedDuration::from_millis(10) && age <= SignedDuration::try_from(within).unwrap()
}

// ---------- the tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_lease_held_by_another_replica_keeps_this_one_a_follower_that_does_nothing() {
    let (client, api) = lease_api(Some(held_by(OTHER, 0, 2)));
    let other = api.other_replica_renews();
    let election = Election::start(client, &options()).await.expect("the election starts");

    // Longer than this replica's renewal period (1 s) and the other's lease (2 s): never the leader.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        assert!(
            !election.leadership.is_leader(),
            "became leader at {:?} though {OTHER} holds the lease",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let loss = election.leadership.watch_loss();
    assert_eq!(loss.interrupt.raised(), Some(Interrupted { signal: 15 }), "a follower's work is interrupted at once");

    // A follower's reconcile asks nothing: no policy list, no status write, no Event, no audit log.
    let (result, asked, empty) = reconcile_with(election.leadership.clone()).await;
    assert_eq!(result, Ok(Action::requeue(FOLLOWER_POLL)));
    assert!(asked.is_empty(), "a follower's reconcile sent {asked:#?}");
    assert!(empty, "a follower's reconcile wrote to the state directory");

    // The follower only read the lease, and kept reading it as the other's term ran out.
    let seen = api.seen();
    assert!(seen.iter().all(|s| s.method == "GET" && s.path == LEASE), "a follower wrote: {seen:#?}");
    assert!(seen.len() >= 3, "the follower looked again when the other's lease was due: {seen:#?}");
    assert_eq!(api.holder().as_deref(), Some(OTHER));

    // Its shutdown leaves the other's lease alone.
    drop(loss);
    election.release(Duration::from_secs(3)).await;
    other.abort();
    assert_eq!(api.holder().as_deref(), Some(OTHER));
    let seen = api.seen();
    assert!(seen.iter().all(|s| s.method == "GET"), "a follower's release wrote: {seen:#?}");
    api.dump("follower");
    api.assert_only_the_lease_was_touched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lease_is_created_then_acquired_and_renewed_under_this_replicas_identity() {
    let (client, api) = lease_api(None);
    let election = Election::start(client, &options()).await.expect("the election starts");
    let took = wait_until(Duration::from_secs(3), || election.leadership.is_leader()).await;
    assert!(took.is_some(), "never became leader of a free lease");

    let spec = api.spec();
    assert_eq!(spec["holderIdentity"], ME);
    assert_eq!(spec["leaseDurationSeconds"], 2);
    assert_eq!(spec["leaseTransitions"], 1);
    assert!(recent(&spec["acquireTime"], Duration::from_secs(3)), "acquireTime {}", spec["acquireTime"]);
    assert!(recent(&spec["renewTime"], Duration::from_secs(3)), "renewTime {}", spec["renewTime"]);

    // The crate's exact opening: look, create, look twice, apply (not forced), count the transition, look.
    let seen = api.seen();
    let steps: Vec<(&str, &str, &str, u16)> =
        seen.iter().map(|s| (s.method.as_str(), s.path.as_str(), s.content_type.as_str(), s.status)).collect();
    assert_eq!(
        steps[..7],
        [
            ("GET", LEASE, "", 404),
            ("POST", LEASES, "application/json", 201),
            ("GET", LEASE, "", 200),
            ("GET", LEASE, "", 200),
            ("PATCH", LEASE, APPLY, 200),
            ("PATCH", LEASE, STRATEGIC, 200),
            ("GET", LEASE, "", 200),
        ],
        "{seen:#?}"
    );
    assert_eq!(seen[1].body["metadata"]["name"], NAME);
    let apply = &seen[4];
    assert_eq!(apply.query, format!("fieldManager={}", field_manager(ME)), "a server-side apply without force");
    assert_eq!(apply.body["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(apply.body["kind"], "Lease");
    let s = &apply.body["spec"];
    assert_eq!((&s["holderIdentity"], &s["leaseDurationSeconds"]), (&json!(ME), &json!(2)));
    assert!(recent(&s["acquireTime"], Duration::from_secs(3)) && s["acquireTime"] == s["renewTime"], "{s}");
    assert_eq!(seen[5].body["spec"], json!({ "leaseTransitions": 1 }));

    // It keeps the lease: about one renewal a second (2 s lease, 1 s grace), and stays leader.
    let renewed_before = api.spec()["renewTime"].clone();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(election.leadership.is_leader(), "lost a lease nobody else wanted");
    let renewals: Vec<Seen> = api.seen().into_iter().filter(Seen::is_renewal).collect();
    assert!(renewals.len() >= 2, "renewals in 2.6 s: {renewals:#?}");
    for r in &renewals {
        assert_eq!(r.query, format!("fieldManager={}", field_manager(ME)));
        assert_eq!(r.body["spec"]["leaseDurationSeconds"], 2);
        assert_eq!(
            r.body["spec"].as_object().unwrap().len(),
            2,
            "a renewal writes renewTime and the duration: {}",
            r.body
        );
    }
    assert_ne!(api.spec()["renewTime"], renewed_before);
    assert!(recent(&api.spec()["renewTime"], Duration::from_millis(1500)));
    assert_eq!(api.holder().as_deref(), Some(ME));

    election.release(Duration::from_secs(3)).await;
    api.dump("acquire a missing lease");
    api.assert_only_the_lease_was_touched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_of_a_dead_replica_is_cleared_then_acquired() {
    // The other replica died 30 s ago with a 15 s lease.
    let (client, api) = lease_api(Some(held_by(OTHER, 30, 15)));
    let election = Election::start(client, &options()).await.expect("the election starts");
    let took = wait_until(Duration::from_secs(4), || election.leadership.is_leader()).await;
    assert!(took.is_some(), "never took over an expired lease");

    let spec = api.spec();
    assert_eq!(spec["holderIdentity"], ME);
    assert_eq!(spec["leaseDurationSeconds"], 2);
    assert_eq!(spec["leaseTransitions"], 4, "one more transition than the dead replica's 3");
    assert!(recent(&spec["acquireTime"], Duration::from_secs(4)));

    // First the expired holder is cleared (a strategic patch of nulls), then the lease is applied for.
    let seen = api.seen();
    let writes: Vec<&Seen> = seen.iter().filter(|s| s.method != "GET").collect();
    assert!(writes.len() >= 3, "{seen:#?}");
    assert!(writes[0].is_strategic(), "{seen:#?}");
    assert_eq!(
        writes[0].body["spec"],
        json!({ "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null })
    );
    assert!(writes[1].is_apply() && writes[1].status == 200, "{seen:#?}");
    assert_eq!(writes[1].body["spec"]["holderIdentity"], ME);
    assert_eq!(writes[2].body["spec"], json!({ "leaseTransitions": 4 }));

    election.release(Duration::from_secs(3)).await;
    api.dump("take over an expired lease");
    api.assert_only_the_lease_was_touched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_lease_stops_acting() {
    let (client, api) = lease_api(Some(free()));
    let election = Election::start(client, &options()).await.expect("the election starts");
    assert!(wait_until(Duration::from_secs(3), || election.leadership.is_leader()).await.is_some());
    assert_eq!(api.holder().as_deref(), Some(ME));

    // A step in flight watches for the loss.
    let loss = election.leadership.watch_loss();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(loss.interrupt.raised(), None, "raised while still the leader");

    // The other replica takes the lease (and keeps renewing it).
    let before = api.seen().len();
    api.take_over(OTHER);
    let other = api.other_replica_renews();
    let lost = wait_until(Duration::from_secs(4), || !election.leadership.is_leader()).await;
    let lost = lost.expect("still leader 4 s after another replica took the lease");
    assert!(lost < Duration::from_millis(2500), "took {lost:?}: more than two renewal periods");
    assert!(
        wait_until(Duration::from_millis(500), || loss.interrupt.raised().is_some()).await.is_some(),
        "the step in flight was not interrupted"
    );
    assert_eq!(loss.interrupt.raised(), Some(Interrupted { signal: 15 }));

    // A reconcile now asks nothing.
    let (result, asked, empty) = reconcile_with(election.leadership.clone()).await;
    assert_eq!(result, Ok(Action::requeue(FOLLOWER_POLL)));
    assert!(asked.is_empty(), "a replica that lost the lease still sent {asked:#?}");
    assert!(empty);

    // It stays a follower, and never writes itself back as the holder.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!election.leadership.is_leader());
    assert_eq!(api.holder().as_deref(), Some(OTHER));
    let after: Vec<Seen> = api.seen().split_off(before);
    assert!(!after.iter().any(Seen::writes_holder), "wrote itself back as holder: {after:#?}");
    assert!(!after.iter().any(Seen::is_apply), "applied for a lease another replica holds: {after:#?}");
    // The renewal already due when the lease changed hands is a strategic patch without a
    // resourceVersion, so the API server accepts it (it refreshes the new holder's renewTime):
    // that is the last one, and the GET after it is how the loss is seen.
    let late = after.iter().filter(|s| s.is_renewal()).count();
    assert!(late <= 1, "kept renewing a lease another replica holds: {after:#?}");

    drop(loss);
    election.release(Duration::from_secs(3)).await;
    other.abort();
    assert_eq!(api.holder().as_deref(), Some(OTHER), "the release of a replica that lost the lease cleared it");
    api.dump("lose the lease");
    api.assert_only_the_lease_was_touched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_race_for_a_free_lease_is_refused_and_follows() {
    // Both replicas see the lease free; the other's apply lands first, so ours conflicts.
    let (client, api) = lease_api(Some(free()));
    api.server().race = Some(OTHER);
    let other = api.other_replica_renews();
    let election = Election::start(client, &options()).await.expect("the election starts");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3000) {
        assert!(!election.leadership.is_leader(), "became leader though {OTHER} won the lease");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(api.holder().as_deref(), Some(OTHER));
    let seen = api.seen();
    let applies: Vec<&Seen> = seen.iter().filter(|s| s.is_apply()).collect();
    assert_eq!(applies.len(), 1, "one apply, refused, then it follows: {seen:#?}");
    assert_eq!(applies[0].status, 409);
    assert!(!seen.iter().any(|s| s.is_strategic()), "wrote the lease after losing: {seen:#?}");

    election.release(Duration::from_secs(3)).await;
    other.abort();
    assert_eq!(api.holder().as_deref(), Some(OTHER));
    api.dump("lose the race");
    api.assert_only_the_lease_was_touched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_releases_the_lease_at_once() {
    let (client, api) = lease_api(Some(free()));
    let election = Election::start(client, &options()).await.expect("the election starts");
    assert!(wait_until(Duration::from_secs(3), || election.leadership.is_leader()).await.is_some());
    assert_eq!(api.holder().as_deref(), Some(ME));

    // As `run` does: the controller's context holds a copy of the leadership until it ends.
    let (strict, asked) = strict_api();
    let sources: Sources = Arc::new(|_| panic!("not reconciling here"));
    let dir = tempfile::tempdir().unwrap();
    let ctx =
        Context::new(strict, Defaults::default(), dir.path().to_owned(), sources, election.leadership.clone(), None);
    let copy = election.leadership.clone();
    drop(ctx);
    drop(copy);

    let before = api.seen().len();
    let start = Instant::now();
    election.release(Duration::from_secs(3)).await;
    let took = start.elapsed();
    let seen = api.seen();
    assert!(took < Duration::from_secs(2), "release took {took:?} (timed out?): {seen:#?}");
    let spec = api.spec();
    for field in ["holderIdentity", "renewTime", "acquireTime", "leaseDurationSeconds"] {
        assert!(!spec.contains_key(field), "{field} is still set after release: {spec:?}");
    }
    assert_eq!(spec["leaseTransitions"], 1, "the transition count stays");

    let release: Vec<&Seen> = seen[before..].iter().filter(|s| s.method != "GET").collect();
    assert_eq!(release.len(), 1, "{seen:#?}");
    assert!(release[0].is_strategic() && release[0].status == 200);
    assert_eq!(release[0].query, format!("fieldManager={}", field_manager(ME)));
    assert_eq!(
        release[0].body["spec"],
        json!({ "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null })
    );

    // The election is over: nothing more is sent.
    let count = api.seen().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.seen().len(), count, "requests after the release: {:#?}", &api.seen()[count..]);
    assert!(asked.lock().unwrap().is_empty());
    api.dump("release");
    api.assert_only_the_lease_was_touched();
}
