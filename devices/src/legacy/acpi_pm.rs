// SPDX-License-Identifier: Apache-2.0
//! ACPI fixed hardware: PM1a event and control blocks and the PM timer.
//!
//! Register block at [`PM_BASE`] (as the FADT describes it):
//! - `+0` PM1_STS (write 1 to clear), `+2` PM1_EN,
//! - `+4` PM1_CNT: SCI_EN reads 1 (no SMI command port: the platform is always in ACPI mode),
//!   SLP_TYP in bits 10-12, SLP_EN (bit 13, write-only) enters that sleep state,
//! - `+8` PM_TMR, a free-running 24-bit counter at 3.579545 MHz.
//!
//! Entering S5 (SLP_TYP = [`S5_SLEEP_TYPE`]) powers the machine off; other sleep states are
//! not offered by the DSDT and are ignored. The power button sets PWRBTN_STS and raises the
//! SCI (level-triggered) while it is enabled and unacknowledged. PM-timer overflow interrupts
//! (TMR_EN) are not generated.

use std::sync::Arc;
use std::time::Instant;

use super::{PlatformControl, PlatformRequest};
use crate::bus::BusDevice;
use crate::irq::IrqLine;

/// First port of the block.
pub const PM_BASE: u16 = 0x600;
/// Ports spanned.
pub const PM_LEN: u16 = 12;
/// PM1a event block port.
pub const PM1A_EVT: u16 = PM_BASE;
/// PM1a control block port.
pub const PM1A_CNT: u16 = PM_BASE + 4;
/// PM timer port.
pub const PM_TMR: u16 = PM_BASE + 8;
/// The SCI's interrupt line.
pub const SCI_IRQ: u32 = 9;
/// SLP_TYP of S5 (soft off), as the PIIX4 defines it.
pub const S5_SLEEP_TYPE: u8 = 0;

const PM_TIMER_HZ: u128 = 3_579_545;
const PWRBTN: u16 = 1 << 8;
const SLPBTN: u16 = 1 << 9;
const STS_WRITABLE: u16 = 0x8731; // TMR, BM, GBL, PWRBTN, SLPBTN, RTC, WAK
const EN_WRITABLE: u16 = 0x0721; // TMR, GBL, PWRBTN, SLPBTN, RTC
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;
const CNT_WRITABLE: u16 = 0x1c06; // BM_RLD, GBL_RLS, SLP_TYP

/// The PM1a blocks and PM timer.
pub struct AcpiPm {
    status: u16,
    enable: u16,
    control: u16,
    start: Instant,
    sci: Arc<dyn IrqLine>,
    platform: Arc<dyn PlatformControl>,
}

impl AcpiPm {
    /// A PM block raising `sci` and sending power-off to `platform`.
    pub fn new(sci: Arc<dyn IrqLine>, platform: Arc<dyn PlatformControl>) -> Self {
        AcpiPm { status: 0, enable: 0, control: SCI_EN, start: Instant::now(), sci, platform }
    }

    /// Presses the power button: the guest's ACPI driver sees PWRBTN_STS and shuts down.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
        self.update_sci();
    }

    fn timer(&self) -> u32 {
        let ticks = self.start.elapsed().as_nanos() * PM_TIMER_HZ / 1_000_000_000;
        (ticks & 0xff_ffff) as u32
    }

    fn update_sci(&self) {
        let pending = self.status & self.enable & (PWRBTN | SLPBTN) != 0;
        self.sci.set_level(pending && self.control & SCI_EN != 0);
    }

    fn registers(&self) -> [u8; PM_LEN as usize] {
        let mut r = [0u8; PM_LEN as usize];
        r[0..2].copy_from_slice(&self.status.to_le_bytes());
        r[2..4].copy_from_slice(&self.enable.to_le_bytes());
        r[4..6].copy_from_slice(&(self.control & !SLP_EN).to_le_bytes());
        r[8..12].copy_from_slice(&self.timer().to_le_bytes());
        r
    }
}

impl BusDevice for AcpiPm {
    fn debug_label(&self) -> &str {
        "acpi-pm"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.registers();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| regs.get(o).copied())
                .unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut cnt_written = false;
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i as u64) else { return };
            let shift = 8 * (o % 2);
            let v = u16::from(b) << shift;
            match o {
                0 | 1 => self.status &= !(v & STS_WRITABLE),
                2 | 3 => {
                    let mask = 0xff << shift;
                    self.enable = (self.enable & !mask) | (v & EN_WRITABLE & mask);
                }
                4 | 5 => {
                    let mask = 0xff << shift;
                    self.control = (self.control & !mask) | (v & (CNT_WRITABLE | SLP_EN) & mask);
                    self.control |= SCI_EN;
                    cnt_written = true;
                }
                _ => {}
            }
        }
        if cnt_written && self.control & SLP_EN != 0 {
            self.control &= !SLP_EN;
            let sleep_type = ((self.control >> 10) & 7) as u8;
            if sleep_type == S5_SLEEP_TYPE {
                self.platform.request(PlatformRequest::PowerOff);
            } else {
                crate::warn_limited!("acpi-pm: guest asked for unsupported sleep type {sleep_type}");
            }
        }
        self.update_sci();
    }

    /// Back to the power-on registers (SCI_EN set: there is no SMM to hand over from); the
    /// PM timer keeps counting, as its free-running counter does across a PCI reset.
    fn reset(&mut self) {
        self.status = 0;
        self.enable = 0;
        self.control = SCI_EN;
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Recorder;
    use super::*;
    use crate::irq::test_util::FakeIrq;

    fn pm() -> (AcpiPm, Arc<FakeIrq>, Arc<Recorder>) {
        let irq = Arc::new(FakeIrq::default());
        let rec = Arc::new(Recorder::default());
        (AcpiPm::new(irq.clone(), rec.clone()), irq, rec)
    }

    fn rd16(p: &mut AcpiPm, off: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn reset_clears_status_and_enables_and_lowers_sci() {
        let (mut p, irq, rec) = pm();
        p.write(2, &PWRBTN.to_le_bytes());
        p.press_power_button();
        p.write(4, &0x0c00u16.to_le_bytes());
        assert!(irq.level());
        p.reset();
        assert!(!irq.level(), "SCI low after the reset");
        assert_eq!(rd16(&mut p, 0), 0, "PM1 status");
        assert_eq!(rd16(&mut p, 2), 0, "PM1 enable");
        assert_eq!(rd16(&mut p, 4), SCI_EN, "PM1 control");
        assert!(rec.seen().is_empty(), "a reset requests nothing of the platform");
    }

    #[test]
    fn s5_powers_off_and_other_sleep_types_do_not() {
        let (mut p, _, rec) = pm();
        p.write(4, &((1u16 << 10) | SLP_EN).to_le_bytes()); // S1
        assert!(rec.seen().is_empty());
        p.write(4, &(u16::from(S5_SLEEP_TYPE) << 10 | SLP_EN).to_le_bytes());
        assert_eq!(rec.seen(), vec![PlatformRequest::PowerOff]);
        assert_eq!(rd16(&mut p, 4) & SLP_EN, 0, "SLP_EN reads as 0");
        // A byte write of the high half alone also works.
        p.write(5, &[(SLP_EN >> 8) as u8]);
        assert_eq!(rec.seen().len(), 2);
    }

    #[test]
    fn control_always_reports_sci_enabled() {
        let (mut p, _, _) = pm();
        assert_eq!(rd16(&mut p, 4) & SCI_EN, SCI_EN);
        p.write(4, &[0, 0]);
        assert_eq!(rd16(&mut p, 4) & SCI_EN, SCI_EN);
        p.write(4, &0x0c00u16.to_le_bytes());
        assert_eq!(rd16(&mut p, 4), 0x0c01);
    }

    #[test]
    fn power_button_raises_sci_until_acknowledged() {
        let (mut p, irq, _) = pm();
        p.press_power_button();
        assert!(!irq.level(), "not enabled yet");
        assert_eq!(rd16(&mut p, 0) & PWRBTN, PWRBTN);
        p.write(2, &PWRBTN.to_le_bytes());
        assert!(irq.level());
        assert_eq!(rd16(&mut p, 2), PWRBTN);
        p.write(0, &0x0001u16.to_le_bytes()); // clearing another bit keeps it
        assert!(irq.level());
        p.write(0, &PWRBTN.to_le_bytes());
        assert!(!irq.level());
        assert_eq!(rd16(&mut p, 0), 0);
        p.write(2, &0xffffu16.to_le_bytes());
        assert_eq!(rd16(&mut p, 2), EN_WRITABLE);
    }

    #[test]
    fn pm_timer_counts_and_bad_offsets_read_ones() {
        let (mut p, _, _) = pm();
        let mut a = [0u8; 4];
        p.read(8, &mut a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut b = [0u8; 4];
        p.read(8, &mut b);
        let (a, b) = (u32::from_le_bytes(a), u32::from_le_bytes(b));
        assert!(b > a && b < 1 << 24, "{a} {b}");
        assert!(b - a >= 7_000, "2 ms is ~7159 ticks, got {}", b - a);
        let mut c = [0u8; 4];
        p.read(10, &mut c);
        assert_eq!(&c[2..], &[0xff, 0xff]);
        p.read(u64::MAX, &mut c);
        assert_eq!(c, [0xff; 4]);
        p.write(u64::MAX, &[1, 2]);
    }
}
