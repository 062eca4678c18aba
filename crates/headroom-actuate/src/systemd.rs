//! The systemd actuator: restarts units and scales template services over
//! systemd's D-Bus API (never a shell, never `systemctl`).
//!
//! A target's entity names the unit: `systemd/<unit>`, e.g.
//! `systemd/demo.service`, or `systemd/worker@.service` for a template whose
//! numbered instances (`worker@1.service`, `worker@2.service`, …) are its
//! replicas.
//!
//! * **Observe**: `LoadUnit`, then the unit's `LoadState`, `ActiveState`,
//!   `SubState`, `StartLimitBurst`, `StartLimitIntervalUSec` and, for
//!   services, `Result`, `NRestarts`, `MainPID`, `ExecMainStatus`,
//!   `ExecMainStartTimestamp` (`org.freedesktop.DBus.Properties.Get`). A
//!   template is observed through `ListUnitsByPatterns`: its replicas are
//!   its active instances, its restarts the sum of theirs.
//! * **Restart**: `RestartUnit(unit, "replace")`, then wait (polling
//!   `ListJobs`) until the job has left the queue, up to the timeout; a unit
//!   left `failed` is an error naming systemd's `Result`. A service waiting
//!   for its own automatic restart is stopped and started instead (see
//!   [`SystemdActuator::restart_unit`]). A template restarts each of its
//!   active instances.
//! * **ScaleTo n** on a template: `StartUnit` the lowest free numbers, or
//!   `StopUnit` the highest numbered instances, until n are active; n
//!   already active changes nothing. On any other unit it is an error: one
//!   unit is one instance.
//!
//! Unit names are checked against systemd's rules by [`UnitName::parse`]
//! before any D-Bus call. A decision id already applied is not applied
//! again, and one change at a time is in flight per unit (a second waits
//! for the first to end): the shared [`Claims`], in memory; the audit log
//! guards across restarts of headroom.
//!
//! The bus is the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, else
//! `/var/run/dbus/system_bus_socket`) or an explicit address. Managing units
//! needs root, or a polkit rule granting `org.freedesktop.systemd1.manage-units`.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use headroom_core::Span;
use headroom_core::{Action, Decision};
use headroom_remediate::config::{StartLimit, Target};
use tracing::{debug, info, instrument};
use zbus::{Connection, DBusError, OwnedObjectPath, OwnedVariant};

use crate::actuator::{Actuator, Applied, Observed, describe};
use crate::error::{Error, Result};
use crate::guard::Claims;
use headroom_core::BoxFuture;

/// The prefix of a systemd target's entity: `systemd/<unit>`.
pub const ENTITY_PREFIX: &str = "systemd/";

/// The longest unit name systemd accepts (`UNIT_NAME_MAX` less its NUL).
pub const UNIT_NAME_MAX: usize = 255;

/// The unit types systemd knows, i.e. the suffixes a unit name may end with.
pub const UNIT_TYPES: [&str; 11] =
    ["service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope"];

/// How long a job may take before [`SystemdActuator`] gives up waiting, unless set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const JOB_POLL: Duration = Duration::from_millis(50);
/// How long one D-Bus reply may take (the reference implementation's default).
const REPLY_TIMEOUT: Duration = Duration::from_secs(25);

/// What a unit name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// One unit: `demo.service`.
    Plain,
    /// A template, which runs only through its instances: `worker@.service`.
    Template,
    /// One instance of a template: `worker@3.service`.
    Instance,
}

/// A unit name that passed systemd's rules ([`UnitName::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName {
    name: String,
    kind: UnitKind,
    /// Byte index of the suffix's dot.
    dot: usize,
    /// Byte index of the first `@`, for templates and instances.
    at: Option<usize>,
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

impl UnitName {
    /// Checks `name` against systemd's rules for unit names, with no D-Bus
    /// call: at most [`UNIT_NAME_MAX`] bytes; a known type suffix
    /// ([`UNIT_TYPES`]); before it only `A–Z a–z 0–9 : - _ . \` and `@`;
    /// a `\` only as a `\xHH` escape (what `systemd-escape` writes; systemd
    /// itself is more lenient); an `@` only after a non-empty prefix, with an
    /// empty instance (a template) or a non-empty one (an instance). The
    /// error says what is wrong, in words.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        if name.is_empty() {
            return Err("a unit name cannot be empty".into());
        }
        if name.len() > UNIT_NAME_MAX {
            return Err(format!("{} bytes long; systemd allows at most {UNIT_NAME_MAX}", name.len()));
        }
        if let Some(c) = name.chars().find(|&c| !valid_char(c) && c != '@') {
            return Err(format!(
                "contains {c:?}, which systemd does not allow in unit names (allowed: A-Z a-z 0-9 : - _ . @ and \\xHH escapes; see systemd-escape)"
            ));
        }
        let bytes = name.as_bytes();
        for (i, _) in name.match_indices('\\') {
            let escape = bytes.get(i + 1..i + 4);
            if !matches!(escape, Some([b'x', h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()) {
                return Err(format!("has a `\\` at byte {i} that is not a \\xHH escape (see systemd-escape)"));
            }
        }
        let Some(dot) = name.rfind('.') else {
            return Err(format!("has no type suffix: name a unit such as {name}.service"));
        };
        let suffix = &name[dot + 1..];
        if !UNIT_TYPES.contains(&suffix) {
            return Err(format!("`.{suffix}` is not a unit type (one of .{})", UNIT_TYPES.join(", .")));
        }
        let stem = &name[..dot];
        if stem.is_empty() {
            return Err(format!("has nothing before `.{suffix}`"));
        }
        let (kind, at) = match stem.find('@') {
            None => (UnitKind::Plain, None),
            Some(0) => return Err("has nothing before `@`: a template is named like worker@.service".into()),
            Some(at) if at + 1 == stem.len() => (UnitKind::Template, Some(at)),
            Some(at) => (UnitKind::Instance, Some(at)),
        };
        Ok(Self { name: name.to_owned(), kind, dot, at })
    }

    /// The unit of `target`, whose entity must be `systemd/<unit>` with a valid unit name.
    pub fn of_target(target: &Target) -> Result<Self> {
        let bad = |why: String| Error::Actuator { actuator: "systemd".into(), target: target.name.clone(), why };
        let Some(unit) = target.entity.strip_prefix(ENTITY_PREFIX) else {
            return Err(bad(format!(
                "entity {:?} is not a systemd unit: write it as systemd/<unit>, e.g. systemd/demo.service",
                target.entity
            )));
        };
        Self::parse(unit).map_err(|why| bad(format!("refused unit name {unit:?} before any D-Bus call: {why}")))
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Plain unit, template or instance.
    pub fn kind(&self) -> UnitKind {
        self.kind
    }

    /// The type suffix without its dot (`service`).
    pub fn suffix(&self) -> &str {
        &self.name[self.dot + 1..]
    }

    /// The part before the `@` (or before the suffix, for a plain unit).
    pub fn prefix(&self) -> &str {
        &self.name[..self.at.unwrap_or(self.dot)]
    }

    /// The instance of an instance unit (`3` of `worker@3.service`).
    pub fn instance(&self) -> Option<&str> {
        match (self.kind, self.at) {
            (UnitKind::Instance, Some(at)) => Some(&self.name[at + 1..self.dot]),
            _ => None,
        }
    }

    /// Whether the unit is a service (which has a main process and a restart counter).
    pub fn is_service(&self) -> bool {
        self.suffix() == "service"
    }

    /// Instance `instance` of this template (`worker@3.service`); `None` when
    /// this is not a template or the result is not a valid name.
    pub fn instance_named(&self, instance: &str) -> Option<Self> {
        if self.kind != UnitKind::Template {
            return None;
        }
        Self::parse(&format!("{}@{instance}.{}", self.prefix(), self.suffix())).ok()
    }

    /// Whether `other` is an instance of this template.
    pub fn has_instance(&self, other: &UnitName) -> bool {
        self.kind == UnitKind::Template
            && other.kind == UnitKind::Instance
            && other.prefix() == self.prefix()
            && other.suffix() == self.suffix()
    }

    /// The `ListUnitsByPatterns` glob matching this template's instances
    /// (backslashes escaped: systemd matches with `fnmatch`).
    fn instance_glob(&self) -> String {
        format!("{}@*.{}", self.prefix().replace('\\', "\\\\"), self.suffix())
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// What to start and stop to bring a template to `want` active instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleSteps {
    /// Instance numbers to start (the lowest not active), ascending.
    pub start: Vec<u32>,
    /// Instances to stop (the highest numbered active ones), descending.
    pub stop: Vec<u32>,
}

impl ScaleSteps {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty()
    }
}

/// The instances to start or stop so that `want` of a template's instances
/// are active, given the instance strings of the active ones (`"1"`, `"3"`,
/// `"blue"`). All active instances count; only numbered ones are started or
/// stopped. Errors when stopping every numbered instance would still leave
/// more than `want` (the others were started by someone else: headroom does
/// not touch them).
pub fn scale_steps(active: &[&str], want: u32) -> std::result::Result<ScaleSteps, String> {
    let have = u32::try_from(active.len()).unwrap_or(u32::MAX);
    let mut numbered: Vec<u32> = active.iter().filter_map(|i| number(i)).collect();
    numbered.sort_unstable();
    let mut steps = ScaleSteps::default();
    if have < want {
        let mut k = 1;
        while steps.start.len() < (want - have) as usize {
            if numbered.binary_search(&k).is_err() {
                steps.start.push(k);
            }
            k += 1;
        }
    } else if have > want {
        let excess = (have - want) as usize;
        if excess > numbered.len() {
            let others: Vec<&str> = active.iter().copied().filter(|i| number(i).is_none()).collect();
            return Err(format!(
                "{have} instances are active and only {} are numbered; the others ({}) were not started by headroom and are left alone, so {want} cannot be reached",
                numbered.len(),
                others.join(", ")
            ));
        }
        steps.stop = numbered.iter().rev().take(excess).copied().collect();
    }
    Ok(steps)
}

/// An instance string headroom manages: a positive decimal number without leading zeros.
fn number(instance: &str) -> Option<u32> {
    if instance.starts_with('0') || !instance.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    instance.parse().ok().filter(|&n| n > 0)
}

/// One unit as systemd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitStatus {
    /// The unit.
    pub unit: String,
    /// `loaded`, `not-found`, `masked`, `error`, …
    pub load_state: String,
    /// `active`, `inactive`, `activating`, `deactivating`, `failed`, `reloading`.
    pub active_state: String,
    /// The type's own state: `running`, `exited`, `auto-restart`, `dead`, `failed`, …
    pub sub_state: String,
    /// Services: how the last run ended (`success`, `exit-code`, `start-limit-hit`, …).
    pub result: Option<String>,
    /// Services: automatic restarts (`Restart=`) since the last manual start.
    pub n_restarts: Option<u32>,
    /// Services: the main process (a PID in systemd's PID namespace), when running.
    pub main_pid: Option<u32>,
    /// Services: the exit status (or signal) of the last main process.
    pub exec_main_status: Option<i32>,
    /// Services: when the current (or last) main process started, µs since the epoch.
    pub exec_main_start_us: Option<u64>,
    /// `StartLimitBurst` within `StartLimitIntervalSec` (None when rate limiting is off).
    pub start_limit: Option<StartLimit>,
}

impl UnitStatus {
    /// `ActiveState/SubState`, e.g. `active/running`.
    pub fn state(&self) -> String {
        format!("{}/{}", self.active_state, self.sub_state)
    }

    fn detail(&self) -> String {
        let mut out = format!("{}: {} ({})", self.unit, self.state(), self.load_state);
        if let Some(r) = &self.result {
            out.push_str(&format!(", Result {r}"));
        }
        if let Some(p) = self.main_pid {
            out.push_str(&format!(", MainPID {p}"));
        }
        if let Some(s) = self.exec_main_status {
            out.push_str(&format!(", ExecMainStatus {s}"));
        }
        if let Some(n) = self.n_restarts {
            out.push_str(&format!(", NRestarts {n}"));
        }
        if let Some(l) = self.start_limit {
            out.push_str(&format!(", StartLimitBurst {} in {}", l.burst, l.interval));
        }
        out
    }
}

/// The start limit from `StartLimitBurst` and `StartLimitIntervalUSec`; a
/// zero burst or interval means systemd does not rate-limit starts.
pub fn start_limit(burst: u32, interval_us: u64) -> Option<StartLimit> {
    (burst > 0 && interval_us > 0).then(|| StartLimit { burst, interval: Span(Duration::from_micros(interval_us)) })
}

/// One loaded instance of a template, from `ListUnitsByPatterns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The instance unit (`worker@3.service`).
    pub unit: UnitName,
    /// Its `ActiveState`.
    pub active_state: String,
    /// Its `SubState`.
    pub sub_state: String,
    path: OwnedObjectPath,
}

impl Instance {
    /// The instance string (`3`).
    pub fn instance(&self) -> &str {
        self.unit.instance().unwrap_or_default()
    }

    /// Whether it counts as a running replica (`active` or `reloading`).
    pub fn is_up(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }
}

/// Which bus to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bus {
    System,
    Address(String),
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bus::System => f.write_str("the system bus"),
            Bus::Address(a) => write!(f, "the bus at {a}"),
        }
    }
}

/// One row of `ListUnitsByPatterns`: `(ssssssouso)`.
type UnitRow = (String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath);

/// One row of `ListJobs`: `(usssoo)`.
type JobRow = (u32, String, String, String, OwnedObjectPath, OwnedObjectPath);

/// Carries decisions out on systemd units over D-Bus. See the module docs.
pub struct SystemdActuator {
    bus: Bus,
    conn: Mutex<Option<Connection>>,
    timeout: Duration,
    /// Decision ids applied, and the units being changed now.
    claims: Claims,
}

impl fmt::Debug for SystemdActuator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connected = self.conn.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("SystemdActuator")
            .field("bus", &self.bus)
            .field("connected", &connected)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SystemdActuator {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, else
    /// `/var/run/dbus/system_bus_socket`).
    pub async fn system() -> Result<Self> {
        let a = Self::new(Bus::System);
        let _stored = a.connection("(bus)").await?;
        Ok(a)
    }

    /// Connects to the bus at `address`, e.g. `unix:path=/run/dbus/system_bus_socket`.
    pub async fn at(address: &str) -> Result<Self> {
        let a = Self::new(Bus::Address(address.to_owned()));
        let _stored = a.connection("(bus)").await?;
        Ok(a)
    }

    /// Like [`SystemdActuator::at`], but connects on the first D-Bus call
    /// (for a daemon that may start before the bus does).
    pub fn lazy(address: &str) -> Self {
        Self::new(Bus::Address(address.to_owned()))
    }

    fn new(bus: Bus) -> Self {
        Self { bus, conn: Mutex::new(None), timeout: DEFAULT_TIMEOUT, claims: Claims::new() }
    }

    /// Waits at most `timeout` for each job (start, stop, restart) to finish; default
    /// [`DEFAULT_TIMEOUT`]. Each D-Bus reply may take 25 s at most.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn err(&self, unit: &str, why: String) -> Error {
        Error::Actuator { actuator: "systemd".into(), target: unit.to_owned(), why }
    }

    /// A D-Bus failure while doing `what` to `unit`, with what to do about it.
    fn dbus_err(&self, unit: &str, what: &str, e: zbus::Error) -> Error {
        let name = match &e {
            zbus::Error::FDO(f) => Some(f.name().as_str().to_owned()),
            zbus::Error::MethodError(n, _, _) => Some(n.as_str().to_owned()),
            _ => None,
        };
        let hint = match name.as_deref() {
            Some(
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
            ) => " (run headroom as root, or grant it org.freedesktop.systemd1.manage-units with a polkit rule)".into(),
            Some("org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner") => {
                format!(" (systemd is not on {}: is it the right bus?)", self.bus)
            }
            Some("org.freedesktop.systemd1.NoSuchUnit") => {
                " (install the unit file and reload systemd, or fix the target's entity)".into()
            }
            _ if matches!(e, zbus::Error::InputOutput(_) | zbus::Error::Connection(..) | zbus::Error::Handshake(_)) => {
                format!(" (is {} reachable? set DBUS_SYSTEM_BUS_ADDRESS or the actuator's address)", self.bus)
            }
            _ => String::new(),
        };
        self.err(unit, format!("{what}: {e}{hint}"))
    }

    async fn connection(&self, unit: &str) -> Result<Connection> {
        if let Some(c) = self.conn.lock().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let builder = match &self.bus {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        };
        let conn = builder
            .method_timeout(REPLY_TIMEOUT)
            .build()
            .await
            .map_err(|e| self.dbus_err(unit, &format!("could not connect to {}", self.bus), e))?;
        debug!(bus = %self.bus, "connected to systemd's bus");
        if let Ok(mut slot) = self.conn.lock() {
            slot.get_or_insert_with(|| conn.clone());
        }
        Ok(conn)
    }

    async fn call<B>(&self, unit: &str, path: &str, iface: &str, method: &str, body: &B) -> Result<zbus::Message>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let conn = self.connection(unit).await?;
        conn.call_method(Some(SYSTEMD), path, Some(iface), method, body)
            .await
            .map_err(|e| self.dbus_err(unit, &format!("{iface}.{method} on {}", self.bus), e))
    }

    async fn manager<B, R>(&self, unit: &str, method: &str, body: &B) -> Result<R>
    where
        B: serde::Serialize + zbus::DynamicType,
        R: for<'d> zbus::wire::DynamicDeserialize<'d>,
    {
        let reply = self.call(unit, MANAGER_PATH, MANAGER, method, body).await?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|e| self.err(unit, format!("{MANAGER}.{method}: unexpected reply: {e}")))
    }

    async fn get<T>(&self, unit: &str, path: &str, iface: &str, property: &str) -> Result<T>
    where
        T: TryFrom<OwnedVariant, Error = zbus::Error>,
    {
        let reply = self.call(unit, path, PROPERTIES, "Get", &(iface, property)).await?;
        let value: OwnedVariant = reply
            .body()
            .deserialize()
            .map_err(|e| self.err(unit, format!("{iface}.{property}: unexpected reply: {e}")))?;
        T::try_from(value).map_err(|e| self.err(unit, format!("{iface}.{property}: unexpected type: {e}")))
    }

    /// Asks systemd to read its unit files again (`Reload`), e.g. after one was written.
    #[instrument(skip(self))]
    pub async fn reload(&self) -> Result<()> {
        self.call("(manager)", MANAGER_PATH, MANAGER, "Reload", &()).await.map(|_| ())
    }

    /// systemd's version (`Manager.Version`, e.g. `252.39-1~deb12u2`).
    pub async fn version(&self) -> Result<String> {
        self.get("(manager)", MANAGER_PATH, MANAGER, "Version").await
    }

    /// `EnableUnitFiles(files, runtime = false, force = true)`: the symlinks of
    /// their `[Install]` sections. Returns the changes made (type, path, target).
    #[instrument(skip(self))]
    pub async fn enable_unit_files(&self, files: &[&str]) -> Result<Vec<(String, String, String)>> {
        let who = files.join(" ");
        let (_, changes): (bool, Vec<(String, String, String)>) =
            self.manager(&who, "EnableUnitFiles", &(files, false, true)).await?;
        Ok(changes)
    }

    /// `DisableUnitFiles(files, runtime = false)`: removes their `[Install]`
    /// symlinks. Returns the changes made (type, path, target).
    #[instrument(skip(self))]
    pub async fn disable_unit_files(&self, files: &[&str]) -> Result<Vec<(String, String, String)>> {
        self.manager(&files.join(" "), "DisableUnitFiles", &(files, false)).await
    }

    /// One property of `unit` on the D-Bus interface `iface` (e.g.
    /// `org.freedesktop.systemd1.Timer`), after `LoadUnit`.
    pub async fn unit_property<T>(&self, unit: &UnitName, iface: &str, property: &str) -> Result<T>
    where
        T: TryFrom<OwnedVariant, Error = zbus::Error>,
    {
        let path: OwnedObjectPath = self.manager(unit.as_str(), "LoadUnit", &(unit.as_str(),)).await?;
        self.get(unit.as_str(), path.as_str(), iface, property).await
    }

    /// Everything [`Actuator::observe`] reads of one unit (not a template).
    #[instrument(skip(self), fields(unit = %unit))]
    pub async fn status(&self, unit: &UnitName) -> Result<UnitStatus> {
        if unit.kind() == UnitKind::Template {
            return Err(
                self.err(unit.as_str(), "a template has no state of its own: ask for one of its instances".into())
            );
        }
        let path: OwnedObjectPath = self.manager(unit.as_str(), "LoadUnit", &(unit.as_str(),)).await?;
        self.status_at(unit, path.as_str()).await
    }

    async fn status_at(&self, unit: &UnitName, path: &str) -> Result<UnitStatus> {
        let u = unit.as_str();
        let load_state: String = self.get(u, path, UNIT, "LoadState").await?;
        if load_state == "not-found" {
            return Err(self.err(
                u,
                "systemd has no such unit (LoadState not-found): install its unit file and reload systemd, or fix the target's entity".into(),
            ));
        }
        let mut s = UnitStatus {
            unit: u.to_owned(),
            load_state,
            active_state: self.get(u, path, UNIT, "ActiveState").await?,
            sub_state: self.get(u, path, UNIT, "SubState").await?,
            start_limit: start_limit(
                self.get(u, path, UNIT, "StartLimitBurst").await?,
                self.get(u, path, UNIT, "StartLimitIntervalUSec").await?,
            ),
            ..UnitStatus::default()
        };
        if unit.is_service() {
            s.result = Some(self.get(u, path, SERVICE, "Result").await?);
            s.n_restarts = Some(self.get(u, path, SERVICE, "NRestarts").await?);
            s.main_pid = Some(self.get::<u32>(u, path, SERVICE, "MainPID").await?).filter(|&p| p != 0);
            s.exec_main_status = Some(self.get(u, path, SERVICE, "ExecMainStatus").await?);
            s.exec_main_start_us =
                Some(self.get::<u64>(u, path, SERVICE, "ExecMainStartTimestamp").await?).filter(|&t| t != 0);
        }
        Ok(s)
    }

    /// The loaded instances of `template` (`ListUnitsByPatterns`), any state.
    #[instrument(skip(self), fields(template = %template))]
    pub async fn instances(&self, template: &UnitName) -> Result<Vec<Instance>> {
        if template.kind() != UnitKind::Template {
            return Err(self.err(template.as_str(), "not a template (name@.service)".into()));
        }
        let glob = template.instance_glob();
        let rows: Vec<UnitRow> =
            self.manager(template.as_str(), "ListUnitsByPatterns", &(Vec::<&str>::new(), vec![glob.as_str()])).await?;
        let mut out: Vec<Instance> = rows
            .into_iter()
            .filter_map(|(name, _, _, active, sub, _, path, ..)| {
                let unit = UnitName::parse(&name).ok().filter(|u| template.has_instance(u))?;
                Some(Instance { unit, active_state: active, sub_state: sub, path })
            })
            .collect();
        out.sort_by(|a, b| {
            (number(a.instance()).unwrap_or(u32::MAX), a.instance())
                .cmp(&(number(b.instance()).unwrap_or(u32::MAX), b.instance()))
        });
        Ok(out)
    }

    /// Starts `unit` (`StartUnit`, mode `replace`) and waits for its job.
    pub async fn start_unit(&self, unit: &UnitName) -> Result<UnitStatus> {
        self.job("StartUnit", unit).await
    }

    /// Stops `unit` (`StopUnit`, mode `replace`) and waits for its job.
    pub async fn stop_unit(&self, unit: &UnitName) -> Result<UnitStatus> {
        self.job("StopUnit", unit).await
    }

    /// Restarts `unit` (`RestartUnit`, mode `replace`) and waits for its job.
    /// Returns how it was done, in words, and the unit afterwards.
    ///
    /// A service waiting for its own automatic restart (`auto-restart`) is
    /// stopped and started instead: systemd 252 holds a `RestartUnit` job
    /// there until `RestartSec` has passed, and the held attempt costs a
    /// start-limit token on top of the start itself, so the platform's next
    /// restart could hit `StartLimitBurst` because of headroom.
    pub async fn restart_unit(&self, unit: &UnitName) -> Result<(String, UnitStatus)> {
        if unit.is_service() && self.status(unit).await?.sub_state == "auto-restart" {
            self.stop_unit(unit).await?;
            let s = self.start_unit(unit).await?;
            return Ok((format!("StopUnit + StartUnit {unit} (it was waiting for its automatic restart)"), s));
        }
        Ok((format!("RestartUnit {unit} (replace)"), self.job("RestartUnit", unit).await?))
    }

    /// Queues `method(unit, "replace")`, waits until the job has left
    /// systemd's queue, and reads the unit. A start or restart that leaves
    /// the unit `failed` is an error naming systemd's `Result`.
    #[instrument(skip(self), fields(unit = %unit))]
    async fn job(&self, method: &str, unit: &UnitName) -> Result<UnitStatus> {
        let u = unit.as_str();
        let job: OwnedObjectPath = self.manager(u, method, &(u, "replace")).await?;
        info!(unit = u, method, job = job.as_str(), "systemd job queued");
        let deadline = Instant::now() + self.timeout;
        loop {
            let jobs: Vec<JobRow> = self.manager(u, "ListJobs", &()).await?;
            if !jobs.iter().any(|j| j.4 == job) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.err(
                    u,
                    format!(
                        "{method}: job {} still queued or running after {:?}; the unit may be slow to start or stop (see its journal), or raise the actuator's timeout",
                        job.as_str(),
                        self.timeout
                    ),
                ));
            }
            tokio::time::sleep(JOB_POLL).await;
        }
        let status = self.status(unit).await?;
        if method != "StopUnit" && status.active_state == "failed" {
            let result = status.result.as_deref().unwrap_or("unknown");
            let limit =
                status.start_limit.map(|l| format!(" ({} starts in {})", l.burst, l.interval)).unwrap_or_default();
            // systemd keeps the previous failure's Result when the start limit stops a
            // crashing unit, so `exit-code` may mean the limit too.
            let what = if result == "start-limit-hit" {
                format!("systemd refused the start: its start limit{limit} was hit")
            } else {
                format!("it failed at once, or hit its start limit{limit}")
            };
            let what = format!("{what}; see its journal, and reset-failed it once the cause is fixed");
            return Err(self.err(u, format!("{method} finished but {}: Result {result}; {what}", status.state())));
        }
        debug!(unit = u, state = %status.state(), "systemd job finished");
        Ok(status)
    }

    async fn observe_unit(&self, unit: &UnitName) -> Result<Observed> {
        if unit.kind() != UnitKind::Template {
            let s = self.status(unit).await?;
            return Ok(Observed {
                replicas: None,
                state: Some(s.state()),
                restarts: s.n_restarts.map(u64::from),
                start_limit: s.start_limit,
                detail: Some(s.detail()),
            });
        }
        let all = self.instances(unit).await?;
        let up: Vec<&Instance> = all.iter().filter(|i| i.is_up()).collect();
        let mut restarts = 0u64;
        let mut limit = None;
        for i in &up {
            let s = self.status_at(&i.unit, i.path.as_str()).await?;
            restarts += u64::from(s.n_restarts.unwrap_or(0));
            limit = limit.or(s.start_limit);
        }
        let listed: Vec<String> =
            all.iter().map(|i| format!("{} {}/{}", i.unit, i.active_state, i.sub_state)).collect();
        let count = u32::try_from(up.len()).unwrap_or(u32::MAX);
        Ok(Observed {
            replicas: Some(count),
            state: Some(format!("{count} active")),
            restarts: Some(restarts),
            start_limit: limit,
            detail: Some(format!(
                "{unit}: {count} active instances; loaded: {}",
                if listed.is_empty() { "none".into() } else { listed.join(", ") }
            )),
        })
    }

    /// The steps to bring template `unit` to `want` active instances, and how many are active now.
    async fn steps(&self, target: &Target, unit: &UnitName, want: u32) -> Result<(usize, ScaleSteps)> {
        if unit.kind() != UnitKind::Template {
            return Err(self.err(
                &target.name,
                format!(
                    "cannot scale {unit}: only a template unit (name@.service) has instances to start or stop; restart it instead, or point the target at a template such as systemd/{}@.service",
                    unit.prefix()
                ),
            ));
        }
        let all = self.instances(unit).await?;
        let active: Vec<&str> = all.iter().filter(|i| i.is_up()).map(|i| i.instance()).collect();
        let steps = scale_steps(&active, want).map_err(|why| self.err(unit.as_str(), why))?;
        Ok((active.len(), steps))
    }

    fn instance_of(&self, unit: &UnitName, n: u32) -> Result<UnitName> {
        unit.instance_named(&n.to_string())
            .ok_or_else(|| self.err(unit.as_str(), format!("instance {n} would not be a valid unit name")))
    }

    async fn scale(&self, target: &Target, unit: &UnitName, want: u32) -> Result<Applied> {
        let (have, steps) = self.steps(target, unit, want).await?;
        if steps.is_empty() {
            return Ok(Applied { changed: false, detail: format!("{unit}: {have} instances already active") });
        }
        let mut done = Vec::new();
        for n in &steps.start {
            let i = self.instance_of(unit, *n)?;
            self.start_unit(&i).await?;
            done.push(format!("StartUnit {i}"));
        }
        for n in &steps.stop {
            let i = self.instance_of(unit, *n)?;
            self.stop_unit(&i).await?;
            done.push(format!("StopUnit {i}"));
        }
        let now = self.instances(unit).await?.iter().filter(|i| i.is_up()).count();
        Ok(Applied {
            changed: true, detail: format!("{unit}: {have} → {now} active instances ({})", done.join(", "))
        })
    }

    async fn restart(&self, unit: &UnitName) -> Result<Applied> {
        let units = if unit.kind() == UnitKind::Template {
            let up: Vec<UnitName> =
                self.instances(unit).await?.into_iter().filter(Instance::is_up).map(|i| i.unit).collect();
            if up.is_empty() {
                return Err(self.err(unit.as_str(), "no active instance to restart".into()));
            }
            up
        } else {
            vec![unit.clone()]
        };
        let mut done = Vec::new();
        for u in &units {
            let (how, s) = self.restart_unit(u).await?;
            done.push(format!("{how}: now {}", s.detail()));
        }
        Ok(Applied { changed: true, detail: done.join("; ") })
    }

    #[instrument(skip_all, fields(target = %target.name))]
    async fn do_observe(&self, target: &Target) -> Result<Observed> {
        let unit = UnitName::of_target(target)?;
        self.observe_unit(&unit).await
    }

    #[instrument(skip_all, fields(target = %target.name, decision = %decision.id))]
    async fn do_plan(&self, target: &Target, decision: &Decision) -> Result<String> {
        let unit = UnitName::of_target(target)?;
        match decision.action {
            Action::None => Ok(describe(target, decision)),
            Action::Restart if unit.kind() == UnitKind::Template => {
                Ok(format!("would RestartUnit (mode replace) each active instance of {unit}"))
            }
            Action::Restart => Ok(format!("would RestartUnit {unit} (mode replace) on {}", self.bus)),
            Action::ScaleTo { replicas } => {
                let (have, steps) = self.steps(target, &unit, replicas).await?;
                if steps.is_empty() {
                    return Ok(format!("would do nothing: {have} instances of {unit} already active"));
                }
                let name = |n: &u32| self.instance_of(&unit, *n).map(|u| u.to_string()).unwrap_or_default();
                let start: Vec<String> = steps.start.iter().map(name).collect();
                let stop: Vec<String> = steps.stop.iter().map(name).collect();
                Ok(format!(
                    "would take {unit} from {have} to {replicas} active instances: StartUnit [{}], StopUnit [{}]",
                    start.join(", "),
                    stop.join(", ")
                ))
            }
        }
    }

    #[instrument(skip_all, fields(target = %target.name, decision = %decision.id))]
    async fn do_apply(&self, target: &Target, decision: &Decision) -> Result<Applied> {
        let unit = UnitName::of_target(target)?;
        if !decision.action.is_some() {
            return Ok(Applied { changed: false, detail: describe(target, decision) });
        }
        let Some(ticket) = self.claims.claim_when_free(&decision.id, unit.as_str()).await else {
            return Ok(Applied {
                changed: false,
                detail: format!("decision {} already applied to {unit}: not repeated", decision.id),
            });
        };
        let result = match decision.action {
            Action::ScaleTo { replicas } => self.scale(target, &unit, replicas).await,
            Action::Restart => self.restart(&unit).await,
            Action::None => Ok(Applied { changed: false, detail: describe(target, decision) }),
        };
        // On an error nothing (or not all) was done: dropping the ticket lets
        // a later apply of the same decision try again.
        if result.is_ok() {
            ticket.done();
        }
        result
    }
}

impl Actuator for SystemdActuator {
    fn name(&self) -> &str {
        "systemd"
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
    use headroom_remediate::config::Platform;

    fn refused(name: &str) -> String {
        UnitName::parse(name).expect_err(name)
    }

    #[test]
    fn plain_template_and_instance_names_are_told_apart() {
        let u = UnitName::parse("demo.service").unwrap();
        assert_eq!((u.kind(), u.prefix(), u.suffix(), u.instance()), (UnitKind::Plain, "demo", "service", None));
        let t = UnitName::parse("worker@.service").unwrap();
        assert_eq!((t.kind(), t.prefix(), t.instance()), (UnitKind::Template, "worker", None));
        let i = UnitName::parse("worker@3.service").unwrap();
        assert_eq!((i.kind(), i.prefix(), i.instance()), (UnitKind::Instance, "worker", Some("3")));
        assert!(t.has_instance(&i));
        assert!(!t.has_instance(&UnitName::parse("work@3.service").unwrap()));
        assert!(!t.has_instance(&UnitName::parse("worker@3.socket").unwrap()));
        assert_eq!(t.instance_named("7").unwrap().as_str(), "worker@7.service");
        assert_eq!(u.instance_named("7"), None, "a plain unit has no instances");
        // systemd allows `@` inside the instance, dots in the prefix, and \xHH escapes.
        let odd = UnitName::parse("getty@tty1@x.service").unwrap();
        assert_eq!(odd.instance(), Some("tty1@x"));
        for ok in ["dev-disk-by\\x2dlabel-root.device", "a.b.c.target", "-.mount", "x:y_z-1.socket", "user.slice"] {
            assert!(UnitName::parse(ok).is_ok(), "{ok}: {:?}", UnitName::parse(ok));
        }
        assert_eq!(UnitName::parse(&format!("{}.service", "a".repeat(247))).unwrap().as_str().len(), 255);
    }

    #[test]
    fn names_systemd_would_refuse_are_refused_with_the_reason() {
        assert!(refused("../etc/passwd").contains("'/'"));
        assert!(refused("foo bar.service").contains("' '"));
        assert!(refused("x").contains("no type suffix"));
        assert!(refused("").contains("empty"));
        assert!(refused("demo.servic").contains("not a unit type"));
        assert!(refused("demo.").contains("not a unit type"));
        assert!(refused(".service").contains("nothing before"));
        assert!(refused("@.service").contains("nothing before `@`"));
        assert!(refused("@x.service").contains("nothing before `@`"));
        assert!(refused("a;rm -rf.service").contains("';'"));
        assert!(refused("démo.service").contains("'é'"));
        assert!(refused("tab\t.service").contains("'\\t'"));
        assert!(refused("a\\b.service").contains("\\xHH"));
        assert!(refused("a\\x2.service").contains("\\xHH"));
        assert!(refused(&format!("{}.service", "a".repeat(248))).contains("256 bytes"));
    }

    #[test]
    fn the_unit_comes_from_a_systemd_entity_only() {
        let t = |entity: &str| Target::new("t", Platform::Systemd, entity, "cpu");
        assert_eq!(UnitName::of_target(&t("systemd/worker@.service")).unwrap().kind(), UnitKind::Template);
        let err = UnitName::of_target(&t("k8s/shop/deployment/x")).unwrap_err().to_string();
        assert!(err.contains("systemd/<unit>"), "{err}");
        let err = UnitName::of_target(&t("systemd/../etc/passwd")).unwrap_err().to_string();
        assert!(err.contains("before any D-Bus call") && err.contains("'/'"), "{err}");
    }

    #[test]
    fn scaling_starts_the_lowest_free_numbers_and_stops_the_highest() {
        let s = |active: &[&str], want| scale_steps(active, want).unwrap();
        assert_eq!(s(&[], 3), ScaleSteps { start: vec![1, 2, 3], stop: vec![] });
        assert_eq!(s(&["2"], 3), ScaleSteps { start: vec![1, 3], stop: vec![] });
        assert_eq!(s(&["1", "2", "3"], 1), ScaleSteps { start: vec![], stop: vec![3, 2] });
        assert!(s(&["1", "5"], 2).is_empty(), "the count is what matters, not which numbers");
        assert_eq!(s(&["blue", "1"], 1), ScaleSteps { start: vec![], stop: vec![1] });
        assert_eq!(s(&["1"], 0), ScaleSteps { start: vec![], stop: vec![1] });
        // `01` is not a number headroom would have started: it is left alone, and 1 is free.
        assert_eq!(s(&["01"], 2), ScaleSteps { start: vec![1], stop: vec![] });
        let err = scale_steps(&["blue", "green", "1"], 1).unwrap_err();
        assert!(err.contains("blue, green") && err.contains("left alone"), "{err}");
    }

    #[test]
    fn a_zero_burst_or_interval_means_no_start_limit() {
        assert_eq!(start_limit(5, 60_000_000), Some(StartLimit { burst: 5, interval: Span(Duration::from_secs(60)) }));
        assert_eq!(start_limit(0, 10_000_000), None);
        assert_eq!(start_limit(5, 0), None);
    }
}
