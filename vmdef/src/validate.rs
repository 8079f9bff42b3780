// SPDX-License-Identifier: Apache-2.0
//! The checks `define` runs before a definition is stored.
//!
//! Syntax of single values (names, MACs — unicast, not zero —, PCI addresses, enum values,
//! unknown fields) is already enforced by the model's types when JSON or XML is parsed; what
//! is left here needs the whole definition, the host or the other definitions:
//! - [`check_definition`]: the definition on its own (ranges, paths, disk targets, boot).
//! - [`check_host`]: memory and vCPUs against [`HostLimits`].
//! - [`check_files`]: disk images, kernel and initrd exist.
//! - [`check_conflicts`]: names, UUIDs, MACs and writable disks shared with other VMs.
//!
//! [`validate_define`] runs all four and reports every problem at once.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use crate::model::{DiskBus, DiskDevice, NetSource, Os, VmDef, MAX_VCPUS, MIN_MEMORY_MIB};

/// Longest kernel command line (the boot protocol's limit, including the NUL).
pub const CMDLINE_MAX: usize = 2048;

/// What the host can give a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Host RAM in MiB.
    pub memory_mib: u64,
    /// Host CPUs usable by this process.
    pub cpus: u32,
}

impl HostLimits {
    /// Reads `MemTotal` from `/proc/meminfo` and the CPUs this process may use.
    pub fn detect() -> std::io::Result<HostLimits> {
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let cpus = std::thread::available_parallelism()?.get();
        Self::from_meminfo(&meminfo, u32::try_from(cpus).unwrap_or(u32::MAX)).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/meminfo has no MemTotal line")
        })
    }

    /// Builds limits from the text of `/proc/meminfo` and a CPU count.
    pub fn from_meminfo(meminfo: &str, cpus: u32) -> Option<HostLimits> {
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let mut words = line.split_whitespace().skip(1);
        let kib: u64 = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(HostLimits { memory_mib: kib / 1024, cpus })
    }
}

/// The class of a problem, for callers that map them to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The definition contradicts itself or is out of range (HTTP 400).
    Invalid,
    /// It clashes with another definition (HTTP 409).
    Conflict,
    /// A file it names does not exist (HTTP 400).
    MissingFile,
    /// It asks for more than the host has (HTTP 400).
    HostLimit,
}

/// One problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Problem {
    /// Its class.
    pub kind: ProblemKind,
    /// The field, as a path like `disks[1].path`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn problem(kind: ProblemKind, field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { kind, field: field.into(), message: message.into() }
}

/// Every problem found in a definition; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// The problems, in field order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid definition")?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Runs every check; `existing` is every stored definition (a stored one with the same name
/// and UUID is the one being replaced and is not a conflict).
pub fn validate_define(def: &VmDef, existing: &[VmDef], host: &HostLimits) -> Result<(), Invalid> {
    let mut problems = check_definition(def);
    problems.extend(check_host(def, host));
    problems.extend(check_files(def));
    problems.extend(check_conflicts(def, existing));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

/// Refuses non-UTF-8 text (XML and JSON cannot carry it) and control characters.
fn check_text(out: &mut Vec<Problem>, field: &str, text: Option<&str>) {
    match text {
        None => out.push(problem(ProblemKind::Invalid, field, "is not valid UTF-8; rename the file")),
        Some(t) if t.chars().any(char::is_control) => {
            out.push(problem(ProblemKind::Invalid, field, "contains a control character; remove it"))
        }
        Some(_) => {}
    }
}

fn check_path(out: &mut Vec<Problem>, field: &str, p: &Path) {
    check_text(out, field, p.to_str());
    if !p.is_absolute() {
        out.push(problem(
            ProblemKind::Invalid,
            field,
            format!(
                "{} is relative; give an absolute path (the daemon has its own working directory)",
                p.display()
            ),
        ));
    }
}

fn check_os(out: &mut Vec<Problem>, os: &Os) {
    match os {
        Os::Pc { boot } => {
            if boot.is_empty() {
                out.push(problem(
                    ProblemKind::Invalid,
                    "os.boot",
                    "is empty; list at least one of disk, cdrom, network",
                ));
            }
            let mut seen = HashSet::new();
            for (i, b) in boot.iter().enumerate() {
                if !seen.insert(b) {
                    out.push(problem(
                        ProblemKind::Invalid,
                        format!("os.boot[{i}]"),
                        "repeats a device; list each once",
                    ));
                }
            }
        }
        Os::Direct { kernel, initrd, cmdline } => {
            check_path(out, "os.kernel", kernel);
            if let Some(i) = initrd {
                check_path(out, "os.initrd", i);
            }
            if let Some(c) = cmdline {
                check_text(out, "os.cmdline", Some(c));
                if c.len() >= CMDLINE_MAX {
                    out.push(problem(
                        ProblemKind::Invalid,
                        "os.cmdline",
                        format!("is {} bytes; Linux accepts at most {}", c.len(), CMDLINE_MAX - 1),
                    ));
                }
            }
        }
    }
}

/// A disk target is the bus prefix and one or two lowercase letters; IDE has four positions.
fn target_ok(bus: DiskBus, target: &str) -> bool {
    let Some(rest) = target.strip_prefix(bus.target_prefix()) else { return false };
    let letters = (1..=2).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_lowercase());
    letters && (bus != DiskBus::Ide || ["a", "b", "c", "d"].contains(&rest))
}

fn check_disks(out: &mut Vec<Problem>, def: &VmDef) {
    let mut targets = HashSet::new();
    let mut paths = HashSet::new();
    for (i, d) in def.disks.iter().enumerate() {
        let f = |name: &str| format!("disks[{i}].{name}");
        match &d.path {
            Some(p) => {
                check_path(out, &f("path"), p);
                if !paths.insert(p) {
                    out.push(problem(
                        ProblemKind::Invalid,
                        f("path"),
                        "is used by an earlier disk too; use one disk per image",
                    ));
                }
            }
            None if d.device == DiskDevice::Disk => out.push(problem(
                ProblemKind::Invalid,
                f("path"),
                "is missing; a disk needs an image (only a cdrom may be empty)",
            )),
            None => {}
        }
        if d.device == DiskDevice::Cdrom && d.bus != DiskBus::Ide {
            out.push(problem(ProblemKind::Invalid, f("bus"), "a cdrom must be on the ide bus"));
        }
        if !target_ok(d.bus, &d.target) {
            let want = match d.bus {
                DiskBus::Ide => "hda, hdb, hdc or hdd",
                DiskBus::Virtio => "vd followed by one or two letters, like vda",
            };
            out.push(problem(
                ProblemKind::Invalid,
                f("target"),
                format!("{:?} does not fit this bus; use {want}", d.target),
            ));
        } else if !targets.insert(d.target.as_str()) {
            out.push(problem(
                ProblemKind::Invalid,
                f("target"),
                format!("{} is used by an earlier disk; pick another", d.target),
            ));
        }
    }
}

fn check_devices(out: &mut Vec<Problem>, def: &VmDef) {
    let mut macs = HashSet::new();
    for (i, nic) in def.interfaces.iter().enumerate() {
        match &nic.source {
            NetSource::Bridge(b) if !crate::network::ifname_ok(b) => out.push(problem(
                ProblemKind::Invalid,
                format!("interfaces[{i}].source.bridge"),
                format!("{b:?} is not an interface name; {}", crate::network::IFNAME_RULE),
            )),
            NetSource::Network(n) if crate::model::VmName::new(n.as_str()).is_err() => out.push(problem(
                ProblemKind::Invalid,
                format!("interfaces[{i}].source.network"),
                format!("{n:?} is not a network name; use 1-64 characters from A-Z a-z 0-9 _ . -"),
            )),
            _ => {}
        }
        if !macs.insert(nic.mac) {
            out.push(problem(
                ProblemKind::Invalid,
                format!("interfaces[{i}].mac"),
                format!("{} is used by an earlier interface; remove it to generate one", nic.mac),
            ));
        }
    }
    let mut hostdevs = HashSet::new();
    for (i, h) in def.hostdevs.iter().enumerate() {
        if !hostdevs.insert(h.address) {
            out.push(problem(
                ProblemKind::Invalid,
                format!("hostdevs[{i}].address"),
                format!("{} is listed twice", h.address),
            ));
        }
    }
    if let Some(log) = def.serial.as_ref().and_then(|s| s.log.as_ref()) {
        check_path(out, "serial.log", log);
    }
    if let Some(vnc) = &def.graphics.vnc {
        check_vnc(out, vnc);
    }
}

/// The VNC server: a port from 5900; a password of 1 to 8 printable ASCII characters; no
/// address others can reach without a password.
fn check_vnc(out: &mut Vec<Problem>, vnc: &crate::model::Vnc) {
    if let Some(port) = vnc.port.filter(|p| *p < 5900) {
        out.push(problem(
            ProblemKind::Invalid,
            "graphics.vnc.port",
            format!("{port} is below 5900; use 5900-65535 or leave it out for automatic"),
        ));
    }
    match &vnc.password {
        Some(p) if p.is_empty() || p.len() > 8 => out.push(problem(
            ProblemKind::Invalid,
            "graphics.vnc.password",
            format!(
                "is {} characters long; VNC authentication takes 1 to 8 (XML passwd=)",
                p.chars().count()
            ),
        )),
        Some(p) if !p.bytes().all(|b| (b' '..=b'~').contains(&b)) => out.push(problem(
            ProblemKind::Invalid,
            "graphics.vnc.password",
            "has a character that is not printable ASCII; use only characters from space to '~'",
        )),
        Some(_) => {}
        None if !vnc.listen.is_loopback() => out.push(problem(
            ProblemKind::Invalid,
            "graphics.vnc.listen",
            format!(
                "{} would let others reach a VNC server without a password; set graphics.vnc.password \
                 (XML passwd='…', 1 to 8 characters), or remove listen: without a password the VNC \
                 server listens on a unix socket (connect with vmctl vnc NAME)",
                vnc.listen
            ),
        )),
        None => {}
    }
}

/// Advice about a definition that is valid but may not do what its author expects: a VNC
/// `port` without a password, which is not used (the server listens on a unix socket).
pub fn warnings(def: &VmDef) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(port) = def.graphics.vnc.as_ref().filter(|v| !v.is_tcp()).and_then(|v| v.port) {
        out.push(format!(
            "graphics.vnc.port {port} is not used: without graphics.vnc.password the VNC server listens \
             on a unix socket in the VM's run directory; connect with `vmctl vnc {}`, or set a password \
             to listen on TCP",
            def.name
        ));
    }
    out
}

/// Checks the definition on its own: ranges, paths, disk targets, boot order, duplicates
/// inside it.
pub fn check_definition(def: &VmDef) -> Vec<Problem> {
    let mut out = Vec::new();
    if def.uuid.is_nil() {
        out.push(problem(ProblemKind::Invalid, "uuid", "is all zeros; remove it to generate one"));
    }
    for (i, m) in def.metadata.iter().enumerate() {
        if let Err(why) = crate::xml::import::check_metadata_element(m) {
            out.push(problem(ProblemKind::Invalid, format!("metadata[{i}]"), why));
        }
    }
    if def.memory_mib < MIN_MEMORY_MIB {
        out.push(problem(
            ProblemKind::Invalid,
            "memory_mib",
            format!("{} MiB is too small; use at least {MIN_MEMORY_MIB}", def.memory_mib),
        ));
    }
    if def.vcpus == 0 || def.vcpus > MAX_VCPUS {
        out.push(problem(
            ProblemKind::Invalid,
            "vcpus",
            format!("{} is out of range; use 1 to {MAX_VCPUS}", def.vcpus),
        ));
    }
    if def.vcpus > 1 && !def.features.apic {
        out.push(problem(
            ProblemKind::Invalid,
            "features.apic",
            "is off, but more than one vCPU needs APICs; turn it on",
        ));
    }
    for (field, message) in def.cputune.problems() {
        out.push(problem(ProblemKind::Invalid, field, message));
    }
    check_os(&mut out, &def.os);
    check_disks(&mut out, def);
    check_devices(&mut out, def);
    out
}

/// Checks memory and vCPUs against the host.
pub fn check_host(def: &VmDef, host: &HostLimits) -> Vec<Problem> {
    let mut out = Vec::new();
    if def.memory_mib > host.memory_mib {
        out.push(problem(
            ProblemKind::HostLimit,
            "memory_mib",
            format!(
                "{} MiB is more than this host's {} MiB of RAM; lower it",
                def.memory_mib, host.memory_mib
            ),
        ));
    }
    if def.vcpus > host.cpus {
        out.push(problem(
            ProblemKind::HostLimit,
            "vcpus",
            format!("{} is more than this host's {} CPUs; lower it", def.vcpus, host.cpus),
        ));
    }
    out
}

fn check_exists(out: &mut Vec<Problem>, field: String, p: &Path) {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => out.push(problem(
            ProblemKind::MissingFile,
            field,
            format!("{} is a directory; name an image file", p.display()),
        )),
        Ok(_) => {}
        Err(e) => out.push(problem(
            ProblemKind::MissingFile,
            field,
            format!("{}: {e}; create it first (vmctl vol create) or fix the path", p.display()),
        )),
    }
}

/// Checks that every disk image (an empty CD-ROM excepted), the kernel and the initrd exist
/// and are not directories.
pub fn check_files(def: &VmDef) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, d) in def.disks.iter().enumerate() {
        if let Some(p) = &d.path {
            check_exists(&mut out, format!("disks[{i}].path"), p);
        }
    }
    if let Os::Direct { kernel, initrd, .. } = &def.os {
        check_exists(&mut out, "os.kernel".into(), kernel);
        if let Some(i) = initrd {
            check_exists(&mut out, "os.initrd".into(), i);
        }
    }
    out
}

/// The stored definition `def` replaces, if any: same name and same UUID.
pub fn redefines<'a>(def: &VmDef, existing: &'a [VmDef]) -> Option<&'a VmDef> {
    existing.iter().find(|e| e.name == def.name && e.uuid == def.uuid)
}

/// Checks `def` against the other definitions: a name or UUID that belongs to another VM, a
/// MAC another VM uses, an image another VM may write (or `def` writes and another reads).
pub fn check_conflicts(def: &VmDef, existing: &[VmDef]) -> Vec<Problem> {
    let mut out = Vec::new();
    for other in existing.iter().filter(|e| !(e.name == def.name && e.uuid == def.uuid)) {
        if other.name == def.name {
            out.push(problem(
                ProblemKind::Conflict,
                "name",
                format!(
                    "{} is taken by the VM with uuid {}; pick another name, or give that uuid to redefine it",
                    def.name, other.uuid
                ),
            ));
        }
        if other.uuid == def.uuid {
            out.push(problem(
                ProblemKind::Conflict,
                "uuid",
                format!("{} belongs to VM {}; remove the uuid to generate one", def.uuid, other.name),
            ));
        }
        for (i, nic) in def.interfaces.iter().enumerate() {
            if other.interfaces.iter().any(|o| o.mac == nic.mac) {
                out.push(problem(
                    ProblemKind::Conflict,
                    format!("interfaces[{i}].mac"),
                    format!("{} is used by VM {}; remove it to generate one", nic.mac, other.name),
                ));
            }
        }
        for (i, d) in def.disks.iter().enumerate() {
            let Some(p) = &d.path else { continue };
            let clash = other
                .disks
                .iter()
                .find(|o| o.path.as_ref() == Some(p) && !(o.is_readonly() && d.is_readonly()));
            if clash.is_some() {
                out.push(problem(
                    ProblemKind::Conflict,
                    format!("disks[{i}].path"),
                    format!("{} is also a disk of VM {} and one of them may write it; make both read-only or copy the image", p.display(), other.name),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
