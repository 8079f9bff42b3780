// SPDX-License-Identifier: Apache-2.0
//! Starting and stopping VM processes, noticing their exits and applying `on_*` policies.
//!
//! Exit codes of `vmm` and what they mean here: 0 guest power-off (`on_poweroff`), 3 guest
//! reboot under `--no-reboot` (`on_reboot`; passed only when `on_reboot` is not `restart`, else
//! the VMM reboots the guest itself), 130 stopped (shut off), anything else or a signal a
//! crash (`on_crash`). `preserve` cannot keep a process that has already exited: it leaves the
//! VM shut off (or crashed) for inspection of its logs, like `destroy`. An automatic restart
//! loop is cut after [`MAX_RESTARTS`] restarts within [`RESTART_WINDOW`].

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::watch;
use vmdef::model::LifecycleAction;
use vmdef::store::{proc_start_ticks, RunState, RuntimeState};
use vmdef::VmName;

use super::{Daemon, DaemonError, Intent, Result};
use crate::api::{EventKind, VmInfo};
use crate::process::{self, Request, EXIT_BAD_INPUT, EXIT_POWEROFF, EXIT_REBOOT, EXIT_STOPPED};

/// Most automatic restarts within [`RESTART_WINDOW`].
pub const MAX_RESTARTS: usize = 3;
/// Window of the restart-loop limit.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How often an adopted VM's pid is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Timeout of one control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// The first port tried for a VNC server without a fixed port (display :0).
pub const VNC_PORT_FIRST: u16 = 5900;
/// The VNC socket of a VM without a VNC password, in its run directory.
pub const VNC_SOCKET: &str = "vnc.sock";

/// Why a VM process ended, as far as its exit tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The guest powered off.
    PowerOff,
    /// The guest rebooted (`--no-reboot`).
    Reboot,
    /// Stopped by a request or signal.
    Stopped,
    /// Anything else.
    Crash,
}

/// Classifies an exit code (`None`: killed by a signal or unknown).
pub fn exit_kind(code: Option<i32>) -> ExitKind {
    match code {
        Some(EXIT_POWEROFF) => ExitKind::PowerOff,
        Some(EXIT_REBOOT) => ExitKind::Reboot,
        Some(EXIT_STOPPED) => ExitKind::Stopped,
        _ => ExitKind::Crash,
    }
}

/// Watches an adopted VM (not our child) by polling its pid.
pub(crate) fn spawn_poll_monitor(d: Arc<Daemon>, name: VmName, pid: u32, ticks: Option<u64>) {
    tokio::spawn(async move {
        while process::is_alive(pid, ticks) {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        d.on_exit(&name, pid, None).await;
    });
}

impl Daemon {
    /// Starts a defined VM.
    pub async fn start(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        let _op = self.op_lock(name).await;
        self.start_locked(name).await
    }

    async fn start_locked(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        let def = {
            let t = self.table();
            let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
            if s.is_active() {
                return Err(DaemonError::Conflict(format!("{name} is already running")));
            }
            s.def.clone()
        };
        // The define-time checks again: a definition stored before a rule was tightened (a
        // bridge name that reaches host tools) does not start.
        let problems = vmdef::validate::check_definition(&def);
        if !problems.is_empty() {
            return Err(DaemonError::BadInput(format!(
                "cannot start {name}: {}",
                vmdef::validate::Invalid { problems }
            )));
        }
        self.check_templates(&def)?;
        // The policy again (a definition stored before it, a pool undefined since), and the
        // paths as the kernel resolved them beneath their pools are what the VMM gets.
        let def = self.resolve_paths(&def).map_err(|problems| {
            DaemonError::BadInput(format!("cannot start {name}: {}", vmdef::validate::Invalid { problems }))
        })?;
        // Every file the VM reads, opened beneath its pool, each disk's backing chain
        // followed: a qcow2 header naming a file outside the pools (or a loop, an external
        // data file) stops the start here. Held open until the VMM runs; they are the
        // descriptors to hand it.
        let files = self.definition_files(&def).map_err(|problems| {
            DaemonError::BadInput(format!("cannot start {name}: {}", vmdef::validate::Invalid { problems }))
        })?;
        let paths = self.run_paths(name);
        let planned = self.plan_taps(&def)?;
        let tap_names: Vec<String> = planned.iter().map(|t| t.tap.clone()).collect();
        // A VNC server listens on TCP only with a password; without one, on the unix socket
        // `paths.vnc` (reached through the API: `vmctl vnc NAME`).
        let tcp_vnc = def.graphics.vnc.as_ref().filter(|v| v.is_tcp());
        let vnc_socket = def.graphics.vnc.as_ref().filter(|v| !v.is_tcp()).map(|_| paths.vnc.clone());
        // Until this VM is recorded running with its VNC port (or fails to start).
        let _vnc_guard = match tcp_vnc {
            Some(_) => Some(self.vnc_lock.lock().await),
            None => None,
        };
        let vnc = match tcp_vnc {
            Some(v) => Some(self.choose_vnc_address(name, v)?),
            None => None,
        };
        let mut config = crate::argv::vmm_config(&def, &paths, &tap_names, vnc)
            .map_err(|e| DaemonError::BadInput(format!("cannot start {name}: {e}")))?;
        // The vmm opens none of them by path: each is handed over as descriptor 3, 4, ...
        // under the path it will ask for (so a file swapped after the checks is not used, and
        // a jailed vmm, which cannot see them, still can).
        let (preopened, fds) = crate::argv::hand_over(files);
        config.preopened = (!preopened.is_empty()).then_some(preopened);
        // The jailed vmm's uid, and its cgroup: released and removed again if the start fails.
        let mut run = self.begin_run(name)?;
        // Given back again if the start fails.
        let bound = self.bind_managed(&def)?;
        // Removed again if the start fails.
        let taps = self.make_taps(planned, run.uid).await?;
        self.prepare_run_dir(&paths.dir, run.uid)?;
        let jail = match run.uid {
            Some(uid) => {
                let j = self.make_jail(&def, uid, &paths.dir)?;
                run.cgroup = j.cgroup.is_some();
                Some(j.jail)
            }
            None => None,
        };
        // The VM's whole configuration is the file; the arguments name it (and add the
        // daemon's --vmm-arg flags). A jailed vmm may read it, not change it.
        crate::argv::write_config(&paths.config, &config)
            .and_then(|()| match run.uid {
                Some(gid) => {
                    std::os::unix::fs::chown(&paths.config, Some(0), Some(gid))?;
                    std::fs::set_permissions(
                        &paths.config,
                        std::os::unix::fs::PermissionsExt::from_mode(0o640),
                    )
                }
                None => Ok(()),
            })
            .map_err(|e| DaemonError::Internal(format!("cannot write {}: {e}", paths.config.display())))?;
        let mut args = crate::argv::vmm_args(&paths.config);
        args.extend(self.cfg.extra_vmm_args.iter().cloned());
        tracing::info!(vm = %name, vmm = %self.cfg.vmm.display(), ?args, "starting");
        self.cap_vmm_log(name);
        let mut child =
            process::spawn_vmm(&self.cfg.vmm, &args, &self.vmm_log_path(name), fds, jail.as_ref()).map_err(
                |e| {
                    let how = if jail.is_some() { " in its jail" } else { "" };
                    DaemonError::Internal(format!("cannot run {}{how}: {e}", self.cfg.vmm.display()))
                },
            )?;
        let pid = child.id();
        let ticks = proc_start_ticks(pid).ok();
        // Up before the deadline: the control socket answers. Or the VMM exits first.
        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.ok();
                    let reason = process::read_exit_status(&paths.exit_status)
                        .map(|e| e.reason)
                        .unwrap_or_else(|| describe_status(status));
                    let code = status.and_then(|s| s.code());
                    let msg = if code == Some(i32::from(api::VmmExit::SlowHost.code())) {
                        // The vmm names its own flag; a daemon user needs the daemon's setting.
                        format!(
                            "{name} failed to start: this host's KVM runs guests too slowly to be useful \
                             (no hardware virtualization, e.g. kvm_pvm). To run guests anyway, start \
                             vmctld with --vmm-arg=--accept-slow-kvm (see {})",
                            self.vmm_log_path(name).display()
                        )
                    } else {
                        format!("{name} failed to start: {reason} (see {})", self.vmm_log_path(name).display())
                    };
                    return Err(match code {
                        Some(EXIT_BAD_INPUT) => DaemonError::BadInput(msg),
                        _ => DaemonError::Internal(msg),
                    });
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if process::status(&paths.control, Duration::from_secs(1)).await.is_ok() {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        return Err(DaemonError::Internal(format!(
                            "{name}: the vmm did not open its control socket within {:?}",
                            self.cfg.start_timeout
                        )));
                    }
                }
            }
        }
        bound.keep();
        let rt = RuntimeState {
            state: RunState::Running,
            pid: Some(pid),
            pid_start_ticks: ticks,
            control_socket: Some(paths.control.clone()),
            exit_reason: None,
            taps: taps.keep(),
            vnc,
            vnc_socket,
            jail_uid: run.uid,
        };
        self.save_runtime_logged(name, &rt);
        let console = self.attach_console(&def, &paths.serial, false);
        let info = {
            let mut t = self.table();
            let s = t.get_mut(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
            s.rt = rt;
            s.console = console;
            s.intent = Intent::None;
            s.info()
        };
        run.keep();
        let d = self.clone();
        let vm = name.clone();
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            d.on_exit(&vm, pid, status).await;
        });
        self.emit(name, EventKind::Started, RunState::Running, Some(format!("pid {pid}")));
        Ok(info)
    }

    /// The address for the VNC server of `name`: its fixed port, or the first port from
    /// [`VNC_PORT_FIRST`] that no running VM of this daemon holds and that nothing else on the
    /// host listens on (libvirt's `autoport`). Call with `vnc_lock` held.
    fn choose_vnc_address(&self, name: &VmName, vnc: &vmdef::model::Vnc) -> Result<SocketAddr> {
        let held: Vec<(SocketAddr, String)> = self
            .table()
            .iter()
            .filter(|(n, s)| *n != name && s.is_active())
            .filter_map(|(n, s)| s.rt.vnc.map(|a| (a, n.to_string())))
            .collect();
        let holder = |port: u16| held.iter().find(|(a, _)| a.port() == port).map(|(_, n)| n.clone());
        let free = |port: u16| std::net::TcpListener::bind(SocketAddr::new(vnc.listen, port));
        match vnc.port {
            Some(port) => {
                if let Some(other) = holder(port) {
                    return Err(DaemonError::Conflict(format!(
                        "cannot start {name}: graphics.vnc.port {port} is used by the running VM {other}; \
                         choose another port or leave it out for the first free one"
                    )));
                }
                free(port).map_err(|e| {
                    DaemonError::Conflict(format!(
                        "cannot start {name}: graphics.vnc: cannot listen on {}: {e}; choose another port \
                         or leave it out for the first free one",
                        SocketAddr::new(vnc.listen, port)
                    ))
                })?;
                Ok(SocketAddr::new(vnc.listen, port))
            }
            None => {
                for port in VNC_PORT_FIRST..=u16::MAX {
                    if holder(port).is_some() {
                        continue;
                    }
                    match free(port) {
                        Ok(_) => return Ok(SocketAddr::new(vnc.listen, port)),
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                        // Not about this port (an address the host does not have, no
                        // loopback): no other port would do better.
                        Err(e) => {
                            return Err(DaemonError::Conflict(format!(
                                "cannot start {name}: graphics.vnc: cannot listen on {}: {e}; \
                                 check graphics.vnc.listen",
                                SocketAddr::new(vnc.listen, port)
                            )))
                        }
                    }
                }
                Err(DaemonError::Conflict(format!(
                    "cannot start {name}: graphics.vnc: no free port from {VNC_PORT_FIRST} on {}",
                    vnc.listen
                )))
            }
        }
    }

    /// Handles the end of the VM process `pid`: records state and reason, applies policy.
    pub(crate) async fn on_exit(
        self: &Arc<Self>,
        name: &VmName,
        pid: u32,
        status: Option<std::process::ExitStatus>,
    ) {
        let paths = self.run_paths(name);
        let written = process::read_exit_status(&paths.exit_status);
        let (code, reason) = match (&written, status) {
            (Some(e), _) => (Some(e.code), e.reason.clone()),
            (None, Some(st)) => (st.code(), describe_status(Some(st))),
            (None, None) => (None, "the vmm process ended without an exit status".to_string()),
        };
        let kind = exit_kind(code);
        let (intent, def, console, taps) = {
            let mut t = self.table();
            let Some(s) = t.get_mut(name) else { return };
            if s.rt.pid != Some(pid) {
                return; // A stale monitor of an earlier process.
            }
            let intent = std::mem::replace(&mut s.intent, Intent::None);
            (intent, s.def.clone(), s.console.take(), std::mem::take(&mut s.rt.taps))
        };
        self.remove_taps(taps).await;
        self.remove_cgroup(name);
        self.release_managed(&def);
        if let Some(c) = console {
            c.close();
        }
        let action = match (intent, kind) {
            (Intent::Stop, _) | (_, ExitKind::Stopped) => LifecycleAction::Destroy,
            (Intent::None, ExitKind::PowerOff) => def.on_poweroff,
            (Intent::None, ExitKind::Reboot) => def.on_reboot,
            (Intent::None, ExitKind::Crash) => def.on_crash,
        };
        let state = if kind == ExitKind::Crash && intent != Intent::Stop {
            RunState::Crashed
        } else {
            RunState::Shutoff
        };
        let mut restart = action == LifecycleAction::Restart;
        let mut reason = reason;
        {
            let mut t = self.table();
            if let Some(s) = t.get_mut(name) {
                if restart {
                    let now = Instant::now();
                    s.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                    if s.restarts.len() >= MAX_RESTARTS {
                        restart = false;
                        reason = format!(
                            "{reason}; not restarted: {MAX_RESTARTS} restarts within {RESTART_WINDOW:?}"
                        );
                    } else {
                        s.restarts.push(now);
                    }
                }
                s.rt = RuntimeState { state, exit_reason: Some(reason.clone()), ..RuntimeState::shutoff() };
                self.save_runtime_logged(name, &s.rt);
                s.exits.send_modify(|n| *n += 1);
            }
        }
        let event = if state == RunState::Crashed { EventKind::Crashed } else { EventKind::Stopped };
        self.emit(name, event, state, Some(reason));
        if restart {
            super::spawn_restart(self.clone(), name.clone());
        }
    }

    /// The control socket and an exit watcher of an active VM; `Conflict` if it is not.
    fn active(&self, name: &VmName) -> Result<(std::path::PathBuf, watch::Receiver<u64>)> {
        let t = self.table();
        let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
        if !s.is_active() {
            return Err(DaemonError::Conflict(format!("{name} is not running")));
        }
        let socket = s.rt.control_socket.clone().unwrap_or_else(|| self.run_paths(name).control);
        Ok((socket, s.exits.subscribe()))
    }

    fn set_intent(&self, name: &VmName, intent: Intent) {
        if let Some(s) = self.table().get_mut(name) {
            s.intent = intent;
        }
    }

    /// Presses the power button and waits up to `timeout` for the guest to power off; then
    /// stops the VMM. The VM ends shut off whatever its `on_poweroff` says.
    pub async fn shutdown(self: &Arc<Self>, name: &VmName, timeout: Duration) -> Result<VmInfo> {
        let _op = self.op_lock(name).await;
        self.shutdown_locked(name, timeout).await?;
        self.info(name)
    }

    async fn shutdown_locked(&self, name: &VmName, timeout: Duration) -> Result<()> {
        let (socket, mut exits) = self.active(name)?;
        self.set_intent(name, Intent::Stop);
        if let Err(e) = process::command(&socket, Request::Powerbutton, CONTROL_TIMEOUT).await {
            self.set_intent(name, Intent::None);
            return Err(DaemonError::Conflict(format!("{name}: cannot press the power button: {e}")));
        }
        if tokio::time::timeout(timeout, exits.changed()).await.is_ok() {
            return Ok(());
        }
        tracing::warn!(vm = %name, "did not power off within {timeout:?}; stopping it");
        self.force_stop(name, exits).await
    }

    /// Stops the VMM at once (like pulling the plug).
    pub async fn destroy(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        let _op = self.op_lock(name).await;
        let (_, exits) = self.active(name)?;
        self.force_stop(name, exits).await?;
        self.info(name)
    }

    /// `stop` through the control socket, then SIGTERM, then SIGKILL.
    async fn force_stop(&self, name: &VmName, mut exits: watch::Receiver<u64>) -> Result<()> {
        self.set_intent(name, Intent::Stop);
        let (socket, pid, ticks) = {
            let t = self.table();
            let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
            (s.rt.control_socket.clone(), s.rt.pid, s.rt.pid_start_ticks)
        };
        let asked = match socket {
            Some(sock) => process::command(&sock, Request::Stop, CONTROL_TIMEOUT).await.is_ok(),
            None => false,
        };
        if !asked {
            if let Some(pid) = pid {
                process::signal(pid, ticks, Signal::SIGTERM);
            }
        }
        if tokio::time::timeout(self.cfg.stop_timeout, exits.changed()).await.is_ok() {
            return Ok(());
        }
        tracing::warn!(vm = %name, "did not stop within {:?}; killing it", self.cfg.stop_timeout);
        if let Some(pid) = pid {
            process::signal(pid, ticks, Signal::SIGKILL);
        }
        tokio::time::timeout(Duration::from_secs(5), exits.changed())
            .await
            .map(|_| ())
            .map_err(|_| DaemonError::Internal(format!("{name}: the vmm survived SIGKILL")))
    }

    /// A graceful shutdown (as [`Daemon::shutdown`]) followed by a start.
    pub async fn reboot(self: &Arc<Self>, name: &VmName, timeout: Duration) -> Result<VmInfo> {
        let _op = self.op_lock(name).await;
        self.shutdown_locked(name, timeout).await?;
        self.start_locked(name).await
    }

    /// A hard reset of the machine; the process stays.
    pub async fn reset(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        self.simple_command(name, Request::Reset, None).await
    }

    /// Stops the vCPUs.
    pub async fn pause(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        self.simple_command(name, Request::Pause, Some((RunState::Paused, EventKind::Paused))).await
    }

    /// Restarts the vCPUs.
    pub async fn resume(self: &Arc<Self>, name: &VmName) -> Result<VmInfo> {
        self.simple_command(name, Request::Resume, Some((RunState::Running, EventKind::Resumed))).await
    }

    async fn simple_command(
        self: &Arc<Self>,
        name: &VmName,
        cmd: Request,
        then: Option<(RunState, EventKind)>,
    ) -> Result<VmInfo> {
        let _op = self.op_lock(name).await;
        let (socket, _) = self.active(name)?;
        let what = cmd.name();
        process::command(&socket, cmd, CONTROL_TIMEOUT)
            .await
            .map_err(|e| DaemonError::Conflict(format!("{name}: {what} failed: {e}")))?;
        if let Some((state, event)) = then {
            let rt = {
                let mut t = self.table();
                let s = t.get_mut(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
                s.rt.state = state;
                s.rt.clone()
            };
            self.save_runtime_logged(name, &rt);
            self.emit(name, event, state, None);
        }
        self.info(name)
    }
}

/// "exit status N" or "killed by signal N".
fn describe_status(status: Option<std::process::ExitStatus>) -> String {
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("the vmm exited with status {c}"),
            (None, Some(sig)) => format!("the vmm was killed by signal {sig}"),
            (None, None) => "the vmm ended".into(),
        },
        None => "the vmm ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_classified() {
        assert_eq!(exit_kind(Some(0)), ExitKind::PowerOff);
        assert_eq!(exit_kind(Some(3)), ExitKind::Reboot);
        assert_eq!(exit_kind(Some(130)), ExitKind::Stopped);
        assert_eq!(exit_kind(Some(1)), ExitKind::Crash);
        assert_eq!(exit_kind(Some(4)), ExitKind::Crash);
        assert_eq!(exit_kind(None), ExitKind::Crash);
    }

    #[test]
    fn statuses_are_described() {
        assert_eq!(
            describe_status(Some(std::process::ExitStatus::from_raw(9))),
            "the vmm was killed by signal 9"
        );
        assert_eq!(
            describe_status(Some(std::process::ExitStatus::from_raw(2 << 8))),
            "the vmm exited with status 2"
        );
    }
}
