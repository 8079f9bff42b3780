// SPDX-License-Identifier: Apache-2.0
//! The Intel 82441FX (i440FX) PCI and memory controller, host bridge at 00:00.0.
//!
//! Its configuration space carries the registers firmware programs: PAM0-PAM6 (0x59-0x5f,
//! read/write enables for the 0xC0000-0xFFFFF shadow areas), SMRAM control (0x72) and the
//! DRAM row boundaries. The registers are kept as written; acting on PAM (mapping the BIOS
//! shadow read-only or writable) belongs to the machine and is not done yet.

use super::config_space::PciConfigSpace;
use super::PciDevice;

/// PAM0, the first Programmable Attribute Map register (byte offset).
pub const PAM0: usize = 0x59;
/// Number of PAM registers.
pub const PAM_COUNT: usize = 7;
/// SMRAM control (byte offset).
pub const SMRAM: usize = 0x72;

/// The host bridge.
pub struct I440fx {
    config: PciConfigSpace,
}

impl I440fx {
    /// A host bridge with the power-on register values of the datasheet.
    pub fn new() -> Self {
        let mut config = PciConfigSpace::new(0x8086, 0x1237, [0x06, 0x00, 0x00], 0x02, 0x00);
        // Status: fast back-to-back capable, medium DEVSEL timing.
        config.set_reg(1, 0x0280_0006, 0x0000_0147);
        // 0x58-0x5b: DRAMC at 0x57 is in reg 0x54 / 4; PAM0..PAM2 at 0x59-0x5b.
        config.set_reg(0x58 / 4, 0, 0xffff_ff00);
        config.set_reg(0x5c / 4, 0, 0xffff_ffff); // PAM3..PAM6
                                                  // 0x70: MTT; 0x72: SMRAM control (D_OPEN, D_CLS, D_LCK, G_SMRAME, C_BASE_SEG = 010b).
        config.set_reg(0x70 / 4, 0x0002_0000, 0x0078_00ff);
        I440fx { config }
    }

    /// The value of PAM register `n` (0..7).
    pub fn pam(&self, n: usize) -> Option<u8> {
        (n < PAM_COUNT).then(|| {
            let off = PAM0 + n;
            (self.config.read(off / 4) >> (8 * (off % 4))) as u8
        })
    }
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for I440fx {
    fn debug_label(&self) -> &str {
        "i440fx"
    }

    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
    }

    /// PAM, SMRAM and the other registers back to their power-on values; the machine then
    /// maps the shadow area as the PAM registers say (read-only again).
    fn reset(&mut self) {
        self.config.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_pam_registers() {
        let mut h = I440fx::new();
        assert_eq!(h.config_read(0), 0x1237_8086);
        assert_eq!(h.config_read(2) >> 8, 0x06_0000);
        assert_eq!(h.config_read(3) >> 16 & 0x7f, 0, "header type 0");
        for n in 0..PAM_COUNT {
            assert_eq!(h.pam(n), Some(0));
        }
        // SeaBIOS makes 0xF0000-0xFFFFF read/write (PAM0 = 0x30) while shadowing.
        h.config_write(PAM0 / 4, PAM0 % 4, &[0x30]);
        h.config_write(0x5c / 4, 0, &[0x33, 0x33, 0x33, 0x33]);
        assert_eq!(h.pam(0), Some(0x30));
        assert_eq!(h.pam(3), Some(0x33));
        assert_eq!(h.pam(6), Some(0x33));
        assert_eq!(h.pam(7), None);
        assert_eq!((h.config_read(SMRAM / 4) >> 16) & 0xff, 0x02);
        h.config_write(0, 0, &[0; 4]);
        assert_eq!(h.config_read(0), 0x1237_8086);
    }
}
