// SPDX-License-Identifier: Apache-2.0
//! The native VM definition: what `vmctld` stores and `vmctl define` accepts as JSON.
//!
//! Every type here is the serde form itself (`deny_unknown_fields` throughout), so the JSON
//! a user writes, the file in the store and the REST body are one format. The fields follow
//! what libvirt's domain XML expresses for the same thing; [`crate::xml`] maps between the
//! two. Values whose syntax can be checked alone (names, MACs, PCI addresses) are checked
//! while parsing, so a bad one is reported with its line and column; checks that need the
//! host or other definitions live in [`crate::validate`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod cputune;
pub use cputune::CpuTune;

/// Most vCPUs a VM may have (the VMM's MP/ACPI tables describe up to 254).
pub const MAX_VCPUS: u32 = 254;
/// Least guest memory in MiB the VMM boots with.
pub const MIN_MEMORY_MIB: u64 = 32;
/// Longest VM name.
pub const MAX_NAME_LEN: usize = 64;

/// A syntax error in one value of a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A VM name with a bad length or character.
    #[error("invalid VM name {name:?}: {why}; use 1 to 64 characters from A-Z a-z 0-9 _ . -")]
    Name {
        /// The name given.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A MAC address that does not parse or is not a unicast address.
    #[error("invalid MAC address {mac:?}: {why}; write six hex octets like 52:54:00:12:34:56")]
    Mac {
        /// The text given.
        mac: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A PCI address that does not parse or is out of range.
    #[error("invalid PCI address {addr:?}: {why}; write domain:bus:slot.function like 0000:01:00.0")]
    Pci {
        /// The text given.
        addr: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A VM name: 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
///
/// The name is also a file name in the store, so the checks keep it a single path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmName(String);

impl VmName {
    /// Checks and wraps `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, ValueError> {
        let name = name.into();
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_NAME_LEN {
            Some("it is longer than 64 characters")
        } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            Some("it has a character outside A-Z a-z 0-9 _ . -")
        } else if name == "." || name == ".." || name.starts_with('.') {
            Some("it starts with a dot")
        } else if name.starts_with('-') {
            Some("it starts with '-' (it would read as an option to host tools)")
        } else {
            None
        };
        match why {
            Some(why) => Err(ValueError::Name { name, why }),
            None => Ok(VmName(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VmName {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        VmName::new(s)
    }
}

impl From<VmName> for String {
    fn from(n: VmName) -> String {
        n.0
    }
}

impl FromStr for VmName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        VmName::new(s)
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VmName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A unicast Ethernet MAC address, written `52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Wraps six octets; refuses multicast/broadcast (bit 0 of the first octet) and all-zero.
    pub fn new(octets: [u8; 6]) -> Result<Self, ValueError> {
        let mac = MacAddr(octets);
        if octets[0] & 1 != 0 {
            return Err(ValueError::Mac { mac: mac.to_string(), why: "it is a multicast address" });
        }
        if octets == [0; 6] {
            return Err(ValueError::Mac { mac: mac.to_string(), why: "it is all zeros" });
        }
        Ok(mac)
    }

    /// A random address in QEMU/libvirt's locally administered range `52:54:00:xx:xx:xx`.
    pub fn random() -> Self {
        let r = Uuid::new_v4().into_bytes();
        MacAddr([0x52, 0x54, 0x00, r[0], r[1], r[2]])
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = |why| ValueError::Mac { mac: s.to_string(), why };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for o in octets.iter_mut() {
            let p = parts.next().ok_or_else(|| bad("it has fewer than six octets"))?;
            if p.len() != 2 {
                return Err(bad("each octet is two hex digits"));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad("an octet is not hexadecimal"))?;
        }
        if parts.next().is_some() {
            return Err(bad("it has more than six octets"));
        }
        MacAddr::new(octets).map_err(|e| match e {
            ValueError::Mac { why, .. } => bad(why),
            other => other,
        })
    }
}

impl TryFrom<String> for MacAddr {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3], o[4], o[5])
    }
}

/// A host PCI function, written `0000:01:00.0` (domain:bus:slot.function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PciAddress {
    domain: u16,
    bus: u8,
    slot: u8,
    function: u8,
}

impl PciAddress {
    /// Checks the ranges (slot 0-31, function 0-7).
    pub fn new(domain: u16, bus: u8, slot: u8, function: u8) -> Result<Self, ValueError> {
        let addr = || format!("{domain:04x}:{bus:02x}:{slot:02x}.{function:x}");
        if slot > 31 {
            return Err(ValueError::Pci { addr: addr(), why: "the slot is above 0x1f" });
        }
        if function > 7 {
            return Err(ValueError::Pci { addr: addr(), why: "the function is above 7" });
        }
        Ok(PciAddress { domain, bus, slot, function })
    }

    /// PCI segment (domain).
    pub fn domain(&self) -> u16 {
        self.domain
    }
    /// Bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }
    /// Device (slot) number, 0-31.
    pub fn slot(&self) -> u8 {
        self.slot
    }
    /// Function number, 0-7.
    pub fn function(&self) -> u8 {
        self.function
    }
}

impl FromStr for PciAddress {
    type Err = ValueError;
    /// Parses `DDDD:BB:SS.F`; the short form `BB:SS.F` means domain 0.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = |why| ValueError::Pci { addr: s.to_string(), why };
        let (head, func) = s.rsplit_once('.').ok_or_else(|| bad("there is no .function"))?;
        let parts: Vec<&str> = head.split(':').collect();
        let (dom, bus, slot) = match parts.as_slice() {
            [d, b, s] => (*d, *b, *s),
            [b, s] => ("0000", *b, *s),
            _ => return Err(bad("it needs domain:bus:slot.function")),
        };
        let hex = |t: &str, width: usize| {
            if t.is_empty() || t.len() > width || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
                None
            } else {
                u32::from_str_radix(t, 16).ok()
            }
        };
        let domain = hex(dom, 4).ok_or_else(|| bad("the domain is not 1-4 hex digits"))?;
        let bus = hex(bus, 2).ok_or_else(|| bad("the bus is not 1-2 hex digits"))?;
        let slot = hex(slot, 2).ok_or_else(|| bad("the slot is not 1-2 hex digits"))?;
        let function = hex(func, 1).ok_or_else(|| bad("the function is not one digit"))?;
        // The widths above bound every value to its field.
        PciAddress::new(domain as u16, bus as u8, slot as u8, function as u8).map_err(|e| match e {
            ValueError::Pci { why, .. } => bad(why),
            other => other,
        })
    }
}

impl TryFrom<String> for PciAddress {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl From<PciAddress> for String {
    fn from(a: PciAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.slot, self.function)
    }
}

/// A device firmware boots from, in order (libvirt `<boot dev=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// The first hard disk (libvirt `hd`).
    Disk,
    /// The first CD-ROM drive (libvirt `cdrom`).
    Cdrom,
    /// PXE from the first network interface (libvirt `network`).
    Network,
}

/// How the VM starts: firmware or a kernel loaded by the VMM.
///
/// JSON: `{"machine": "pc", "boot": ["disk", "cdrom"]}` or
/// `{"machine": "direct", "kernel": "/boot/vmlinuz", "initrd": null, "cmdline": "console=ttyS0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "machine", rename_all = "lowercase", deny_unknown_fields)]
pub enum Os {
    /// An i440FX PC with SeaBIOS, booting from `boot` in order (libvirt `machine='pc'` with
    /// `<boot dev=…>`). An empty list means `["disk"]` as in libvirt.
    Pc {
        /// Boot order.
        #[serde(default = "default_boot")]
        boot: Vec<BootDevice>,
    },
    /// The VMM loads a Linux kernel itself, no firmware (libvirt `<kernel>`, `<initrd>`,
    /// `<cmdline>`).
    Direct {
        /// Absolute path of the bzImage or ELF vmlinux.
        kernel: PathBuf,
        /// Absolute path of the initial ramdisk.
        #[serde(default)]
        initrd: Option<PathBuf>,
        /// Kernel command line; `None` lets the VMM choose (`console=ttyS0`).
        #[serde(default)]
        cmdline: Option<String>,
    },
}

fn default_boot() -> Vec<BootDevice> {
    vec![BootDevice::Disk]
}

impl Default for Os {
    fn default() -> Self {
        Os::Pc { boot: default_boot() }
    }
}

/// Platform features (libvirt `<features>`). Both default to on in JSON; in XML an absent
/// element means off, as in libvirt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// ACPI tables (needed for power-button shutdown).
    #[serde(default = "yes")]
    pub acpi: bool,
    /// An I/O APIC and local APICs (needed for more than one vCPU).
    #[serde(default = "yes")]
    pub apic: bool,
}

fn yes() -> bool {
    true
}

impl Default for Features {
    fn default() -> Self {
        Features { acpi: true, apic: true }
    }
}

/// Disk image format (libvirt `<driver type=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A flat image.
    #[default]
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

/// The controller a disk hangs off (libvirt `<target bus=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// The PIIX IDE controller: targets `hda`-`hdd` (primary master/slave, secondary master/slave).
    Ide,
    /// virtio-blk over PCI: targets `vda`, `vdb`, …
    Virtio,
}

impl DiskBus {
    /// The prefix of this bus's target names (`hd` or `vd`).
    pub fn target_prefix(self) -> &'static str {
        match self {
            DiskBus::Ide => "hd",
            DiskBus::Virtio => "vd",
        }
    }
}

/// What the guest sees (libvirt `<disk device=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskDevice {
    /// A hard disk.
    #[default]
    Disk,
    /// A CD-ROM drive (IDE/ATAPI only; always read-only to the guest).
    Cdrom,
}

/// A disk or CD-ROM backed by a host file (libvirt `<disk type='file'>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Absolute path of the image; `None` only for an empty CD-ROM drive.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Image format; default `raw`.
    #[serde(default)]
    pub format: DiskFormat,
    /// Controller; required (`ide` or `virtio`).
    pub bus: DiskBus,
    /// Disk or CD-ROM; default `disk`.
    #[serde(default)]
    pub device: DiskDevice,
    /// Guest-visible name (`hda`, `vdb`, …; libvirt `<target dev=…>`). Empty in JSON means
    /// "the first free name on the bus"; [`VmDef::assign_disk_targets`] fills it.
    #[serde(default)]
    pub target: String,
    /// Refuse guest writes (libvirt `<readonly/>`). A CD-ROM is read-only whatever this says.
    #[serde(default)]
    pub readonly: bool,
}

impl Disk {
    /// True if the guest may not write: set explicitly, or a CD-ROM.
    pub fn is_readonly(&self) -> bool {
        self.readonly || self.device == DiskDevice::Cdrom
    }
}

/// Where a NIC is plugged in (libvirt `<interface type=…><source …/>`).
///
/// JSON: `{"network": "default"}` or `{"bridge": "br0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum NetSource {
    /// A network managed by `vmctld` (`vmctl net define`), by name.
    Network(String),
    /// An existing host bridge, by interface name.
    Bridge(String),
}

/// Emulated NIC model (libvirt `<model type=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// Intel 82540EM.
    E1000,
    /// virtio-net over PCI.
    #[default]
    Virtio,
}

/// A network interface (libvirt `<interface>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// What the NIC's tap is attached to.
    pub source: NetSource,
    /// NIC model; default `virtio` in JSON (XML must name it: libvirt's own default, rtl8139,
    /// is not emulated).
    #[serde(default)]
    pub model: NicModel,
    /// Guest MAC; a random `52:54:00:xx:xx:xx` if absent.
    #[serde(default = "MacAddr::random")]
    pub mac: MacAddr,
}

/// The serial console, COM1 (libvirt `<serial type='pty'>` plus its `<console>` alias).
///
/// `vmctld` multiplexes it to `vmctl console` viewers and logs it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serial {
    /// Absolute path of the output log (libvirt `<log file=…>`); `None` lets the daemon pick
    /// its per-VM log file.
    #[serde(default)]
    pub log: Option<PathBuf>,
}

/// Display adapter (libvirt `<video><model type=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Video {
    /// A standard VGA adapter.
    Vga,
    /// No display adapter (serial console only).
    #[default]
    None,
}

/// A VNC server for the display (libvirt `<graphics type='vnc'>`).
///
/// Without a password the server listens on a unix socket in the VM's run directory (reach
/// it with `vmctl vnc NAME`), and `port` and `listen` are not used; with one it listens on
/// TCP at `listen`:`port` and asks for the password (VNC Authentication).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vnc {
    /// TCP port (with a password); `None` picks the first free one from 5900 (libvirt
    /// `autoport='yes'`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Address to listen on (with a password); default `127.0.0.1`.
    #[serde(default = "default_listen")]
    pub listen: std::net::IpAddr,
    /// The VNC Authentication password (libvirt `passwd=`): 1 to 8 printable ASCII
    /// characters. Setting one makes the server listen on TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl Vnc {
    /// Whether the server listens on TCP (it has a password) rather than a unix socket.
    pub fn is_tcp(&self) -> bool {
        self.password.is_some()
    }
}

impl std::fmt::Debug for Vnc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vnc")
            .field("port", &self.port)
            .field("listen", &self.listen)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

fn default_listen() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

/// Display settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graphics {
    /// Display adapter; default none.
    #[serde(default)]
    pub video: Video,
    /// VNC server; default none.
    #[serde(default)]
    pub vnc: Option<Vnc>,
}

/// A host PCI device passed through with VFIO (libvirt `<hostdev mode='subsystem' type='pci'>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDev {
    /// Host address of the function.
    pub address: PciAddress,
    /// Bind it to vfio-pci on start and back on stop (libvirt `managed='yes'`); default true.
    #[serde(default = "yes")]
    pub managed: bool,
}

/// What to do when the guest powers off, reboots or crashes (libvirt `<on_*>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleAction {
    /// Stop the VM process; the VM is shut off.
    Destroy,
    /// Start the VM again.
    Restart,
    /// Keep the stopped VM process around for inspection.
    Preserve,
}

/// What the guest's CMOS clock counts (libvirt `<clock offset=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockOffset {
    /// UTC, as Linux guests expect.
    #[default]
    Utc,
    /// The host's local time zone, as Windows guests expect.
    Localtime,
}

impl ClockOffset {
    /// True for the default, UTC.
    pub fn is_utc(&self) -> bool {
        *self == ClockOffset::Utc
    }
}

/// A VM definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDef {
    /// Unique name (libvirt `<name>`).
    pub name: VmName,
    /// Unique id (libvirt `<uuid>`); generated if absent.
    #[serde(default = "Uuid::new_v4")]
    pub uuid: Uuid,
    /// Guest RAM in MiB (libvirt `<memory>` and `<currentMemory>`; no ballooning).
    pub memory_mib: u64,
    /// Number of vCPUs (libvirt `<vcpu>`).
    pub vcpus: u32,
    /// CPU bandwidth limits (libvirt `<cputune>` `<period>` and `<quota>`); default none.
    #[serde(default, skip_serializing_if = "CpuTune::is_unset")]
    pub cputune: CpuTune,
    /// Machine and boot method (libvirt `<os>`); default a PC booting from disk.
    #[serde(default)]
    pub os: Os,
    /// Platform features (libvirt `<features>`); default ACPI and APIC on.
    #[serde(default)]
    pub features: Features,
    /// Disks and CD-ROM drives.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Network interfaces.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Serial console; present by default, `null` for none.
    #[serde(default = "default_serial")]
    pub serial: Option<Serial>,
    /// Display; default none.
    #[serde(default)]
    pub graphics: Graphics,
    /// Host PCI devices passed through.
    #[serde(default)]
    pub hostdevs: Vec<HostDev>,
    /// Guest power-off; default `destroy`.
    #[serde(default = "action_destroy")]
    pub on_poweroff: LifecycleAction,
    /// Guest reboot; default `restart`.
    #[serde(default = "action_restart")]
    pub on_reboot: LifecycleAction,
    /// Guest crash or VMM failure; default `destroy`.
    #[serde(default = "action_destroy")]
    pub on_crash: LifecycleAction,
    /// Start when `vmctld` starts; default false. (Not part of libvirt's domain XML; the XML
    /// mapping carries it in `<metadata>`.)
    #[serde(default)]
    pub autostart: bool,
    /// What the guest's CMOS clock counts (libvirt `<clock offset=…>`); default UTC.
    #[serde(default, skip_serializing_if = "ClockOffset::is_utc")]
    pub clock_offset: ClockOffset,
    /// Elements of other tools in libvirt's `<metadata>` (libosinfo's OS id, virt-manager's
    /// notes), each kept verbatim as one XML element declaring its own namespace, so that
    /// `dumpxml` gives them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<String>,
}

fn default_serial() -> Option<Serial> {
    Some(Serial::default())
}
fn action_destroy() -> LifecycleAction {
    LifecycleAction::Destroy
}
fn action_restart() -> LifecycleAction {
    LifecycleAction::Restart
}

/// A JSON definition that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {}{message}", field_prefix(.path))]
pub struct JsonError {
    /// 1-based line (0 if the input ended early and serde could not tell).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Path of the offending field, like `disks[1].format` (`.` for the top level).
    pub path: String,
    /// serde's description, naming the field or value and what was expected.
    pub message: String,
}

/// Parses JSON into `T`, reporting the field path, line and column of an error.
pub(crate) fn from_json_with_path<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    crate::limits::check_json(text).map_err(|e| JsonError {
        line: e.line() as usize,
        column: 1,
        path: ".".into(),
        message: e.to_string(),
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let full = inner.to_string();
        // serde_json appends " at line L column C"; we report those separately.
        let suffix = format!(" at line {} column {}", inner.line(), inner.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        JsonError { line: inner.line(), column: inner.column(), path, message }
    })
}

fn field_prefix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("field {path}: ")
    }
}

impl VmDef {
    /// The definition without its secrets (the VNC password), as `dominfo`, the detail and
    /// a `dumpxml` without `--security-info` show it.
    pub fn without_secrets(&self) -> VmDef {
        let mut d = self.clone();
        if let Some(v) = &mut d.graphics.vnc {
            v.password = None;
        }
        d
    }

    /// A minimal definition: a PC with `memory_mib` and `vcpus`, a serial console, nothing
    /// else; a fresh UUID.
    pub fn new(name: VmName, memory_mib: u64, vcpus: u32) -> VmDef {
        VmDef {
            name,
            uuid: Uuid::new_v4(),
            memory_mib,
            vcpus,
            cputune: CpuTune::default(),
            os: Os::default(),
            features: Features::default(),
            disks: Vec::new(),
            interfaces: Vec::new(),
            serial: default_serial(),
            graphics: Graphics::default(),
            hostdevs: Vec::new(),
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
            autostart: false,
            clock_offset: ClockOffset::Utc,
            metadata: Vec::new(),
        }
    }

    /// Parses a JSON definition, fills generated values (UUID, MACs, disk targets) and
    /// reports the first error with its line, column and field path.
    pub fn from_json(text: &str) -> Result<VmDef, JsonError> {
        let mut def: VmDef = from_json_with_path(text)?;
        def.assign_disk_targets();
        Ok(def)
    }

    /// The definition as pretty-printed JSON, every field written out. Fails only for a path
    /// that is not UTF-8 (which [`crate::validate`] refuses).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The cgroup v2 `cpu.max` line for one cgroup holding the whole VMM: `"QUOTA PERIOD"`
    /// with the per-vCPU quota times the vCPUs (`"100000 100000"` for two vCPUs at 50000 of
    /// 100000 µs each), or `"max PERIOD"` without a quota. See [`CpuTune::cpu_max_for`].
    pub fn cpu_max(&self) -> String {
        self.cputune.cpu_max_for(self.vcpus)
    }

    /// Gives every disk with an empty `target` the first name on its bus not used by another
    /// disk (`hda`… for IDE, `vda`… for virtio). Names already given are kept.
    pub fn assign_disk_targets(&mut self) {
        for i in 0..self.disks.len() {
            if !self.disks[i].target.is_empty() {
                continue;
            }
            let prefix = self.disks[i].bus.target_prefix();
            let name = (0..26u8)
                .map(|k| format!("{prefix}{}", (b'a' + k) as char))
                .find(|n| !self.disks.iter().any(|d| &d.target == n));
            if let Some(name) = name {
                self.disks[i].target = name;
            }
        }
    }
}

#[cfg(test)]
mod tests;
