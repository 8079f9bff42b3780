// SPDX-License-Identifier: Apache-2.0
//! Configuration of the emulated PC machine: which machine, firmware, disks, CD-ROM, boot
//! order and display. Parsed from flags (`--disk PATH,format=qcow2,readonly`) and from the
//! same strings in the JSON file; checked before anything is built.

use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// SeaBIOS as Debian's `seabios` package installs it.
pub const DEFAULT_FIRMWARE: &str = "/usr/share/seabios/bios-256k.bin";
/// SeaVGABIOS for the standard VGA, from the same package.
pub const DEFAULT_VGA_ROM: &str = "/usr/share/seabios/vgabios-stdvga.bin";
/// QEMU's Linux loader option ROM (fw_cfg DMA flavour), from Debian's `qemu-system-data`;
/// SeaBIOS runs it to boot `--kernel` on the PC machine.
pub const DEFAULT_LINUXBOOT_ROM: &str = "/usr/share/qemu/linuxboot_dma.bin";
/// IDE has two channels of two drives; the CD-ROM takes the secondary master.
pub const MAX_IDE_DISKS: usize = 3;

/// Which machine the VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineKind {
    /// Linux loaded by the VMM and entered directly; no firmware, no PCI.
    Direct,
    /// An i440FX/PIIX PC started by its BIOS (SeaBIOS) at the reset vector.
    Pc,
}

impl std::str::FromStr for MachineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(MachineKind::Direct),
            "pc" | "pc-i440fx" => Ok(MachineKind::Pc),
            _ => Err(format!("'{s}' is not a machine; use pc (BIOS boot) or direct (kernel boot)")),
        }
    }
}

/// Disk image formats.
pub use block::ImageFormat as DiskFormat;

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskBus {
    /// The PIIX IDE controller (every guest has a driver).
    #[default]
    Ide,
    /// A virtio-blk PCI device (paravirtual; guests need a virtio driver).
    Virtio,
}

/// Most virtio disks.
pub const MAX_VIRTIO_DISKS: usize = 16;
/// Most queues of one virtio disk.
pub const MAX_DISK_QUEUES: u16 = devices::virtio::block::MAX_QUEUES;

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
}

impl DiskConfig {
    /// An IDE disk with the format detected from the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskConfig { path: path.into(), queues: 1, ..Default::default() }
    }
}

const DISK_OPTIONS: &str = "format=raw|qcow2, bus=ide|virtio, readonly, serial=ID, queues=N";

impl std::str::FromStr for DiskConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let path =
            parts.next().filter(|p| !p.is_empty()).ok_or("needs a path first, e.g. disk.img,format=raw")?;
        let mut disk = DiskConfig::new(path);
        let mut queues_given = false;
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
                Some(("serial", id)) => {
                    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(format!(
                            "serial '{id}' must be 1 to 20 printable ASCII characters without spaces"
                        ));
                    }
                    disk.serial = Some(id.to_string());
                }
                Some(("queues", n)) => {
                    disk.queues =
                        n.parse().ok().filter(|q| (1..=MAX_DISK_QUEUES).contains(q)).ok_or_else(|| {
                            format!("queues '{n}' must be a number from 1 to {MAX_DISK_QUEUES}")
                        })?;
                    queues_given = true;
                }
                _ => return Err(format!("unknown option '{opt}'; use {DISK_OPTIONS}")),
            }
        }
        if queues_given && disk.bus != DiskBus::Virtio {
            return Err("queues= needs bus=virtio (an IDE disk has one channel)".into());
        }
        Ok(disk)
    }
}

/// The card a `--nic` puts in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicModel {
    /// An emulated Intel 82540EM (every guest has a driver).
    #[default]
    E1000,
    /// A virtio-net PCI device (paravirtual, offloads, several queue pairs).
    Virtio,
}

/// Most queue pairs of one virtio NIC.
pub const MAX_NIC_QUEUES: u16 = 16;

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
}

/// Most NICs (PCI slots 3 to 6).
pub const MAX_NICS: usize = 4;

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

const NIC_OPTIONS: &str = "tap=NAME[,mac=52:54:00:..][,model=e1000|virtio][,queues=N][,vhost=off]";

impl std::str::FromStr for NicConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut tap, mut mac, mut model, mut queues) = (None, None, NicModel::E1000, None);
        for opt in s.split(',') {
            match opt.split_once('=') {
                Some(("tap", name)) if !name.is_empty() && name.len() < 16 && !name.contains('/') => {
                    tap = Some(name.to_string())
                }
                Some(("tap", name)) => {
                    return Err(format!("tap name '{name}' must be 1-15 characters, no '/'"))
                }
                Some(("mac", m)) => mac = Some(parse_mac(m)?),
                Some(("model", "e1000")) => model = NicModel::E1000,
                Some(("model", "virtio")) => model = NicModel::Virtio,
                Some(("model", m)) => {
                    return Err(format!("model '{m}' is not emulated; use model=e1000 or model=virtio"))
                }
                Some(("queues", n)) => {
                    queues =
                        Some(n.parse().ok().filter(|q| (1..=MAX_NIC_QUEUES).contains(q)).ok_or_else(
                            || format!("queues '{n}' must be a number from 1 to {MAX_NIC_QUEUES}"),
                        )?)
                }
                Some(("vhost", "off")) => {}
                Some(("vhost", v)) => return Err(format!(
                    "vhost={v}: vhost-net is not implemented yet (the virtio-net device runs in the vmm); \
                         use vhost=off or leave it out"
                )),
                _ => return Err(format!("unknown option '{opt}'; use {NIC_OPTIONS}")),
            }
        }
        let tap = tap.ok_or("needs tap=NAME, e.g. tap=tap0")?;
        if queues.is_some() && model != NicModel::Virtio {
            return Err("queues= needs model=virtio (an e1000 has one queue pair)".into());
        }
        Ok(NicConfig {
            tap,
            mac: mac.unwrap_or([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            model,
            queues: queues.unwrap_or(1),
        })
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

/// Checks an image path: it exists and is a file or a block device.
pub fn check_image(field: &str, path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(field, format!("cannot open {}: {e}", path.display())))?;
    use std::os::unix::fs::FileTypeExt;
    if !(meta.is_file() || meta.file_type().is_block_device()) {
        return Err(ConfigError::new(field, format!("{} is not a file or block device", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_kinds_parse() {
        assert_eq!("pc".parse(), Ok(MachineKind::Pc));
        assert_eq!("direct".parse(), Ok(MachineKind::Direct));
        assert!("q35".parse::<MachineKind>().unwrap_err().contains("use pc"));
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
        assert!("/a,serial=123456789012345678901".parse::<DiskConfig>().unwrap_err().contains("20"));
        assert!("/a,serial=a b".parse::<DiskConfig>().unwrap_err().contains("printable"));
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
                queues: 1
            }
        );
        let n: NicConfig = "tap=t2,model=virtio,queues=4,vhost=off".parse().unwrap();
        assert_eq!((n.model, n.queues), (NicModel::Virtio, 4));
        assert!("tap=a,queues=2".parse::<NicConfig>().unwrap_err().contains("model=virtio"));
        assert!("tap=a,model=virtio,queues=0".parse::<NicConfig>().unwrap_err().contains("1 to 16"));
        assert!("tap=a,model=virtio,vhost=on".parse::<NicConfig>().unwrap_err().contains("not implemented"));
        assert!("tap=a,model=rtl8139".parse::<NicConfig>().unwrap_err().contains("model=virtio"));
        let n: NicConfig = "tap=t1,mac=52:54:00:aa:bb:0c,model=e1000".parse().unwrap();
        assert_eq!(n.mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0x0c]);
        assert!("mac=52:54:00:aa:bb:0c".parse::<NicConfig>().unwrap_err().contains("tap="));
        assert!("tap=a,mac=01:00:00:00:00:01".parse::<NicConfig>().unwrap_err().contains("multicast"));
        assert!("tap=a,mac=52:54:00:aa:bb".parse::<NicConfig>().unwrap_err().contains("six"));
        assert!("tap=averyveryverylongname".parse::<NicConfig>().is_err());
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
    }
}
