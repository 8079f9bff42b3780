// SPDX-License-Identifier: Apache-2.0
//! An Intel 82540EM Gigabit Ethernet controller (PCI 8086:100e), the "e1000" every x86 guest
//! has a driver for (Linux `e1000`, iPXE `intel`, Windows' in-box PRO/1000 MT driver).
//! Behaviour follows the PCI/PCI-X Family of Gigabit Ethernet Controllers Software
//! Developer's Manual (8254x SDM); QEMU's `hw/net/e1000.c` served as a behavioural cross-check.
//!
//! PCI function: class 02 00 00, revision 3, subsystem 8086:001e (the PRO/1000 MT Desktop
//! adapter; QEMU reports its generic 1af4:1100 instead), interrupt pin INTA#, no
//! capabilities. BAR 0 is the 128 KiB register space; BAR 1 is a 64-byte I/O window where
//! IOADDR (+0) selects a register and IODATA (+4) accesses it (Linux issues CTRL.RST there).
//!
//! What is modelled:
//! - the EEPROM ([`eeprom`]), the M88E1011 PHY ([`phy`]) with the link always up at 1000/full;
//! - transmit ([`tx`]): legacy descriptors, context + data descriptors with IP/TCP/UDP
//!   checksum offload and TCP segmentation (TSO), VLAN tag insertion;
//! - receive ([`rx`]): legacy descriptors, unicast/multicast/broadcast filtering (RAL/RAH,
//!   MTA, promiscuous modes), VLAN filtering and stripping, BSIZE/BSEX buffer sizes, long
//!   packets (LPE), CRC stripping (SECRC) or a real CRC appended, MAC and PHY loopback;
//! - interrupts: ICR (clear on read), ICS, IMS, IMC driving the level-triggered INTx line;
//! - statistics: the counters the Linux driver reads (clear on read, saturating).
//!
//! Not modelled: interrupt moderation (ITR, RDTR/RADV, TIDV/TADV are stored but every
//! interrupt is raised at once), flow control frames, wake-up/manageability filters, the
//! flash, EEPROM writes, and RX checksum offload (RX descriptors set IXSM, "checksum not
//! checked", so guests verify checksums themselves).
//!
//! Threading: the device sits in an `Arc<Mutex<E1000>>`; vCPUs call `bar_read`/`bar_write`
//! (transmission happens synchronously on a TDT write, bounded per doorbell), and a
//! [`crate::net::rx_events::NetRxEvents`] calls [`E1000::rx_ready`] when the backend is
//! readable. See that module for the contract.

pub mod eeprom;
pub mod phy;
pub mod regs;
mod rx;
#[cfg(test)]
mod tests;
mod tx;

use std::os::fd::RawFd;
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use self::eeprom::Eeprom;
use self::phy::{Phy, PhyEvent};
use self::regs::*;
use crate::irq::IrqLine;
use crate::net::rx_events::NetRxDevice;
use crate::net::{NetBackend, MAX_FRAME};
use crate::pci::{BarKind, PciBarRange, PciConfigSpace, PciDevice};
use crate::stats::NetStats;

/// PCI vendor ID (Intel).
pub const VENDOR_ID: u16 = 0x8086;
/// PCI device ID (82540EM).
pub const DEVICE_ID: u16 = 0x100e;
/// PCI subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x8086;
/// PCI subsystem ID (PRO/1000 MT Desktop Adapter).
pub const SUBSYSTEM_ID: u16 = 0x001e;
/// PCI revision.
pub const REVISION: u8 = 0x03;
/// BAR index of the register space.
pub const MMIO_BAR: usize = 0;
/// BAR index of the I/O window.
pub const IO_BAR: usize = 1;

const REG_WORDS: usize = (MMIO_SIZE / 4) as usize;
/// Command register bits a guest may set (matches the generic configuration space).
const PCI_COMMAND_WRITABLE: u32 = 0x0547;
const PCI_COMMAND_BUS_MASTER: u16 = 1 << 2;
const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;
const PCI_STATUS_INTERRUPT: u32 = 1 << 19;

/// The emulated controller.
pub struct E1000 {
    config: PciConfigSpace,
    regs: Vec<u32>,
    mac: [u8; 6],
    eeprom: Eeprom,
    phy: Phy,
    tx: tx::TxState,
    rx_held: Option<rx::HeldFrame>,
    rx_buf: Vec<u8>,
    io_addr: u32,
    mem: GuestMemoryMmap,
    irq: Arc<dyn IrqLine>,
    irq_level: bool,
    backend: Box<dyn NetBackend>,
    rx_notifier: Option<EventFd>,
    /// Frame counters for the host (the guest's statistics registers are cleared on read).
    stats: Arc<NetStats>,
}

impl E1000 {
    /// A controller with station address `mac`, doing DMA into `mem`, interrupting on
    /// `irq` (the INTA# line of its slot) and exchanging frames with `backend`.
    pub fn new(
        mac: [u8; 6],
        mem: GuestMemoryMmap,
        irq: Arc<dyn IrqLine>,
        backend: Box<dyn NetBackend>,
    ) -> Self {
        let mut config = PciConfigSpace::new(VENDOR_ID, DEVICE_ID, [0x02, 0x00, 0x00], REVISION, 0);
        config.set_reg(11, (u32::from(SUBSYSTEM_ID) << 16) | u32::from(SUBSYSTEM_VENDOR_ID), 0);
        config.add_bar(MMIO_BAR, MMIO_SIZE, BarKind::Mem32, false);
        config.add_bar(IO_BAR, IO_SIZE, BarKind::Io, false);
        config.set_interrupt_pin(1);
        let power_on = config.read(1);
        config.set_reg(1, power_on, PCI_COMMAND_WRITABLE);
        let mut dev = E1000 {
            config,
            regs: vec![0; REG_WORDS],
            mac,
            eeprom: Eeprom::new(mac, DEVICE_ID, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID),
            phy: Phy::new(),
            tx: tx::TxState::default(),
            rx_held: None,
            rx_buf: vec![0; MAX_FRAME],
            io_addr: 0,
            mem,
            irq,
            irq_level: false,
            backend,
            rx_notifier: None,
            stats: Arc::default(),
        };
        dev.reset();
        dev
    }

    /// The card's frame counters (shared: they keep counting after this call). Bytes are
    /// frames without the CRC.
    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// The station address the EEPROM holds.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Device reset (power-on or CTRL.RST): registers to defaults, the EEPROM's address in
    /// receive address 0, PHY reset, transmit and receive state dropped, interrupt low.
    pub fn reset(&mut self) {
        self.regs.fill(0);
        self.set_raw(CTRL, CTRL_FD | CTRL_SLU | CTRL_SPEED_1000);
        self.set_raw(STATUS, STATUS_FD | STATUS_LU | STATUS_SPEED_1000 | STATUS_ASDV_1000);
        self.set_raw(LEDCTL, 0x0706_8302);
        self.set_raw(PBA, 0x0010_0030);
        self.set_raw(VET, 0x8100);
        self.set_raw(RXCSUM, 0x0000_0300);
        let mac = self.eeprom.mac();
        self.set_raw(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        self.set_raw(RAH0, u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV);
        self.eeprom = Eeprom::new(self.mac, DEVICE_ID, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID);
        self.phy = Phy::new();
        self.tx = tx::TxState::default();
        self.rx_held = None;
        self.io_addr = 0;
        self.update_irq();
        self.kick_rx();
    }

    fn raw(&self, offset: u32) -> u32 {
        self.regs.get((offset / 4) as usize).copied().unwrap_or(0)
    }

    fn set_raw(&mut self, offset: u32, value: u32) {
        if let Some(r) = self.regs.get_mut((offset / 4) as usize) {
            *r = value;
        }
    }

    /// Reads the register at byte `offset` (dword-aligned) with its side effects.
    fn read_reg(&mut self, offset: u32) -> u32 {
        match offset {
            ICR => {
                let v = self.raw(ICR);
                self.set_raw(ICR, 0);
                self.update_irq();
                v
            }
            // Write-only on the datasheet; reads mirror ICR without clearing it, as real
            // parts do (and QEMU's model).
            ICS => self.raw(ICR),
            IMC => 0,
            EECD => self.eeprom.read_eecd(),
            STATS_START..STATS_END => {
                let v = self.raw(offset);
                self.set_raw(offset, 0);
                // Reading the high half of a 64-bit counter clears both halves.
                if matches!(offset, GORCH | GOTCH | TORH | TOTH) {
                    self.set_raw(offset - 4, 0);
                }
                v
            }
            _ => self.raw(offset),
        }
    }

    /// Writes the register at byte `offset` (dword-aligned) with its side effects.
    fn write_reg(&mut self, offset: u32, value: u32) {
        match offset {
            CTRL => {
                if value & CTRL_RST != 0 {
                    self.reset();
                    return;
                }
                if value & CTRL_PHY_RST != 0 && self.raw(CTRL) & CTRL_PHY_RST == 0 {
                    self.phy = Phy::new();
                }
                self.set_raw(CTRL, value);
            }
            STATUS => {}
            EECD => self.eeprom.write_eecd(value),
            EERD => {
                let v = self.eeprom.eerd(value);
                self.set_raw(EERD, v);
            }
            MDIC => self.write_mdic(value),
            ICR => {
                let v = self.raw(ICR) & !value;
                self.set_raw(ICR, v);
                self.update_irq();
            }
            ICS => self.set_ics(value),
            IMS => {
                let v = self.raw(IMS) | (value & ICR_VALID);
                self.set_raw(IMS, v);
                self.update_irq();
            }
            IMC => {
                let v = self.raw(IMS) & !value;
                self.set_raw(IMS, v);
                self.update_irq();
            }
            RCTL => {
                self.set_raw(RCTL, value);
                self.kick_rx();
            }
            TCTL => {
                self.set_raw(TCTL, value);
                self.start_xmit();
            }
            TDT => {
                self.set_raw(TDT, value & 0xffff);
                self.start_xmit();
            }
            RDT => {
                self.set_raw(RDT, value & 0xffff);
                self.rx_retry_held();
                self.kick_rx();
            }
            TDH | RDH | ITR | RDTR | RADV | TIDV | TADV => self.set_raw(offset, value & 0xffff),
            TDLEN | RDLEN => self.set_raw(offset, value & 0x000f_ff80),
            TDBAL | RDBAL => self.set_raw(offset, value & !0xf),
            STATS_START..STATS_END => {}
            _ if (RAH0..RAH0 + 16 * 8).contains(&offset) && offset % 8 == 4 => {
                self.set_raw(offset, value & (RAH_AV | 0x3_ffff));
            }
            _ => self.set_raw(offset, value),
        }
    }

    fn write_mdic(&mut self, value: u32) {
        let reg = ((value >> MDIC_REG_SHIFT) & 0x1f) as usize;
        let phy = (value >> MDIC_PHY_SHIFT) & 0x1f;
        let op = value & (3 << 26);
        let mut out = value & !(MDIC_READY | MDIC_ERROR);
        if phy != phy::PHY_ADDRESS {
            out |= MDIC_ERROR;
        } else if op == MDIC_OP_READ {
            out = (out & !MDIC_DATA_MASK) | u32::from(self.phy.read(reg));
        } else if op == MDIC_OP_WRITE {
            if self.phy.write(reg, value as u16) == PhyEvent::LinkRenegotiated {
                self.set_ics(ICR_LSC);
            }
        } else {
            out |= MDIC_ERROR;
        }
        self.set_raw(MDIC, out | MDIC_READY);
        if value & MDIC_INT_EN != 0 {
            self.set_ics(ICR_MDAC);
        }
    }

    /// Sets interrupt causes and updates the line.
    fn set_ics(&mut self, cause: u32) {
        let v = self.raw(ICR) | (cause & ICR_VALID);
        self.set_raw(ICR, v);
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let pending = self.raw(ICR) & self.raw(IMS) != 0;
        let level = pending && self.config.command() & PCI_COMMAND_INTX_DISABLE == 0;
        let status = self.config.read(1) & !PCI_STATUS_INTERRUPT;
        let status = status | if pending { PCI_STATUS_INTERRUPT } else { 0 };
        // The status half only: the command half is the guest's (and a reset's) business.
        self.config.write_bytes_raw(6, &((status >> 16) as u16).to_le_bytes());
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn bus_master(&self) -> bool {
        self.config.command() & PCI_COMMAND_BUS_MASTER != 0
    }

    /// Tells the I/O thread that [`E1000::wants_rx`] may have changed.
    fn kick_rx(&self) {
        if let Some(n) = &self.rx_notifier {
            // Only fails if the counter would overflow, which means a wake-up is pending.
            let _ = n.write(1);
        }
    }

    /// The backend's pollable descriptor (for the I/O thread).
    pub fn backend_fd(&self) -> RawFd {
        self.backend.as_raw_fd()
    }

    /// Sets the eventfd written whenever the guest makes room for received frames.
    pub fn set_rx_notifier(&mut self, notifier: EventFd) {
        self.rx_notifier = Some(notifier);
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let (len, in_dword) = (data.len() as u64, offset % 4);
        if offset.checked_add(len).is_none_or(|end| end > MMIO_SIZE) {
            data.fill(0);
        } else if len == 8 && in_dword == 0 {
            let lo = self.read_reg(offset as u32);
            let hi = self.read_reg(offset as u32 + 4);
            data[..4].copy_from_slice(&lo.to_le_bytes());
            data[4..].copy_from_slice(&hi.to_le_bytes());
        } else if (1..=4).contains(&len) && in_dword + len <= 4 {
            let v = self.read_reg((offset - in_dword) as u32).to_le_bytes();
            data.copy_from_slice(&v[in_dword as usize..(in_dword + len) as usize]);
        } else {
            crate::warn_limited!("e1000: unsupported {len}-byte register read at {offset:#x}");
            data.fill(0);
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let (len, in_dword) = (data.len() as u64, offset % 4);
        if offset.checked_add(len).is_none_or(|end| end > MMIO_SIZE) {
            return;
        }
        if len == 8 && in_dword == 0 {
            let lo = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            let hi = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
            self.write_reg(offset as u32, lo);
            self.write_reg(offset as u32 + 4, hi);
        } else if (1..=4).contains(&len) && in_dword + len <= 4 {
            // Partial writes merge with the stored value (no read side effects).
            let base = (offset - in_dword) as u32;
            let mut v = self.raw(base).to_le_bytes();
            v[in_dword as usize..(in_dword + len) as usize].copy_from_slice(data);
            self.write_reg(base, u32::from_le_bytes(v));
        } else {
            crate::warn_limited!("e1000: unsupported {len}-byte register write at {offset:#x}");
        }
    }

    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset & !3 {
            0 => self.io_addr,
            4 if u64::from(self.io_addr) < MMIO_SIZE => self.read_reg(self.io_addr & !3),
            _ => 0,
        };
        let start = (offset % 4) as usize;
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(start + i).copied().unwrap_or(0);
        }
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 4 || offset % 4 != 0 {
            crate::warn_limited!("e1000: unsupported {}-byte I/O write at +{offset:#x}", data.len());
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        match offset {
            0 => self.io_addr = v,
            4 if u64::from(self.io_addr) < MMIO_SIZE => self.write_reg(self.io_addr & !3, v),
            4 => crate::warn_limited!("e1000: IODATA write to undefined address {:#x}", self.io_addr),
            _ => {}
        }
    }
}

impl NetRxDevice for E1000 {
    fn rx_fd(&self) -> RawFd {
        self.backend_fd()
    }
    fn wants_rx(&self) -> bool {
        E1000::wants_rx(self)
    }
    fn rx_ready(&mut self) {
        E1000::rx_ready(self)
    }
    fn set_rx_notifier(&mut self, notifier: EventFd) {
        E1000::set_rx_notifier(self, notifier)
    }
}

impl PciDevice for E1000 {
    fn debug_label(&self) -> &str {
        "e1000"
    }
    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        if reg == 1 {
            self.update_irq();
            self.kick_rx();
        }
    }
    fn bar_ranges(&self) -> Vec<PciBarRange> {
        self.config.bar_ranges()
    }
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match index {
            MMIO_BAR => self.mmio_read(offset, data),
            IO_BAR => self.io_read(offset, data),
            _ => data.fill(0xff),
        }
    }
    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        match index {
            MMIO_BAR => self.mmio_write(offset, data),
            IO_BAR => self.io_write(offset, data),
            _ => {}
        }
    }
    fn reset(&mut self) {
        self.config.reset();
        E1000::reset(self);
    }
}
