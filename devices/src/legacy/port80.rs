// SPDX-License-Identifier: Apache-2.0
//! Port 0x80, the POST-code / I/O-delay port.
//!
//! Linux writes here for I/O delays (`outb_p`) and firmware writes POST codes; the last
//! value is kept and read back as real POST cards do, and is logged at trace level.

use crate::bus::BusDevice;

/// The POST code port.
#[derive(Debug, Default)]
pub struct Port80 {
    last: u8,
}

impl Port80 {
    /// The last value written.
    pub fn last_code(&self) -> u8 {
        self.last
    }
}

impl BusDevice for Port80 {
    fn debug_label(&self) -> &str {
        "port80"
    }

    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(v) = data.first() {
            self.last = *v;
            log::trace!("POST code {:#04x}", v);
        }
    }

    fn reset(&mut self) {
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_last_code() {
        let mut p = Port80::default();
        let mut b = [0xffu8];
        p.read(0, &mut b);
        assert_eq!(b[0], 0);
        p.write(0, &[0x42]);
        p.read(0, &mut b);
        assert_eq!((b[0], p.last_code()), (0x42, 0x42));
        p.write(0, &[]);
        assert_eq!(p.last_code(), 0x42);
    }
}
