// SPDX-License-Identifier: Apache-2.0
//! The `vmctld` core: the table of VMs, definitions, recovery after a restart, events.
//!
//! Lifecycle operations (start, stop, exits and the `on_*` policies) are in [`lifecycle`];
//! the HTTP API that exposes all of it is in [`http`].
//!
//! Concurrency: the table is a `std` mutex never held across an `.await`. Operations on one
//! VM are serialised by a per-VM async lock ([`Daemon::op_lock`]); exits are handled by the
//! VM's monitor task without that lock (an operation may be waiting for the exit).
//!
//! Files per VM under the state directory, besides the store's own (`vms/<name>.json`,
//! `run/<name>.json`): `run/<name>.sock` (control), `run/<name>.serial.sock` (console),
//! `run/<name>.exit` (the VMM's exit status), `logs/<name>.log` (console output, unless the
//! definition names a log) and `logs/<name>.vmm.log` (the VMM's own stderr).
//!
//! Storage pools and volumes (`images/`, `pools/<name>.json`) are in [`storage`]; managed
//! networks (`networks/<name>.json`, `netrun/`) and the taps of VM NICs in [`networks`].

pub mod accounts;
pub mod auth;
pub mod chain;
mod hostdevs;
pub mod http;
pub mod https;
pub mod jailing;
pub mod lifecycle;
pub mod networks;
pub mod policy;
pub mod stats;
pub mod storage;
pub mod vmmlog;
pub mod vnc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, watch};
use vmdef::store::{RunState, RuntimeState, Store, StoreError};
use vmdef::validate::{HostLimits, ProblemKind};
use vmdef::{VmDef, VmName};

use crate::api::{Event, EventKind, VmDetail, VmInfo};
use crate::argv::RunPaths;
use crate::console::{ConsoleMux, Viewer};

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The `vmm` binary.
    pub vmm: PathBuf,
    /// What a definition may ask for.
    pub host: HostLimits,
    /// How long a new VMM may take to open its control socket.
    pub start_timeout: Duration,
    /// How long `stop` may take before the VMM is killed.
    pub stop_timeout: Duration,
    /// Arguments added to every `vmm` command line (e.g. `--accept-slow-kvm`).
    pub extra_vmm_args: Vec<std::ffi::OsString>,
    /// The host's sysfs (`/sys`), where managed host devices are bound to vfio-pci.
    pub host_sysfs: PathBuf,
    /// The host's procfs (`/proc`), to find VMs holding a device.
    pub host_procfs: PathBuf,
    /// The configuration file's settings: pool roots and log limits.
    pub settings: policy::Settings,
}

/// An operation that failed, classed for the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad input (HTTP 400).
    #[error("{0}")]
    BadInput(String),
    /// No such VM (HTTP 404).
    #[error("no VM named {0} is defined")]
    NotFound(String),
    /// No such pool or volume, or another missing thing the message names (HTTP 404).
    #[error("{0}")]
    Missing(String),
    /// Wrong state or a conflicting definition (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The host or a VMM failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(n) => DaemonError::NotFound(n.to_string()),
            other => DaemonError::Internal(other.to_string()),
        }
    }
}

impl From<crate::pool::PoolError> for DaemonError {
    fn from(e: crate::pool::PoolError) -> Self {
        use crate::pool::PoolError;
        match e {
            PoolError::Invalid(m) => DaemonError::BadInput(m),
            PoolError::NotFound(m) => DaemonError::Missing(m),
            PoolError::Conflict(m) => DaemonError::Conflict(m),
            e @ (PoolError::Io { .. } | PoolError::Image(_)) => DaemonError::Internal(error_chain(&e)),
        }
    }
}

/// `e` and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Result of daemon operations.
pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// What the daemon expects the next exit of a VM to mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Nothing asked: the exit is the guest's doing; apply its `on_*` policy.
    None,
    /// The daemon stopped it: shut off, no policy.
    Stop,
}

/// One VM in the table.
pub(crate) struct Slot {
    pub(crate) def: VmDef,
    pub(crate) rt: RuntimeState,
    pub(crate) console: Option<Arc<ConsoleMux>>,
    pub(crate) intent: Intent,
    /// Counts exits; waiters subscribe before acting.
    pub(crate) exits: watch::Sender<u64>,
    /// Times of automatic restarts, for the restart-loop limit.
    pub(crate) restarts: Vec<Instant>,
}

impl Slot {
    fn new(def: VmDef, rt: RuntimeState) -> Slot {
        Slot {
            def,
            rt,
            console: None,
            intent: Intent::None,
            exits: watch::channel(0).0,
            restarts: Vec::new(),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        matches!(self.rt.state, RunState::Running | RunState::Paused)
    }

    fn info(&self) -> VmInfo {
        VmInfo {
            name: self.def.name.to_string(),
            uuid: self.def.uuid.to_string(),
            state: self.rt.state,
            pid: self.rt.pid,
            memory_mib: self.def.memory_mib,
            vcpus: self.def.vcpus,
            autostart: self.def.autostart,
            exit_reason: self.rt.exit_reason.clone(),
            vnc: if self.is_active() { self.rt.vnc } else { None },
            vnc_socket: if self.is_active() { self.rt.vnc_socket.clone() } else { None },
            warnings: Vec::new(),
        }
    }
}

/// The daemon.
pub struct Daemon {
    pub(crate) store: Store,
    pub(crate) pools: crate::pool::Pools,
    pub(crate) cfg: Config,
    pub(crate) vms: Mutex<HashMap<VmName, Slot>>,
    ops: Mutex<HashMap<VmName, Arc<tokio::sync::Mutex<()>>>>,
    define_lock: tokio::sync::Mutex<()>,
    /// Serialises changes to pools and volumes.
    storage_lock: tokio::sync::Mutex<()>,
    /// Network definitions and runtime files.
    pub(crate) nets: crate::net::NetStore,
    /// The networks by name.
    pub(crate) networks: Mutex<HashMap<String, networks::NetSlot>>,
    /// Serialises changes to networks.
    pub(crate) net_lock: tokio::sync::Mutex<()>,
    /// Held while a VM with a VNC server starts, from choosing its port until the VM is
    /// recorded running with it, so two starts never pick the same port.
    pub(crate) vnc_lock: tokio::sync::Mutex<()>,
    /// Uids of VM starts under way.
    pub(crate) uids: jailing::UidReservations,
    /// The cgroup controllers VMs get (`None`: no cgroup v2, or the jailer is off).
    pub(crate) cgroup_controllers: Option<Vec<String>>,
    events: broadcast::Sender<Event>,
    /// Web users, API tokens and login sessions (`users.json`).
    pub(crate) accounts: Arc<accounts::Accounts>,
    /// Statistics history per VM (see [`stats`]).
    pub(crate) stats: stats::StatsBook,
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Parses a VM name from a request.
pub fn parse_name(name: &str) -> Result<VmName> {
    VmName::new(name).map_err(|e| DaemonError::BadInput(e.to_string()))
}

impl Daemon {
    /// Opens the state directory and loads every definition and runtime state; call
    /// [`Daemon::recover`] next to re-adopt running VMs and autostart the others.
    pub fn open(cfg: Config) -> Result<Arc<Daemon>> {
        let store = Store::open(&cfg.state_dir)?;
        for p in store.remove_temp_files()? {
            tracing::warn!("removed {} left by an interrupted write", p.display());
        }
        let pools = crate::pool::Pools::open(&cfg.state_dir, &cfg.settings.pool_roots)?;
        for p in pools.remove_temp_files() {
            tracing::warn!("removed {} left by an interrupted volume creation", p.display());
        }
        let nets = crate::net::NetStore::open(&cfg.state_dir)?;
        let (net_defs, net_problems) = nets.list()?;
        for p in net_problems {
            tracing::warn!("{p}");
        }
        let networks = net_defs
            .into_iter()
            .map(|def| (def.name.clone(), networks::NetSlot { def, active: false, dnsmasq_pid: None }))
            .collect();
        let cgroup_controllers = if cfg.settings.jail.enabled {
            match jailing::setup_cgroup_parent(&cfg.settings.jail.cgroup_parent) {
                Ok(c) => {
                    tracing::info!(
                        "VMs run in cgroups under {} with {c:?}",
                        cfg.settings.jail.cgroup_parent.display()
                    );
                    Some(c)
                }
                Err(e) => {
                    tracing::warn!("VMs run without memory.max, pids.max and cpu.max: {e}");
                    None
                }
            }
        } else {
            tracing::warn!("the jailer is off (jail.enabled in vmctld.json, or not root): every vmm runs as this daemon's user");
            None
        };
        let accounts = Arc::new(accounts::Accounts::open(&cfg.state_dir)?);
        let listing = store.list_defs()?;
        for p in &listing.problems {
            tracing::warn!("skipping {}: {:?}", p.path.display(), p.kind);
        }
        let mut vms = HashMap::new();
        for def in listing.items {
            let rt = match store.load_runtime(&def.name) {
                Ok(rt) => rt.unwrap_or_else(RuntimeState::shutoff),
                Err(e) => {
                    tracing::warn!("{e}; treating {} as shut off", def.name);
                    RuntimeState::shutoff()
                }
            };
            vms.insert(def.name.clone(), Slot::new(def, rt));
        }
        Ok(Arc::new(Daemon {
            store,
            pools,
            cfg,
            vms: Mutex::new(vms),
            ops: Mutex::new(HashMap::new()),
            define_lock: tokio::sync::Mutex::new(()),
            storage_lock: tokio::sync::Mutex::new(()),
            nets,
            networks: Mutex::new(networks),
            net_lock: tokio::sync::Mutex::new(()),
            vnc_lock: tokio::sync::Mutex::new(()),
            uids: jailing::UidReservations::default(),
            cgroup_controllers,
            events: broadcast::channel(256).0,
            accounts,
            stats: stats::StatsBook::default(),
        }))
    }

    /// Web users, API tokens and login sessions.
    pub fn accounts(&self) -> &Arc<accounts::Accounts> {
        &self.accounts
    }

    /// The state directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, HashMap<VmName, Slot>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serialises operations on one VM.
    pub(crate) async fn op_lock(&self, name: &VmName) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            ops.entry(name.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Paths of one run of `name`.
    pub fn run_paths(&self, name: &VmName) -> RunPaths {
        let dir = self.store.vm_run_dir(name);
        RunPaths {
            config: dir.join("config.json"),
            control: self.store.control_socket_path(name),
            serial: dir.join("serial.sock"),
            exit_status: dir.join("exit.json"),
            vnc: dir.join(lifecycle::VNC_SOCKET),
            dir,
        }
    }

    /// Where the VMM's own output goes.
    pub fn vmm_log_path(&self, name: &VmName) -> PathBuf {
        self.store.log_dir().join(format!("{name}.vmm.log"))
    }

    /// Where the console output of `def` is logged.
    /// A log the path policy refuses (a definition stored before it) is replaced by the
    /// default one.
    pub fn console_log_path(&self, def: &VmDef) -> PathBuf {
        match def.serial.as_ref().and_then(|s| s.log.clone()) {
            Some(log) if self.log_path_allowed(&log) => log,
            Some(log) => {
                tracing::warn!(vm = %def.name, "ignoring serial.log {}: outside the log directory", log.display());
                self.store.serial_log_path(&def.name)
            }
            None => self.store.serial_log_path(&def.name),
        }
    }

    pub(crate) fn emit(&self, vm: &VmName, event: EventKind, state: RunState, detail: Option<String>) {
        tracing::info!(vm = %vm, ?event, ?state, detail = detail.as_deref().unwrap_or(""), "event");
        let _ = self.events.send(Event { time: now(), vm: vm.to_string(), event, state, detail });
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Every VM, sorted by name.
    pub fn list(&self) -> Vec<VmInfo> {
        let mut v: Vec<VmInfo> = self.table().values().map(Slot::info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One VM's state.
    pub fn info(&self, name: &VmName) -> Result<VmInfo> {
        self.table().get(name).map(Slot::info).ok_or_else(|| DaemonError::NotFound(name.to_string()))
    }

    /// One VM's state and definition; its secrets (the VNC password) only with `secrets`.
    pub fn detail(&self, name: &VmName, secrets: bool) -> Result<VmDetail> {
        let t = self.table();
        let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
        let definition = if secrets { s.def.clone() } else { s.def.without_secrets() };
        Ok(VmDetail { info: s.info(), definition })
    }

    /// Validates and stores `def`, creating or replacing (same name and UUID) a definition.
    /// A running VM keeps running; the new definition applies at its next start.
    pub async fn define(&self, mut def: VmDef) -> Result<VmInfo> {
        def.assign_disk_targets();
        let _define = self.define_lock.lock().await;
        let _op = self.op_lock(&def.name).await;
        let existing: Vec<VmDef> = self.table().values().map(|s| s.def.clone()).collect();
        let mut problems = match vmdef::validate::validate_define(&def, &existing, &self.cfg.host) {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.problems,
        };
        // The path policy (files from pools, logs in the state directory); a field that
        // already has a problem (a missing file) is not reported twice.
        for p in self.check_paths(&def) {
            if !problems.iter().any(|q| q.field == p.field) {
                problems.push(p);
            }
        }
        if !problems.is_empty() {
            let conflict = problems.iter().any(|p| p.kind == ProblemKind::Conflict);
            let msg = vmdef::validate::Invalid { problems }.to_string();
            return Err(if conflict { DaemonError::Conflict(msg) } else { DaemonError::BadInput(msg) });
        }
        self.store.save_def(&def)?;
        let name = def.name.clone();
        let info = {
            let mut t = self.table();
            match t.get_mut(&name) {
                Some(s) => s.def = def,
                None => {
                    t.insert(name.clone(), Slot::new(def, RuntimeState::shutoff()));
                }
            }
            t[&name].info()
        };
        self.emit(&name, EventKind::Defined, info.state, None);
        Ok(info)
    }

    /// Removes a definition; refused while the VM runs.
    pub async fn undefine(&self, name: &VmName) -> Result<()> {
        let _define = self.define_lock.lock().await;
        let _op = self.op_lock(name).await;
        {
            let t = self.table();
            let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
            if s.is_active() {
                return Err(DaemonError::Conflict(format!("{name} is running; destroy it first")));
            }
        }
        self.store.remove_def(name)?;
        self.store.remove_runtime(name)?;
        let _ = std::fs::remove_file(self.run_paths(name).exit_status);
        self.table().remove(name);
        self.emit(name, EventKind::Undefined, RunState::Shutoff, None);
        Ok(())
    }

    /// Attaches a console viewer.
    pub fn console(&self, name: &VmName) -> Result<Viewer> {
        let t = self.table();
        let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
        s.console
            .as_ref()
            .and_then(|c| c.attach())
            .ok_or_else(|| DaemonError::Conflict(format!("{name} is not running, or has no serial console")))
    }

    /// After a daemon start: adopts or rebuilds the started networks and autostarts the
    /// others ([`Daemon::recover_networks`]); re-adopts VMs whose process still runs, records
    /// the exit of those that died meanwhile (removing their taps), then starts the autostart
    /// VMs that are not running.
    pub async fn recover(self: &Arc<Self>) {
        self.recover_networks().await;
        let names: Vec<VmName> = self.table().keys().cloned().collect();
        for name in &names {
            self.recover_one(name).await;
        }
        let autostart: Vec<VmName> = self
            .table()
            .values()
            .filter(|s| s.def.autostart && !s.is_active())
            .map(|s| s.def.name.clone())
            .collect();
        for name in autostart {
            match self.start(&name).await {
                Ok(_) => tracing::info!(vm = %name, "autostarted"),
                Err(e) => tracing::error!(vm = %name, "autostart failed: {e}"),
            }
        }
    }

    async fn recover_one(self: &Arc<Self>, name: &VmName) {
        let (rt, def) = match self.table().get(name) {
            Some(s) if s.is_active() => (s.rt.clone(), s.def.clone()),
            _ => return,
        };
        let paths = self.run_paths(name);
        let alive = rt.pid.is_some_and(|pid| crate::process::is_alive(pid, rt.pid_start_ticks));
        let (Some(pid), true) = (rt.pid, alive) else {
            let (state, reason) = classify_absent_exit(&paths.exit_status);
            // What the run held goes back as on any exit: its taps, its cgroup, and its
            // managed host devices to their host drivers.
            self.remove_taps(rt.taps.clone()).await;
            self.remove_cgroup(name);
            self.release_managed(&def);
            let mut rt = RuntimeState::shutoff();
            rt.state = state;
            rt.exit_reason = Some(reason.clone());
            self.save_runtime_logged(name, &rt);
            if let Some(s) = self.table().get_mut(name) {
                s.rt = rt;
            }
            let kind = if state == RunState::Crashed { EventKind::Crashed } else { EventKind::Stopped };
            self.emit(name, kind, state, Some(reason));
            return;
        };
        let socket = rt.control_socket.clone().unwrap_or(paths.control.clone());
        let state = match crate::process::status(&socket, Duration::from_secs(2)).await {
            Ok(st) if st.state == api::control::RunState::Paused => RunState::Paused,
            Ok(_) => RunState::Running,
            Err(e) => {
                tracing::warn!(vm = %name, "adopting pid {pid} although its control socket fails: {e}");
                rt.state
            }
        };
        let console = self.attach_console(&def, &paths.serial, true);
        if let Some(s) = self.table().get_mut(name) {
            s.rt.state = state;
            s.console = console;
        }
        if state != rt.state {
            let mut rt = rt.clone();
            rt.state = state;
            self.save_runtime_logged(name, &rt);
        }
        lifecycle::spawn_poll_monitor(self.clone(), name.clone(), pid, rt.pid_start_ticks);
        self.emit(name, EventKind::Adopted, state, Some(format!("pid {pid}")));
    }

    pub(crate) fn save_runtime_logged(&self, name: &VmName, rt: &RuntimeState) {
        if let Err(e) = self.store.save_runtime(name, rt) {
            tracing::error!(vm = %name, "cannot save runtime state: {e}");
        }
    }

    /// Starts the console multiplexer of a VM whose serial socket is at `serial`; with
    /// `seed`, the replay buffer starts with the tail of the existing log (after an adoption).
    pub(crate) fn attach_console(&self, def: &VmDef, serial: &Path, seed: bool) -> Option<Arc<ConsoleMux>> {
        def.serial.as_ref()?;
        let log = self.console_log_path(def);
        let (mux, input) =
            ConsoleMux::new(Some(&log), crate::console::REPLAY_LIMIT, crate::console::LOG_LIMIT);
        if seed {
            mux.seed_from_log(&log);
        }
        let mux = Arc::new(mux);
        let (m, path, name) = (mux.clone(), serial.to_path_buf(), def.name.clone());
        tokio::spawn(async move {
            match crate::console::connect_serial(&path, Duration::from_secs(10)).await {
                Ok(stream) => m.run(stream, input).await,
                Err(e) => {
                    tracing::warn!(vm = %name, "cannot connect to the serial socket {}: {e}", path.display());
                    m.close();
                }
            }
        });
        Some(mux)
    }
}

/// Starts `name` again in a task of its own (an `on_*` policy of `restart`). Defined outside
/// `lifecycle` so the compiler can see that the start future is `Send`.
pub(crate) fn spawn_restart(d: Arc<Daemon>, name: VmName) {
    tokio::spawn(async move {
        if let Err(e) = d.start(&name).await {
            tracing::error!(vm = %name, "restart failed: {e}");
        }
    });
}

/// The state and reason of a VM whose process ended while no daemon watched it.
fn classify_absent_exit(exit_file: &Path) -> (RunState, String) {
    match crate::process::read_exit_status(exit_file) {
        Some(e) if api::VmmExit::from_code(e.code).is_some_and(api::VmmExit::is_clean) => {
            (RunState::Shutoff, format!("exited: {}", e.reason))
        }
        Some(e) => (RunState::Crashed, format!("exit status {}: {}", e.code, e.reason)),
        None => (RunState::Crashed, "the vmm process is gone and left no exit status".into()),
    }
}
