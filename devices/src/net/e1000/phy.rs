// SPDX-License-Identifier: Apache-2.0
//! The Marvell 88E1011 copper PHY at MDIO address 1, reached through MDIC (SDM 13.4.7 and
//! the PHY register map of SDM chapter 13.5).
//!
//! The link is always up at 1000 Mb/s full duplex and auto-negotiation completes at once:
//! restarting it (BMCR bit 9) completes immediately and the MAC raises LSC. Writes to the
//! status and ID registers are ignored; the other registers keep what is written (the driver
//! programs PHY-specific control and the advertisement registers, which change nothing
//! here). A PHY reset (BMCR bit 15, or CTRL.PHY_RST) restores the defaults.

/// The PHY's MDIO address.
pub const PHY_ADDRESS: u32 = 1;
/// Basic mode control.
pub const BMCR: usize = 0;
/// Basic mode status.
pub const BMSR: usize = 1;
/// PHY identifier 1.
pub const PHYID1: usize = 2;
/// PHY identifier 2.
pub const PHYID2: usize = 3;
/// Auto-negotiation advertisement.
pub const ANAR: usize = 4;
/// Link partner ability.
pub const ANLPAR: usize = 5;
/// Auto-negotiation expansion.
pub const ANER: usize = 6;
/// 1000BASE-T control.
pub const GCR: usize = 9;
/// 1000BASE-T status.
pub const GSR: usize = 10;
/// Extended status.
pub const EXT_STATUS: usize = 15;
/// M88: PHY-specific control.
pub const PSCR: usize = 16;
/// M88: PHY-specific status.
pub const PSSR: usize = 17;
/// M88: interrupt status.
pub const INT_STATUS: usize = 19;
/// M88: extended PHY-specific control.
pub const EPSCR: usize = 20;
/// M88: receive error counter.
pub const RX_ERR: usize = 21;

/// BMCR: reset (self-clearing).
pub const BMCR_RESET: u16 = 1 << 15;
/// BMCR: loopback.
pub const BMCR_LOOPBACK: u16 = 1 << 14;
/// BMCR: auto-negotiation enable.
pub const BMCR_ANENABLE: u16 = 1 << 12;
/// BMCR: restart auto-negotiation (self-clearing).
pub const BMCR_ANRESTART: u16 = 1 << 9;
/// BMSR: link status.
pub const BMSR_LSTATUS: u16 = 1 << 2;
/// BMSR: auto-negotiation complete.
pub const BMSR_ANEGCOMPLETE: u16 = 1 << 5;

/// M88E1011 identifier, high half (Marvell OUI).
pub const M88E1011_ID1: u16 = 0x0141;
/// M88E1011 identifier, low half (model 0x02, revision 0).
pub const M88E1011_ID2: u16 = 0x0c20;

const READ_ONLY: [usize; 10] =
    [BMSR, PHYID1, PHYID2, ANLPAR, ANER, GSR, EXT_STATUS, PSSR, INT_STATUS, RX_ERR];

/// What a register write did, for the MAC to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhyEvent {
    /// Nothing visible to the MAC.
    None,
    /// Auto-negotiation was restarted (and completed): link status change.
    LinkRenegotiated,
}

/// The PHY's 32 registers.
#[derive(Debug, Clone)]
pub struct Phy {
    regs: [u16; 32],
}

impl Default for Phy {
    fn default() -> Self {
        Self::new()
    }
}

impl Phy {
    /// A PHY after reset, link up.
    pub fn new() -> Self {
        let mut regs = [0u16; 32];
        // 1000 Mb/s (bit 6), full duplex (bit 8), auto-negotiation enabled.
        regs[BMCR] = 0x0140 | BMCR_ANENABLE;
        // 100/10 full/half, extended status, preamble suppression, AN complete, AN able,
        // link up, extended capabilities.
        regs[BMSR] = 0x7800 | 0x0100 | 0x0040 | BMSR_ANEGCOMPLETE | 0x0008 | BMSR_LSTATUS | 0x0001;
        regs[PHYID1] = M88E1011_ID1;
        regs[PHYID2] = M88E1011_ID2;
        // Asymmetric pause, pause, 100/10 full/half, IEEE 802.3.
        regs[ANAR] = 0x0de1;
        // Partner: acknowledge, 100/10 full/half, IEEE 802.3.
        regs[ANLPAR] = 0x41e1;
        // Partner is auto-negotiation able.
        regs[ANER] = 0x0001;
        // Advertise 1000BASE-T full and half duplex.
        regs[GCR] = 0x0300;
        // Local and remote receivers OK, partner 1000BASE-T full and half duplex.
        regs[GSR] = 0x3c00;
        regs[EXT_STATUS] = 0x3000;
        // Automatic MDI crossover, copper transmitter enabled.
        regs[PSCR] = 0x0060;
        // 1000 Mb/s, full duplex, speed/duplex resolved, link up.
        regs[PSSR] = 0x8000 | 0x2000 | 0x0800 | 0x0400;
        regs[EPSCR] = 0x0c60;
        Phy { regs }
    }

    /// Reads register `reg` (0..32; others read as zero).
    pub fn read(&self, reg: usize) -> u16 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Writes register `reg`.
    pub fn write(&mut self, reg: usize, value: u16) -> PhyEvent {
        if reg >= self.regs.len() || READ_ONLY.contains(&reg) {
            log::debug!("e1000: write {value:#x} to read-only PHY register {reg} ignored");
            return PhyEvent::None;
        }
        if reg != BMCR {
            self.regs[reg] = value;
            return PhyEvent::None;
        }
        if value & BMCR_RESET != 0 {
            *self = Phy::new();
            self.regs[BMCR] = (value & !(BMCR_RESET | BMCR_ANRESTART)) | BMCR_ANENABLE;
            return PhyEvent::LinkRenegotiated;
        }
        self.regs[BMCR] = value & !(BMCR_RESET | BMCR_ANRESTART);
        if value & BMCR_ANRESTART != 0 {
            PhyEvent::LinkRenegotiated
        } else {
            PhyEvent::None
        }
    }

    /// Whether the PHY loops transmitted frames back.
    pub fn loopback(&self) -> bool {
        self.regs[BMCR] & BMCR_LOOPBACK != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_link() {
        let p = Phy::new();
        assert_eq!(p.read(PHYID1), 0x0141);
        assert_eq!(p.read(PHYID2) & 0xfff0, 0x0c20);
        assert_eq!(p.read(BMSR) & (BMSR_LSTATUS | BMSR_ANEGCOMPLETE), BMSR_LSTATUS | BMSR_ANEGCOMPLETE);
        assert_eq!(p.read(PSSR) & 0xcc00, 0xac00 & 0xcc00, "1000/full, resolved, link");
        assert_eq!(p.read(99), 0);
    }

    #[test]
    fn writes_and_reset() {
        let mut p = Phy::new();
        assert_eq!(p.write(BMSR, 0), PhyEvent::None);
        assert_eq!(p.read(BMSR), Phy::new().read(BMSR), "status is read-only");
        assert_eq!(p.write(PHYID1, 0), PhyEvent::None);
        assert_eq!(p.read(PHYID1), 0x0141);
        p.write(PSCR, 0x0808);
        assert_eq!(p.read(PSCR), 0x0808);
        p.write(ANAR, 0x01e1);
        assert_eq!(p.read(ANAR), 0x01e1);
        assert_eq!(p.write(BMCR, BMCR_ANENABLE | BMCR_ANRESTART), PhyEvent::LinkRenegotiated);
        assert_eq!(p.read(BMCR), BMCR_ANENABLE, "restart is self-clearing");
        p.write(BMCR, BMCR_LOOPBACK);
        assert!(p.loopback());
        assert_eq!(p.write(BMCR, BMCR_RESET), PhyEvent::LinkRenegotiated);
        assert!(!p.loopback());
        assert_eq!(p.read(PSCR), 0x0060, "reset restores defaults");
        assert_eq!(p.read(BMCR) & BMCR_RESET, 0);
        assert_eq!(p.write(40, 1), PhyEvent::None);
    }
}
