// SPDX-License-Identifier: Apache-2.0
//! The power-management function of the Intel 82371AB (PIIX4), 00:01.3, as QEMU's PC machine
//! pairs it with the PIIX3: its configuration space places the ACPI register block (PMBA,
//! 0x40) and enables it (PMREGMISC bit 0, 0x80); the block itself is the [`AcpiPm`] device.
//!
//! The 64-byte PM I/O block decodes like a BAR (reported as range index
//! [`PM_IO_RANGE`]): PM1 status/enable (+0), PM1 control (+4), PM timer (+8) come from
//! [`AcpiPm`]; the general-purpose registers above them (+0x0c..+0x3f) read as zero and ignore
//! writes. The SMBus controller (0x90, 0xd2) is not emulated: its registers keep what the
//! firmware writes and its I/O space does not decode. SCI is IRQ 9, as the PIIX4 wires it.
//!
//! There is no System Management Mode: DEVACTB (0x58) reports "SMI on APMC write" as already
//! enabled (bit 25, read-only), which is how firmware recognizes that SMM was set up before
//! it and skips its own SMM initialization (QEMU does the same with SMM off).

use std::sync::{Arc, Mutex};

use super::config_space::PciConfigSpace;
use super::{BarKind, PciBarRange, PciDevice};
use crate::bus::{lock, BusDevice};
use crate::legacy::acpi_pm::AcpiPm;

/// PM base address register (byte offset).
pub const PMBA: usize = 0x40;
/// PM register miscellaneous (bit 0: PM I/O space enable).
pub const PMREGMISC: usize = 0x80;
/// Device activity B (byte offset).
pub const DEVACTB: usize = 0x58;
/// DEVACTB: an APM control write raises SMI.
pub const DEVACTB_APMC_EN: u32 = 1 << 25;
/// The range index under which the PM I/O block is reported.
pub const PM_IO_RANGE: usize = 6;
/// Size of the PM I/O block.
pub const PM_IO_LEN: u64 = 64;
/// Bytes of the block the [`AcpiPm`] registers occupy.
const ACPI_PM_LEN: u64 = 12;

/// The PIIX4 PM function.
pub struct Piix4Pm {
    config: PciConfigSpace,
    pm: Arc<Mutex<AcpiPm>>,
}

impl Piix4Pm {
    /// The function, serving `pm` at the address the firmware programs.
    pub fn new(pm: Arc<Mutex<AcpiPm>>) -> Self {
        let mut config = PciConfigSpace::new(0x8086, 0x7113, [0x06, 0x80, 0x00], 0x03, 0x00);
        config.set_reg(1, 0x0280_0000, 0x0000_0001);
        // Interrupt pin INTA#, line 9 (SCI).
        config.set_reg(15, 0x0000_0109, 0x0000_00ff);
        config.set_reg(PMBA / 4, 0x0000_0001, 0x0000_ffc0);
        config.set_reg(PMREGMISC / 4, 0, 0x0000_0001);
        config.set_reg(DEVACTB / 4, DEVACTB_APMC_EN, 0xfdff_ffff);
        config.set_reg(0x90 / 4, 0x0000_0001, 0x0000_fff0);
        config.set_reg(0xd0 / 4, 0, 0x000f_0000);
        // Subsystem IDs as QEMU reports them (Red Hat/QEMU).
        config.set_reg(11, 0x1100_1af4, 0);
        Piix4Pm { config, pm }
    }

    /// The ACPI registers.
    pub fn acpi_pm(&self) -> &Arc<Mutex<AcpiPm>> {
        &self.pm
    }
}

impl PciDevice for Piix4Pm {
    fn debug_label(&self) -> &str {
        "piix4-pm"
    }
    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
    }
    fn bar_ranges(&self) -> Vec<PciBarRange> {
        let base = u64::from(self.config.read(PMBA / 4) & 0xffc0);
        let enabled = self.config.read(PMREGMISC / 4) & 1 != 0;
        if enabled && base != 0 {
            vec![PciBarRange { index: PM_IO_RANGE, kind: BarKind::Io, address: base, size: PM_IO_LEN }]
        } else {
            Vec::new()
        }
    }
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if index == PM_IO_RANGE && offset + data.len() as u64 <= ACPI_PM_LEN {
            lock(&self.pm).read(offset, data);
        } else {
            data.fill(0);
        }
    }
    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index == PM_IO_RANGE && offset + data.len() as u64 <= ACPI_PM_LEN {
            lock(&self.pm).write(offset, data);
        }
    }

    /// The PM block unmapped and disabled, the ACPI registers at their power-on values.
    fn reset(&mut self) {
        self.config.reset();
        lock(&self.pm).reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::test_util::FakeIrq;
    use crate::legacy::test_util::Recorder;
    use crate::legacy::PlatformRequest;

    fn dev() -> (Piix4Pm, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let pm = AcpiPm::new(Arc::new(FakeIrq::default()), rec.clone());
        (Piix4Pm::new(Arc::new(Mutex::new(pm))), rec)
    }

    #[test]
    fn identity_and_interrupt() {
        let (p, _) = dev();
        assert_eq!(p.config_read(0), 0x7113_8086);
        assert_eq!(p.config_read(2), 0x0680_0003);
        assert_eq!(p.config_read(15) & 0xffff, 0x0109);
        assert_eq!(p.config_read(11), 0x1100_1af4);
    }

    #[test]
    fn smm_is_reported_as_already_set_up() {
        let (mut p, _) = dev();
        assert_eq!(p.config_read(DEVACTB / 4), DEVACTB_APMC_EN);
        p.config_write(DEVACTB / 4, 0, &0u32.to_le_bytes());
        assert_eq!(p.config_read(DEVACTB / 4), DEVACTB_APMC_EN, "read-only");
        p.config_write(DEVACTB / 4, 0, &0x0000_00ffu32.to_le_bytes());
        assert_eq!(p.config_read(DEVACTB / 4), DEVACTB_APMC_EN | 0xff);
    }

    #[test]
    fn reset_disables_the_pm_block_and_resets_the_acpi_registers() {
        let (mut p, _) = dev();
        p.config_write(PMBA / 4, 0, &0x0000_0601u32.to_le_bytes());
        p.config_write(PMREGMISC / 4, 0, &[1]);
        p.bar_write(PM_IO_RANGE, 2, &0x0100u16.to_le_bytes()); // PWRBTN_EN
        p.reset();
        assert!(p.bar_ranges().is_empty(), "the block no longer decodes");
        assert_eq!(p.config_read(PMBA / 4), 0x0000_0001);
        assert_eq!(p.config_read(DEVACTB / 4), DEVACTB_APMC_EN);
        let mut en = [0xffu8; 2];
        lock(p.acpi_pm()).read(2, &mut en);
        assert_eq!(en, [0, 0], "PM1 enable cleared");
    }

    #[test]
    fn pm_block_decodes_where_the_firmware_puts_it() {
        let (mut p, rec) = dev();
        assert!(p.bar_ranges().is_empty());
        // SeaBIOS: PMBA = 0x600 | 1, then PMREGMISC = 1.
        p.config_write(PMBA / 4, 0, &0x0000_0601u32.to_le_bytes());
        assert_eq!(p.config_read(PMBA / 4), 0x0000_0601, "bit 0 reads as 1 (I/O space)");
        assert!(p.bar_ranges().is_empty(), "not enabled yet");
        p.config_write(PMREGMISC / 4, 0, &[1]);
        assert_eq!(
            p.bar_ranges(),
            vec![PciBarRange { index: PM_IO_RANGE, kind: BarKind::Io, address: 0x600, size: 64 }]
        );
        // A misaligned base is aligned down to 64 bytes.
        p.config_write(PMBA / 4, 0, &0x0000_b03fu32.to_le_bytes());
        assert_eq!(p.bar_ranges()[0].address, 0xb000);
        // The PM timer runs; GPE registers read as zero.
        let (mut t0, mut t1) = ([0u8; 4], [0u8; 4]);
        p.bar_read(PM_IO_RANGE, 8, &mut t0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        p.bar_read(PM_IO_RANGE, 8, &mut t1);
        assert_ne!(t0, t1);
        let mut g = [0xffu8; 2];
        p.bar_read(PM_IO_RANGE, 0x0c, &mut g);
        assert_eq!(g, [0, 0]);
        p.bar_read(PM_IO_RANGE, 10, &mut t0); // straddles the end of AcpiPm: zero
        assert_eq!(t0, [0; 4]);
        // S5 through PM1a control: SLP_TYP 0, SLP_EN.
        p.bar_write(PM_IO_RANGE, 4, &0x2000u16.to_le_bytes());
        assert_eq!(rec.seen(), vec![PlatformRequest::PowerOff]);
        p.config_write(PMREGMISC / 4, 0, &[0]);
        assert!(p.bar_ranges().is_empty());
    }
}
