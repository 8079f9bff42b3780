// SPDX-License-Identifier: Apache-2.0
//! System control port A (0x92), the "fast A20 and reset" port of PS/2-era PCs.
//!
//! Bit 1 is the A20 gate and reads back as written; the VMM never masks A20 (KVM has no A20
//! gate), which is what firmware asks for anyway. Writing bit 0 as 1 resets the machine.

use std::sync::Arc;

use super::{PlatformControl, PlatformRequest};
use crate::bus::BusDevice;

/// The port.
pub const PORT92: u16 = 0x92;

/// System control port A.
pub struct Port92 {
    value: u8,
    platform: Arc<dyn PlatformControl>,
}

impl Port92 {
    /// The port, resetting through `platform`.
    pub fn new(platform: Arc<dyn PlatformControl>) -> Self {
        // A20 enabled at power-on, as on machines whose BIOS leaves it on.
        Port92 { value: 0x02, platform }
    }
}

impl BusDevice for Port92 {
    fn debug_label(&self) -> &str {
        "port92"
    }
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.value;
        }
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        self.value = v & 0x02;
        if v & 0x01 != 0 {
            self.platform.request(PlatformRequest::Reset);
        }
    }
    fn reset(&mut self) {
        self.value = 0x02;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::Recorder;

    #[test]
    fn reset_turns_a20_back_on() {
        let mut p = Port92::new(Arc::new(Recorder::default()));
        p.write(0, &[0x00]);
        p.reset();
        let mut b = [0u8];
        p.read(0, &mut b);
        assert_eq!(b[0], 0x02);
    }

    #[test]
    fn a20_reads_back_and_bit0_resets() {
        let rec = Arc::new(Recorder::default());
        let mut p = Port92::new(rec.clone());
        let mut b = [0u8];
        p.read(0, &mut b);
        assert_eq!(b[0], 0x02);
        p.write(0, &[0x00]);
        p.read(0, &mut b);
        assert_eq!(b[0], 0x00);
        p.write(0, &[0xf2]);
        p.read(0, &mut b);
        assert_eq!(b[0], 0x02, "only A20 is kept");
        assert!(rec.seen().is_empty());
        p.write(0, &[0x03]);
        assert_eq!(rec.seen(), vec![PlatformRequest::Reset]);
        p.write(0, &[]);
    }
}
