// SPDX-License-Identifier: Apache-2.0
//! Building and removing a network on the host by running `ip` (iproute2), `nft`
//! (nftables) and `dnsmasq`, as libvirt does. Every function is synchronous (the daemon
//! calls them on its blocking pool) and acts in the network namespace of the calling thread.
//!
//! [`start`] makes the bridge, its address, the nftables table and dnsmasq, undoing what it
//! did if a step fails; [`stop`] removes all of it and is safe to repeat. [`adopt`] checks
//! what a restarted daemon finds. IPv4 forwarding is switched on (`net.ipv4.ip_forward`) and
//! left on, as libvirt does: other software may rely on it by then.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmdef::network::NetDef;

use super::config::{dnsmasq_args, nft_ruleset, table_name, Forward, NetPaths};

/// A failed host operation.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A tool is not installed.
    #[error("{tool} is not installed; install it with `apt-get install {package}`")]
    Missing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A command failed; the message has its stderr.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// The host's state forbids it (an interface exists, an address overlaps).
    #[error("{0}")]
    Conflict(String),
    /// Another host failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Result of host operations.
pub type Result<T, E = HostError> = std::result::Result<T, E>;

fn package_of(tool: &'static str) -> &'static str {
    match tool {
        "ip" => "iproute2",
        "nft" => "nftables",
        "dnsmasq" => "dnsmasq-base",
        _ => tool,
    }
}

/// Runs `tool args`, with `input` on stdin; returns stdout.
fn run_input(tool: &'static str, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    let command = format!("{tool} {}", args.join(" "));
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HostError::Missing { tool, package: package_of(tool) },
            _ => HostError::Io { what: format!("cannot run {tool}"), source: e },
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| HostError::Io { what: format!("{tool} stdin"), source: e })?;
    }
    let out = child.wait_with_output().map_err(|e| HostError::Io { what: command.clone(), source: e })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(HostError::Failed { command, stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(tool: &'static str, args: &[&str]) -> Result<String> {
    run_input(tool, args, None)
}

/// Fails with [`HostError::Missing`] unless `ip`, `nft` and `dnsmasq` can be run.
pub fn check_tools() -> Result<()> {
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("dnsmasq", "--version")] {
        run(tool, &[arg])?;
    }
    Ok(())
}

/// True if the host has an interface `name` (in this network namespace).
pub fn link_exists(name: &str) -> bool {
    // /sys/class/net shows the namespace /sys was mounted in, not the caller's: ask ip.
    run("ip", &["link", "show", "dev", name]).is_ok()
}

/// True if `name` is a bridge.
pub fn is_bridge(name: &str) -> bool {
    run("ip", &["-d", "link", "show", "dev", name, "type", "bridge"]).is_ok_and(|s| !s.trim().is_empty())
}

/// IPv4 addresses on the host's interfaces: `(interface, address/prefix)`.
fn host_addresses() -> Result<Vec<(String, vmdef::network::Ipv4Cidr)>> {
    let out = run("ip", &["-4", "-o", "addr", "show"])?;
    // "2: eth0    inet 192.0.2.5/24 brd ... scope global eth0"
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let dev = w.next()?.trim_end_matches(':').split('@').next()?.to_string();
            (w.next()? == "inet").then_some(())?;
            Some((dev, w.next()?.parse().ok()?))
        })
        .collect())
}

fn set_ip_forward() -> Result<()> {
    // /proc/sys/net belongs to the network namespace of the thread that opens it.
    let p = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(p, b"1")
        .map_err(|e| HostError::Io { what: format!("cannot write 1 to {}", p.display()), source: e })
}

/// Builds the network: bridge with the gateway address, IPv4 forwarding, the nftables table
/// and dnsmasq. Returns dnsmasq's pid. Undoes its own steps when one fails.
pub fn start(net: &NetDef, forwards: &[Forward], paths: &NetPaths) -> Result<u32> {
    check_tools()?;
    if link_exists(&net.bridge) {
        return Err(HostError::Conflict(format!(
            "bridge: the host already has an interface {}; remove it or choose another bridge name",
            net.bridge
        )));
    }
    if let Some((dev, a)) = host_addresses()?.into_iter().find(|(_, a)| a.overlaps(&net.ipv4)) {
        return Err(HostError::Conflict(format!(
            "ipv4: {} overlaps the host's address {a} on {dev}; choose another subnet",
            net.ipv4.subnet()
        )));
    }
    let result = (|| {
        run("ip", &["link", "add", "name", &net.bridge, "type", "bridge"])?;
        if let Some(mac) = net.mac {
            run("ip", &["link", "set", "dev", &net.bridge, "address", &mac.to_string()])?;
        }
        run("ip", &["addr", "add", &net.ipv4.to_string(), "dev", &net.bridge])?;
        run("ip", &["link", "set", "dev", &net.bridge, "up"])?;
        set_ip_forward()?;
        apply_rules(net, forwards)?;
        start_dnsmasq(net, paths)
    })();
    if result.is_err() {
        let _ = stop(net, paths);
    }
    result
}

/// Loads (or replaces) the network's nftables table.
pub fn apply_rules(net: &NetDef, forwards: &[Forward]) -> Result<()> {
    run_input("nft", &["-f", "-"], Some(&nft_ruleset(net, forwards))).map(|_| ())
}

/// True if the network's nftables table exists.
pub fn table_exists(net: &str) -> bool {
    run("nft", &["list", "table", "ip", &table_name(net)]).is_ok()
}

/// Starts dnsmasq (it daemonises once it listens) and returns its pid from the pid file.
pub fn start_dnsmasq(net: &NetDef, paths: &NetPaths) -> Result<u32> {
    let _ = std::fs::remove_file(&paths.pid_file);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let group = super::config::dnsmasq_group(&passwd, &groups)
        .map_err(|stderr| HostError::Failed { command: "dnsmasq".into(), stderr })?;
    let args = dnsmasq_args(net, paths, group.as_deref());
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    run("dnsmasq", &args)?;
    dnsmasq_pid(paths).ok_or_else(|| HostError::Failed {
        command: "dnsmasq".into(),
        stderr: format!("exited without writing {}", paths.pid_file.display()),
    })
}

/// The pid of the network's dnsmasq if it runs: the pid file names a live process whose
/// command line names that pid file (so a reused pid is not mistaken for it).
pub fn dnsmasq_pid(paths: &NetPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&paths.pid_file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let want = format!("--pid-file={}", paths.pid_file.display());
    cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes()).then_some(pid)
}

/// Stops dnsmasq: SIGTERM, then SIGKILL after 5 s.
fn stop_dnsmasq(paths: &NetPaths) {
    let Some(pid) = dnsmasq_pid(paths) else { return };
    let target = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while dnsmasq_pid(paths).is_some() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() > deadline + Duration::from_secs(5) {
            tracing::warn!("dnsmasq pid {pid} survived SIGKILL");
            break;
        }
    }
}

/// Removes everything [`start`] made: dnsmasq, the nftables table and the bridge (its ports
/// are detached by the kernel). The lease file stays. Safe to repeat: what is already gone
/// is skipped; the first real failure is returned after every step was tried.
pub fn stop(net: &NetDef, paths: &NetPaths) -> Result<()> {
    stop_dnsmasq(paths);
    let _ = std::fs::remove_file(&paths.pid_file);
    let mut first = None;
    if table_exists(&net.name) {
        if let Err(e) = run("nft", &["delete", "table", "ip", &table_name(&net.name)]) {
            first.get_or_insert(e);
        }
    }
    if link_exists(&net.bridge) {
        if let Err(e) = run("ip", &["link", "del", "dev", &net.bridge]) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// What a restarted daemon finds of a network it had started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Bridge and dnsmasq are there (the table is loaded again to be sure); dnsmasq's pid.
    Running(u32),
    /// The bridge is there but dnsmasq was not: it was started again; its pid.
    Restarted(u32),
    /// The bridge is gone (the host rebooted, or someone removed it).
    Gone,
}

/// Re-adopts a network after a daemon restart.
pub fn adopt(net: &NetDef, forwards: &[Forward], paths: &NetPaths) -> Result<Found> {
    if !is_bridge(&net.bridge) {
        return Ok(Found::Gone);
    }
    apply_rules(net, forwards)?;
    match dnsmasq_pid(paths) {
        Some(pid) => Ok(Found::Running(pid)),
        None => start_dnsmasq(net, paths).map(Found::Restarted),
    }
}

/// Makes the persistent tap `tap`, owned by `owner` (uid and gid) if given, and plugs it into
/// `bridge`. A tap left with that name by an earlier run is replaced.
pub fn create_tap(tap: &str, bridge: &str, owner: Option<u32>) -> Result<()> {
    if !is_bridge(bridge) {
        return Err(HostError::Conflict(format!("{bridge} is not a bridge on this host")));
    }
    if link_exists(tap) {
        run("ip", &["link", "del", "dev", tap])?;
    }
    match owner {
        Some(id) => {
            let id = id.to_string();
            run("ip", &["tuntap", "add", "dev", tap, "mode", "tap", "user", &id, "group", &id])?
        }
        None => run("ip", &["tuntap", "add", "dev", tap, "mode", "tap"])?,
    };
    let plugged = run("ip", &["link", "set", "dev", tap, "master", bridge])
        .and_then(|_| run("ip", &["link", "set", "dev", tap, "up"]));
    if let Err(e) = plugged {
        let _ = run("ip", &["link", "del", "dev", tap]);
        return Err(e);
    }
    Ok(())
}

/// Removes a tap; one that is already gone is fine.
pub fn delete_tap(tap: &str) -> Result<()> {
    if link_exists(tap) {
        run("ip", &["link", "del", "dev", tap])?;
    }
    Ok(())
}
