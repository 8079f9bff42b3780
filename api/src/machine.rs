// SPDX-License-Identifier: Apache-2.0
//! The machine and its devices: machine kind, disks, NICs and the firmware boot order.
//!
//! A disk or NIC is written on the command line as a spec string (`--disk
//! PATH,format=qcow2,bus=virtio`, `--nic tap=NAME,mac=..`). In the JSON file each may be that
//! same string or an object with the same fields (`{"path": "/a.img", "bus": "virtio"}`); both
//! pass the same checks. Serialization writes the object form, which also holds paths that
//! contain a comma.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IDE has two channels of two drives; the CD-ROM takes the secondary master.
pub const MAX_IDE_DISKS: usize = 3;
/// Most virtio disks.
pub const MAX_VIRTIO_DISKS: usize = 16;
/// Most queues of one virtio disk.
pub const MAX_DISK_QUEUES: u16 = 64;
/// Most NICs (PCI slots 3 to 6).
pub const MAX_NICS: usize = 4;
/// Most queue pairs of one virtio NIC.
pub const MAX_NIC_QUEUES: u16 = 16;
/// The MAC of a NIC given without one.
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Which machine the VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineKind {
    /// Linux loaded by the VMM and entered directly; no firmware.
    Direct,
    /// An i440FX/PIIX PC started by its BIOS (SeaBIOS) at the reset vector.
    Pc,
}

impl FromStr for MachineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(MachineKind::Direct),
            "pc" | "pc-i440fx" => Ok(MachineKind::Pc),
            _ => Err(format!("'{s}' is not a machine; use pc (BIOS boot) or direct (kernel boot)")),
        }
    }
}

impl fmt::Display for MachineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MachineKind::Direct => "direct",
            MachineKind::Pc => "pc",
        })
    }
}

/// What the guest's CMOS clock counts (QEMU's `-rtc base=`): UTC, as Linux expects, or the
/// host's local time, as Windows expects (libvirt `<clock offset='localtime'>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcBase {
    /// Coordinated universal time.
    #[default]
    Utc,
    /// The host's local time zone, read when the VM starts.
    Localtime,
}

impl FromStr for RtcBase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("base=").unwrap_or(s) {
            "utc" => Ok(RtcBase::Utc),
            "localtime" => Ok(RtcBase::Localtime),
            _ => Err(format!("'{s}' is not an RTC base; use base=utc or base=localtime")),
        }
    }
}

impl fmt::Display for RtcBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RtcBase::Utc => "utc",
            RtcBase::Localtime => "localtime",
        })
    }
}

/// Disk image formats (`block::ImageFormat` in the VMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// The medium byte for byte.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// The PIIX IDE controller (every guest has a driver).
    #[default]
    Ide,
    /// A virtio-blk PCI device (paravirtual; guests need a virtio driver).
    Virtio,
}

/// How a virtio disk's requests reach its image (QEMU's `aio=` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DiskAio {
    /// An io_uring for raw images where the kernel offers one (many requests in flight on
    /// one thread), the thread pool otherwise and for qcow2 images.
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// A small pool of threads making blocking calls, even where io_uring works.
    #[serde(rename = "threads")]
    Threads,
}

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskConfig {
    /// Image file.
    pub path: PathBuf,
    /// Format; `None` detects it from the file.
    pub format: Option<DiskFormat>,
    /// Refuse guest writes.
    pub readonly: bool,
    /// IDE or virtio.
    pub bus: DiskBus,
    /// Serial number the guest sees (virtio: up to 20 printable ASCII characters).
    pub serial: Option<String>,
    /// Request queues (virtio only).
    pub queues: u16,
    /// I/O engine (virtio only).
    pub aio: DiskAio,
}

impl DiskConfig {
    /// An IDE disk with the format detected from the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskConfig { path: path.into(), queues: 1, ..Default::default() }
    }
}

/// The object form of a disk in JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskFields {
    path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<DiskFormat>,
    #[serde(default)]
    bus: DiskBus,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    readonly: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queues: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aio: Option<DiskAio>,
}

impl TryFrom<DiskFields> for DiskConfig {
    type Error = String;
    fn try_from(f: DiskFields) -> Result<Self, String> {
        if f.path.as_os_str().is_empty() {
            return Err("needs a path first, e.g. disk.img,format=raw".into());
        }
        if let Some(id) = &f.serial {
            if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "serial '{id}' must be 1 to 20 printable ASCII characters without spaces"
                ));
            }
        }
        if let Some(q) = f.queues {
            if !(1..=MAX_DISK_QUEUES).contains(&q) {
                return Err(format!("queues '{q}' must be a number from 1 to {MAX_DISK_QUEUES}"));
            }
            if f.bus != DiskBus::Virtio {
                return Err("queues= needs bus=virtio (an IDE disk has one channel)".into());
            }
        }
        if f.aio.is_some() && f.bus != DiskBus::Virtio {
            return Err("aio= needs bus=virtio (IDE requests are served on the vCPU)".into());
        }
        Ok(DiskConfig {
            path: f.path,
            format: f.format,
            readonly: f.readonly,
            bus: f.bus,
            serial: f.serial,
            queues: f.queues.unwrap_or(1),
            aio: f.aio.unwrap_or_default(),
        })
    }
}

impl From<&DiskConfig> for DiskFields {
    fn from(d: &DiskConfig) -> Self {
        DiskFields {
            path: d.path.clone(),
            format: d.format,
            bus: d.bus,
            readonly: d.readonly,
            serial: d.serial.clone(),
            queues: (d.bus == DiskBus::Virtio).then_some(d.queues),
            aio: (d.aio != DiskAio::default()).then_some(d.aio),
        }
    }
}

const DISK_OPTIONS: &str =
    "format=raw|qcow2, bus=ide|virtio, readonly, serial=ID, queues=N, aio=io_uring|threads";

impl FromStr for DiskConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let path =
            parts.next().filter(|p| !p.is_empty()).ok_or("needs a path first, e.g. disk.img,format=raw")?;
        let mut disk = DiskFields { path: path.into(), ..Default::default() };
        for opt in parts {
            match opt.split_once('=') {
                Some(("format", "raw")) => disk.format = Some(DiskFormat::Raw),
                Some(("format", "qcow2")) => disk.format = Some(DiskFormat::Qcow2),
                Some(("format", f)) => return Err(format!("format '{f}' is not raw or qcow2")),
                Some(("bus", "ide")) => disk.bus = DiskBus::Ide,
                Some(("bus", "virtio")) => disk.bus = DiskBus::Virtio,
                Some(("bus", b)) => {
                    return Err(format!("bus '{b}' is not supported; use bus=ide or bus=virtio"))
                }
                None if opt == "readonly" || opt == "ro" => disk.readonly = true,
                Some(("readonly", "on" | "true")) => disk.readonly = true,
                Some(("readonly", "off" | "false")) => disk.readonly = false,
                Some(("serial", id)) => disk.serial = Some(id.to_string()),
                Some(("queues", n)) => {
                    disk.queues =
                        Some(n.parse().map_err(|_| {
                            format!("queues '{n}' must be a number from 1 to {MAX_DISK_QUEUES}")
                        })?)
                }
                Some(("aio", "io_uring")) => disk.aio = Some(DiskAio::IoUring),
                Some(("aio", "threads")) => disk.aio = Some(DiskAio::Threads),
                Some(("aio", a)) => {
                    return Err(format!("aio '{a}' is not supported; use aio=io_uring or aio=threads"))
                }
                _ => return Err(format!("unknown option '{opt}'; use {DISK_OPTIONS}")),
            }
        }
        DiskConfig::try_from(disk)
    }
}

impl Serialize for DiskConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DiskFields::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for DiskConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrFields::<DiskConfig, DiskFields>(PhantomData))
    }
}

/// Accepts a spec string (parsed by `T::from_str`) or an object (`F`, checked into `T`).
pub(crate) struct StringOrFields<T, F>(pub(crate) PhantomData<(T, F)>);

impl<'de, T, F> Visitor<'de> for StringOrFields<T, F>
where
    T: FromStr<Err = String> + TryFrom<F, Error = String>,
    F: Deserialize<'de>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a spec string or an object")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
        let fields = F::deserialize(de::value::MapAccessDeserializer::new(map))?;
        T::try_from(fields).map_err(de::Error::custom)
    }
}

/// The card a `--nic` puts in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// An emulated Intel 82540EM (every guest has a driver).
    #[default]
    E1000,
    /// A virtio-net PCI device (paravirtual, offloads, several queue pairs).
    Virtio,
}

/// One `--nic`: a network card on a host tap interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// The tap interface (created if it does not exist; needs CAP_NET_ADMIN).
    pub tap: String,
    /// Station address.
    pub mac: [u8; 6],
    /// e1000 or virtio.
    pub model: NicModel,
    /// Queue pairs (virtio only; each is a queue of the multi-queue tap).
    pub queues: u16,
    /// `vhost=`: `None` moves a virtio NIC's frames through vhost-net when /dev/vhost-net
    /// opens and in the vmm otherwise; `Some(true)` demands vhost-net; `Some(false)` keeps
    /// them in the vmm.
    pub vhost: Option<bool>,
}

/// The object form of a NIC in JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NicFields {
    tap: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default)]
    model: NicModel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queues: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vhost: Option<bool>,
}

impl TryFrom<NicFields> for NicConfig {
    type Error = String;
    fn try_from(f: NicFields) -> Result<Self, String> {
        let name = &f.tap;
        if name.is_empty() || name.len() >= 16 || name.contains('/') {
            return Err(format!("tap name '{name}' must be 1-15 characters, no '/'"));
        }
        let mac = f.mac.as_deref().map(parse_mac).transpose()?.unwrap_or(DEFAULT_MAC);
        if let Some(q) = f.queues {
            if !(1..=MAX_NIC_QUEUES).contains(&q) {
                return Err(format!("queues '{q}' must be a number from 1 to {MAX_NIC_QUEUES}"));
            }
            if f.model != NicModel::Virtio {
                return Err("queues= needs model=virtio (an e1000 has one queue pair)".into());
            }
        }
        if f.vhost.is_some() && f.model != NicModel::Virtio {
            return Err("vhost= needs model=virtio (vhost-net serves virtio queues)".into());
        }
        Ok(NicConfig { tap: f.tap, mac, model: f.model, queues: f.queues.unwrap_or(1), vhost: f.vhost })
    }
}

impl From<&NicConfig> for NicFields {
    fn from(n: &NicConfig) -> Self {
        NicFields {
            tap: n.tap.clone(),
            mac: Some(format_mac(&n.mac)),
            model: n.model,
            queues: (n.model == NicModel::Virtio).then_some(n.queues),
            vhost: n.vhost,
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` as a unicast MAC.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("MAC '{s}' is not six hex bytes like 52:54:00:12:34:56"));
    }
    for (m, p) in mac.iter_mut().zip(&parts) {
        *m = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or_else(|| format!("MAC '{s}' is not six hex bytes like 52:54:00:12:34:56"))?;
    }
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(format!("MAC '{s}' is multicast or zero; use a unicast address such as 52:54:00:..."));
    }
    Ok(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

const NIC_OPTIONS: &str = "tap=NAME[,mac=52:54:00:..][,model=e1000|virtio][,queues=N][,vhost=on|off]";

impl FromStr for NicConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nic = NicFields::default();
        let mut tap = false;
        for opt in s.split(',') {
            match opt.split_once('=') {
                Some(("tap", name)) => {
                    nic.tap = name.to_string();
                    tap = true;
                }
                Some(("mac", m)) => nic.mac = Some(parse_mac(m).map(|m| format_mac(&m))?),
                Some(("model", "e1000")) => nic.model = NicModel::E1000,
                Some(("model", "virtio")) => nic.model = NicModel::Virtio,
                Some(("model", m)) => {
                    return Err(format!("model '{m}' is not emulated; use model=e1000 or model=virtio"))
                }
                Some(("queues", n)) => {
                    nic.queues =
                        Some(n.parse().map_err(|_| {
                            format!("queues '{n}' must be a number from 1 to {MAX_NIC_QUEUES}")
                        })?)
                }
                Some(("vhost", "on")) => nic.vhost = Some(true),
                Some(("vhost", "off")) => nic.vhost = Some(false),
                Some(("vhost", v)) => {
                    return Err(format!(
                        "vhost '{v}' must be on (vhost-net or an error) or off (frames through the vmm); \
                         left out, vhost-net is used when /dev/vhost-net opens"
                    ))
                }
                _ => return Err(format!("unknown option '{opt}'; use {NIC_OPTIONS}")),
            }
        }
        if !tap {
            return Err("needs tap=NAME, e.g. tap=tap0".into());
        }
        NicConfig::try_from(nic)
    }
}

impl Serialize for NicConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NicFields::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for NicConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrFields::<NicConfig, NicFields>(PhantomData))
    }
}

/// A device the firmware may boot from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// The first IDE disk.
    Disk,
    /// The CD-ROM.
    Cdrom,
    /// The network (PXE option ROM).
    Net,
}

impl fmt::Display for BootDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootDevice::Disk => "disk",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Net => "net",
        })
    }
}

/// Parses `disk,cdrom,net` (any order, each at most once); QEMU's letters c, d, n work too.
pub fn parse_boot_order(s: &str) -> Result<Vec<BootDevice>, String> {
    let mut order = Vec::new();
    let items: Vec<&str> = if s.contains(',') || s.len() > 3 || !s.chars().all(|c| "cdn".contains(c)) {
        s.split(',').collect()
    } else {
        s.split("").filter(|x| !x.is_empty()).collect()
    };
    for item in items {
        let dev = match item.trim() {
            "disk" | "hd" | "c" => BootDevice::Disk,
            "cdrom" | "cd" | "d" => BootDevice::Cdrom,
            "net" | "network" | "n" => BootDevice::Net,
            other => return Err(format!("'{other}' is not a boot device; use disk, cdrom or net")),
        };
        if order.contains(&dev) {
            return Err(format!("'{}' appears twice", item.trim()));
        }
        order.push(dev);
    }
    if order.is_empty() {
        return Err("is empty; use e.g. cdrom,disk".into());
    }
    Ok(order)
}

/// A boot order as [`parse_boot_order`] reads it: `cdrom,disk`.
pub fn format_boot_order(order: &[BootDevice]) -> String {
    order.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_base_as_qemu_writes_it() {
        for (text, base) in
            [("base=utc", RtcBase::Utc), ("utc", RtcBase::Utc), ("base=localtime", RtcBase::Localtime)]
        {
            assert_eq!(text.parse::<RtcBase>(), Ok(base), "{text}");
        }
        let e = "base=2006-06-17T16:01:21".parse::<RtcBase>().unwrap_err();
        assert!(e.contains("use base=utc or base=localtime"), "{e}");
        assert_eq!(RtcBase::Localtime.to_string(), "localtime");
        let f = crate::VmConfigFile::parse(r#"{"rtc": "localtime"}"#).unwrap();
        assert_eq!(f.rtc, Some(RtcBase::Localtime));
        assert!(crate::VmConfigFile::parse(r#"{"rtc": "mars"}"#).is_err());
    }

    #[test]
    fn machine_kinds_parse() {
        assert_eq!("pc".parse(), Ok(MachineKind::Pc));
        assert_eq!("direct".parse(), Ok(MachineKind::Direct));
        assert!("q35".parse::<MachineKind>().unwrap_err().contains("use pc"));
        assert_eq!(MachineKind::Pc.to_string(), "pc");
    }

    #[test]
    fn disk_specs_parse() {
        let d: DiskConfig = "/a.img".parse().unwrap();
        assert_eq!(d, DiskConfig::new("/a.img"));
        assert_eq!((d.bus, d.queues, d.serial), (DiskBus::Ide, 1, None));
        let d: DiskConfig = "/b.qcow2,format=qcow2,bus=ide,readonly".parse().unwrap();
        assert_eq!((d.format, d.readonly), (Some(DiskFormat::Qcow2), true));
        let d: DiskConfig = "/c.img,bus=virtio,serial=disk-01,queues=4".parse().unwrap();
        assert_eq!((d.bus, d.serial.as_deref(), d.queues), (DiskBus::Virtio, Some("disk-01"), 4));
        assert!("".parse::<DiskConfig>().is_err());
        assert!("/a,format=vmdk".parse::<DiskConfig>().unwrap_err().contains("vmdk"));
        assert!("/a,bus=scsi".parse::<DiskConfig>().unwrap_err().contains("bus=virtio"));
        assert!("/a,cache=none".parse::<DiskConfig>().unwrap_err().contains("cache=none"));
        assert!("/a,bus=virtio,queues=0".parse::<DiskConfig>().unwrap_err().contains("1 to 64"));
        assert!("/a,bus=virtio,queues=x".parse::<DiskConfig>().unwrap_err().contains("queues"));
        assert!("/a,queues=2".parse::<DiskConfig>().unwrap_err().contains("bus=virtio"));
        assert!("/a,serial=".parse::<DiskConfig>().unwrap_err().contains("serial"));
        let d: DiskConfig = "/a,bus=virtio,aio=threads".parse().unwrap();
        assert_eq!(d.aio, DiskAio::Threads);
        assert_eq!("/a,bus=virtio".parse::<DiskConfig>().unwrap().aio, DiskAio::IoUring);
        assert!("/a,bus=virtio,aio=native".parse::<DiskConfig>().unwrap_err().contains("aio=threads"));
        assert!("/a,aio=threads".parse::<DiskConfig>().unwrap_err().contains("bus=virtio"));
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains(r#""aio":"threads""#), "{json}");
        assert_eq!(serde_json::from_str::<DiskConfig>(&json).unwrap(), d);
        assert!("/a,serial=123456789012345678901".parse::<DiskConfig>().unwrap_err().contains("20"));
        assert!("/a,serial=a b".parse::<DiskConfig>().unwrap_err().contains("printable"));
    }

    #[test]
    fn disks_in_json_are_strings_or_objects_and_write_back_as_objects() {
        let d: DiskConfig = serde_json::from_str(r#""/c.img,bus=virtio,queues=4,readonly""#).unwrap();
        let o: DiskConfig =
            serde_json::from_str(r#"{"path": "/c.img", "bus": "virtio", "queues": 4, "readonly": true}"#)
                .unwrap();
        assert_eq!(d, o);
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"path":"/c.img","bus":"virtio","readonly":true,"queues":4}"#);
        assert_eq!(serde_json::from_str::<DiskConfig>(&text).unwrap(), d);
        let comma = DiskConfig { format: Some(DiskFormat::Qcow2), ..DiskConfig::new("/a,b.img") };
        let back: DiskConfig = serde_json::from_str(&serde_json::to_string(&comma).unwrap()).unwrap();
        assert_eq!(back, comma, "a path with a comma survives the object form");
        for bad in [
            r#"{"path": "/a", "queues": 2}"#,
            r#"{"path": "/a", "cache": "none"}"#,
            r#"{"path": ""}"#,
            r#"{"path": "/a", "format": "vmdk"}"#,
            r#""/a,bus=scsi""#,
            "3",
        ] {
            assert!(serde_json::from_str::<DiskConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nic_specs_parse() {
        let n: NicConfig = "tap=tap0".parse().unwrap();
        assert_eq!(
            n,
            NicConfig {
                tap: "tap0".into(),
                mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                model: NicModel::E1000,
                queues: 1,
                vhost: None
            }
        );
        let n: NicConfig = "tap=t2,model=virtio,queues=4,vhost=off".parse().unwrap();
        assert_eq!((n.model, n.queues, n.vhost), (NicModel::Virtio, 4, Some(false)));
        let n: NicConfig = "tap=t2,model=virtio,vhost=on".parse().unwrap();
        assert_eq!(n.vhost, Some(true));
        assert!("tap=a,model=virtio,vhost=yes".parse::<NicConfig>().unwrap_err().contains("vhost 'yes'"));
        assert!("tap=a,vhost=on".parse::<NicConfig>().unwrap_err().contains("model=virtio"));
        let json = serde_json::to_string(&n).unwrap();
        assert!(json.contains(r#""vhost":true"#), "{json}");
        assert_eq!(serde_json::from_str::<NicConfig>(&json).unwrap(), n);
        let auto: NicConfig = "tap=t2,model=virtio".parse().unwrap();
        assert!(!serde_json::to_string(&auto).unwrap().contains("vhost"));
        assert!("tap=a,queues=2".parse::<NicConfig>().unwrap_err().contains("model=virtio"));
        assert!("tap=a,model=virtio,queues=0".parse::<NicConfig>().unwrap_err().contains("1 to 16"));
        assert!("tap=a,model=rtl8139".parse::<NicConfig>().unwrap_err().contains("model=virtio"));
        let n: NicConfig = "tap=t1,mac=52:54:00:aa:bb:0c,model=e1000".parse().unwrap();
        assert_eq!(n.mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0x0c]);
        assert!("mac=52:54:00:aa:bb:0c".parse::<NicConfig>().unwrap_err().contains("tap="));
        assert!("tap=a,mac=01:00:00:00:00:01".parse::<NicConfig>().unwrap_err().contains("multicast"));
        assert!("tap=a,mac=52:54:00:aa:bb".parse::<NicConfig>().unwrap_err().contains("six"));
        assert!("tap=averyveryverylongname".parse::<NicConfig>().is_err());
        assert!("tap=".parse::<NicConfig>().is_err());
    }

    #[test]
    fn nics_in_json_are_strings_or_objects() {
        let n: NicConfig =
            serde_json::from_str(r#""tap=t1,mac=52:54:00:aa:bb:0c,model=virtio,queues=2""#).unwrap();
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(text, r#"{"tap":"t1","mac":"52:54:00:aa:bb:0c","model":"virtio","queues":2}"#);
        assert_eq!(serde_json::from_str::<NicConfig>(&text).unwrap(), n);
        let n: NicConfig = serde_json::from_str(r#"{"tap": "t0"}"#).unwrap();
        assert_eq!((n.mac, n.model, n.queues), (DEFAULT_MAC, NicModel::E1000, 1));
        for bad in [r#"{"tap": "t0", "queues": 2}"#, r#"{"tap": "t0", "mac": "01:00:00:00:00:01"}"#, r#"{}"#]
        {
            assert!(serde_json::from_str::<NicConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boot_orders_parse() {
        use BootDevice::*;
        assert_eq!(parse_boot_order("cdrom,disk"), Ok(vec![Cdrom, Disk]));
        assert_eq!(parse_boot_order("dc"), Ok(vec![Cdrom, Disk]));
        assert_eq!(parse_boot_order("net"), Ok(vec![Net]));
        assert!(parse_boot_order("disk,disk").unwrap_err().contains("twice"));
        assert!(parse_boot_order("floppy").unwrap_err().contains("floppy"));
        assert!(parse_boot_order("").is_err());
        assert_eq!(format_boot_order(&[Cdrom, Disk, Net]), "cdrom,disk,net");
    }
}
