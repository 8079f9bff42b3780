// SPDX-License-Identifier: Apache-2.0
//! The i8042 keyboard controller, as far as the reset line (vm-superio's `I8042Device`).
//!
//! Mapped at 0x60-0x64 (0x61 belongs to the PIT's speaker port and is handled by KVM). A
//! write of 0xFE to the command port (0x64) pulses the CPU reset line, which is how Linux
//! reboots when ACPI offers no reset register. Status reads return 0 (no data, input buffer
//! empty), so the guest's keyboard driver finds no controller and does not wait for one.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::{PlatformControl, PlatformRequest};
use crate::bus::BusDevice;

/// First port of the controller (data port).
pub const I8042_BASE: u16 = 0x60;
/// Ports the controller spans (0x60-0x64).
pub const I8042_LEN: u16 = 5;

#[derive(Clone)]
struct ResetLine(Arc<dyn PlatformControl>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(PlatformRequest::Reset);
        Ok(())
    }
}

/// The keyboard controller.
pub struct I8042 {
    inner: I8042Device<ResetLine>,
}

impl I8042 {
    /// A controller whose reset line goes to `platform`.
    pub fn new(platform: Arc<dyn PlatformControl>) -> Self {
        I8042 { inner: I8042Device::new(ResetLine(platform)) }
    }
}

impl BusDevice for I8042 {
    fn debug_label(&self) -> &str {
        "i8042"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = u8::try_from(offset).map(|o| self.inner.read(o)).unwrap_or(0xff);
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&v)) = (u8::try_from(offset), data.first()) {
            // The trigger is infallible.
            let _ = self.inner.write(offset, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Recorder;
    use super::*;

    #[test]
    fn reset_command_requests_reset_and_nothing_else_does() {
        let rec = Arc::new(Recorder::default());
        let mut k = I8042::new(rec.clone());
        let mut b = [0xaau8];
        k.read(4, &mut b);
        assert_eq!(b[0], 0, "status: no data, input buffer empty");
        k.write(0, &[0xfe]);
        k.write(4, &[0xd1]);
        k.write(4, &[]);
        assert!(rec.seen().is_empty());
        k.write(4, &[0xfe]);
        assert_eq!(rec.seen(), vec![PlatformRequest::Reset]);
    }
}
