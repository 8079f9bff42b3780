// SPDX-License-Identifier: Apache-2.0
//! Managed networks as the daemon serves them ([`crate::net`] does the host's part), and the
//! taps of VM NICs.
//!
//! Rules (HTTP 409 when broken): a started network cannot be redefined (except its
//! `autostart`), undefined, or stopped while a running VM has a tap on its bridge; a VM whose
//! interface names a network that is not started cannot start. Network changes are
//! serialised by one lock; host commands run on the blocking pool.
//!
//! Taps: on start every interface gets a persistent tap ([`crate::net::config::tap_name`])
//! plugged into its bridge, recorded in the VM's runtime state and removed when its process
//! ends (exit, destroy, crash, or found dead after a daemon restart).

use std::sync::Arc;

use vmdef::model::NetSource;
use vmdef::network::{check_net_name, validate_network, NetDef};
use vmdef::store::TapState;
use vmdef::validate::ProblemKind;
use vmdef::VmDef;

use super::{Daemon, DaemonError, Result};
use crate::api::{NetDetail, NetInfo};
use crate::net::config::{parse_leases, resolve_forwards, tap_name, Lease};
use crate::net::host::{self, Found, HostError};
use crate::net::{NetRuntime, NetStoreError};

/// One network in the daemon's table.
#[derive(Debug, Clone)]
pub(crate) struct NetSlot {
    pub(crate) def: NetDef,
    pub(crate) active: bool,
    pub(crate) dnsmasq_pid: Option<u32>,
}

impl From<HostError> for DaemonError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Conflict(m) => DaemonError::Conflict(m),
            e => DaemonError::Internal(super::error_chain(&e)),
        }
    }
}

impl From<NetStoreError> for DaemonError {
    fn from(e: NetStoreError) -> Self {
        DaemonError::Internal(e.to_string())
    }
}

/// Runs host commands on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| DaemonError::Internal(format!("host task failed: {e}")))
}

fn not_found(name: &str) -> DaemonError {
    DaemonError::Missing(format!("no network named {name} is defined"))
}

/// Removes taps, logging failures.
fn delete_taps(taps: &[TapState]) {
    for t in taps {
        if let Err(e) = host::delete_tap(&t.tap) {
            tracing::warn!(tap = %t.tap, "cannot remove the tap: {e}");
        }
    }
}

/// Taps made for a VM start, removed on drop unless the start succeeded.
pub(crate) struct TapGuard {
    pub(crate) taps: Vec<TapState>,
    armed: bool,
}

impl TapGuard {
    /// The taps, kept.
    pub(crate) fn keep(mut self) -> Vec<TapState> {
        self.armed = false;
        std::mem::take(&mut self.taps)
    }
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        if self.armed {
            delete_taps(&self.taps);
        }
    }
}

impl Daemon {
    pub(crate) fn net_table(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, NetSlot>> {
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn net_info(&self, s: &NetSlot) -> NetInfo {
        let mut used_by: Vec<String> = self
            .table()
            .values()
            .filter(|v| v.def.interfaces.iter().any(|n| n.source == NetSource::Network(s.def.name.clone())))
            .map(|v| v.def.name.to_string())
            .collect();
        used_by.sort();
        NetInfo {
            name: s.def.name.clone(),
            uuid: s.def.uuid.to_string(),
            active: s.active,
            autostart: s.def.autostart,
            bridge: s.def.bridge.clone(),
            ipv4: s.def.ipv4.to_string(),
            nat: s.def.nat,
            dhcp: s.def.dhcp.as_ref().map(|r| format!("{}-{}", r.start, r.end)),
            forwards: s.def.forwards.len(),
            dnsmasq_pid: s.dnsmasq_pid,
            used_by,
        }
    }

    fn net_slot(&self, name: &str) -> Result<NetSlot> {
        self.net_table().get(name).cloned().ok_or_else(|| not_found(name))
    }

    /// Every network, sorted by name.
    pub fn list_networks(&self) -> Vec<NetInfo> {
        let slots: Vec<NetSlot> = self.net_table().values().cloned().collect();
        let mut v: Vec<NetInfo> = slots.iter().map(|s| self.net_info(s)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One network's state and definition.
    pub fn network(&self, name: &str) -> Result<NetDetail> {
        let s = self.net_slot(name)?;
        Ok(NetDetail { info: self.net_info(&s), definition: s.def })
    }

    /// Validates and stores a network, creating or replacing (same name and UUID) one. An
    /// empty bridge name becomes the first free `vmbrN`.
    pub async fn define_network(&self, mut def: NetDef) -> Result<NetInfo> {
        check_net_name(&def.name).map_err(|e| DaemonError::BadInput(format!("name: {e}")))?;
        let _lock = self.net_lock.lock().await;
        let others: Vec<NetDef> = self.net_table().values().map(|s| s.def.clone()).collect();
        if def.bridge.is_empty() {
            let others = others.clone();
            def = blocking(move || {
                def.assign_bridge(&others, host::link_exists);
                def
            })
            .await?;
        }
        if let Err(invalid) = validate_network(&def, &others) {
            let conflict = invalid.problems.iter().any(|p| p.kind == ProblemKind::Conflict);
            let msg = invalid.to_string();
            return Err(if conflict { DaemonError::Conflict(msg) } else { DaemonError::BadInput(msg) });
        }
        if let Some(old) = self.net_table().get(&def.name).filter(|s| s.active) {
            if (NetDef { autostart: def.autostart, ..old.def.clone() }) != def {
                return Err(DaemonError::Conflict(format!(
                    "network {} is started; stop it before changing it (only autostart may change)",
                    def.name
                )));
            }
        }
        self.nets.save(&def)?;
        let name = def.name.clone();
        let slot = {
            let mut t = self.net_table();
            let s = t.entry(name.clone()).or_insert(NetSlot {
                def: def.clone(),
                active: false,
                dnsmasq_pid: None,
            });
            s.def = def;
            s.clone()
        };
        tracing::info!(network = %name, "network defined");
        Ok(self.net_info(&slot))
    }

    /// Removes a stopped network's definition (and its lease file).
    pub async fn undefine_network(&self, name: &str) -> Result<()> {
        let _lock = self.net_lock.lock().await;
        if self.net_slot(name)?.active {
            return Err(DaemonError::Conflict(format!("network {name} is started; stop it first")));
        }
        self.nets.remove(name)?;
        self.net_table().remove(name);
        tracing::info!(network = %name, "network undefined");
        Ok(())
    }

    /// Sets a network's autostart flag.
    pub async fn set_network_autostart(&self, name: &str, on: bool) -> Result<NetInfo> {
        let _lock = self.net_lock.lock().await;
        let mut s = self.net_slot(name)?;
        s.def.autostart = on;
        self.nets.save(&s.def)?;
        if let Some(t) = self.net_table().get_mut(name) {
            t.def.autostart = on;
        }
        Ok(self.net_info(&s))
    }

    /// Builds a network on the host: bridge, address, nftables table, dnsmasq.
    pub async fn start_network(&self, name: &str) -> Result<NetInfo> {
        let _lock = self.net_lock.lock().await;
        self.start_network_locked(name).await
    }

    async fn start_network_locked(&self, name: &str) -> Result<NetInfo> {
        let s = self.net_slot(name)?;
        if s.active {
            return Err(DaemonError::Conflict(format!("network {name} is already started")));
        }
        let vms: Vec<VmDef> = self.table().values().map(|v| v.def.clone()).collect();
        let forwards = resolve_forwards(&s.def, &vms).map_err(DaemonError::BadInput)?;
        let paths = self.nets.paths(name);
        let def = s.def.clone();
        let pid = blocking(move || host::start(&def, &forwards, &paths)).await??;
        self.nets.save_runtime(name, &NetRuntime { dnsmasq_pid: Some(pid) })?;
        let slot = {
            let mut t = self.net_table();
            let s = t.get_mut(name).ok_or_else(|| not_found(name))?;
            s.active = true;
            s.dnsmasq_pid = Some(pid);
            s.clone()
        };
        tracing::info!(network = %name, bridge = %slot.def.bridge, dnsmasq = pid, "network started");
        Ok(self.net_info(&slot))
    }

    /// Running VMs with a tap on `bridge`.
    fn vms_on_bridge(&self, bridge: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .table()
            .values()
            .filter(|s| s.is_active() && s.rt.taps.iter().any(|t| t.bridge == bridge))
            .map(|s| s.def.name.to_string())
            .collect();
        v.sort();
        v
    }

    /// Removes a network from the host; refused while running VMs use it.
    pub async fn stop_network(&self, name: &str) -> Result<NetInfo> {
        let _lock = self.net_lock.lock().await;
        let s = self.net_slot(name)?;
        if !s.active {
            return Err(DaemonError::Conflict(format!("network {name} is not started")));
        }
        let users = self.vms_on_bridge(&s.def.bridge);
        if !users.is_empty() {
            return Err(DaemonError::Conflict(format!(
                "network {name} is used by the running VM {}; shut it down first",
                users.join(", ")
            )));
        }
        let paths = self.nets.paths(name);
        let def = s.def.clone();
        blocking(move || host::stop(&def, &paths)).await??;
        self.nets.remove_runtime(name)?;
        let slot = {
            let mut t = self.net_table();
            let s = t.get_mut(name).ok_or_else(|| not_found(name))?;
            s.active = false;
            s.dnsmasq_pid = None;
            s.clone()
        };
        tracing::info!(network = %name, "network stopped");
        Ok(self.net_info(&slot))
    }

    /// The DHCP leases dnsmasq recorded for a network.
    pub fn network_leases(&self, name: &str) -> Result<Vec<Lease>> {
        self.net_slot(name)?;
        let file = self.nets.paths(name).lease_file;
        match std::fs::read_to_string(&file) {
            Ok(t) => Ok(parse_leases(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DaemonError::Internal(format!("{}: {e}", file.display()))),
        }
    }

    /// After a daemon start: networks recorded as started are adopted (dnsmasq restarted if
    /// it died; built again if the bridge is gone), then autostart networks are started.
    pub async fn recover_networks(&self) {
        let _lock = self.net_lock.lock().await;
        let names: Vec<String> = self.net_table().keys().cloned().collect();
        let vms: Vec<VmDef> = self.table().values().map(|v| v.def.clone()).collect();
        for name in &names {
            match self.nets.load_runtime(name) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(network = %name, "{e}; treating it as stopped");
                    continue;
                }
            }
            let Ok(s) = self.net_slot(name) else { continue };
            let forwards = match resolve_forwards(&s.def, &vms) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(network = %name, "cannot adopt: {e}");
                    continue;
                }
            };
            let (def, paths) = (s.def.clone(), self.nets.paths(name));
            let found = blocking(move || host::adopt(&def, &forwards, &paths)).await;
            let pid = match found {
                Ok(Ok(Found::Running(pid))) => {
                    tracing::info!(network = %name, dnsmasq = pid, "network adopted");
                    pid
                }
                Ok(Ok(Found::Restarted(pid))) => {
                    tracing::warn!(network = %name, dnsmasq = pid, "network adopted; its dnsmasq had died and was restarted");
                    pid
                }
                Ok(Ok(Found::Gone)) => {
                    tracing::warn!(network = %name, "the bridge {} is gone; building the network again", s.def.bridge);
                    let _ = self.nets.remove_runtime(name);
                    if let Err(e) = self.start_network_locked(name).await {
                        tracing::error!(network = %name, "cannot start it again: {e}");
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!(network = %name, "cannot adopt: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::error!(network = %name, "cannot adopt: {e}");
                    continue;
                }
            };
            let _ = self.nets.save_runtime(name, &NetRuntime { dnsmasq_pid: Some(pid) });
            if let Some(s) = self.net_table().get_mut(name) {
                s.active = true;
                s.dnsmasq_pid = Some(pid);
            }
        }
        for name in names {
            let start = self.net_table().get(&name).is_some_and(|s| s.def.autostart && !s.active);
            if start {
                match self.start_network_locked(&name).await {
                    Ok(_) => tracing::info!(network = %name, "autostarted"),
                    Err(e) => tracing::error!(network = %name, "autostart failed: {e}"),
                }
            }
        }
    }

    /// The bridges and tap names of a VM's interfaces; every network must be started.
    pub(crate) fn plan_taps(&self, def: &VmDef) -> Result<Vec<TapState>> {
        let mut out = Vec::new();
        for (i, nic) in def.interfaces.iter().enumerate() {
            let field = format!("interfaces[{i}]");
            let bridge = match &nic.source {
                NetSource::Network(n) => {
                    let t = self.net_table();
                    let s = t.get(n).ok_or_else(|| {
                        DaemonError::BadInput(format!(
                            "{field}.source.network: no network named {n} is defined"
                        ))
                    })?;
                    if !s.active {
                        return Err(DaemonError::Conflict(format!(
                            "{field}.source.network: network {n} is not started; run `vmctl net start {n}`"
                        )));
                    }
                    s.def.bridge.clone()
                }
                NetSource::Bridge(b) => {
                    if !host::is_bridge(b) {
                        return Err(DaemonError::BadInput(format!(
                            "{field}.source.bridge: {b} is not a bridge on this host; create it, or use a network"
                        )));
                    }
                    b.clone()
                }
            };
            out.push(TapState { tap: tap_name(def.name.as_str(), i), bridge });
        }
        let t = self.table();
        for tap in &out {
            if let Some(other) = t.values().find(|s| {
                s.def.name != def.name && s.is_active() && s.rt.taps.iter().any(|x| x.tap == tap.tap)
            }) {
                return Err(DaemonError::Conflict(format!(
                    "the tap name {} is in use by the running VM {}; rename one of the VMs",
                    tap.tap, other.def.name
                )));
            }
        }
        Ok(out)
    }

    /// Makes the planned taps; they are removed again when the guard drops armed.
    /// Makes the taps of a VM's interfaces, owned by `owner` (the jailed vmm's uid and gid)
    /// so that it may attach to them without CAP_NET_ADMIN.
    pub(crate) async fn make_taps(&self, planned: Vec<TapState>, owner: Option<u32>) -> Result<TapGuard> {
        blocking(move || {
            let mut guard = TapGuard { taps: Vec::new(), armed: true };
            for t in planned {
                host::create_tap(&t.tap, &t.bridge, owner).map_err(|e| match e {
                    HostError::Conflict(m) => {
                        DaemonError::BadInput(format!("cannot plug a tap into {}: {m}", t.bridge))
                    }
                    e => DaemonError::from(e),
                })?;
                guard.taps.push(t);
            }
            Ok(guard)
        })
        .await?
    }

    /// Removes the taps of a VM whose process ended.
    pub(crate) async fn remove_taps(self: &Arc<Self>, taps: Vec<TapState>) {
        if taps.is_empty() {
            return;
        }
        let _ = blocking(move || delete_taps(&taps)).await;
    }
}
