// SPDX-License-Identifier: Apache-2.0
//! QEMU-compatible standard VGA ("stdvga", PCI 1234:1111) with the Bochs VBE extensions, the
//! card SeaVGABIOS (`vgabios-stdvga.bin`) drives.
//!
//! One [`StdVga`] holds all state; it is a [`crate::pci::PciDevice`] itself and is shared as
//! `Arc<Mutex<StdVga>>` between the PCI bus and three [`BusDevice`] adapters:
//! - [`VgaIoPorts`] at [`VGA_PORTS_BASE`] (0x3B0-0x3DF),
//! - [`VbeIoPorts`] at [`VBE_PORTS_BASE`] (0x1CE index, 0x1CF data),
//! - [`VgaLegacyWindow`] at [`LEGACY_WINDOW_BASE`] (0xA0000-0xBFFFF MMIO).
//!
//! The 16 MiB of VRAM are a host mapping ([`StdVga::vram_region`]) the machine maps into the
//! guest as RAM at BAR0 (the linear framebuffer); the legacy window, BAR accesses and the
//! renderer all use that same memory. Nothing runs in the background: the screen is
//! rendered when [`StdVga::render`], [`StdVga::screenshot_png`] or [`StdVga::text_dump`] is
//! called.
//!
//! Not implemented: rendering of the CGA-compatible graphics modes 4-6 (they render black),
//! horizontal pel panning, the split screen (line compare), CRTC word/doubleword addressing
//! beyond QEMU's fixed model, text blinking (blinking cells are drawn visible), a big-endian
//! framebuffer (QEMU extended register), the x86 VBE data port alias at 0x1D0, and dirty
//! tracking (every render reads the whole screen).

mod memory;
mod pci;
mod regs;
mod render;
mod text;
pub mod vbe;

use std::sync::{Arc, Mutex};

use vm_memory::MmapRegion;

use crate::bus::{lock, BusDevice};
use crate::pci::PciConfigSpace;

pub use memory::LEGACY_WINDOW_SIZE;
pub use pci::{BAR2_SIZE, DEVICE_ID, SUBSYSTEM_ID, SUBSYSTEM_VENDOR_ID, VENDOR_ID};
pub use render::{Frame, RenderError, MAX_PIXELS};
pub use text::cp437_to_char;

/// Size of video memory (and of BAR0).
pub const VRAM_SIZE: usize = 16 << 20;
/// First VGA I/O port.
pub const VGA_PORTS_BASE: u16 = 0x3b0;
/// Number of VGA I/O ports (0x3B0-0x3DF).
pub const VGA_PORTS_LEN: u16 = 0x30;
/// The VBE index port; the data port follows it.
pub const VBE_PORTS_BASE: u16 = 0x1ce;
/// Number of VBE I/O ports.
pub const VBE_PORTS_LEN: u16 = 2;
/// Guest physical address of the legacy window.
pub const LEGACY_WINDOW_BASE: u64 = 0xa_0000;

/// Errors creating the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Video memory could not be mapped.
    #[error("cannot allocate video memory: {0}")]
    Vram(#[source] vm_memory::mmap::MmapRegionError),
}

/// The standard VGA card.
pub struct StdVga {
    regs: regs::VgaRegs,
    vbe: vbe::Vbe,
    vram: memory::Vram,
    config: PciConfigSpace,
}

impl StdVga {
    /// A card in its power-on state with [`VRAM_SIZE`] bytes of zeroed video memory.
    pub fn new() -> Result<Self, Error> {
        let vram = memory::Vram::new(VRAM_SIZE).map_err(Error::Vram)?;
        Ok(StdVga {
            regs: regs::VgaRegs::new(),
            vbe: vbe::Vbe::new(VRAM_SIZE as u32),
            vram,
            config: pci::config_space(),
        })
    }

    /// The video memory mapping. The machine maps it as guest RAM at BAR0's address while
    /// BAR0 decodes ([`crate::pci::PciDevice::bar_ranges`]); the device keeps reading and writing it
    /// through the legacy window and the renderer, so the mapping must stay shared (not
    /// copied) and must not be unmapped from the host while the device exists.
    pub fn vram_region(&self) -> Arc<MmapRegion> {
        self.vram.region()
    }

    /// Size of video memory in bytes.
    pub fn vram_size(&self) -> usize {
        self.vram.len()
    }

    /// A guest read of I/O `port` (VGA 0x3B0-0x3DF or VBE 0x1CE/0x1CF), `data.len()` bytes.
    /// Multi-byte VGA accesses are split into byte accesses at consecutive ports.
    pub fn io_read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            VBE_PORTS_BASE => put_le(data, u32::from(self.vbe.index)),
            0x1cf => put_le(data, u32::from(self.vbe.read_data())),
            _ => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = match port.checked_add(i as u16) {
                        Some(p @ 0x3b0..=0x3df) => self.regs.read_port(p),
                        _ => 0xff,
                    };
                }
            }
        }
    }

    /// A guest write of `data` to I/O `port` (VGA 0x3B0-0x3DF or VBE 0x1CE/0x1CF).
    pub fn io_write(&mut self, port: u16, data: &[u8]) {
        match port {
            VBE_PORTS_BASE => self.vbe.index = get_le(data) as u16,
            0x1cf => self.vbe.write_data(get_le(data) as u16, &mut self.regs, &self.vram),
            _ => {
                for (i, &b) in data.iter().enumerate() {
                    match port.checked_add(i as u16) {
                        Some(p @ 0x3b0..=0x3df) => self.regs.write_port(p, b),
                        _ => crate::warn_limited!("vga: write to port {port:#x}+{i} outside the device"),
                    }
                }
            }
        }
    }

    /// A guest read at `offset` (from 0xA0000) in the legacy window; bytes in address order.
    pub fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let off = offset.saturating_add(i as u64);
            *b = if off < LEGACY_WINDOW_SIZE {
                memory::window_read(&mut self.regs, &self.vram, self.vbe.bank_offset, off)
            } else {
                0xff
            };
        }
    }

    /// A guest write at `offset` (from 0xA0000) in the legacy window.
    pub fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let off = offset.saturating_add(i as u64);
            if off < LEGACY_WINDOW_SIZE {
                memory::window_write(&mut self.regs, &self.vram, self.vbe.bank_offset, off, b);
            }
        }
    }

    /// Whether the card shows an alphanumeric (text) mode: VBE off and GR6 bit 0 clear.
    pub fn in_text_mode(&self) -> bool {
        !self.vbe.enabled() && !self.regs.graphics_mode()
    }

    /// In a text mode, the screen as text: one line per character row (columns and rows as
    /// the CRTC programs them, starting at the CRTC start address), code page 437 mapped to
    /// Unicode, trailing spaces removed, each line ended by `\n`. None in graphics modes.
    pub fn text_dump(&self) -> Option<String> {
        self.in_text_mode().then(|| text::dump(&self.regs, &self.vram))
    }

    /// Renders the current mode: VBE 4/8/15/16/24/32 bpp, VGA text, VGA 16-colour planar and
    /// 256-colour modes (CGA graphics modes 4-6 come out black). A blanked screen
    /// (attribute controller palette access, or sequencer screen-off) renders black.
    pub fn render(&self) -> Frame {
        render::render(&self.regs, &self.vbe, &self.vram)
    }

    /// The current screen as a PNG file.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, RenderError> {
        self.render().to_png()
    }

    /// The VBE mode shown, as (width, height, bits per pixel), or None when VBE is off.
    pub fn vbe_mode(&self) -> Option<(u32, u32, u16)> {
        self.vbe.enabled().then(|| self.vbe.mode())
    }
}

/// `v` little-endian into `data` (zero past four bytes).
fn put_le(data: &mut [u8], v: u32) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = v.checked_shr(8 * i as u32).unwrap_or(0) as u8;
    }
}

/// Up to four little-endian bytes of `data`.
fn get_le(data: &[u8]) -> u32 {
    data.iter().take(4).enumerate().fold(0, |v, (i, &b)| v | (u32::from(b) << (8 * i)))
}

/// The VGA I/O ports as a bus device; map at [`VGA_PORTS_BASE`] for [`VGA_PORTS_LEN`].
pub struct VgaIoPorts(pub Arc<Mutex<StdVga>>);

impl BusDevice for VgaIoPorts {
    fn debug_label(&self) -> &str {
        "vga-ports"
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match u16::try_from(offset).ok().filter(|o| *o < VGA_PORTS_LEN) {
            Some(o) => lock(&self.0).io_read(VGA_PORTS_BASE + o, data),
            None => data.fill(0xff),
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(o) = u16::try_from(offset).ok().filter(|o| *o < VGA_PORTS_LEN) {
            lock(&self.0).io_write(VGA_PORTS_BASE + o, data);
        }
    }
    /// A view of another device, which resets on its own.
    fn reset(&mut self) {}
}

/// The VBE index/data ports as a bus device; map at [`VBE_PORTS_BASE`] for
/// [`VBE_PORTS_LEN`].
pub struct VbeIoPorts(pub Arc<Mutex<StdVga>>);

impl BusDevice for VbeIoPorts {
    fn debug_label(&self) -> &str {
        "vbe-ports"
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 | 1 => lock(&self.0).io_read(VBE_PORTS_BASE + offset as u16, data),
            _ => data.fill(0xff),
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < 2 {
            lock(&self.0).io_write(VBE_PORTS_BASE + offset as u16, data);
        }
    }
    /// A view of another device, which resets on its own.
    fn reset(&mut self) {}
}

/// The 0xA0000-0xBFFFF window as an MMIO bus device; map at [`LEGACY_WINDOW_BASE`] for
/// [`LEGACY_WINDOW_SIZE`].
pub struct VgaLegacyWindow(pub Arc<Mutex<StdVga>>);

impl BusDevice for VgaLegacyWindow {
    fn debug_label(&self) -> &str {
        "vga-window"
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.0).legacy_read(offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.0).legacy_write(offset, data);
    }
    /// A view of another device, which resets on its own.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests;
