// SPDX-License-Identifier: Apache-2.0
//! The Intel 82371SB (PIIX3) PCI-to-ISA bridge, function 00:01.0, and the PCI interrupt
//! routing it does.
//!
//! PCI devices raise one of four shared, level-triggered lines PIRQA#-PIRQD#; slot `s`, pin
//! `p` (1 = INTA#) drives PIRQ `(s - 1 + p - 1) mod 4` (slot 1 INTA# is PIRQA#), the board
//! wiring of QEMU's i440FX that SeaBIOS (`piix_pci_slot_get_irq`) and the ACPI `_PRT` assume.
//! The PIRQ route control registers (0x60-0x63) send each PIRQ to an ISA IRQ (bits 3-0) unless
//! bit 7 disables it; the firmware programs them and tells the OS through its tables. An ISA
//! IRQ shared by several PIRQs is high while any of them is.

use std::sync::{Arc, Mutex};

use super::config_space::PciConfigSpace;
use super::PciDevice;
use crate::bus::lock;
use crate::irq::IrqLine;

/// First PIRQ route control register (byte offset).
pub const PIRQRC: usize = 0x60;
/// ISA IRQs a PIRQ may be routed to (PIIX3 datasheet, table 3: 3-7, 9-12, 14, 15).
const ROUTABLE: u16 = 0b1101_1110_1111_1000;

struct RouterState {
    routes: [u8; 4],
    /// Devices asserting each PIRQ, as a bit per source.
    sources: [u64; 4],
    /// Level driven on each ISA IRQ now.
    isa_level: u16,
}

/// The routing of PIRQA-D to ISA interrupt lines, shared by the bridge (which owns the
/// route registers) and the device interrupt lines.
pub struct PirqRouter {
    state: Mutex<RouterState>,
    isa: Vec<Arc<dyn IrqLine>>,
}

impl PirqRouter {
    /// A router driving `isa[n]` for ISA IRQ `n` (16 lines).
    pub fn new(isa: Vec<Arc<dyn IrqLine>>) -> Arc<Self> {
        Arc::new(PirqRouter {
            state: Mutex::new(RouterState { routes: [0x80; 4], sources: [0; 4], isa_level: 0 }),
            isa,
        })
    }

    fn target(route: u8) -> Option<usize> {
        let irq = usize::from(route & 0x0f);
        (route & 0x80 == 0 && ROUTABLE & (1 << irq) != 0).then_some(irq)
    }

    /// Recomputes every ISA level and drives the lines that changed.
    fn apply(&self, s: &mut RouterState) {
        let mut level = 0u16;
        for pirq in 0..4 {
            if let Some(irq) = Self::target(s.routes[pirq]).filter(|_| s.sources[pirq] != 0) {
                level |= 1 << irq;
            }
        }
        let changed = level ^ s.isa_level;
        s.isa_level = level;
        for irq in (0..16).filter(|i| changed & (1 << i) != 0) {
            if let Some(line) = self.isa.get(irq) {
                line.set_level(level & (1 << irq) != 0);
            }
        }
    }

    fn set_route(&self, pirq: usize, route: u8) {
        let mut s = lock(&self.state);
        s.routes[pirq] = route;
        self.apply(&mut s);
    }

    fn set_source(&self, pirq: usize, source: u32, high: bool) {
        let mut s = lock(&self.state);
        let bit = 1u64 << (source % 64);
        if high {
            s.sources[pirq] |= bit;
        } else {
            s.sources[pirq] &= !bit;
        }
        self.apply(&mut s);
    }

    /// Power-on state: every PIRQ unrouted and low; ISA lines it drove go low.
    fn reset(&self) {
        let mut s = lock(&self.state);
        s.routes = [0x80; 4];
        s.sources = [0; 4];
        self.apply(&mut s);
    }

    /// The ISA IRQ PIRQ `pirq` goes to now, if routed.
    pub fn route(&self, pirq: usize) -> Option<usize> {
        lock(&self.state).routes.get(pirq).copied().and_then(Self::target)
    }

    /// The PIRQ (0 = PIRQA#) that `pin` (1 = INTA#) of the device in `slot` drives.
    pub fn pirq(slot: u8, pin: u8) -> usize {
        // (slot - 1) + (pin - 1), kept non-negative.
        (usize::from(slot) + usize::from(pin.max(1)) + 2) % 4
    }

    /// The interrupt line of the device in `slot` using `pin` (1 = INTA#).
    pub fn intx(self: &Arc<Self>, slot: u8, pin: u8) -> Arc<dyn IrqLine> {
        let pirq = Self::pirq(slot, pin);
        Arc::new(PciIntx { router: self.clone(), pirq, source: u32::from(slot) * 4 + u32::from(pin) })
    }
}

/// A device's INTx# line.
struct PciIntx {
    router: Arc<PirqRouter>,
    pirq: usize,
    source: u32,
}

impl IrqLine for PciIntx {
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
    fn set_level(&self, high: bool) {
        self.router.set_source(self.pirq, self.source, high);
    }
}

/// The ISA bridge function.
pub struct Piix3 {
    config: PciConfigSpace,
    router: Arc<PirqRouter>,
}

impl Piix3 {
    /// The bridge, owning the route registers of `router`.
    pub fn new(router: Arc<PirqRouter>) -> Self {
        // Header type 0x80: a multi-function device (IDE, USB and PM are functions 1-3).
        let mut config = PciConfigSpace::new(0x8086, 0x7000, [0x06, 0x01, 0x00], 0x00, 0x80);
        config.set_reg(1, 0x0200_0007, 0x0000_0008);
        config.set_reg(PIRQRC / 4, 0x8080_8080, 0x8f8f_8f8f);
        // 0x69 top of memory, 0x6a misc status; 0x70-0x71 motherboard IRQ routing (disabled);
        // 0x76-0x77 motherboard DMA; 0x80 APIC base relocation; 0x82 deterministic latency.
        config.set_reg(0x68 / 4, 0x0000_0200, 0x00ff_ff00);
        config.set_reg(0x70 / 4, 0x0000_8080, 0x0000_ffef);
        config.set_reg(0x74 / 4, 0x0c0c_0000, 0x8f8f_0000);
        config.set_reg(0x80 / 4, 0x0000_0000, 0x0000_0f7f);
        config.set_reg(0xa0 / 4, 0x0000_0008, 0xffff_ffff);
        Piix3 { config, router }
    }
}

impl PciDevice for Piix3 {
    fn debug_label(&self) -> &str {
        "piix3"
    }
    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        if reg == PIRQRC / 4 {
            let routes = self.config.read(reg).to_le_bytes();
            for (pirq, route) in routes.iter().enumerate() {
                self.router.set_route(pirq, *route);
            }
        }
    }

    /// The PIRQ routes back to "disabled" and every device's level forgotten (each device
    /// lowers its INTx# on its own reset too).
    fn reset(&mut self) {
        self.config.reset();
        self.router.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::test_util::FakeIrq;

    fn setup() -> (Piix3, Arc<PirqRouter>, Vec<Arc<FakeIrq>>) {
        let fakes: Vec<Arc<FakeIrq>> = (0..16).map(|_| Arc::new(FakeIrq::default())).collect();
        let lines = fakes.iter().map(|f| f.clone() as Arc<dyn IrqLine>).collect();
        let router = PirqRouter::new(lines);
        (Piix3::new(router.clone()), router, fakes)
    }

    #[test]
    fn identity_and_defaults() {
        let (p, router, _) = setup();
        assert_eq!(p.config_read(0), 0x7000_8086);
        assert_eq!(p.config_read(2) >> 8, 0x06_0100);
        assert_eq!((p.config_read(3) >> 16) & 0xff, 0x80, "multi-function");
        assert_eq!(p.config_read(PIRQRC / 4), 0x8080_8080);
        assert_eq!(router.route(0), None);
    }

    #[test]
    fn reset_unroutes_every_pirq_and_lowers_the_isa_lines() {
        let (mut p, router, irqs) = setup();
        p.config_write(PIRQRC / 4, 0, &[10, 10, 11, 11]);
        let a = router.intx(4, 1);
        a.set_level(true);
        assert!(irqs[11].level());
        p.reset();
        assert!(!irqs[11].level(), "the line it drove goes low");
        assert_eq!(p.config_read(PIRQRC / 4), 0x8080_8080, "routes disabled again");
        assert_eq!((router.route(0), router.route(3)), (None, None));
        // A level left high before the reset does not come back when the guest routes again.
        p.config_write(PIRQRC / 4, 0, &[10, 10, 11, 11]);
        assert!(!irqs[11].level());
    }

    #[test]
    fn routing_follows_the_registers() {
        let (mut p, router, irqs) = setup();
        // SeaBIOS: PIRQA/B -> 10, PIRQC/D -> 11.
        p.config_write(PIRQRC / 4, 0, &[10, 10, 11, 11]);
        assert_eq!((router.route(0), router.route(3)), (Some(10), Some(11)));
        // Slot 4 INTA -> PIRQD -> 11; slot 5 INTA -> PIRQA -> 10; slot 2 INTA -> PIRQB -> 10.
        let a = router.intx(4, 1);
        let b = router.intx(5, 1);
        let c = router.intx(2, 1);
        a.set_level(true);
        assert!(irqs[11].level());
        b.set_level(true);
        c.set_level(true);
        assert!(irqs[10].level());
        b.set_level(false);
        assert!(irqs[10].level(), "PIRQB still holds IRQ 10");
        c.set_level(false);
        assert!(!irqs[10].level());
        // Re-routing PIRQD moves the asserted level from 11 to 5.
        p.config_write(PIRQRC / 4, 3, &[5]);
        assert!(!irqs[11].level());
        assert!(irqs[5].level());
        // Disabled or unroutable targets drop it.
        p.config_write(PIRQRC / 4, 3, &[0x85]);
        assert!(!irqs[5].level());
        p.config_write(PIRQRC / 4, 3, &[2]);
        assert_eq!(router.route(3), None, "IRQ 2 is the cascade");
        a.pulse();
        assert!(!irqs[2].level());
        // Bits 6-4 are reserved.
        p.config_write(PIRQRC / 4, 0, &[0x7a]);
        assert_eq!(p.config_read(PIRQRC / 4) & 0xff, 0x0a);
    }

    #[test]
    fn slot_and_pin_swizzle_as_seabios() {
        let (mut p, router, irqs) = setup();
        // PIRQA-D -> IRQ 3, 4, 5, 6: which PIRQ a pin drives shows on its IRQ.
        p.config_write(PIRQRC / 4, 0, &[3, 4, 5, 6]);
        for slot in 1u8..32 {
            for pin in 1u8..=4 {
                // SeaBIOS piix_pci_slot_get_irq: pci_irqs[(pin - 1 + slot - 1) & 3].
                let want = 3 + (usize::from(pin) - 1 + usize::from(slot) - 1) % 4;
                let line = router.intx(slot, pin);
                line.set_level(true);
                let high: Vec<usize> = (0..16).filter(|&i| irqs[i].level()).collect();
                assert_eq!(high, vec![want], "slot {slot} pin {pin}");
                line.set_level(false);
            }
        }
        // The e1000 at 00:03.0 is on PIRQC, the third link (LNKC).
        let e1000 = router.intx(3, 1);
        e1000.set_level(true);
        assert!(irqs[5].level());
    }
}
