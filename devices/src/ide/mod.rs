// SPDX-License-Identifier: Apache-2.0
//! The Intel PIIX3 IDE controller (PCI 8086:7010, function 00:01.1, class 01 01 80) with ATA
//! disks and ATAPI CD/DVD-ROM drives.
//!
//! The function runs both channels in compatibility mode: their ports are the fixed legacy
//! ranges (not BARs), primary 0x1F0-0x1F7 and 0x3F6 on IRQ 14, secondary 0x170-0x177 and
//! 0x376 on IRQ 15. BAR4 is the 16-byte I/O block of the bus-master DMA engines (primary at
//! +0, secondary at +8); DMA runs only while the PCI command register's bus-master bit is set.
//!
//! The machine reaches the channels through [`IdePorts`] adapters on the port-I/O bus and
//! the function through [`PciDevice`]. Every transfer runs synchronously inside the register
//! access that starts it (the command write, the last data-port access of a block, or the
//! bus-master start bit).
//!
//! Differences from the datasheet, on purpose: the legacy ports decode regardless of the IDE
//! timing registers' decode-enable bits (0x41/0x43 bit 7) and of the command register's I/O
//! bit, as on QEMU. Those registers power up 0 as the datasheet says; SeaBIOS writes 0x8000
//! to both, and Linux's `ata_piix` treats a channel whose bit is clear as disabled, so a
//! machine booting Linux without firmware must set them itself.
//!
//! Files: `channel.rs` (task file, status, IRQ), `ata.rs` (disk commands), `atapi.rs`
//! (packet commands), `bmdma.rs` (bus-master registers and PRD walk).

mod ata;
mod atapi;
mod bmdma;
mod channel;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use block::DiskImage;
use vm_memory::GuestMemoryMmap;

use crate::bus::{lock, BusDevice};
use crate::irq::IrqLine;
use crate::pci::{BarKind, PciBarRange, PciConfigSpace, PciDevice};
use crate::stats::BlockStats;

pub use atapi::{CD_MAX_BLOCKS, CD_SECTOR};
pub use channel::PortKind;

use ata::Disk;
use atapi::Cdrom;
use channel::{Channel, Media};

/// PCI vendor ID (Intel).
pub const VENDOR_ID: u16 = 0x8086;
/// PCI device ID of the PIIX3 IDE function.
pub const DEVICE_ID: u16 = 0x7010;
/// Class code: mass storage, IDE, bus-master capable compatibility-mode controller.
pub const CLASS: [u8; 3] = [0x01, 0x01, 0x80];
/// Primary channel command block.
pub const PRIMARY_CMD: u16 = 0x1f0;
/// Primary channel control block (alternate status / device control).
pub const PRIMARY_CTL: u16 = 0x3f6;
/// Secondary channel command block.
pub const SECONDARY_CMD: u16 = 0x170;
/// Secondary channel control block.
pub const SECONDARY_CTL: u16 = 0x376;
/// Ports in a command block.
pub const CMD_LEN: u16 = 8;
/// Ports in a control block.
pub const CTL_LEN: u16 = 1;
/// ISA IRQ of the primary channel.
pub const PRIMARY_IRQ: u8 = 14;
/// ISA IRQ of the secondary channel.
pub const SECONDARY_IRQ: u8 = 15;
/// Bytes decoded by BAR4 (bus-master DMA).
pub const BMDMA_LEN: u64 = 16;
const BMDMA_BAR: usize = 4;
/// IDE timing (0x40-0x43) and slave timing (0x44) registers, writable scratch.
const IDETIM_REG: usize = 0x40 / 4;
const SIDETIM_REG: usize = 0x44 / 4;

/// What to plug into a drive position.
pub enum IdeDrive {
    /// An ATA hard disk (512-byte sectors).
    Disk(Box<dyn DiskImage>),
    /// An ATAPI CD/DVD-ROM drive with this medium (2048-byte sectors, read-only).
    Cdrom(Box<dyn DiskImage>),
}

/// Errors when attaching drives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Channel or unit out of range.
    #[error("no IDE position {channel}:{unit} (channels 0-1, units 0-1)")]
    NoSuchPosition {
        /// Channel asked for.
        channel: usize,
        /// Unit asked for.
        unit: usize,
    },
    /// Something is already attached there.
    #[error("IDE position {channel}:{unit} is taken")]
    Taken {
        /// Channel.
        channel: usize,
        /// Unit.
        unit: usize,
    },
}

/// The PIIX3 IDE function.
pub struct PiixIde {
    config: PciConfigSpace,
    channels: [Channel; 2],
}

impl PiixIde {
    /// A controller with no drives, doing DMA into `mem`, interrupting on the given lines
    /// (ISA IRQ 14 and 15 on a PC). INTRQ is level: the line goes high when a drive asks
    /// for attention (and nIEN is clear) and low when the guest reads the status register,
    /// issues a command, resets the channel or sets nIEN.
    pub fn new(mem: GuestMemoryMmap, irq_primary: Arc<dyn IrqLine>, irq_secondary: Arc<dyn IrqLine>) -> Self {
        let mut config = PciConfigSpace::new(VENDOR_ID, DEVICE_ID, CLASS, 0x00, 0x00);
        // Status: fast back-to-back capable, medium DEVSEL timing.
        config.set_reg(1, 0x0280_0000, 0x0000_0005);
        config.add_bar(BMDMA_BAR, BMDMA_LEN, BarKind::Io, false);
        config.set_reg(IDETIM_REG, 0, 0xf3ff_f3ff);
        config.set_reg(SIDETIM_REG, 0, 0x0000_00ff);
        PiixIde {
            config,
            channels: [Channel::new(0, mem.clone(), irq_primary), Channel::new(1, mem, irq_secondary)],
        }
    }

    /// Plugs `drive` into `channel` (0 primary, 1 secondary), `unit` (0 master, 1 slave).
    pub fn attach(&mut self, channel: usize, unit: usize, drive: IdeDrive) -> Result<(), Error> {
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|_| unit < 2)
            .ok_or(Error::NoSuchPosition { channel, unit })?;
        if ch.drives[unit].present() {
            return Err(Error::Taken { channel, unit });
        }
        let media = match drive {
            IdeDrive::Disk(image) => Media::Disk(Box::new(Disk::new(image))),
            IdeDrive::Cdrom(image) => Media::Cdrom(Box::new(Cdrom::new(image))),
        };
        ch.attach(unit, media);
        Ok(())
    }

    /// The request counters of the drive at `channel`, `unit` (also of an empty position,
    /// whose counters stay at zero); `None` for a position that does not exist.
    pub fn stats(&self, channel: usize, unit: usize) -> Option<Arc<BlockStats>> {
        self.channels.get(channel)?.drives.get(unit).map(|d| d.stats.clone())
    }

    /// Power-on reset of both channels and their bus-master engines (media stay).
    pub fn reset(&mut self) {
        self.channels.iter_mut().for_each(Channel::reset);
    }

    /// A guest read of a legacy port block of `channel`; out-of-range channels read all ones.
    pub fn channel_read(&mut self, channel: usize, kind: PortKind, offset: u64, data: &mut [u8]) {
        match self.channels.get_mut(channel) {
            Some(ch) => ch.read(kind, offset, data),
            None => data.fill(0xff),
        }
    }

    /// A guest write to a legacy port block of `channel`.
    pub fn channel_write(&mut self, channel: usize, kind: PortKind, offset: u64, data: &[u8]) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.write(kind, offset, data);
        }
    }

    /// The legacy port adapters to put on the port-I/O bus: `(base, length, device)` for the
    /// primary and secondary command and control blocks.
    pub fn legacy_ports(this: &Arc<Mutex<PiixIde>>) -> Vec<(u16, u16, Arc<Mutex<IdePorts>>)> {
        let port = |channel, kind| Arc::new(Mutex::new(IdePorts { ide: this.clone(), channel, kind }));
        vec![
            (PRIMARY_CMD, CMD_LEN, port(0, PortKind::Command)),
            (PRIMARY_CTL, CTL_LEN, port(0, PortKind::Control)),
            (SECONDARY_CMD, CMD_LEN, port(1, PortKind::Command)),
            (SECONDARY_CTL, CTL_LEN, port(1, PortKind::Control)),
        ]
    }
}

impl PciDevice for PiixIde {
    fn debug_label(&self) -> &str {
        "piix3-ide"
    }

    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        let bus_master = self.config.command() & 0x4 != 0;
        for ch in self.channels.iter_mut() {
            if ch.bus_master != bus_master {
                ch.set_bus_master(bus_master);
            }
        }
    }

    fn bar_ranges(&self) -> Vec<PciBarRange> {
        self.config.bar_ranges()
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match (index, self.channels.get((offset / 8) as usize)) {
            (BMDMA_BAR, Some(ch)) => ch.bm.read(offset % 8, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if let (BMDMA_BAR, Some(ch)) = (index, self.channels.get_mut((offset / 8) as usize)) {
            ch.bm_write(offset % 8, data);
        }
    }

    fn reset(&mut self) {
        self.config.reset();
        PiixIde::reset(self);
        for ch in self.channels.iter_mut() {
            ch.set_bus_master(false);
        }
    }
}

/// One legacy port block of one channel, as a device on the port-I/O bus.
pub struct IdePorts {
    /// The controller.
    pub ide: Arc<Mutex<PiixIde>>,
    /// 0 primary, 1 secondary.
    pub channel: usize,
    /// Command or control block.
    pub kind: PortKind,
}

impl BusDevice for IdePorts {
    fn debug_label(&self) -> &str {
        match (self.channel, self.kind) {
            (0, PortKind::Command) => "ide0-cmd",
            (0, PortKind::Control) => "ide0-ctl",
            (_, PortKind::Command) => "ide1-cmd",
            (_, PortKind::Control) => "ide1-ctl",
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.ide).channel_read(self.channel, self.kind, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.ide).channel_write(self.channel, self.kind, offset, data);
    }
    /// A view of another device, which resets on its own.
    fn reset(&mut self) {}
}
