// SPDX-License-Identifier: Apache-2.0
//! Each VM's confinement: its own uid and gid, its jail ([`crate::jail`]) and its cgroup.
//!
//! - uid and gid: `jail.uid_base` + a slot, the lowest one no other running VM of this daemon
//!   holds; recorded in the VM's runtime state so a restarted daemon knows which are taken.
//! - cgroup v2: `<cgroup_parent>/<name>` with `memory.max` (guest RAM, plus 256 MiB and 1/32
//!   of guest RAM for the vmm, its device state and the kernel's memory for the VM),
//!   `pids.max` (256 plus two per vCPU) and `cpu.max` (the definition's `cputune`; "max"
//!   without). Without a cgroup v2 hierarchy at `/sys/fs/cgroup` (a host still on v1) VMs run
//!   without these limits, and the daemon says so once at start.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vmdef::{VmDef, VmName};

use super::{Daemon, DaemonError, Result};
use crate::jail::Jail;

/// The controllers a VM's cgroup uses.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// Open files a vmm may have (eventfds, irqfds, images, sockets...).
const NOFILE: u64 = 4096;
/// Locked memory of a vmm without assigned devices.
const MEMLOCK_BASE: u64 = 64 << 20;

/// The jailer's settings (`"jail"` in `vmctld.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSettings {
    /// Run every vmm jailed (default: when the daemon runs as root, which the jailer needs).
    pub enabled: bool,
    /// The first uid (and gid) of VMs.
    pub uid_base: u32,
    /// How many uids VMs may use (the most VMs running at once).
    pub uid_count: u32,
    /// The cgroup v2 directory under which each VM gets its cgroup.
    pub cgroup_parent: PathBuf,
}

/// Default first uid: far above the ranges of users (1000...), systemd's dynamic users
/// (61184-65519) and the subordinate ids containers take (100000..., 524288... for nspawn).
pub const DEFAULT_UID_BASE: u32 = 2_000_000_000;
/// Default number of uids.
pub const DEFAULT_UID_COUNT: u32 = 65_536;
/// Default cgroup parent.
pub const DEFAULT_CGROUP_PARENT: &str = "/sys/fs/cgroup/rvmm";

impl JailSettings {
    /// The defaults: on when running as root.
    pub fn defaults() -> JailSettings {
        JailSettings {
            // SAFETY: geteuid has no preconditions.
            enabled: unsafe { libc::geteuid() } == 0,
            uid_base: DEFAULT_UID_BASE,
            uid_count: DEFAULT_UID_COUNT,
            cgroup_parent: PathBuf::from(DEFAULT_CGROUP_PARENT),
        }
    }
}

/// Uids handed out for starts still under way (not yet in a runtime state).
#[derive(Debug, Default)]
pub(crate) struct UidReservations(Mutex<BTreeSet<u32>>);

/// One VM's confinement for one run.
#[derive(Debug)]
pub(crate) struct VmJail {
    /// The jail to spawn in.
    pub jail: Jail,
    /// Its cgroup, removed again when the run ends (or the start fails).
    pub cgroup: Option<PathBuf>,
}

/// True if `path` is on a cgroup v2 filesystem.
fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Adds `controllers` (those `dir` offers) to `dir`'s children.
fn enable_controllers(dir: &Path) -> io::Result<Vec<String>> {
    let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if !wanted.is_empty() {
        std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))?;
    }
    Ok(wanted.iter().map(|w| w[1..].to_string()).collect())
}

/// Prepares the cgroup parent (once, at daemon start): returns the controllers VMs' cgroups
/// get, or why there are none.
pub(crate) fn setup_cgroup_parent(parent: &Path) -> std::result::Result<Vec<String>, String> {
    let root = parent.parent().ok_or("the cgroup parent has no parent")?;
    if !is_cgroup2(root) {
        return Err(format!("{} is not a cgroup v2 hierarchy", root.display()));
    }
    // The root offers what the kernel has; the parent offers what its parent enabled.
    enable_controllers(root).map_err(|e| format!("cannot enable controllers in {}: {e}", root.display()))?;
    match std::fs::create_dir(parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", parent.display())),
    }
    enable_controllers(parent).map_err(|e| format!("cannot enable controllers in {}: {e}", parent.display()))
}

/// `memory.max` for a VM with `memory_mib` of guest RAM.
pub fn memory_max(memory_mib: u64) -> u64 {
    let ram = memory_mib << 20;
    ram + (256 << 20) + ram / 32
}

/// `pids.max` for a VM with `vcpus` vCPUs.
pub fn pids_max(vcpus: u32) -> u64 {
    256 + 2 * u64::from(vcpus)
}

/// Makes the cgroup of one run at `dir` with the VM's limits (a leftover of an earlier run,
/// empty, is replaced).
fn make_vm_cgroup(dir: &Path, def: &VmDef, controllers: &[String]) -> io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} is left from an earlier run and cannot be removed: {e}", dir.display()),
            )
        })?;
    }
    std::fs::create_dir(dir)?;
    let mut limits: Vec<(&str, String)> = Vec::new();
    if controllers.iter().any(|c| c == "memory") {
        limits.push(("memory.max", memory_max(def.memory_mib).to_string()));
    }
    if controllers.iter().any(|c| c == "pids") {
        limits.push(("pids.max", pids_max(def.vcpus).to_string()));
    }
    if controllers.iter().any(|c| c == "cpu") {
        limits.push(("cpu.max", def.cpu_max()));
    }
    for (file, value) in limits {
        if let Err(e) = std::fs::write(dir.join(file), &value) {
            let _ = std::fs::remove_dir(dir);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot write {value} to {}/{file}: {e}", dir.display()),
            ));
        }
    }
    Ok(())
}

/// The host's largest file a VM may write: its writable disks may grow to their virtual
/// size plus qcow2 metadata; at least 64 MiB.
fn file_size_limit(def: &VmDef) -> u64 {
    let mut limit: u64 = 64 << 20;
    for d in def.disks.iter().filter(|d| !d.is_readonly()) {
        let Some(path) = &d.path else { continue };
        let Ok(meta) = std::fs::metadata(path) else { continue };
        let virtual_size = crate::pool::inspect(path).map_or(meta.len(), |i| i.virtual_size);
        let grown = virtual_size.saturating_add(virtual_size / 4).saturating_add(64 << 20);
        limit = limit.max(meta.len()).max(grown);
    }
    limit
}

impl Daemon {
    /// Reserves the lowest free uid for `name`'s run.
    pub(crate) fn reserve_uid(&self, name: &VmName) -> Result<u32> {
        let j = &self.cfg.settings.jail;
        let held: BTreeSet<u32> = self
            .table()
            .iter()
            .filter(|(n, s)| *n != name && s.is_active())
            .filter_map(|(_, s)| s.rt.jail_uid)
            .collect();
        let mut reserved = self.uids.0.lock().unwrap_or_else(|e| e.into_inner());
        let uid = (0..j.uid_count)
            .filter_map(|slot| j.uid_base.checked_add(slot))
            .find(|u| !held.contains(u) && !reserved.contains(u))
            .ok_or_else(|| {
                DaemonError::Conflict(format!(
                    "cannot start {name}: all {} VM uids from {} are in use (jail.uid_count in vmctld.json)",
                    j.uid_count, j.uid_base
                ))
            })?;
        reserved.insert(uid);
        Ok(uid)
    }

    /// Ends a reservation (the uid is in the VM's runtime state now, or the start failed).
    pub(crate) fn release_uid(&self, uid: u32) {
        self.uids.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
    }

    /// The jail of one run of `def` as `uid`, with its cgroup made; `run_dir` is its run
    /// directory, which it gets read-write.
    pub(crate) fn make_jail(&self, def: &VmDef, uid: u32, run_dir: &Path) -> Result<VmJail> {
        let root = self.store.jail_root();
        std::fs::create_dir_all(&root)
            .map_err(|e| DaemonError::Internal(format!("cannot create {}: {e}", root.display())))?;
        let mut devices = vec![PathBuf::from("/dev/kvm")];
        if !def.interfaces.is_empty() {
            devices.push(PathBuf::from("/dev/net/tun"));
            devices.push(PathBuf::from("/dev/vhost-net"));
        }
        let mut readonly_paths = Vec::new();
        let mut memlock = MEMLOCK_BASE;
        if !def.hostdevs.is_empty() {
            devices.push(PathBuf::from("/dev/vfio/vfio"));
            for h in &def.hostdevs {
                let addr = h.address.to_string();
                let group = crate::hostdev::group_of(&self.cfg.host_sysfs, &addr).ok_or_else(|| {
                    DaemonError::BadInput(format!("cannot start {}: {addr} has no IOMMU group", def.name))
                })?;
                devices.push(PathBuf::from(format!("/dev/vfio/{group}")));
            }
            // VFIO sizes and finds the device through sysfs; its DMA maps pin all guest RAM.
            readonly_paths.push(self.cfg.host_sysfs.clone());
            memlock = (def.memory_mib << 20).saturating_add(MEMLOCK_BASE);
        }
        let cgroup = match &self.cgroup_controllers {
            Some(controllers) => {
                let dir = self.cfg.settings.jail.cgroup_parent.join(def.name.as_str());
                make_vm_cgroup(&dir, def, controllers)
                    .map_err(|e| DaemonError::Internal(format!("cannot start {}: cgroup: {e}", def.name)))?;
                Some(dir)
            }
            None => None,
        };
        let jail = Jail {
            uid,
            gid: uid,
            root,
            hostname: def.name.to_string(),
            devices,
            writable_dirs: vec![run_dir.to_path_buf()],
            readonly_paths,
            rlimits: vec![
                (libc::RLIMIT_NOFILE as libc::c_int, NOFILE),
                (libc::RLIMIT_CORE as libc::c_int, 0),
                (libc::RLIMIT_FSIZE as libc::c_int, file_size_limit(def)),
                (libc::RLIMIT_MEMLOCK as libc::c_int, memlock),
            ],
            cgroup: cgroup.clone(),
        };
        Ok(VmJail { jail, cgroup })
    }

    /// Removes a run's cgroup (after its process ended).
    pub(crate) fn remove_cgroup(&self, name: &VmName) {
        if self.cgroup_controllers.is_none() {
            return;
        }
        let dir = self.cfg.settings.jail.cgroup_parent.join(name.as_str());
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::warn!(vm = %name, "cannot remove the cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// One start under way: the uid reservation ends when it drops; the run's cgroup is removed
/// then too, unless [`RunGuard::keep`] was called (the VM runs).
pub(crate) struct RunGuard<'a> {
    d: &'a Daemon,
    name: VmName,
    /// The jailed vmm's uid and gid (`None`: the jailer is off).
    pub uid: Option<u32>,
    /// A cgroup was made for this run.
    pub cgroup: bool,
}

impl RunGuard<'_> {
    /// The VM runs: its cgroup stays until its process ends.
    pub fn keep(mut self) {
        self.cgroup = false;
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Some(uid) = self.uid {
            self.d.release_uid(uid);
        }
        if self.cgroup {
            self.d.remove_cgroup(&self.name);
        }
    }
}

impl Daemon {
    /// Begins a start of `name`: its uid when the jailer is on.
    pub(crate) fn begin_run(&self, name: &VmName) -> Result<RunGuard<'_>> {
        let uid = if self.cfg.settings.jail.enabled { Some(self.reserve_uid(name)?) } else { None };
        Ok(RunGuard { d: self, name: name.clone(), uid, cgroup: false })
    }

    /// Makes a run's directory afresh (nothing of an earlier run left in it), owned by the
    /// jailed vmm's uid, which creates its sockets and exit status there.
    pub(crate) fn prepare_run_dir(&self, dir: &Path, uid: Option<u32>) -> Result<()> {
        let fail = |e: io::Error| DaemonError::Internal(format!("cannot prepare {}: {e}", dir.display()));
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(fail)?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir, Some(uid), Some(uid)).map_err(fail)?;
        }
        Ok(())
    }
}

/// The environment of a jailed vmm: a fixed PATH and the daemon's logging, backtrace and
/// time zone settings.
pub(crate) fn jailed_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    for k in ["RUST_LOG", "RUST_BACKTRACE", "TZ"] {
        if let Some(v) = std::env::var_os(k) {
            env.push((k.into(), v));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_definition() {
        assert_eq!(memory_max(1024), (1024 << 20) + (256 << 20) + (32 << 20));
        assert_eq!(pids_max(4), 264);
    }

    #[test]
    fn the_file_size_limit_follows_the_disks_virtual_sizes() {
        let dir = std::env::temp_dir().join(format!("vmctl-jailing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = dir.join("a.qcow2");
        block::create_qcow2(&q, 5 << 30, None).unwrap();
        let r = dir.join("a.raw");
        std::fs::write(&r, vec![0u8; 4096]).unwrap();
        let def = |path: &Path, readonly: bool| -> VmDef {
            serde_json::from_value(serde_json::json!({"name": "f", "memory_mib": 64, "vcpus": 1,
                "disks": [{"path": path, "bus": "virtio", "readonly": readonly}]}))
            .unwrap()
        };
        // A qcow2 disk's virtual size comes from its header, not its (small) file.
        assert_eq!(file_size_limit(&def(&q, false)), (5 << 30) + (5 << 30) / 4 + (64 << 20));
        // A raw disk's virtual size is its length; a read-only disk leaves the 64 MiB floor.
        assert_eq!(file_size_limit(&def(&r, false)), 4096 + 1024 + (64 << 20));
        assert_eq!(file_size_limit(&def(&q, true)), 64 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cgroup_v1_host_is_told_apart() {
        // Whatever this host has, a tmpfs is never cgroup v2.
        assert!(!is_cgroup2(Path::new("/dev")));
    }
}
