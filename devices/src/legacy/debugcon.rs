// SPDX-License-Identifier: Apache-2.0
//! The Bochs/QEMU debug console port (0x402 for SeaBIOS): firmware writes its debug log one
//! byte at a time; reading the port returns 0xe9, which is how firmware detects it.
//! Complete lines go to the `firmware` log target (`RUST_LOG=firmware=info`) and, when a
//! sink is given, to a file.

use std::io::Write;

use crate::bus::BusDevice;

/// SeaBIOS's debug port.
pub const DEBUGCON_PORT: u16 = 0x402;
/// Longest line kept; longer output is split (the guest cannot grow host memory).
const MAX_LINE: usize = 1024;

/// The debug console.
pub struct Debugcon {
    line: Vec<u8>,
    sink: Option<Box<dyn Write + Send>>,
}

impl Debugcon {
    /// A console logging lines, and copying every byte to `sink` if given.
    pub fn new(sink: Option<Box<dyn Write + Send>>) -> Self {
        Debugcon { line: Vec::new(), sink }
    }

    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            log::info!(target: "firmware", "{}", String::from_utf8_lossy(&self.line).trim_end());
            self.line.clear();
        }
    }
}

impl BusDevice for Debugcon {
    fn debug_label(&self) -> &str {
        "debugcon"
    }
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = 0xe9;
        }
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        for &b in data.iter().take(1) {
            if let Some(s) = self.sink.as_mut() {
                if s.write_all(&[b]).is_err() {
                    self.sink = None;
                }
            }
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.flush_line();
            }
            if b != b'\n' {
                self.line.push(b);
            }
        }
    }
    fn reset(&mut self) {
        // The half line the firmware wrote before the reset is still worth a log line.
        self.flush_line();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn detect_byte_and_output() {
        let out = Shared::default();
        let mut d = Debugcon::new(Some(Box::new(out.clone())));
        let mut b = [0u8];
        d.read(0, &mut b);
        assert_eq!(b[0], 0xe9);
        for c in b"SeaBIOS\nx" {
            d.write(0, &[*c]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"SeaBIOS\nx");
        assert_eq!(d.line, b"x");
        for _ in 0..MAX_LINE + 10 {
            d.write(0, b"a");
        }
        assert!(d.line.len() <= MAX_LINE, "a line without newline is bounded");
    }
}
