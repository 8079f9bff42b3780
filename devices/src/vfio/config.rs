// SPDX-License-Identifier: Apache-2.0
//! The configuration space an assigned function shows the guest: a mix of the device's own
//! registers (read and written through VFIO's configuration region, which the host kernel
//! filters again) and registers the VMM emulates.
//!
//! Emulated: the BARs (sized from the VFIO regions, placed wherever the guest programs them;
//! the host's own addresses never reach the guest), the expansion ROM BAR, the interrupt line
//! and pin (INTA# when the device has INTx), the header type (always a single-function type 0
//! header), the command register as the guest wrote it (also written to the device: bus master
//! and memory enables must reach it), and the MSI and MSI-X capabilities (their message control,
//! address and data live here; the device's interrupts go through the VMM's vectors). Every
//! other byte, the rest of the capability list included, is the device's.

use super::backend::{BackendError, IrqKind, VfioBackend, CONFIG_REGION, ROM_REGION};
use crate::pci::config_space::NUM_REGS;
use crate::pci::msix::MSIX_CAP_ID;
use crate::pci::{BarKind, PciBarRange, PciConfigSpace};

/// The MSI capability ID.
pub const MSI_CAP_ID: u8 = 0x05;
/// BARs of a type-0 header.
pub const NUM_BARS: usize = 6;
/// The `PciBarRange::index` of the expansion ROM.
pub const ROM_INDEX: usize = 6;
/// Configuration register of BAR 0.
const BAR0_REG: usize = 4;
/// Configuration register of the expansion ROM BAR.
const ROM_REG: usize = 12;
/// ROM BAR bit 0: address decode enable.
const ROM_ENABLE: u32 = 1;
/// ROM BAR address bits (2 KiB granularity).
const ROM_ADDRESS_MASK: u32 = 0xffff_f800;
/// Byte offset of the capabilities pointer.
const CAP_POINTER: usize = 0x34;
/// Guard against capability lists that loop.
const MAX_CAPS: usize = 48;
/// Command register bit 1: memory space decoding.
const COMMAND_MEMORY: u16 = 0x2;

/// Errors while reading a device's configuration space.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration region could not be read.
    #[error("cannot read the device's configuration space")]
    Read(#[source] BackendError),
    /// Vendor ID 0xffff: nothing answers.
    #[error("the device does not answer configuration reads (vendor ID 0xffff)")]
    NoDevice,
    /// A bridge or another header type.
    #[error("header type {0:#x} is not a PCI endpoint (type 0); bridges cannot be assigned")]
    HeaderType(u8),
    /// An MSI-X table or PBA outside its BAR.
    #[error("malformed MSI-X capability at {offset:#x}: {why}")]
    Msix {
        /// Offset of the capability.
        offset: usize,
        /// What is wrong.
        why: String,
    },
}

/// One BAR as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarSetup {
    /// What it decodes.
    pub kind: BarKind,
    /// Size the guest sizes (the region's size rounded up to a power of two).
    pub size: u64,
    /// Size of the VFIO region behind it.
    pub region_size: u64,
}

/// Where the MSI capability is and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiCapInfo {
    /// Byte offset of the capability.
    pub offset: usize,
    /// 64-bit message address.
    pub is64: bool,
    /// Per-vector masking.
    pub masking: bool,
    /// Vectors the device can request (1, 2, 4 .. 32).
    pub max_vectors: u32,
}

impl MsiCapInfo {
    /// Bytes the capability spans.
    pub fn span(&self) -> usize {
        match (self.is64, self.masking) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }
    /// Offset of the message data register.
    pub fn data_offset(&self) -> usize {
        self.offset + if self.is64 { 0x0c } else { 0x08 }
    }
}

/// Where the MSI-X capability, table and PBA are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCapInfo {
    /// Byte offset of the capability.
    pub offset: usize,
    /// Number of table entries.
    pub vectors: u16,
    /// BAR holding the table.
    pub table_bar: usize,
    /// Offset of the table in its BAR.
    pub table_offset: u64,
    /// BAR holding the PBA.
    pub pba_bar: usize,
    /// Offset of the PBA in its BAR.
    pub pba_offset: u64,
}

impl MsixCapInfo {
    /// Size of the table in bytes.
    pub fn table_size(&self) -> u64 {
        u64::from(self.vectors) * 16
    }
    /// Size of the PBA in bytes.
    pub fn pba_size(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

/// What a guest configuration write touched, for the device to act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteEffect {
    /// The MSI capability.
    pub msi: bool,
    /// The MSI-X message control register.
    pub msix: bool,
}

/// The virtualized configuration space of one assigned function.
#[derive(Debug, Clone)]
pub struct VirtualConfig {
    /// The emulated registers.
    shadow: PciConfigSpace,
    /// Per register, the bytes read from `shadow` (0xff per byte); the others are the device's.
    emulated: [u32; NUM_REGS],
    /// Per register, the bytes guest writes also reach the device with.
    to_device: [u32; NUM_REGS],
    bars: [Option<BarSetup>; NUM_BARS],
    rom_size: u64,
    msi: Option<MsiCapInfo>,
    msix: Option<MsixCapInfo>,
    caps: Vec<(u8, usize)>,
}

fn le32(bytes: &[u8], offset: usize) -> u32 {
    bytes.get(offset..offset + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl VirtualConfig {
    /// Reads the device's configuration space and region sizes and sets up the emulation.
    pub fn new(dev: &dyn VfioBackend) -> Result<Self, ConfigError> {
        let mut raw = [0u8; NUM_REGS * 4];
        dev.read(CONFIG_REGION, 0, &mut raw).map_err(ConfigError::Read)?;
        let id = le32(&raw, 0);
        if id & 0xffff == 0xffff {
            return Err(ConfigError::NoDevice);
        }
        let header = raw[0x0e];
        if header & 0x7f != 0 {
            return Err(ConfigError::HeaderType(header));
        }
        let class = [raw[0x0b], raw[0x0a], raw[0x09]];
        let mut shadow = PciConfigSpace::new(id as u16, (id >> 16) as u16, class, raw[0x08], 0);
        let mut emulated = [0u32; NUM_REGS];
        let mut to_device = [u32::MAX; NUM_REGS];
        // Command: the guest's value is kept and also goes to the device.
        emulated[1] = 0x0000_ffff;
        // Header type: single function.
        emulated[3] = 0x00ff_0000;
        to_device[3] &= !0x00ff_0000;
        // BARs, CardBus CIS pointer, expansion ROM.
        for reg in (BAR0_REG..=10).chain([ROM_REG]) {
            emulated[reg] = u32::MAX;
            to_device[reg] = 0;
        }
        // Interrupt line and pin.
        emulated[15] = 0x0000_ffff;
        to_device[15] = 0xffff_0000;

        let mut bars = [None; NUM_BARS];
        let mut index = 0;
        while index < NUM_BARS {
            let setup = Self::bar_setup(dev, index, le32(&raw, (BAR0_REG + index) * 4));
            let mut step = 1;
            if let Some((bar, prefetchable)) = setup {
                if shadow.add_bar(index, bar.size, bar.kind, prefetchable) {
                    bars[index] = Some(bar);
                    if bar.kind == BarKind::Mem64 {
                        step = 2;
                    }
                } else {
                    crate::warn_limited!(
                        "vfio: BAR {index} ({:#x} bytes, {:?}) cannot be emulated",
                        bar.size,
                        bar.kind
                    );
                }
            }
            index += step;
        }
        let rom_size = match dev.region(ROM_REGION) {
            Some(r) if r.size > 0 && r.readable => r.size.checked_next_power_of_two().unwrap_or(0).max(2048),
            _ => 0,
        };
        if rom_size > 0 && rom_size <= 1 << 31 {
            shadow.set_reg(ROM_REG, 0, (!(rom_size - 1) as u32 & ROM_ADDRESS_MASK) | ROM_ENABLE);
        }
        if dev.irq_count(IrqKind::Intx) > 0 && raw[0x3d] != 0 {
            shadow.set_interrupt_pin(1);
        }
        let mut cfg = VirtualConfig {
            shadow,
            emulated,
            to_device,
            bars,
            rom_size: if rom_size <= 1 << 31 { rom_size } else { 0 },
            msi: None,
            msix: None,
            caps: Vec::new(),
        };
        cfg.walk_capabilities(&raw)?;
        Ok(cfg)
    }

    /// The BAR `index` reads as `hw` on the device: its kind, sizes and prefetchability.
    fn bar_setup(dev: &dyn VfioBackend, index: usize, hw: u32) -> Option<(BarSetup, bool)> {
        let region = dev.region(index).filter(|r| r.size > 0)?;
        let kind = if hw & 1 == 1 {
            BarKind::Io
        } else if hw & 0x6 == 0x4 {
            BarKind::Mem64
        } else {
            BarKind::Mem32
        };
        let min = if kind == BarKind::Io { 4 } else { 16 };
        let size = region.size.checked_next_power_of_two()?.max(min);
        if kind != BarKind::Mem64 && size > 1 << 31 {
            return None;
        }
        Some((BarSetup { kind, size, region_size: region.size }, hw & 0x8 != 0 && kind != BarKind::Io))
    }

    /// Follows the device's capability list, emulating MSI and MSI-X.
    fn walk_capabilities(&mut self, raw: &[u8]) -> Result<(), ConfigError> {
        if raw[0x06] & 0x10 == 0 {
            return Ok(());
        }
        let mut ptr = usize::from(raw[CAP_POINTER] & 0xfc);
        while (0x40..0x100).contains(&ptr) && self.caps.len() < MAX_CAPS {
            let id = raw[ptr];
            self.caps.push((id, ptr));
            match id {
                MSI_CAP_ID if self.msi.is_none() => self.emulate_msi(raw, ptr),
                MSIX_CAP_ID if self.msix.is_none() => self.emulate_msix(raw, ptr)?,
                _ => {}
            }
            ptr = usize::from(raw[ptr + 1] & 0xfc);
        }
        Ok(())
    }

    /// Marks `len` bytes from the dword-aligned `offset` as emulated (rounded up to dwords).
    fn emulate_bytes(&mut self, offset: usize, len: usize) {
        let end = (offset + len).min(NUM_REGS * 4);
        for reg in offset / 4..end.div_ceil(4) {
            self.emulated[reg] = u32::MAX;
            self.to_device[reg] = 0;
        }
    }

    fn emulate_msi(&mut self, raw: &[u8], offset: usize) {
        let control = u16::from_le_bytes([raw[offset + 2], raw[offset + 3]]);
        let info = MsiCapInfo {
            offset,
            is64: control & 0x80 != 0,
            masking: control & 0x100 != 0,
            max_vectors: 1 << ((control >> 1) & 0x7).min(5),
        };
        if offset + info.span() > NUM_REGS * 4 {
            crate::warn_limited!(
                "vfio: MSI capability at {offset:#x} runs past the configuration space; left alone"
            );
            return;
        }
        self.emulate_bytes(offset, info.span());
        let reg = offset / 4;
        // ID and next pointer as the device has them; enable and multiple message enable clear.
        let head =
            u32::from(raw[offset]) | (u32::from(raw[offset + 1]) << 8) | (u32::from(control & !0x71) << 16);
        self.shadow.set_reg(reg, head, 0x0071_0000);
        self.shadow.set_reg(reg + 1, 0, 0xffff_fffc);
        let mut next = reg + 2;
        if info.is64 {
            self.shadow.set_reg(next, 0, u32::MAX);
            next += 1;
        }
        self.shadow.set_reg(next, 0, 0x0000_ffff);
        if info.masking {
            self.shadow.set_reg(next + 1, 0, u32::MAX);
            self.shadow.set_reg(next + 2, 0, 0);
        }
        self.msi = Some(info);
    }

    fn emulate_msix(&mut self, raw: &[u8], offset: usize) -> Result<(), ConfigError> {
        let bad = |why: String| ConfigError::Msix { offset, why };
        if offset + 12 > NUM_REGS * 4 {
            return Err(bad("runs past the configuration space".into()));
        }
        let control = u16::from_le_bytes([raw[offset + 2], raw[offset + 3]]);
        let table = le32(raw, offset + 4);
        let pba = le32(raw, offset + 8);
        let info = MsixCapInfo {
            offset,
            vectors: (control & 0x7ff) + 1,
            table_bar: (table & 0x7) as usize,
            table_offset: u64::from(table & !0x7),
            pba_bar: (pba & 0x7) as usize,
            pba_offset: u64::from(pba & !0x7),
        };
        for (what, bar, start, len) in [
            ("table", info.table_bar, info.table_offset, info.table_size()),
            ("PBA", info.pba_bar, info.pba_offset, info.pba_size()),
        ] {
            let size = self.bars.get(bar).copied().flatten().map(|b| b.region_size);
            match size {
                Some(size) if start.checked_add(len).is_some_and(|end| end <= size) => {}
                Some(size) => {
                    return Err(bad(format!(
                        "{what} at {start:#x} (+{len:#x}) is beyond BAR {bar} ({size:#x})"
                    )))
                }
                None => return Err(bad(format!("{what} is in BAR {bar}, which the device lacks"))),
            }
        }
        self.emulate_bytes(offset, 12);
        let reg = offset / 4;
        let head =
            u32::from(raw[offset]) | (u32::from(raw[offset + 1]) << 8) | (u32::from(control & 0x7ff) << 16);
        self.shadow.set_reg(reg, head, 0xc000_0000);
        self.shadow.set_reg(reg + 1, table, 0);
        self.shadow.set_reg(reg + 2, pba, 0);
        self.msix = Some(info);
        Ok(())
    }

    /// Reads register `reg` as the guest sees it.
    pub fn read(&self, dev: &dyn VfioBackend, reg: usize) -> u32 {
        if reg >= NUM_REGS {
            return 0;
        }
        let mask = self.emulated[reg];
        let hw = if mask == u32::MAX {
            0
        } else {
            let mut b = [0u8; 4];
            match dev.read(CONFIG_REGION, reg as u64 * 4, &mut b) {
                Ok(()) => u32::from_le_bytes(b),
                Err(e) => {
                    crate::warn_limited!("vfio: configuration read at {:#x}: {e}", reg * 4);
                    u32::MAX
                }
            }
        };
        (hw & !mask) | (self.shadow.read(reg) & mask)
    }

    /// A guest write of `data` at byte `offset` of register `reg`: emulated bytes go to the
    /// shadow registers, the others (and the command register) to the device.
    pub fn write(&mut self, dev: &dyn VfioBackend, reg: usize, offset: usize, data: &[u8]) -> WriteEffect {
        if reg >= NUM_REGS || data.is_empty() || offset.checked_add(data.len()).is_none_or(|end| end > 4) {
            crate::warn_limited!("vfio: bad configuration write of {} bytes at {reg}:{offset}", data.len());
            return WriteEffect::default();
        }
        let byte_in = |mask: u32, i: usize| mask & (0xff << (8 * (offset + i))) != 0;
        for (i, b) in data.iter().enumerate() {
            if byte_in(self.emulated[reg], i) {
                self.shadow.write(reg, offset + i, &[*b]);
            }
        }
        // Runs of consecutive bytes that reach the device, each written at once.
        let mut i = 0;
        while i < data.len() {
            if !byte_in(self.to_device[reg], i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < data.len() && byte_in(self.to_device[reg], i) {
                i += 1;
            }
            let at = (reg * 4 + offset + start) as u64;
            if let Err(e) = dev.write(CONFIG_REGION, at, &data[start..i]) {
                crate::warn_limited!("vfio: configuration write at {at:#x}: {e}");
            }
        }
        let (first, last) = (reg * 4 + offset, reg * 4 + offset + data.len());
        let touches = |start: usize, len: usize| first < start + len && start < last;
        WriteEffect {
            msi: self.msi.is_some_and(|m| touches(m.offset, m.span())),
            msix: self.msix.is_some_and(|m| touches(m.offset + 2, 2)),
        }
    }

    /// Reads `len` (1..=4) emulated bytes at `offset` (for the MSI and MSI-X state).
    pub fn shadow_bytes(&self, offset: usize, len: usize) -> u32 {
        self.shadow.read_bytes(offset, len)
    }

    /// The guest's command register.
    pub fn command(&self) -> u16 {
        self.shadow.command()
    }

    /// The BAR ranges and the expansion ROM (index [`ROM_INDEX`]) the guest has enabled now.
    pub fn bar_ranges(&self) -> Vec<PciBarRange> {
        let mut ranges = self.shadow.bar_ranges();
        let rom = self.shadow.read(ROM_REG);
        let address = u64::from(rom & ROM_ADDRESS_MASK);
        let sizing =
            self.rom_size > 0 && address == u64::from(!(self.rom_size - 1) as u32 & ROM_ADDRESS_MASK);
        if self.rom_size > 0
            && rom & ROM_ENABLE != 0
            && self.command() & COMMAND_MEMORY != 0
            && address != 0
            && !sizing
        {
            ranges.push(PciBarRange { index: ROM_INDEX, kind: BarKind::Mem32, address, size: self.rom_size });
        }
        ranges
    }

    /// BAR `index` as the guest sees it, if the device has it.
    pub fn bar(&self, index: usize) -> Option<BarSetup> {
        self.bars.get(index).copied().flatten()
    }

    /// Size of the expansion ROM BAR (0: none).
    pub fn rom_size(&self) -> u64 {
        self.rom_size
    }

    /// The MSI capability, if the device has one.
    pub fn msi(&self) -> Option<MsiCapInfo> {
        self.msi
    }

    /// The MSI-X capability, if the device has one.
    pub fn msix(&self) -> Option<MsixCapInfo> {
        self.msix
    }

    /// The device's capabilities (ID, offset) in list order.
    pub fn capabilities(&self) -> &[(u8, usize)] {
        &self.caps
    }

    /// Back to the power-on values: BARs unassigned, decoding off, MSI and MSI-X disabled.
    pub fn reset(&mut self) {
        self.shadow.reset();
    }
}
