// SPDX-License-Identifier: Apache-2.0
//! What the PC machine tells SeaBIOS through fw_cfg and the CMOS: RAM and CPUs, the e820
//! RAM map, the boot order (as OpenFirmware device paths SeaBIOS matches against the devices
//! it finds), and the option ROMs it should run.

use arch::x86_64::layout::{self, MemoryLayout};

use crate::pc_config::BootDevice;

/// fw_cfg item: RAM size in bytes (u64).
pub const KEY_RAM_SIZE: u16 = 0x03;
/// fw_cfg item: CPUs present at boot (u16).
pub const KEY_NB_CPUS: u16 = 0x05;
/// fw_cfg item: NUMA nodes and CPU mapping (u64 count 0: none).
pub const KEY_NUMA: u16 = 0x0d;
/// fw_cfg item: show the boot menu (u16).
pub const KEY_BOOT_MENU: u16 = 0x0e;
/// fw_cfg item: most CPUs (u16).
pub const KEY_MAX_CPUS: u16 = 0x0f;

/// The IDE controller's PCI address (device 1, function 1), as in the paths below.
pub const IDE_DEVFN: (u8, u8) = (1, 1);
/// Where the NIC sits.
pub const NIC_SLOT: u8 = 3;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// `etc/e820`: the RAM ranges (SeaBIOS carves out its own areas below 1 MiB) and the pages
/// KVM reserves for its TSS and identity map; 20-byte entries (u64 address, u64 length,
/// u32 type), little-endian.
pub fn e820(layout: &MemoryLayout) -> Vec<u8> {
    let mut entries = vec![(0u64, layout.low_ram_size(), E820_RAM)];
    if layout.high_ram_size() > 0 {
        entries.push((layout::RAM_ABOVE_4G_START, layout.high_ram_size(), E820_RAM));
    }
    entries.push((layout::KVM_IDENTITY_MAP_ADDR, 4 * 4096, E820_RESERVED));
    let mut out = Vec::with_capacity(entries.len() * 20);
    for (addr, len, kind) in entries {
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
    }
    out
}

/// The OpenFirmware path of IDE drive `unit` on `channel`.
pub fn ide_path(channel: usize, unit: usize) -> String {
    format!("/pci@i0cf8/ide@{:x},{:x}/drive@{channel:x}/disk@{unit:x}", IDE_DEVFN.0, IDE_DEVFN.1)
}

/// The OpenFirmware path of the virtio-blk function in PCI `slot` (SeaBIOS matches a
/// virtio disk by its PCI address, `/pci@i0cf8/*@SLOT`, whatever the node is called).
pub fn virtio_blk_path(slot: u8) -> String {
    format!("/pci@i0cf8/scsi@{slot:x}/disk@0,0")
}

/// `bootorder`: one device path per line, most preferred first; devices the user did not
/// list are tried after these, in SeaBIOS's default order. `disk` and `cdrom` are the paths
/// of the first disk and the CD-ROM. With `kernel_rom`, the Linux loader option ROM comes
/// first (a `--kernel` boots before any disk).
pub fn bootorder(
    order: &[BootDevice],
    disk: Option<String>,
    cdrom: Option<String>,
    kernel_rom: bool,
) -> Vec<u8> {
    let mut lines = Vec::new();
    if kernel_rom {
        lines.push(crate::linuxboot::ROM_BOOT_PATH.to_string());
    }
    for dev in order {
        match dev {
            BootDevice::Disk => lines.extend(disk.clone()),
            BootDevice::Cdrom => lines.extend(cdrom.clone()),
            BootDevice::Net => lines.push(format!("/pci@i0cf8/ethernet@{NIC_SLOT:x}/ethernet-phy@0")),
        }
    }
    let mut text = lines.join("\n").into_bytes();
    text.push(0);
    text
}

/// CMOS boot-device bytes 0x3d (first and second) and 0x38 (third, bit 0: skip the floppy
/// signature check): 1 floppy, 2 hard disk, 3 CD-ROM, 4 network.
pub fn cmos_boot_order(order: &[BootDevice]) -> (u8, u8) {
    let code = |d: &BootDevice| match d {
        BootDevice::Disk => 2u8,
        BootDevice::Cdrom => 3,
        BootDevice::Net => 4,
    };
    let c: Vec<u8> = order.iter().map(code).chain(std::iter::repeat(0)).take(3).collect();
    (c[0] | (c[1] << 4), (c[2] << 4) | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_lists_ram_around_the_hole() {
        let map = e820(&MemoryLayout::new(4 << 30));
        assert_eq!(map.len(), 3 * 20);
        let entry = |i: usize| {
            let e = &map[i * 20..i * 20 + 20];
            (
                u64::from_le_bytes(e[0..8].try_into().unwrap()),
                u64::from_le_bytes(e[8..16].try_into().unwrap()),
                u32::from_le_bytes(e[16..20].try_into().unwrap()),
            )
        };
        assert_eq!(entry(0), (0, 3 << 30, 1));
        assert_eq!(entry(1), (4 << 30, 1 << 30, 1));
        assert_eq!(entry(2).2, 2);
        assert_eq!(e820(&MemoryLayout::new(256 << 20)).len(), 2 * 20);
    }

    #[test]
    fn boot_order_paths_and_cmos() {
        use BootDevice::*;
        let ide = |c, u| Some(ide_path(c, u));
        let b = bootorder(&[Cdrom, Disk, Net], ide(0, 0), ide(1, 0), false);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/ide@1,1/drive@0/disk@0\n\
             /pci@i0cf8/ethernet@3/ethernet-phy@0\0"
        );
        assert_eq!(bootorder(&[Cdrom], ide(0, 0), None, false), b"\0");
        assert_eq!(
            bootorder(&[Disk], ide(0, 0), None, true),
            b"/rom@genroms/linuxboot_dma.bin\n/pci@i0cf8/ide@1,1/drive@0/disk@0\0"
        );
        assert_eq!(bootorder(&[Cdrom], None, None, true), b"/rom@genroms/linuxboot_dma.bin\0");
        assert_eq!(
            bootorder(&[Disk, Cdrom], Some(virtio_blk_path(10)), ide(1, 0), false),
            b"/pci@i0cf8/scsi@a/disk@0,0\n/pci@i0cf8/ide@1,1/drive@1/disk@0\0"
        );
        assert_eq!(cmos_boot_order(&[Disk, Cdrom]), (0x32, 0x01));
        assert_eq!(cmos_boot_order(&[Cdrom, Disk, Net]), (0x23, 0x41));
    }
}
