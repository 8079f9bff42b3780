// SPDX-License-Identifier: Apache-2.0
//! Configuration of the emulated PC machine: the firmware defaults. The machine kind, disks, NICs and boot order are types of the `api` crate
//! (re-exported here), parsed from flags (`--disk PATH,format=qcow2,readonly`) and from the
//! JSON file; checked with the rest of the configuration before anything is built.

/// SeaBIOS as Debian's `seabios` package installs it.
pub const DEFAULT_FIRMWARE: &str = "/usr/share/seabios/bios-256k.bin";
/// SeaVGABIOS for the standard VGA, from the same package.
pub const DEFAULT_VGA_ROM: &str = "/usr/share/seabios/vgabios-stdvga.bin";
/// QEMU's Linux loader option ROM (fw_cfg DMA flavour), from Debian's `qemu-system-data`;
/// SeaBIOS runs it to boot `--kernel` on the PC machine.
pub const DEFAULT_LINUXBOOT_ROM: &str = "/usr/share/qemu/linuxboot_dma.bin";

pub use api::machine::{
    parse_boot_order, BootDevice, DiskAio, DiskBus, DiskConfig, DiskFormat, MachineKind, NicConfig, NicModel,
    MAX_DISK_QUEUES, MAX_IDE_DISKS, MAX_NICS, MAX_VIRTIO_DISKS,
};

// The configuration's limit is the device's.
const _: () = assert!(MAX_DISK_QUEUES == devices::virtio::block::MAX_QUEUES);

/// The block layer's name for a configured format.
pub fn image_format(f: DiskFormat) -> block::ImageFormat {
    match f {
        DiskFormat::Raw => block::ImageFormat::Raw,
        DiskFormat::Qcow2 => block::ImageFormat::Qcow2,
    }
}
