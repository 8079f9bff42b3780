// SPDX-License-Identifier: Apache-2.0
//! What a started network looks like, computed without touching the host: the nftables
//! ruleset, the dnsmasq command line, tap names, the port forwards' guests, and the lease
//! file's format.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vmdef::model::NetSource;
use vmdef::network::{NetDef, Proto, MAX_IFNAME};
use vmdef::{MacAddr, VmDef};

/// Prefix of the nftables tables of managed networks (`table ip vmctl-NAME`).
pub const TABLE_PREFIX: &str = "vmctl-";

/// Files of one running network, under `<state>/netrun/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPaths {
    /// dnsmasq's pid file.
    pub pid_file: PathBuf,
    /// dnsmasq's lease file (kept across stops, so guests keep their addresses).
    pub lease_file: PathBuf,
    /// dnsmasq's log.
    pub log_file: PathBuf,
}

impl NetPaths {
    /// The files of network `name` in the directory `dir`.
    pub fn new(dir: &Path, name: &str) -> NetPaths {
        NetPaths {
            pid_file: dir.join(format!("{name}.pid")),
            lease_file: dir.join(format!("{name}.leases")),
            log_file: dir.join(format!("{name}.dnsmasq.log")),
        }
    }
}

/// A port forward with its guest address known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// The host's port.
    pub host_port: u16,
    /// The guest's address.
    pub guest_ip: Ipv4Addr,
    /// The guest's port.
    pub guest_port: u16,
}

/// Resolves the forwards of `net`: a `vm` entry becomes the `hosts` address of that VM's
/// interface on this network. The error names the forward.
pub fn resolve_forwards(net: &NetDef, vms: &[VmDef]) -> Result<Vec<Forward>, String> {
    let mut out = Vec::new();
    for (i, f) in net.forwards.iter().enumerate() {
        let guest_ip = match (f.guest_ip, &f.vm) {
            (Some(ip), _) => ip,
            (None, Some(vm)) => {
                let def = vms
                    .iter()
                    .find(|d| d.name.as_str() == vm)
                    .ok_or_else(|| format!("forwards[{i}].vm: no VM named {vm} is defined"))?;
                def.interfaces
                    .iter()
                    .filter(|n| n.source == NetSource::Network(net.name.clone()))
                    .find_map(|n| net.host_ip(n.mac))
                    .ok_or_else(|| {
                        format!(
                            "forwards[{i}].vm: VM {vm} has no interface on network {} whose MAC is in hosts; \
                             add {{\"mac\": ..., \"ip\": ...}} to hosts",
                            net.name
                        )
                    })?
            }
            (None, None) => return Err(format!("forwards[{i}]: give guest_ip or vm")),
        };
        out.push(Forward { proto: f.proto, host_port: f.host_port, guest_ip, guest_port: f.to_port() });
    }
    Ok(out)
}

/// The nftables table name of a network.
pub fn table_name(net: &str) -> String {
    format!("{TABLE_PREFIX}{net}")
}

/// The nftables script that (re)creates the network's own table in one transaction: an
/// empty table is added and deleted first, so the script replaces any earlier version.
///
/// - `prerouting` / `output` (nat): DNAT of each forwarded host port, for packets to one of
///   the host's own addresses (`fib daddr type local`), arriving from outside or made on the
///   host itself.
/// - `postrouting` (nat): with NAT, masquerade of the subnet's traffic leaving the subnet
///   (only out of `uplink` when given); and of forwarded connections from the subnet back
///   into it (hairpin), so a guest can use the host's forwarded port too.
/// - `forward` (filter, policy accept, so other tables' traffic is untouched): traffic from
///   the subnet out of the bridge, replies into it, and forwarded ports are accepted; with
///   NAT, other packets into the bridge are rejected (the guests are behind NAT), as is
///   traffic from the bridge with a foreign source address.
///
/// An isolated network's table has only the `forward` chain, rejecting everything into and
/// out of the bridge: its guests reach each other (bridged, not forwarded) and the host.
pub fn nft_ruleset(net: &NetDef, forwards: &[Forward]) -> String {
    let t = table_name(&net.name);
    let br = &net.bridge;
    let sub = net.ipv4.subnet();
    let mut s = String::new();
    let _ = writeln!(s, "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{");
    if net.isolated {
        let _ = writeln!(
            s,
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
             iifname \"{br}\" reject\n    oifname \"{br}\" reject\n  }}\n}}"
        );
        return s;
    }
    let dnat: Vec<String> = forwards
        .iter()
        .map(|f| {
            format!(
                "fib daddr type local {} dport {} dnat to {}:{}",
                f.proto.name(),
                f.host_port,
                f.guest_ip,
                f.guest_port
            )
        })
        .collect();
    let _ =
        writeln!(s, "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;");
    for r in &dnat {
        let _ = writeln!(s, "    {r}");
    }
    let _ = writeln!(s, "  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;");
    for r in &dnat {
        let _ = writeln!(s, "    {r}");
    }
    let _ = writeln!(
        s,
        "  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
    );
    if net.nat {
        let out = net.uplink.as_ref().map(|u| format!("oifname \"{u}\" ")).unwrap_or_default();
        let _ = writeln!(s, "    {out}ip saddr {sub} ip daddr != {sub} masquerade");
        if !forwards.is_empty() {
            let _ =
                writeln!(s, "    oifname \"{br}\" ip saddr {sub} ip daddr {sub} ct status dnat masquerade");
        }
    }
    let _ =
        writeln!(s, "  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;");
    let _ = writeln!(s, "    iifname \"{br}\" ip saddr {sub} accept");
    let _ = writeln!(s, "    oifname \"{br}\" ip daddr {sub} ct state established,related accept");
    let _ = writeln!(s, "    oifname \"{br}\" ip daddr {sub} ct status dnat accept");
    if net.nat {
        let _ = writeln!(s, "    oifname \"{br}\" reject");
    } else {
        let _ = writeln!(s, "    oifname \"{br}\" ip daddr {sub} accept");
    }
    let _ = writeln!(s, "    iifname \"{br}\" reject");
    let _ = writeln!(s, "  }}\n}}");
    s
}

/// The user dnsmasq runs as once it has opened its sockets, pid, lease and log files.
pub const DNSMASQ_USER: &str = "nobody";

/// The group to run dnsmasq in: the primary group of [`DNSMASQ_USER`] in the texts of
/// `/etc/passwd` and `/etc/group` (`None` if that gid has no name). An error (a sentence)
/// if the user does not exist.
pub fn dnsmasq_group(passwd: &str, group: &str) -> Result<Option<String>, String> {
    let gid = passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(DNSMASQ_USER)).then(|| f.nth(2).map(str::trim).map(str::to_string))?
        })
        .ok_or_else(|| {
            format!(
                "dnsmasq runs as the user {DNSMASQ_USER}, which /etc/passwd lacks; add it \
                 (nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin)."
            )
        })?;
    Ok(group.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.trim() == gid).then(|| name.to_string())
    }))
}

/// dnsmasq's arguments: DHCP and DNS for the network, on its bridge only, no configuration
/// file, daemonised with the pid file (so its exit status tells whether it started). It
/// drops to [`DNSMASQ_USER`] (in `group`, when given) after opening its files as root.
pub fn dnsmasq_args(net: &NetDef, paths: &NetPaths, group: Option<&str>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut arg = |s: String| a.push(s.into());
    arg("--conf-file=/dev/null".into());
    arg(format!("--pid-file={}", paths.pid_file.display()));
    arg(format!("--dhcp-leasefile={}", paths.lease_file.display()));
    arg(format!("--log-facility={}", paths.log_file.display()));
    arg(format!("--interface={}", net.bridge));
    arg("--bind-interfaces".into());
    arg("--except-interface=lo".into());
    arg(format!("--listen-address={}", net.ipv4.addr));
    arg("--no-hosts".into());
    arg("--strict-order".into());
    // Unprivileged once running: dnsmasq opens the pid, lease and log files as root first
    // (the lease file stays open and is rewritten through that descriptor; the log file is
    // given to the user), so the state directory can stay root's.
    arg(format!("--user={DNSMASQ_USER}"));
    if let Some(g) = group {
        arg(format!("--group={g}"));
    }
    if !net.dns {
        arg("--port=0".into());
    }
    if net.dhcp.is_some() || !net.hosts.is_empty() {
        arg("--dhcp-authoritative".into());
        arg("--dhcp-no-override".into());
        arg("--log-dhcp".into());
        let mask = net.ipv4.netmask();
        match &net.dhcp {
            Some(r) => arg(format!("--dhcp-range={},{},{mask},{}", r.start, r.end, r.lease_secs)),
            // Only fixed addresses: a static range serves the listed hosts alone.
            None => arg(format!("--dhcp-range={},static,{mask},3600", net.ipv4.network())),
        }
        arg(format!("--dhcp-option=option:router,{}", net.ipv4.addr));
        if net.dns {
            arg(format!("--dhcp-option=option:dns-server,{}", net.ipv4.addr));
        }
        for h in &net.hosts {
            match &h.name {
                Some(n) => arg(format!("--dhcp-host={},{},{n}", h.mac, h.ip)),
                None => arg(format!("--dhcp-host={},{}", h.mac, h.ip)),
            }
        }
    }
    a
}

/// The tap of a VM's NIC number `index`: `vt-<vm>-<index>`, shortened to 15 characters by
/// replacing the tail of a long VM name with a hash of the whole name.
pub fn tap_name(vm: &str, index: usize) -> String {
    let full = format!("vt-{vm}-{index}");
    if full.len() <= MAX_IFNAME {
        return full;
    }
    // FNV-1a of the full name: distinct long names sharing a prefix get distinct taps.
    let hash =
        vm.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let suffix = format!("{:04x}-{index}", hash & 0xffff);
    let room = MAX_IFNAME.saturating_sub(3 + suffix.len());
    let head: String = vm.chars().take(room).collect();
    format!("vt-{head}{suffix}")
}

/// One DHCP lease from dnsmasq's lease file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// When it expires, seconds since the Unix epoch (0: never).
    pub expiry: u64,
    /// The client's MAC.
    pub mac: String,
    /// The address.
    pub ip: String,
    /// The host name the client sent, if any.
    pub hostname: Option<String>,
    /// The DHCP client id, if any.
    pub client_id: Option<String>,
}

/// Parses dnsmasq's lease file (`EXPIRY MAC IP HOSTNAME CLIENTID` per line, `*` for none);
/// lines that do not parse (IPv6 `duid` lines) are skipped.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    let opt = |s: Option<&str>| s.filter(|s| *s != "*").map(str::to_string);
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let expiry = w.next()?.parse().ok()?;
            let mac = w.next()?.parse::<MacAddr>().ok()?.to_string();
            let ip = w.next()?.parse::<Ipv4Addr>().ok()?.to_string();
            Some(Lease { expiry, mac, ip, hostname: opt(w.next()), client_id: opt(w.next()) })
        })
        .collect()
}

#[cfg(test)]
mod tests;
