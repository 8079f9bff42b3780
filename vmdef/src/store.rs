// SPDX-License-Identifier: Apache-2.0
//! The daemon's state directory, every write atomic.
//!
//! Layout under the state directory:
//! - `vms/<name>.json`: a definition ([`VmDef`] as JSON).
//! - `run/<name>.json`: runtime state of a VM process ([`RuntimeState`]).
//! - `run/<name>.sock`: the VM's control socket ([`Store::control_socket_path`]).
//! - `logs/<name>.log`: the VM's serial output ([`Store::serial_log_path`]).
//!
//! A file is replaced by writing a temporary file in the same directory (named
//! `.<file>.tmp-<pid>-<n>`, which no VM name can produce), fsyncing it, renaming it over the
//! old one and fsyncing the directory ([`write_atomic`]); so a process killed at any moment,
//! or a power loss on a filesystem that honours fsync, leaves each file either old or new.
//! Temporary files left by a crash are skipped and reported when listing, and removed by
//! [`Store::remove_temp_files`].
//!
//! The store takes no locks: one daemon owns a state directory and serialises its writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::model::{JsonError, VmDef, VmName};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The host failed a file operation.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A stored definition does not parse.
    #[error("{}: {source}", path.display())]
    Definition {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        #[source]
        source: JsonError,
    },
    /// A stored runtime state does not parse.
    #[error("{}: {source}", path.display())]
    Runtime {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored definition's name differs from its file name.
    #[error("{}: holds VM {found}, not {expected}", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The name the file name says.
        expected: VmName,
        /// The name inside.
        found: VmName,
    },
    /// No definition with that name.
    #[error("no VM named {0} is defined")]
    NotFound(VmName),
    /// A value could not be written as JSON (a path that is not UTF-8).
    #[error("cannot write {what} as JSON: {source}")]
    Serialize {
        /// What was being written.
        what: String,
        /// The failure.
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// What a VM process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// The guest runs.
    Running,
    /// The vCPUs are stopped; the process lives.
    Paused,
    /// No process (stopped cleanly, or never started).
    Shutoff,
    /// The process died or the guest crashed; see `exit_reason`.
    Crashed,
}

/// The directory of `run/` holding each running VM's run directory.
const RUN_VM_DIR: &str = "vm";
/// The directory of `run/` jails are mounted on.
const JAIL_ROOT_DIR: &str = "jail-root";

/// Runtime state of one VM, kept in `run/<name>.json` so a restarted daemon finds its VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeState {
    /// Current state.
    pub state: RunState,
    /// Process id of the VM's `vmm`, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Start time of that process in clock ticks since boot (field 22 of `/proc/<pid>/stat`;
    /// see [`proc_start_ticks`]), to tell it from a later process that reuses the pid.
    #[serde(default)]
    pub pid_start_ticks: Option<u64>,
    /// Path of the VM's control socket.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Why the process last stopped (exit status, signal, guest crash), if known.
    #[serde(default)]
    pub exit_reason: Option<String>,
    /// The tap interfaces the daemon made for this run, removed when the process ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<TapState>,
    /// Where this run's VNC server listens (`127.0.0.1:5900`), when the definition has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc: Option<std::net::SocketAddr>,
    /// The unix socket this run's VNC server listens on, when it has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_socket: Option<PathBuf>,
    /// The uid (and gid) the jailed `vmm` of this run has, when it runs jailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jail_uid: Option<u32>,
}

/// A host tap interface made for one NIC of a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapState {
    /// The tap's name.
    pub tap: String,
    /// The bridge it is a port of.
    pub bridge: String,
}

impl RuntimeState {
    /// A VM with no process.
    pub fn shutoff() -> Self {
        RuntimeState {
            state: RunState::Shutoff,
            pid: None,
            pid_start_ticks: None,
            control_socket: None,
            exit_reason: None,
            taps: Vec::new(),
            vnc: None,
            vnc_socket: None,
            jail_uid: None,
        }
    }
}

/// The start time of process `pid` in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn proc_start_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/stat"))
}

/// Field 22 of a `/proc/<pid>/stat` line; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")" come field 3 (state) onwards: field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A file the store skipped while listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreProblem {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub kind: StoreProblemKind,
}

/// Why a file was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreProblemKind {
    /// A temporary file left by an interrupted write; [`Store::remove_temp_files`] removes it.
    StrayTemp,
    /// Not `<valid name>.json`.
    UnexpectedFile,
    /// It does not parse or its name differs from the file name; the message says which.
    Unreadable(String),
}

/// What a listing found: the readable entries sorted by name, and the skipped files.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    /// Entries, sorted by VM name.
    pub items: Vec<T>,
    /// Files skipped.
    pub problems: Vec<StoreProblem>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(".tmp-")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the same
/// directory is written, fsynced and renamed over `path`, then the directory is fsynced.
/// New files get mode 0640.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{n}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o640).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Removes `path` and fsyncs its directory, so the removal survives a power loss.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the state directory `root`, creating it and its `vms/`, `run/` and `logs/`
    /// subdirectories (mode 0750) as needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.root.clone(), store.vms_dir(), store.run_dir(), store.log_dir()] {
            fs::DirBuilder::new().recursive(true).mode(0o750).create(&dir).map_err(io_err(&dir))?;
        }
        Ok(store)
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `<root>/vms`: definitions.
    pub fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }
    /// `<root>/run`: runtime state and control sockets.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// `<root>/run/vm/<name>`: one VM's sockets, configuration and exit status while it
    /// runs (the only host directory its jailed `vmm` may write to).
    pub fn vm_run_dir(&self, name: &VmName) -> PathBuf {
        self.run_dir().join(RUN_VM_DIR).join(name.as_str())
    }
    /// `<root>/run/jail-root`: the empty directory jailed VMs' roots are mounted on (each in
    /// a mount namespace of its own).
    pub fn jail_root(&self) -> PathBuf {
        self.run_dir().join(JAIL_ROOT_DIR)
    }
    /// `<root>/logs`: serial logs.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `<root>/vms/<name>.json`.
    pub fn def_path(&self, name: &VmName) -> PathBuf {
        self.vms_dir().join(format!("{name}.json"))
    }
    /// `<root>/run/<name>.json`.
    pub fn runtime_path(&self, name: &VmName) -> PathBuf {
        self.run_dir().join(format!("{name}.json"))
    }
    /// `<root>/run/<name>.sock`. (A unix socket path must stay under 108 bytes; keep the
    /// state directory short.)
    pub fn control_socket_path(&self, name: &VmName) -> PathBuf {
        self.vm_run_dir(name).join("control.sock")
    }
    /// `<root>/logs/<name>.log`.
    pub fn serial_log_path(&self, name: &VmName) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }

    /// Writes `def` atomically, creating or replacing `vms/<name>.json`. Validation is the
    /// caller's ([`crate::validate`]).
    pub fn save_def(&self, def: &VmDef) -> Result<()> {
        let json = def
            .to_json()
            .map_err(|source| StoreError::Serialize { what: format!("VM {}", def.name), source })?;
        let path = self.def_path(&def.name);
        write_atomic(&path, format!("{json}\n").as_bytes()).map_err(io_err(&path))
    }

    /// True if `name` is defined.
    pub fn has_def(&self, name: &VmName) -> bool {
        self.def_path(name).is_file()
    }

    /// Reads the definition of `name`.
    pub fn load_def(&self, name: &VmName) -> Result<VmDef> {
        let path = self.def_path(name);
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(name.clone())),
            r => r.map_err(io_err(&path))?,
        };
        let def = VmDef::from_json(&text)
            .map_err(|source| StoreError::Definition { path: path.clone(), source })?;
        if &def.name != name {
            return Err(StoreError::NameMismatch { path, expected: name.clone(), found: def.name });
        }
        Ok(def)
    }

    /// Removes the definition of `name` (one unlink, then a directory fsync). The runtime
    /// state and log are left to the caller.
    pub fn remove_def(&self, name: &VmName) -> Result<()> {
        let path = self.def_path(name);
        match remove_durable(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(name.clone())),
            r => r.map_err(io_err(&path)),
        }
    }

    /// Names of the `*.json` files in `dir`, sorted, with the files skipped.
    fn scan(&self, dir: &Path) -> Result<(Vec<VmName>, Vec<StoreProblem>)> {
        let mut names = Vec::new();
        let mut problems = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if is_temp_name(&file_name) {
                problems.push(StoreProblem { path, kind: StoreProblemKind::StrayTemp });
            } else if let Some(stem) = file_name.strip_suffix(".json") {
                match VmName::new(stem) {
                    Ok(n) => names.push(n),
                    Err(_) => problems.push(StoreProblem { path, kind: StoreProblemKind::UnexpectedFile }),
                }
            } else if !(dir == self.run_dir()
                && (file_name.ends_with(".sock") || file_name == RUN_VM_DIR || file_name == JAIL_ROOT_DIR))
            {
                problems.push(StoreProblem { path, kind: StoreProblemKind::UnexpectedFile });
            }
        }
        names.sort();
        Ok((names, problems))
    }

    /// Every readable definition, sorted by name; unreadable files and stray temporary files
    /// are reported in [`Listing::problems`], not returned as errors.
    pub fn list_defs(&self) -> Result<Listing<VmDef>> {
        let (names, mut problems) = self.scan(&self.vms_dir())?;
        let mut items = Vec::with_capacity(names.len());
        for name in names {
            match self.load_def(&name) {
                Ok(d) => items.push(d),
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(StoreError::NotFound(_)) => {}
                Err(e) => {
                    let path = self.def_path(&name);
                    problems.push(StoreProblem { path, kind: StoreProblemKind::Unreadable(e.to_string()) })
                }
            }
        }
        Ok(Listing { items, problems })
    }

    /// Writes the runtime state of `name` atomically.
    pub fn save_runtime(&self, name: &VmName, state: &RuntimeState) -> Result<()> {
        let json = serde_json::to_string_pretty(state)
            .map_err(|source| StoreError::Serialize { what: format!("state of {name}"), source })?;
        let path = self.runtime_path(name);
        write_atomic(&path, format!("{json}\n").as_bytes()).map_err(io_err(&path))
    }

    /// Reads the runtime state of `name`; `None` if none is stored.
    pub fn load_runtime(&self, name: &VmName) -> Result<Option<RuntimeState>> {
        let path = self.runtime_path(name);
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            r => r.map_err(io_err(&path))?,
        };
        serde_json::from_str(&text).map(Some).map_err(|source| StoreError::Runtime { path, source })
    }

    /// Removes the runtime state of `name`; no error if there is none.
    pub fn remove_runtime(&self, name: &VmName) -> Result<()> {
        let path = self.runtime_path(name);
        match remove_durable(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io_err(&path)),
        }
    }

    /// Every readable runtime state, sorted by name, with the files skipped.
    pub fn list_runtime(&self) -> Result<Listing<(VmName, RuntimeState)>> {
        let (names, mut problems) = self.scan(&self.run_dir())?;
        let mut items = Vec::with_capacity(names.len());
        for name in names {
            match self.load_runtime(&name) {
                Ok(Some(s)) => items.push((name, s)),
                Ok(None) => {}
                Err(e) => problems.push(StoreProblem {
                    path: self.runtime_path(&name),
                    kind: StoreProblemKind::Unreadable(e.to_string()),
                }),
            }
        }
        Ok(Listing { items, problems })
    }

    /// Deletes the temporary files interrupted writes left in `vms/` and `run/`; returns them.
    /// Call it at daemon start, before anything writes.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for dir in [self.vms_dir(), self.run_dir()] {
            let (_, problems) = self.scan(&dir)?;
            for p in problems.into_iter().filter(|p| p.kind == StoreProblemKind::StrayTemp) {
                remove_durable(&p.path).map_err(io_err(&p.path))?;
                removed.push(p.path);
            }
        }
        removed.sort();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
