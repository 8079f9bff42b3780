// SPDX-License-Identifier: Apache-2.0
//! A 16550A UART (COM1 at 0x3f8, IRQ 4), the register model from vm-superio.
//!
//! vm-superio keeps the 64-byte receive FIFO; host input that arrives faster than the guest
//! reads it waits in a bounded queue here and is moved into the FIFO whenever the guest reads
//! a register, so pasted text is not lost. Output goes to any `Write` sink (stdout, a file,
//! a socket), chosen by the VMM.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::Serial;

use crate::bus::BusDevice;
use crate::irq::{IrqLine, IrqTrigger};

/// COM1's base port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's interrupt line.
pub const COM1_IRQ: u32 = 4;
/// Ports a 16550 spans.
pub const UART_LEN: u16 = 8;
/// Most host input held back while the guest's FIFO is full; more is dropped.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// The output sink type.
pub type SerialOut = Box<dyn Write + Send>;

/// One 16550A UART.
pub struct Uart16550 {
    serial: Serial<IrqTrigger, NoEvents, SerialOut>,
    pending: VecDeque<u8>,
    dropped: u64,
}

impl Uart16550 {
    /// A UART raising `irq` and writing transmitted bytes to `out`.
    pub fn new(irq: Arc<dyn IrqLine>, out: SerialOut) -> Self {
        Uart16550 { serial: Serial::new(IrqTrigger(irq), out), pending: VecDeque::new(), dropped: 0 }
    }

    /// Queues bytes typed by the host user for the guest to receive.
    pub fn queue_input(&mut self, bytes: &[u8]) {
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending.len());
        if bytes.len() > room {
            self.dropped += (bytes.len() - room) as u64;
            crate::warn_limited!("serial input queue full: dropped {} bytes so far", self.dropped);
        }
        self.pending.extend(&bytes[..bytes.len().min(room)]);
        self.fill_fifo();
    }

    /// Bytes waiting for room in the guest's FIFO.
    pub fn pending_input(&self) -> usize {
        self.pending.len()
    }

    fn fill_fifo(&mut self) {
        while !self.pending.is_empty() && self.serial.fifo_capacity() > 0 {
            let (front, _) = self.pending.as_slices();
            match self.serial.enqueue_raw_bytes(front) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
            }
        }
    }
}

impl BusDevice for Uart16550 {
    fn debug_label(&self) -> &str {
        "uart16550"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match u8::try_from(offset) {
            Ok(o) if o < UART_LEN as u8 => self.serial.read(o),
            _ => 0xff,
        };
        data.fill(v);
        self.fill_fifo();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(offset), Some(&v)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if offset >= UART_LEN as u8 {
            return;
        }
        if let Err(e) = self.serial.write(offset, v) {
            crate::warn_limited!("serial output failed: {e:?}");
        }
    }

    /// Every register back to its power-on value and the FIFOs emptied; the output sink and
    /// the host input not yet given to the guest stay.
    fn reset(&mut self) {
        let out = std::mem::replace(self.serial.writer_mut(), Box::new(std::io::sink()));
        let trigger = self.serial.interrupt_evt().clone();
        self.serial = Serial::new(trigger, out);
        self.fill_fifo();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::test_util::FakeIrq;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const MSR: u64 = 6;
    const SCR: u64 = 7;

    fn rd(u: &mut Uart16550, off: u64) -> u8 {
        let mut b = [0u8];
        u.read(off, &mut b);
        b[0]
    }

    fn uart() -> (Uart16550, Arc<FakeIrq>, Sink) {
        let irq = Arc::new(FakeIrq::default());
        let sink = Sink::default();
        (Uart16550::new(irq.clone(), Box::new(sink.clone())), irq, sink)
    }

    #[test]
    fn reset_restores_power_on_registers_and_keeps_the_sink() {
        let (mut u, _irq, sink) = uart();
        let (mut fresh, _, _) = uart();
        let power_on: Vec<u8> = [IER, LCR, MCR, SCR].iter().map(|&r| rd(&mut fresh, r)).collect();
        u.write(LCR, &[0x83]);
        u.write(IER, &[0x0f]);
        u.write(MCR, &[0x1f]);
        u.write(SCR, &[0x5a]);
        u.reset();
        let now: Vec<u8> = [IER, LCR, MCR, SCR].iter().map(|&r| rd(&mut u, r)).collect();
        assert_eq!(now, power_on);
        assert_eq!(rd(&mut u, LCR) & 0x80, 0, "DLAB clear: THR is the data register again");
        assert_eq!(rd(&mut u, IIR) & 0x0f, 0x01, "no interrupt pending");
        assert_eq!(rd(&mut u, LSR) & 0x60, 0x60, "transmitter empty");
        u.write(THR, b"Z");
        assert_eq!(*sink.0.lock().unwrap(), b"Z", "output still reaches the same sink");
    }

    #[test]
    fn transmit_reaches_the_sink_and_raises_thre_interrupt() {
        let (mut u, irq, sink) = uart();
        u.write(IER, &[0x02]); // THR empty interrupt: raised at once, the THR is empty
        assert_eq!(irq.pulses(), 1);
        assert_eq!(rd(&mut u, IIR) & 0x0f, 0x02, "THR empty identified, and acknowledged");
        let before = irq.pulses();
        u.write(THR, b"h");
        u.write(THR, b"i");
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        assert!(irq.pulses() > before);
        assert_eq!(rd(&mut u, LSR) & 0x60, 0x60, "THR and transmitter empty");
    }

    #[test]
    fn divisor_latch_scratch_and_modem_registers() {
        let (mut u, _, sink) = uart();
        u.write(LCR, &[0x80]); // DLAB
        u.write(0, &[0x0c]);
        u.write(1, &[0x00]);
        assert_eq!((rd(&mut u, 0), rd(&mut u, 1)), (0x0c, 0x00));
        u.write(LCR, &[0x03]);
        assert_eq!(rd(&mut u, LCR), 0x03);
        assert!(sink.0.lock().unwrap().is_empty(), "DLAB writes are not output");
        u.write(SCR, &[0x5a]);
        assert_eq!(rd(&mut u, SCR), 0x5a);
        u.write(MCR, &[0x08]); // OUT2
        assert_eq!(rd(&mut u, MCR), 0x08);
        let _ = rd(&mut u, MSR);
        assert_eq!(rd(&mut u, IIR) & 0x01, 0x01, "no interrupt pending");
    }

    #[test]
    fn input_larger_than_the_fifo_is_delivered_in_order() {
        let (mut u, irq, _) = uart();
        u.write(IER, &[0x01]); // received data interrupt
        let data: Vec<u8> = (0..200u8).collect();
        u.queue_input(&data);
        assert!(irq.pulses() >= 1);
        assert_eq!(u.pending_input(), 200 - 64);
        let mut got = vec![];
        while rd(&mut u, LSR) & 0x01 != 0 {
            got.push(rd(&mut u, THR));
        }
        assert_eq!(got, data);
        assert_eq!(u.pending_input(), 0);
    }

    #[test]
    fn input_queue_is_bounded_and_bad_offsets_are_ignored() {
        let (mut u, _, _) = uart();
        u.queue_input(&vec![b'x'; MAX_PENDING_INPUT + 1000]);
        assert_eq!(u.pending_input(), MAX_PENDING_INPUT - 64);
        assert_eq!(rd(&mut u, 8), 0xff);
        assert_eq!(rd(&mut u, 1 << 40), 0xff);
        u.write(9, &[1]);
        u.write(0, &[]);
    }
}
