// SPDX-License-Identifier: Apache-2.0
//! Managed networks (`vmctl net`): a host bridge with an IPv4 subnet, DHCP and DNS from
//! dnsmasq, NAT to the host's uplink and port forwards, like libvirt's NAT network.
//!
//! [`NetDef`] is the native JSON form (the store's file and the REST body); [`xml`] imports
//! the libvirt `<network>` subset it expresses. [`validate_network`] runs the checks `net
//! define` needs: the definition on its own (every problem names its field) and against the
//! other networks (overlapping subnets, bridges and forwarded host ports are conflicts).
//! Nothing here touches the host; `vmctl`'s `net` module builds and removes the bridge.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::MacAddr;
use crate::validate::{Invalid, Problem, ProblemKind};

pub mod xml;

/// Longest network name (it becomes part of file names and the nftables table name).
pub const MAX_NET_NAME: usize = 32;
/// Longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;
/// Prefix of generated bridge names: `vmbr0`, `vmbr1`, ...
pub const BRIDGE_PREFIX: &str = "vmbr";

fn problem(kind: ProblemKind, field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { kind, field: field.into(), message: message.into() }
}

/// Checks a network name: 1 to 32 characters from `[A-Za-z0-9_-]`, starting with a letter or
/// digit.
pub fn check_net_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NET_NAME {
        return Err(format!("{name:?} is not 1 to {MAX_NET_NAME} characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("{name:?} has a character outside A-Z a-z 0-9 _ -"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("{name:?} does not start with a letter or digit"));
    }
    Ok(())
}

/// Interface names the daemon accepts (bridges, uplinks): 1-15 bytes of `[A-Za-z0-9_.-]`,
/// not `.` or `..` and not starting with `-`. They reach `ip` arguments, nftables rules and
/// dnsmasq's command line, so nothing that could quote, separate or start an option passes.
pub fn ifname_ok(n: &str) -> bool {
    (1..=MAX_IFNAME).contains(&n.len())
        && n != "."
        && n != ".."
        && !n.starts_with('-')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// How to write an interface name, for error messages.
pub const IFNAME_RULE: &str = "use 1 to 15 characters of A-Z a-z 0-9 _ . - not starting with '-'";

/// An IPv4 address with its prefix length, written `10.77.0.1/24`: the host's address on
/// the bridge (the guests' gateway) and the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// The netmask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        Ipv4Addr::from(bits)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !u32::from(self.netmask()))
    }

    /// True if `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.network())
    }

    /// True if the two subnets share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let p = self.prefix.min(other.prefix);
        let shorter = Ipv4Cidr { addr: self.addr, prefix: p };
        shorter.contains(other.addr)
    }

    /// The subnet as `network/prefix`, e.g. `10.77.0.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.network(), self.prefix)
    }

    /// True if `ip` is a usable host address of the subnet (not its network or broadcast
    /// address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.broadcast()
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write an address and prefix length like 10.77.0.1/24";
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} has no /prefix; {fix}"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address; {fix}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{p:?} is not a prefix length from 0 to 32; {fix}"))?;
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Addresses dnsmasq hands out dynamically (libvirt `<dhcp><range start end>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
    /// Lease time in seconds; default one hour.
    #[serde(default = "default_lease")]
    pub lease_secs: u32,
}

fn default_lease() -> u32 {
    3600
}

/// A fixed address for one MAC (libvirt `<dhcp><host mac ip name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpHost {
    /// The guest NIC's MAC.
    pub mac: MacAddr,
    /// The address it always gets.
    pub ip: Ipv4Addr,
    /// Host name served by the network's DNS.
    #[serde(default)]
    pub name: Option<String>,
}

/// Transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port of the host forwarded to a guest (DNAT).
///
/// The guest is `guest_ip`, or `vm`: the VM whose interface on this network has a MAC listed
/// in `hosts` (resolved when the network starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// Port on the host's addresses.
    pub host_port: u16,
    /// The guest's address.
    #[serde(default)]
    pub guest_ip: Option<Ipv4Addr>,
    /// Or the VM, by name (its MAC must have an address in `hosts`).
    #[serde(default)]
    pub vm: Option<String>,
    /// Port in the guest; default `host_port`.
    #[serde(default)]
    pub guest_port: Option<u16>,
}

impl PortForward {
    /// The port in the guest.
    pub fn to_port(&self) -> u16 {
        self.guest_port.unwrap_or(self.host_port)
    }
}

/// A managed network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetDef {
    /// Unique name: 1 to 32 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// Unique id; generated if absent.
    #[serde(default = "Uuid::new_v4")]
    pub uuid: Uuid,
    /// The host bridge (at most 15 characters); empty picks the first free `vmbrN` at define.
    #[serde(default)]
    pub bridge: String,
    /// The host's address on the bridge and the subnet, e.g. `10.77.0.1/24`.
    pub ipv4: Ipv4Cidr,
    /// Dynamic DHCP addresses; none: only `hosts` get addresses.
    #[serde(default)]
    pub dhcp: Option<DhcpRange>,
    /// Fixed DHCP addresses.
    #[serde(default)]
    pub hosts: Vec<DhcpHost>,
    /// Masquerade traffic leaving the subnet; default true. False routes the subnet as it is
    /// (unless `isolated`).
    #[serde(default = "yes")]
    pub nat: bool,
    /// Isolated (libvirt: a network without `<forward>`): guests reach each other and the
    /// host (DHCP, DNS), nothing beyond; nothing from outside reaches them. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub isolated: bool,
    /// The bridge's own MAC address (libvirt `<mac address=…>`); default: the kernel's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Masquerade only out of this host interface; default: whatever route the packet takes.
    #[serde(default)]
    pub uplink: Option<String>,
    /// Serve DNS on the gateway address (dnsmasq forwards to the host's resolvers); default
    /// true.
    #[serde(default = "yes")]
    pub dns: bool,
    /// Host ports forwarded to guests.
    #[serde(default)]
    pub forwards: Vec<PortForward>,
    /// Started when `vmctld` starts; default false.
    #[serde(default)]
    pub autostart: bool,
}

fn yes() -> bool {
    true
}

impl NetDef {
    /// Parses the JSON form; the error gives the line and column.
    pub fn from_json(text: &str) -> Result<NetDef, crate::JsonError> {
        crate::model::from_json_with_path(text)
    }

    /// Writes the JSON form (pretty).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Gives an empty `bridge` the first `vmbrN` that no other network uses and `exists`
    /// (a host interface) does not report.
    pub fn assign_bridge(&mut self, others: &[NetDef], exists: impl Fn(&str) -> bool) {
        if !self.bridge.is_empty() {
            return;
        }
        let used: HashSet<&str> =
            others.iter().filter(|o| o.name != self.name).map(|o| o.bridge.as_str()).collect();
        for n in 0u32.. {
            let b = format!("{BRIDGE_PREFIX}{n}");
            if !used.contains(b.as_str()) && !exists(&b) {
                self.bridge = b;
                return;
            }
        }
    }

    /// The host address of a `hosts` entry for `mac`.
    pub fn host_ip(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.hosts.iter().find(|h| h.mac == mac).map(|h| h.ip)
    }
}

/// A DNS label list: letters, digits, `-` and `.`, 1 to 63 characters per label.
fn hostname_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}

/// Checks a network on its own: every problem, each naming its field.
pub fn check_network(def: &NetDef) -> Vec<Problem> {
    let mut out = Vec::new();
    let bad = |out: &mut Vec<Problem>, f: String, m: String| out.push(problem(ProblemKind::Invalid, f, m));
    if let Err(e) = check_net_name(&def.name) {
        bad(&mut out, "name".into(), e);
    }
    if !ifname_ok(&def.bridge) {
        bad(&mut out, "bridge".into(), format!("{:?} is not an interface name; {IFNAME_RULE}", def.bridge));
    }
    if def.isolated && !def.forwards.is_empty() {
        bad(
            &mut out,
            "forwards".into(),
            "an isolated network has no way in; remove the forwards or the isolation".into(),
        );
    }
    if def.isolated && def.uplink.is_some() {
        bad(
            &mut out,
            "uplink".into(),
            "an isolated network has no way out; remove the uplink or the isolation".into(),
        );
    }
    let net = def.ipv4;
    if !(8..=30).contains(&net.prefix) {
        bad(&mut out, "ipv4".into(), format!("/{} is not a prefix length from 8 to 30", net.prefix));
    } else if net.addr.is_loopback() || net.addr.is_multicast() || net.addr.is_unspecified() {
        bad(&mut out, "ipv4".into(), format!("{} is not a unicast address", net.addr));
    } else if !net.is_host(net.addr) {
        bad(
            &mut out,
            "ipv4".into(),
            format!(
                "{} is the network or broadcast address of {}; use a host address",
                net.addr,
                net.subnet()
            ),
        );
    }
    let host_addr = |out: &mut Vec<Problem>, f: String, ip: Ipv4Addr| {
        if !net.is_host(ip) {
            out.push(problem(
                ProblemKind::Invalid,
                f,
                format!("{ip} is not a host address of {}", net.subnet()),
            ));
        } else if ip == net.addr {
            out.push(problem(ProblemKind::Invalid, f, format!("{ip} is the gateway (the host's address)")));
        }
    };
    if let Some(r) = &def.dhcp {
        host_addr(&mut out, "dhcp.start".into(), r.start);
        host_addr(&mut out, "dhcp.end".into(), r.end);
        if u32::from(r.start) > u32::from(r.end) {
            bad(&mut out, "dhcp.end".into(), format!("{} comes before dhcp.start {}", r.end, r.start));
        } else if net.contains(r.start)
            && net.contains(r.end)
            && (u32::from(r.start)..=u32::from(r.end)).contains(&u32::from(net.addr))
        {
            bad(&mut out, "dhcp".into(), format!("the range includes the gateway {}", net.addr));
        }
        if r.lease_secs < 120 {
            bad(
                &mut out,
                "dhcp.lease_secs".into(),
                format!("{} s is below dnsmasq's minimum of 120", r.lease_secs),
            );
        }
    }
    let (mut macs, mut ips, mut names) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (i, h) in def.hosts.iter().enumerate() {
        host_addr(&mut out, format!("hosts[{i}].ip"), h.ip);
        if !macs.insert(h.mac) {
            bad(&mut out, format!("hosts[{i}].mac"), format!("{} is listed by an earlier host", h.mac));
        }
        if !ips.insert(h.ip) {
            bad(&mut out, format!("hosts[{i}].ip"), format!("{} is given to an earlier host", h.ip));
        }
        if let Some(n) = &h.name {
            if !hostname_ok(n) {
                bad(
                    &mut out,
                    format!("hosts[{i}].name"),
                    format!("{n:?} is not a host name (letters, digits, - and .)"),
                );
            } else if !names.insert(n.to_ascii_lowercase()) {
                bad(&mut out, format!("hosts[{i}].name"), format!("{n:?} is used by an earlier host"));
            }
        }
    }
    if let Some(u) = &def.uplink {
        if !ifname_ok(u) {
            bad(&mut out, "uplink".into(), format!("{u:?} is not an interface name; {IFNAME_RULE}"));
        } else if u == &def.bridge {
            bad(&mut out, "uplink".into(), "is the network's own bridge".into());
        }
        if !def.nat {
            bad(&mut out, "uplink".into(), "is only used for NAT; set nat to true or remove it".into());
        }
    }
    let mut ports = HashSet::new();
    for (i, f) in def.forwards.iter().enumerate() {
        let field = |n: &str| format!("forwards[{i}].{n}");
        if f.host_port == 0 {
            bad(&mut out, field("host_port"), "is 0; use 1 to 65535".into());
        } else if !ports.insert((f.proto, f.host_port)) {
            bad(
                &mut out,
                field("host_port"),
                format!("{} {} is forwarded by an earlier entry", f.proto.name(), f.host_port),
            );
        }
        if f.guest_port == Some(0) {
            bad(&mut out, field("guest_port"), "is 0; use 1 to 65535".into());
        }
        match (&f.guest_ip, &f.vm) {
            (Some(ip), None) => host_addr(&mut out, field("guest_ip"), *ip),
            (None, Some(vm)) => {
                if crate::model::VmName::new(vm.as_str()).is_err() {
                    bad(&mut out, field("vm"), format!("{vm:?} is not a VM name"));
                }
            }
            _ => bad(&mut out, format!("forwards[{i}]"), "give exactly one of guest_ip and vm".into()),
        }
    }
    out
}

/// Conflicts of `def` with the other stored networks (one with the same name and UUID is the
/// one being replaced).
pub fn check_network_conflicts(def: &NetDef, existing: &[NetDef]) -> Vec<Problem> {
    let mut out = Vec::new();
    let conflict =
        |out: &mut Vec<Problem>, f: String, m: String| out.push(problem(ProblemKind::Conflict, f, m));
    for o in existing {
        if o.name == def.name {
            if o.uuid != def.uuid {
                conflict(
                    &mut out,
                    "name".into(),
                    format!(
                        "network {} exists with UUID {}; undefine it first or use its UUID",
                        o.name, o.uuid
                    ),
                );
            }
            continue;
        }
        if o.uuid == def.uuid {
            conflict(&mut out, "uuid".into(), format!("{} is the UUID of network {}", def.uuid, o.name));
        }
        if o.bridge == def.bridge {
            conflict(
                &mut out,
                "bridge".into(),
                format!("{} is the bridge of network {}", def.bridge, o.name),
            );
        }
        if o.ipv4.overlaps(&def.ipv4) {
            conflict(
                &mut out,
                "ipv4".into(),
                format!("{} overlaps {} of network {}", def.ipv4.subnet(), o.ipv4.subnet(), o.name),
            );
        }
        for (i, f) in def.forwards.iter().enumerate() {
            if o.forwards.iter().any(|g| g.proto == f.proto && g.host_port == f.host_port) {
                conflict(
                    &mut out,
                    format!("forwards[{i}].host_port"),
                    format!("{} {} is forwarded by network {}", f.proto.name(), f.host_port, o.name),
                );
            }
        }
    }
    out
}

/// Runs both checks.
pub fn validate_network(def: &NetDef, existing: &[NetDef]) -> Result<(), Invalid> {
    let mut problems = check_network(def);
    problems.extend(check_network_conflicts(def, existing));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

#[cfg(test)]
mod tests;
