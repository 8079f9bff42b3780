// SPDX-License-Identifier: Apache-2.0
//! Storage pools and volumes as the daemon serves them: [`crate::pool`] for the files, plus
//! what only the daemon knows, which VMs use a volume and whether they run.
//!
//! Rules (HTTP 409 when broken):
//! - delete: not while a running VM uses the volume, directly or through an overlay; not
//!   while a defined VM names it or it has overlays, unless `force`;
//! - resize: not while a running VM uses it, nor when it is a template (has overlays);
//! - clone: not while a running VM uses the source (its data is changing);
//! - start: a VM may not attach a template writable (the writes would corrupt its clones).
//!
//! Pool and volume changes are serialised by one lock; delete also holds the define lock,
//! so no definition can start naming a volume between the check and the removal.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use vmdef::VmDef;

use super::{Daemon, DaemonError, Result};
use crate::api::{PoolInfo, Size, VolFormat, VolumeInfo};
use crate::pool::{parse_size, Pool, PoolDef, Volume};

/// A VM that names a file as a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DiskUser {
    vm: String,
    running: bool,
}

/// A conflict if a running VM has `path` as a disk: `doing` it (a copy, a template) would
/// catch the guest's writes half done.
fn refuse_running_users(
    users: &HashMap<PathBuf, Vec<DiskUser>>,
    path: &Path,
    name: &str,
    doing: &str,
) -> Result<()> {
    let running: Vec<&str> =
        users.get(path).into_iter().flatten().filter(|u| u.running).map(|u| u.vm.as_str()).collect();
    if running.is_empty() {
        return Ok(());
    }
    Err(DaemonError::Conflict(format!(
        "{name} is a disk of the running VM {}; shut it down before {doing}",
        running.join(", ")
    )))
}

/// The path a definition's disk path resolves to (canonical when it exists).
fn resolve(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Bytes an unprivileged user may still write on the file system of `dir`.
#[allow(clippy::useless_conversion)] // The field types are u64 on 64-bit Linux only.
fn available(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    u64::from(s.blocks_available()).checked_mul(u64::from(s.fragment_size()))
}

/// Parses a size given in a request.
pub fn size_of(s: &Size) -> Result<u64> {
    Ok(match s {
        Size::Bytes(n) => crate::pool::check_size(*n)?,
        Size::Text(t) => parse_size(t)?,
    })
}

fn format_of(f: block::ImageFormat) -> VolFormat {
    match f {
        block::ImageFormat::Raw => VolFormat::Raw,
        block::ImageFormat::Qcow2 => VolFormat::Qcow2,
    }
}

impl Daemon {
    /// The storage pools.
    pub fn pools(&self) -> &crate::pool::Pools {
        &self.pools
    }

    /// Every file a definition names as a disk, with the VMs naming it.
    fn disk_users(&self) -> HashMap<PathBuf, Vec<DiskUser>> {
        let mut users: HashMap<PathBuf, Vec<DiskUser>> = HashMap::new();
        for s in self.table().values() {
            let mut seen = HashSet::new();
            for p in s.def.disks.iter().filter_map(|d| d.path.as_deref()) {
                let p = resolve(p);
                if seen.insert(p.clone()) {
                    users
                        .entry(p)
                        .or_default()
                        .push(DiskUser { vm: s.def.name.to_string(), running: s.is_active() });
                }
            }
        }
        for v in users.values_mut() {
            v.sort_by(|a, b| a.vm.cmp(&b.vm));
        }
        users
    }

    fn volume_info(pool: &Pool, v: Volume, users: &HashMap<PathBuf, Vec<DiskUser>>) -> VolumeInfo {
        VolumeInfo {
            used_by: users.get(&v.path).map(|u| u.iter().map(|u| u.vm.clone()).collect()).unwrap_or_default(),
            name: v.name,
            pool: pool.name().to_string(),
            path: v.path.display().to_string(),
            format: format_of(v.image.format),
            virtual_size: v.image.virtual_size,
            allocated: v.allocated,
            backing_file: v.image.backing_file,
            overlays: v.overlays,
        }
    }

    fn pool_info(pool: &Pool) -> PoolInfo {
        PoolInfo {
            name: pool.name().to_string(),
            path: pool.dir().display().to_string(),
            volumes: pool.list().map(|v| v.len()).unwrap_or(0),
            available: available(pool.dir()),
        }
    }

    /// Every pool, `default` first.
    pub fn list_pools(&self) -> Result<Vec<PoolInfo>> {
        Ok(self.pools.list()?.iter().map(Self::pool_info).collect())
    }

    /// Defines a pool on an existing directory.
    pub async fn define_pool(&self, def: &PoolDef) -> Result<PoolInfo> {
        let _lock = self.storage_lock.lock().await;
        let pool = self.pools.define(def)?;
        tracing::info!(pool = %pool.name(), path = %pool.dir().display(), "pool defined");
        Ok(Self::pool_info(&pool))
    }

    /// Removes a pool definition; its files stay.
    pub async fn undefine_pool(&self, name: &str) -> Result<()> {
        let _lock = self.storage_lock.lock().await;
        self.pools.undefine(name)?;
        tracing::info!(pool = %name, "pool undefined");
        Ok(())
    }

    /// Every volume of a pool.
    pub fn list_volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>> {
        let pool = self.pools.get(pool)?;
        let users = self.disk_users();
        Ok(pool.list()?.into_iter().map(|v| Self::volume_info(&pool, v, &users)).collect())
    }

    /// One volume.
    pub fn volume(&self, pool: &str, name: &str) -> Result<VolumeInfo> {
        let pool = self.pools.get(pool)?;
        let v = pool.get(name)?;
        Ok(Self::volume_info(&pool, v, &self.disk_users()))
    }

    /// Creates an empty volume.
    pub async fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size: &Size,
        format: VolFormat,
    ) -> Result<VolumeInfo> {
        let pool = self.pools.get(pool)?;
        pool.volume_path(name)?;
        let size = size_of(size)?;
        let _lock = self.storage_lock.lock().await;
        let v = pool.create(name, size, format.into())?;
        tracing::info!(pool = %pool.name(), volume = %name, size, ?format, "volume created");
        Ok(Self::volume_info(&pool, v, &self.disk_users()))
    }

    /// Running VMs that use `name` directly or through overlays in its pool.
    fn running_users(
        pool: &Pool,
        name: &str,
        users: &HashMap<PathBuf, Vec<DiskUser>>,
    ) -> Result<Vec<String>> {
        let vols: HashMap<String, Volume> = pool.list()?.into_iter().map(|v| (v.name.clone(), v)).collect();
        let mut running = Vec::new();
        let mut todo = vec![name.to_string()];
        let mut seen = HashSet::new();
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(v) = vols.get(&n) else { continue };
            for u in users.get(&v.path).into_iter().flatten().filter(|u| u.running) {
                if !running.contains(&u.vm) {
                    running.push(u.vm.clone());
                }
            }
            todo.extend(v.overlays.iter().cloned());
        }
        running.sort();
        Ok(running)
    }

    /// Deletes a volume (see the module's rules for `force`).
    pub async fn delete_volume(&self, pool: &str, name: &str, force: bool) -> Result<()> {
        let pool = self.pools.get(pool)?;
        let _define = self.define_lock.lock().await;
        let _lock = self.storage_lock.lock().await;
        let vol = pool.get(name)?;
        let users = self.disk_users();
        let running = Self::running_users(&pool, name, &users)?;
        if !running.is_empty() {
            return Err(DaemonError::Conflict(format!(
                "{name} is in use by the running VM {}; shut it down first",
                running.join(", ")
            )));
        }
        if let (Some(u), false) = (users.get(&vol.path), force) {
            let vms: Vec<&str> = u.iter().map(|u| u.vm.as_str()).collect();
            return Err(DaemonError::Conflict(format!(
                "{name} is a disk of the VM {}; remove it from the definition, undefine the VM, or force",
                vms.join(", ")
            )));
        }
        pool.delete(name, force)?;
        tracing::info!(pool = %pool.name(), volume = %name, force, "volume deleted");
        Ok(())
    }

    /// Grows a volume.
    pub async fn resize_volume(&self, pool: &str, name: &str, size: &Size) -> Result<VolumeInfo> {
        let pool = self.pools.get(pool)?;
        pool.volume_path(name)?;
        let size = size_of(size)?;
        let _lock = self.storage_lock.lock().await;
        let running = Self::running_users(&pool, name, &self.disk_users())?;
        if !running.is_empty() {
            return Err(DaemonError::Conflict(format!(
                "{name} is in use by the running VM {}; shut it down first",
                running.join(", ")
            )));
        }
        let v = pool.resize(name, size)?;
        tracing::info!(pool = %pool.name(), volume = %name, size, "volume resized");
        Ok(Self::volume_info(&pool, v, &self.disk_users()))
    }

    /// Makes `new` a linked clone (qcow2 overlay) of `src`.
    pub async fn clone_volume(&self, pool: &str, src: &str, new: &str) -> Result<VolumeInfo> {
        let pool = self.pools.get(pool)?;
        pool.volume_path(new).map_err(|e| DaemonError::BadInput(format!("clone {e}")))?;
        let _lock = self.storage_lock.lock().await;
        let vol = pool.get(src)?;
        let users = self.disk_users();
        refuse_running_users(&users, &vol.path, src, "making it a template")?;
        let v = pool.clone_volume(src, new)?;
        tracing::info!(pool = %pool.name(), volume = %new, template = %src, "linked clone created");
        Ok(Self::volume_info(&pool, v, &users))
    }

    /// Copies a volume (`vol copy`, `clone` without `--linked`): not while a running VM uses
    /// it, since the copy would catch its writes half done.
    pub async fn copy_volume(&self, pool: &str, src: &str, new: &str) -> Result<VolumeInfo> {
        let pool = self.pools.get(pool)?;
        pool.volume_path(new).map_err(|e| DaemonError::BadInput(format!("copy {e}")))?;
        let _lock = self.storage_lock.lock().await;
        let vol = pool.get(src)?;
        let users = self.disk_users();
        refuse_running_users(&users, &vol.path, src, "copying it")?;
        let (p, s, n) = (pool.clone(), src.to_string(), new.to_string());
        let v = tokio::task::spawn_blocking(move || p.copy_volume(&s, &n))
            .await
            .map_err(|e| DaemonError::Internal(format!("copy of {src}: {e}")))??;
        tracing::info!(pool = %pool.name(), volume = %new, source = %src, "volume copied");
        Ok(Self::volume_info(&pool, v, &users))
    }

    /// Refuses a definition that attaches a template (a pool volume with overlays) writable.
    pub(crate) fn check_templates(&self, def: &VmDef) -> Result<()> {
        let pools = match self.pools.list() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot list pools to check {} for templates: {e}", def.name);
                return Ok(());
            }
        };
        for (i, d) in def.disks.iter().enumerate() {
            let Some(path) = d.path.as_deref().filter(|_| !d.is_readonly()) else { continue };
            let path = resolve(path);
            let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) else {
                continue;
            };
            for pool in pools.iter().filter(|p| p.dir() == dir) {
                let Ok(v) = pool.get(file) else { continue };
                if !v.overlays.is_empty() {
                    return Err(DaemonError::Conflict(format!(
                        "disks[{i}].path: {} is the template of the linked clones {}; writing to it \
                         would corrupt them: set \"readonly\": true on the disk, or delete the clones",
                        path.display(),
                        v.overlays.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}
