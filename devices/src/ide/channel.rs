// SPDX-License-Identifier: Apache-2.0
//! One IDE channel: the task-file registers each drive latches, device selection, the
//! status/error/device-control registers, the PIO data port, INTRQ, and the channel's
//! bus-master DMA engine.
//!
//! Both drives latch every task-file write (as on a real cable); reads come from the selected
//! drive. With no drive at all on the channel every register reads 0 (as QEMU's controller
//! does; SeaBIOS and Linux then find nothing). A selected but absent device 1 reads status 0,
//! which is what ATA-6 asks device 0 to answer for it.

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::ata::Disk;
use super::atapi::Cdrom;
use super::bmdma::{self, BmDma, DmaEnd, STATUS_ACTIVE, STATUS_ERROR, STATUS_INTR};
use crate::irq::IrqLine;
use crate::stats::BlockStats;

/// Status: error.
pub const ST_ERR: u8 = 0x01;
/// Status: data request.
pub const ST_DRQ: u8 = 0x08;
/// Status: seek complete (ATA) / service (ATAPI).
pub const ST_DSC: u8 = 0x10;
/// Status: device ready.
pub const ST_DRDY: u8 = 0x40;
/// Status: busy.
pub const ST_BSY: u8 = 0x80;
/// Error: command aborted.
pub const ERR_ABRT: u8 = 0x04;
/// Error: address not found.
pub const ERR_IDNF: u8 = 0x10;
/// Error: uncorrectable data error.
pub const ERR_UNC: u8 = 0x40;
/// Device control: interrupts disabled.
pub const CTL_NIEN: u8 = 0x02;
/// Device control: software reset.
pub const CTL_SRST: u8 = 0x04;
/// Device control: read the previous ("high order byte") register contents.
pub const CTL_HOB: u8 = 0x80;

/// The command-block registers one drive latched; `hob_*` hold the value written before the
/// current one (the high-order bytes of a 48-bit command).
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskFile {
    pub feature: u8,
    pub nsector: u8,
    pub lba_low: u8,
    pub lba_mid: u8,
    pub lba_high: u8,
    pub hob_feature: u8,
    pub hob_nsector: u8,
    pub hob_lba_low: u8,
    pub hob_lba_mid: u8,
    pub hob_lba_high: u8,
    pub device: u8,
}

impl TaskFile {
    fn write(&mut self, reg: u64, v: u8) {
        let (cur, hob) = match reg {
            1 => (&mut self.feature, &mut self.hob_feature),
            2 => (&mut self.nsector, &mut self.hob_nsector),
            3 => (&mut self.lba_low, &mut self.hob_lba_low),
            4 => (&mut self.lba_mid, &mut self.hob_lba_mid),
            5 => (&mut self.lba_high, &mut self.hob_lba_high),
            _ => return,
        };
        *hob = *cur;
        *cur = v;
    }

    /// Loads the reset signature: ATA (1, 1, 0, 0) or packet device (1, 1, 0x14, 0xEB).
    pub fn set_signature(&mut self, packet: bool) {
        self.nsector = 1;
        self.lba_low = 1;
        (self.lba_mid, self.lba_high) = if packet { (0x14, 0xeb) } else { (0, 0) };
        self.device &= 0x10;
    }
}

/// What is plugged into a drive position.
pub enum Media {
    /// Nothing.
    Absent,
    /// An ATA disk.
    Disk(Box<Disk>),
    /// An ATAPI CD/DVD-ROM drive with its medium.
    Cdrom(Box<Cdrom>),
}

/// How a 28/48-bit command addressed its sectors (so the registers can be written back the
/// same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// Cylinder/head/sector.
    Chs,
    /// 28-bit LBA.
    Lba28,
    /// 48-bit LBA.
    Lba48,
}

/// Source of the data of a packet command's data-in phase.
pub enum PacketSrc {
    /// A reply built in memory.
    Buf(Vec<u8>, usize),
    /// Bytes of the medium from this offset.
    Disk(u64),
}

/// The protocol state of a drive.
pub enum Phase {
    /// No command in progress.
    Idle,
    /// PIO data-in of one prepared block (IDENTIFY).
    BufferIn,
    /// PIO read: the next block starts at `lba`; `remaining` sectors are still to be loaded.
    AtaRead { lba: u64, remaining: u64, per_block: u64, addr: Addr },
    /// PIO write: the buffer holds the sectors from `lba`; `remaining` counts them too.
    AtaWrite { lba: u64, remaining: u64, per_block: u64, addr: Addr },
    /// An ATA DMA command waiting for (or in) its transfer.
    AtaDma { lba: u64, count: u64, addr: Addr, write: bool },
    /// Waiting for the 12 command-packet bytes.
    PacketCdb,
    /// Packet data-in by PIO; `remaining` bytes after the current block.
    PacketIn { src: PacketSrc, remaining: u64 },
    /// A packet command waiting for (or in) its DMA transfer.
    PacketDma,
}

/// Where a DMA transfer's device-side bytes come from or go to.
pub enum DmaSrc {
    /// The medium, from this byte offset.
    Disk(u64),
    /// A reply built in memory.
    Buf(Vec<u8>),
}

/// A DMA transfer a drive has asked for.
pub struct DmaOp {
    /// Device to memory.
    pub to_memory: bool,
    /// Bytes.
    pub len: u64,
    /// Device side.
    pub src: DmaSrc,
}

/// How a DMA transfer ended, as the drive sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaResult {
    /// Every byte moved.
    Ok,
    /// The PRD table was too short: the drive stops without an interrupt.
    Short,
    /// A guest memory access failed.
    HostError,
    /// The medium failed.
    MediaError,
}

/// One drive position (present or not) of a channel.
pub struct Drive {
    pub tf: TaskFile,
    pub status: u8,
    pub error: u8,
    pub media: Media,
    /// PIO buffer and position in it.
    pub buf: Vec<u8>,
    pub pos: usize,
    /// True while the PIO buffer flows to the host (data-in).
    pub data_in: bool,
    pub phase: Phase,
    pub dma: Option<DmaOp>,
    /// Set when the drive wants INTRQ raised; the channel collects it.
    pub irq: bool,
    /// Transfer mode chosen with SET FEATURES (0 = PIO default).
    pub xfer_mode: u8,
    /// 0 or 1 on the cable.
    pub unit: usize,
    /// Serial number for IDENTIFY.
    pub serial: String,
    /// Request counters of the position (they outlive resets).
    pub stats: Arc<BlockStats>,
}

impl Drive {
    pub(super) fn new(unit: usize, serial: String) -> Self {
        let mut d = Drive {
            tf: TaskFile::default(),
            status: 0,
            error: 0,
            media: Media::Absent,
            buf: Vec::new(),
            pos: 0,
            data_in: false,
            phase: Phase::Idle,
            dma: None,
            irq: false,
            xfer_mode: 0,
            unit,
            serial,
            stats: Arc::default(),
        };
        d.reset();
        d
    }

    /// True if something is plugged in.
    pub fn present(&self) -> bool {
        !matches!(self.media, Media::Absent)
    }

    /// True for a packet (ATAPI) device.
    pub fn is_packet(&self) -> bool {
        matches!(self.media, Media::Cdrom(_))
    }

    /// Hardware or software reset: transfers abort, the signature is loaded, diagnostics pass.
    pub fn reset(&mut self) {
        self.end_transfer();
        self.dma = None;
        self.tf.set_signature(self.is_packet());
        self.tf.device = 0;
        self.error = 0x01;
        self.status = match self.media {
            Media::Absent => 0,
            Media::Disk(_) => ST_DRDY | ST_DSC,
            Media::Cdrom(_) => 0,
        };
        if let Media::Disk(d) = &mut self.media {
            d.reset();
        }
    }

    /// Drops the PIO buffer and returns to idle.
    pub fn end_transfer(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.phase = Phase::Idle;
    }

    /// Completes a command successfully and interrupts.
    pub fn complete(&mut self) {
        self.end_transfer();
        self.status = ST_DRDY | ST_DSC;
        self.error = 0;
        self.irq = true;
    }

    /// Fails a command with `error` and interrupts.
    pub fn fail(&mut self, error: u8) {
        self.end_transfer();
        self.dma = None;
        self.status = ST_DRDY | ST_DSC | ST_ERR;
        self.error = error;
        self.irq = true;
    }

    /// Aborts a command.
    pub fn abort(&mut self) {
        self.fail(ERR_ABRT);
    }

    /// Starts a PIO data-in block; interrupts.
    pub fn pio_in(&mut self, data: Vec<u8>, phase: Phase) {
        self.buf = data;
        self.pos = 0;
        self.data_in = true;
        self.phase = phase;
        self.status = ST_DRDY | ST_DSC | ST_DRQ;
        self.irq = true;
    }

    /// Starts a PIO data-out block of `len` bytes.
    pub fn pio_out(&mut self, len: usize, phase: Phase, irq: bool) {
        self.buf = vec![0; len];
        self.pos = 0;
        self.data_in = false;
        self.phase = phase;
        self.status = ST_DRDY | ST_DSC | ST_DRQ;
        self.irq |= irq;
    }

    /// Asks the bus-master engine for a transfer; the drive is busy until it ends.
    pub fn request_dma(&mut self, op: DmaOp, phase: Phase) {
        self.end_transfer();
        self.phase = phase;
        self.dma = Some(op);
        self.status = ST_BSY | ST_DRDY;
    }

    /// Runs command `cmd` written to the command register.
    pub fn execute(&mut self, cmd: u8) {
        self.end_transfer();
        self.dma = None;
        match self.media {
            Media::Absent => {}
            Media::Disk(_) => self.ata_command(cmd),
            Media::Cdrom(_) => self.atapi_ata_command(cmd),
        }
    }

    /// A PIO data-port read.
    pub fn read_data(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.status & ST_DRQ != 0 && self.data_in && self.pos < self.buf.len() {
                *b = self.buf[self.pos];
                self.pos += 1;
                if self.pos == self.buf.len() {
                    self.block_done();
                }
            } else {
                *b = 0xff;
            }
        }
    }

    /// A PIO data-port write.
    pub fn write_data(&mut self, data: &[u8]) {
        for &b in data {
            if self.status & ST_DRQ != 0 && !self.data_in && self.pos < self.buf.len() {
                self.buf[self.pos] = b;
                self.pos += 1;
                if self.pos == self.buf.len() {
                    self.block_done();
                }
            }
        }
    }

    /// The PIO buffer has been fully read or written.
    fn block_done(&mut self) {
        self.status &= !ST_DRQ;
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::BufferIn => self.end_transfer(),
            Phase::AtaRead { lba, remaining, per_block, addr } => {
                if remaining > 0 {
                    self.ata_read_block(lba, remaining, per_block, addr);
                } else {
                    self.end_transfer();
                }
            }
            Phase::AtaWrite { lba, remaining, per_block, addr } => {
                self.ata_write_block(lba, remaining, per_block, addr)
            }
            Phase::PacketCdb => self.atapi_packet_received(),
            Phase::PacketIn { src, remaining } => self.atapi_next_block(src, remaining),
            other => self.phase = other,
        }
    }

    /// Device side of a DMA transfer: fills (`to_memory`) or consumes `buf` at byte `off`.
    fn dma_io(&mut self, op: &DmaOp, off: u64, buf: &mut [u8]) -> bool {
        let image = match &mut self.media {
            Media::Absent => return false,
            Media::Disk(d) => &mut d.image,
            Media::Cdrom(c) => &mut c.image,
        };
        match &op.src {
            DmaSrc::Disk(base) => {
                let Some(at) = base.checked_add(off) else { return false };
                let r = if op.to_memory { image.read_at(at, buf) } else { image.write_at(at, buf) };
                match r {
                    Ok(()) if op.to_memory => self.stats.read_bytes(buf.len() as u64),
                    Ok(()) => self.stats.write_bytes(buf.len() as u64),
                    Err(e) => {
                        crate::warn_limited!("ide: DMA at byte {at:#x}: {e}");
                        self.stats.error();
                        return false;
                    }
                }
                true
            }
            DmaSrc::Buf(data) => {
                let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
                let n = buf.len().min(data.len() - start);
                buf[..n].copy_from_slice(&data[start..start + n]);
                true
            }
        }
    }

    fn dma_finish(&mut self, result: DmaResult) {
        match self.media {
            Media::Absent => {}
            Media::Disk(_) => self.ata_dma_finish(result),
            Media::Cdrom(_) => self.atapi_dma_finish(result),
        }
    }
}

/// Which register block of a channel an access is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// The 8 command-block ports (0x1F0-0x1F7 / 0x170-0x177).
    Command,
    /// The control-block port (0x3F6 / 0x376): alternate status and device control.
    Control,
}

/// One IDE channel.
pub struct Channel {
    pub(super) drives: [Drive; 2],
    selected: usize,
    control: u8,
    intrq: bool,
    line: bool,
    irq: Arc<dyn IrqLine>,
    pub(super) bm: BmDma,
    mem: GuestMemoryMmap,
    pub(super) bus_master: bool,
}

impl Channel {
    pub(super) fn new(index: usize, mem: GuestMemoryMmap, irq: Arc<dyn IrqLine>) -> Self {
        let serial = |u: usize| format!("VMM{:05}", index * 2 + u + 1);
        Channel {
            drives: [Drive::new(0, serial(0)), Drive::new(1, serial(1))],
            selected: 0,
            control: 0,
            intrq: false,
            line: false,
            irq,
            bm: BmDma::default(),
            mem,
            bus_master: false,
        }
    }

    fn empty(&self) -> bool {
        !self.drives[0].present() && !self.drives[1].present()
    }

    /// Drives the interrupt line from INTRQ and nIEN.
    fn update_line(&mut self) {
        let level = self.intrq && self.control & CTL_NIEN == 0;
        if level != self.line {
            self.line = level;
            self.irq.set_level(level);
        }
    }

    fn set_intrq(&mut self, on: bool) {
        self.intrq = on;
        self.update_line();
    }

    /// Collects interrupt requests the drives made during an access.
    fn collect_irqs(&mut self) {
        let mut raise = false;
        for d in self.drives.iter_mut() {
            raise |= std::mem::take(&mut d.irq);
        }
        if raise {
            // The bus-master interrupt bit follows the drive's INTRQ even when nIEN masks it.
            self.bm.status |= STATUS_INTR;
            self.set_intrq(true);
        }
    }

    fn read_reg(&mut self, reg: u64) -> u8 {
        if self.empty() {
            return 0;
        }
        let hob = self.control & CTL_HOB != 0;
        let d = &self.drives[self.selected];
        let tf = &d.tf;
        match reg {
            1 => d.error,
            2 => {
                if hob {
                    tf.hob_nsector
                } else {
                    tf.nsector
                }
            }
            3 => {
                if hob {
                    tf.hob_lba_low
                } else {
                    tf.lba_low
                }
            }
            4 => {
                if hob {
                    tf.hob_lba_mid
                } else {
                    tf.lba_mid
                }
            }
            5 => {
                if hob {
                    tf.hob_lba_high
                } else {
                    tf.lba_high
                }
            }
            6 => tf.device,
            7 => {
                let status = if d.present() { d.status } else { 0 };
                self.set_intrq(false);
                status
            }
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, reg: u64, v: u8) {
        self.control &= !CTL_HOB;
        match reg {
            1..=5 => self.drives.iter_mut().for_each(|d| d.tf.write(reg, v)),
            6 => {
                self.drives.iter_mut().for_each(|d| d.tf.device = v);
                self.selected = usize::from(v & 0x10 != 0);
            }
            7 => self.command(v),
            _ => {}
        }
    }

    fn command(&mut self, cmd: u8) {
        if !self.drives[self.selected].present() {
            log::debug!("ide: command {cmd:#04x} to absent device {}", self.selected);
            return;
        }
        self.set_intrq(false);
        if cmd == 0x90 {
            // EXECUTE DEVICE DIAGNOSTIC reaches both devices; the selected one answers.
            let other = &mut self.drives[1 - self.selected];
            if other.present() {
                other.diagnostic();
                other.irq = false;
            }
        }
        self.drives[self.selected].execute(cmd);
        self.collect_irqs();
        self.try_dma();
    }

    fn write_control(&mut self, v: u8) {
        let was_reset = self.control & CTL_SRST != 0;
        self.control = v & (CTL_NIEN | CTL_SRST | CTL_HOB);
        if v & CTL_SRST != 0 && !was_reset {
            for d in self.drives.iter_mut().filter(|d| d.present()) {
                d.end_transfer();
                d.dma = None;
                d.status = ST_BSY;
            }
            self.bm.status &= !STATUS_ACTIVE;
            self.intrq = false;
        } else if v & CTL_SRST == 0 && was_reset {
            self.drives.iter_mut().for_each(Drive::reset);
            self.selected = 0;
        }
        self.update_line();
    }

    /// A guest read of the command (`0..8`) or control (`0`) block.
    pub fn read(&mut self, kind: PortKind, offset: u64, data: &mut [u8]) {
        match (kind, offset) {
            (PortKind::Command, 0) => {
                let d = &mut self.drives[self.selected];
                if d.present() {
                    d.read_data(data);
                } else {
                    data.fill(0);
                }
                self.collect_irqs();
            }
            (PortKind::Command, _) => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = offset.checked_add(i as u64).map_or(0xff, |r| self.read_reg(r));
                }
            }
            (PortKind::Control, 0) => {
                let d = &self.drives[self.selected];
                let v = if d.present() { d.status } else { 0 };
                data.fill(v);
            }
            (PortKind::Control, _) => data.fill(0xff),
        }
    }

    /// A guest write to the command or control block.
    pub fn write(&mut self, kind: PortKind, offset: u64, data: &[u8]) {
        match (kind, offset) {
            (PortKind::Command, 0) => {
                let d = &mut self.drives[self.selected];
                if d.present() {
                    d.write_data(data);
                }
                self.collect_irqs();
                self.try_dma();
            }
            (PortKind::Command, _) => {
                for (i, &v) in data.iter().enumerate() {
                    if let Some(r) = offset.checked_add(i as u64) {
                        self.write_reg(r, v);
                    }
                }
            }
            (PortKind::Control, 0) => {
                if let Some(&v) = data.first() {
                    self.write_control(v);
                }
            }
            (PortKind::Control, _) => {}
        }
    }

    /// A guest write to this channel's bus-master registers.
    pub fn bm_write(&mut self, offset: u64, data: &[u8]) {
        if self.bm.write(offset, data) {
            self.try_dma();
        }
    }

    /// Enables or disables bus mastering (PCI command bit 2).
    pub fn set_bus_master(&mut self, on: bool) {
        self.bus_master = on;
        self.try_dma();
    }

    /// Runs a pending DMA transfer if the engine is started and bus mastering is enabled.
    pub fn try_dma(&mut self) {
        if !self.bm.started() || !self.bus_master {
            return;
        }
        let sel = self.selected;
        let unit = if self.drives[sel].dma.is_some() { sel } else { 1 - sel };
        let drive = &mut self.drives[unit];
        let Some(op) = drive.dma.take() else { return };
        let to_memory_bm = self.bm.command & bmdma::CMD_TO_MEMORY != 0;
        if to_memory_bm != op.to_memory {
            log::debug!("ide: bus-master direction bit disagrees with the command");
        }
        let end = bmdma::transfer(&self.mem, self.bm.prd, op.len, op.to_memory, |off, buf| {
            drive.dma_io(&op, off, buf)
        });
        let result = match end {
            DmaEnd::Done { exhausted } => {
                if exhausted {
                    self.bm.status &= !STATUS_ACTIVE;
                }
                DmaResult::Ok
            }
            DmaEnd::Short(_) => {
                self.bm.status &= !STATUS_ACTIVE;
                DmaResult::Short
            }
            DmaEnd::MemoryError => {
                self.bm.status = (self.bm.status & !STATUS_ACTIVE) | STATUS_ERROR;
                DmaResult::HostError
            }
            DmaEnd::DeviceError => {
                self.bm.status &= !STATUS_ACTIVE;
                DmaResult::MediaError
            }
        };
        drive.dma_finish(result);
        self.collect_irqs();
    }

    /// Attaches media at `unit`, resetting that position.
    pub(super) fn attach(&mut self, unit: usize, media: Media) {
        let d = &mut self.drives[unit];
        d.media = media;
        d.reset();
    }

    /// Power-on reset of the channel (drives keep their media).
    pub fn reset(&mut self) {
        self.drives.iter_mut().for_each(Drive::reset);
        self.selected = 0;
        self.control = 0;
        self.bm.reset();
        self.set_intrq(false);
    }
}
