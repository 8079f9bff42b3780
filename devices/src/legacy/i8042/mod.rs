// SPDX-License-Identifier: Apache-2.0
//! The Intel 8042 keyboard controller with a PS/2 keyboard and a PS/2 mouse.
//!
//! Mapped at 0x60-0x64 ([`I8042_BASE`], [`I8042_LEN`]): offset 0 is the data port, offset 4
//! the status (read) and command (write) port; 0x61 belongs to the PIT's speaker port and is
//! handled by KVM, and offsets 1-3 read all-ones.
//!
//! - Status: OBF (bit 0), IBF (bit 1, always 0: bytes are taken at once), the system flag
//!   (bit 2, set by self-test and by command-byte bit 2), A2 (bit 3: last write was a
//!   command), keylock inactive (bit 4, always 1), AUX OBF (bit 5); timeout and parity read 0.
//! - The command byte is controller RAM byte 0 (commands 0x20-0x3F read RAM, 0x60-0x7F write
//!   it): interrupt enables (bits 0/1), system flag (2), keyboard/aux clock disable (4/5),
//!   set-2 to set-1 translation (6).
//! - Controller commands: 0xA4 (no password: 0xF1), 0xA7/0xA8 aux disable/enable, 0xA9/0xAB
//!   interface tests (0x00), 0xAA self-test (0x55), 0xAD/0xAE keyboard disable/enable, 0xC0
//!   input port, 0xD0/0xD1 read/write output port (bit 0 low resets the machine, bit 1 A20 is
//!   stored: KVM has no A20 gate), 0xD2/0xD3 write keyboard/aux output buffer, 0xD4 write to
//!   the mouse, 0xDD/0xDF A20 off/on, 0xF0-0xFF pulse output-port bits (bit 0 low resets).
//!   Others are logged and ignored. A command written while a data byte was expected cancels
//!   the wait. Sending a byte to a device re-enables its clock (command-byte bit 4/5).
//! - Output: controller replies first, then keyboard and mouse bytes alternately; each device
//!   buffers 16 bytes ([`queue`]) and a disabled interface keeps its device's bytes queued.
//!   Loading a byte into the output buffer pulses IRQ 1 (keyboard or controller byte) or
//!   IRQ 12 (aux byte) if the command byte enables it; so does enabling the interrupt while
//!   such a byte waits.
//!
//! The host feeds input through [`I8042::key_event`] and [`I8042::mouse_event`].

pub mod keyboard;
pub mod keymap;
pub mod mouse;
mod queue;
#[cfg(test)]
mod tests;
mod translate;

use std::collections::VecDeque;
use std::sync::Arc;

use super::{PlatformControl, PlatformRequest};
use crate::bus::BusDevice;
use crate::irq::IrqLine;
pub use keyboard::Key;
use keyboard::Keyboard;
use mouse::Mouse;
pub use mouse::{MOUSE_LEFT, MOUSE_MIDDLE, MOUSE_RIGHT};
use translate::Translator;

/// First port of the controller (data port).
pub const I8042_BASE: u16 = 0x60;
/// Ports the controller spans (0x60-0x64).
pub const I8042_LEN: u16 = 5;
/// The keyboard's interrupt line (edge-triggered ISA IRQ).
pub const I8042_KBD_IRQ: u32 = 1;
/// The mouse's interrupt line (edge-triggered ISA IRQ).
pub const I8042_AUX_IRQ: u32 = 12;

const DATA: u64 = 0;
const STATUS: u64 = 4;

const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
const STR_A2: u8 = 0x08;
const STR_KEYLOCK_OFF: u8 = 0x10;
const STR_AUX: u8 = 0x20;

const CTR_KBDINT: u8 = 0x01;
const CTR_AUXINT: u8 = 0x02;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;
/// Command byte at power-on: both interrupts enabled, translation on, system flag clear.
const CTR_POWER_ON: u8 = CTR_KBDINT | CTR_AUXINT | CTR_XLATE;

const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;
const OUT_KBD_OBF: u8 = 0x10;
const OUT_AUX_OBF: u8 = 0x20;
/// Output port at power-on: not in reset, A20 on, unused bits and the clock/data lines high.
const OUT_POWER_ON: u8 = 0xcf;
/// Input port: keyboard not inhibited (bit 7), no manufacturing jumper (bit 5), colour display.
const INPUT_PORT: u8 = 0xa0;

/// Bytes of controller replies held at most (a guest that never reads cannot grow it).
const CTRL_QUEUE_LEN: usize = 16;

/// Where a byte in the output buffer came from; decides status bit 5 and the IRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The keyboard or the controller itself (IRQ 1).
    Kbd,
    /// The mouse (IRQ 12).
    Aux,
}

/// What the next data-port write is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataTarget {
    /// Controller RAM byte (0 is the command byte).
    Ram(usize),
    /// The output port (0xD1).
    OutputPort,
    /// The output buffer, as keyboard data (0xD2).
    KbdBuffer,
    /// The output buffer, as mouse data (0xD3).
    AuxBuffer,
    /// The mouse (0xD4).
    Mouse,
}

/// The keyboard controller with its two devices.
pub struct I8042 {
    platform: Arc<dyn PlatformControl>,
    kbd_irq: Arc<dyn IrqLine>,
    aux_irq: Arc<dyn IrqLine>,
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    sys_flag: bool,
    last_was_command: bool,
    expect: Option<DataTarget>,
    /// The output buffer.
    out: Option<(u8, Source)>,
    /// The last byte read, returned again when the output buffer is empty.
    last_read: u8,
    ctrl_queue: VecDeque<(u8, Source)>,
    ctrl_overflow_logged: bool,
    output_port: u8,
    translator: Translator,
    prefer_aux: bool,
    keyboard: Keyboard,
    mouse: Mouse,
}

impl I8042 {
    /// A controller whose reset line goes to `platform` and whose keyboard and mouse raise
    /// `kbd_irq` (IRQ 1) and `aux_irq` (IRQ 12).
    pub fn new(
        platform: Arc<dyn PlatformControl>,
        kbd_irq: Arc<dyn IrqLine>,
        aux_irq: Arc<dyn IrqLine>,
    ) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_POWER_ON;
        I8042 {
            platform,
            kbd_irq,
            aux_irq,
            ram,
            sys_flag: false,
            last_was_command: false,
            expect: None,
            out: None,
            last_read: 0,
            ctrl_queue: VecDeque::with_capacity(CTRL_QUEUE_LEN),
            ctrl_overflow_logged: false,
            output_port: OUT_POWER_ON,
            translator: Translator::default(),
            prefer_aux: false,
            keyboard: Keyboard::new(),
            mouse: Mouse::new(),
        }
    }

    /// A key press or release from the host (set-2 codes; translated to set 1 when the
    /// command byte asks for it). Dropped while the keyboard does not scan or its buffer is
    /// full.
    pub fn key_event(&mut self, key: Key, pressed: bool) {
        self.keyboard.key(key, pressed);
        self.refill();
    }

    /// Relative mouse movement (`dy` > 0 is up, as PS/2 counts it) and the buttons held
    /// ([`MOUSE_LEFT`], [`MOUSE_RIGHT`], [`MOUSE_MIDDLE`]). Out-of-range movement is
    /// clamped with the packet's overflow bit set.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, buttons: u8) {
        self.mouse_wheel_event(dx, dy, 0, buttons);
    }

    /// Like [`I8042::mouse_event`] with wheel movement `dz` (> 0 is towards the user), sent
    /// once the guest has switched the mouse to IntelliMouse mode.
    pub fn mouse_wheel_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.mouse.event(dx, dy, dz, buttons);
        self.refill();
    }

    /// The keyboard LEDs the guest set (bit 0 Scroll, bit 1 Num, bit 2 Caps Lock).
    pub fn keyboard_leds(&self) -> u8 {
        self.keyboard.leds()
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn status(&self) -> u8 {
        let mut s = STR_KEYLOCK_OFF;
        match self.out {
            Some((_, Source::Kbd)) => s |= STR_OBF,
            Some((_, Source::Aux)) => s |= STR_OBF | STR_AUX,
            None => {}
        }
        if self.sys_flag {
            s |= STR_SYS;
        }
        if self.last_was_command {
            s |= STR_A2;
        }
        s
    }

    /// Queues a controller-generated byte ahead of device data.
    fn reply(&mut self, b: u8, source: Source) {
        if self.ctrl_queue.len() >= CTRL_QUEUE_LEN {
            if !self.ctrl_overflow_logged {
                crate::warn_limited!("i8042: guest does not read replies, dropping them");
                self.ctrl_overflow_logged = true;
            }
            return;
        }
        self.ctrl_queue.push_back((b, source));
    }

    fn interrupt_enabled(&self, source: Source) -> bool {
        let bit = match source {
            Source::Kbd => CTR_KBDINT,
            Source::Aux => CTR_AUXINT,
        };
        self.ctr() & bit != 0
    }

    fn raise(&self, source: Source) {
        if self.interrupt_enabled(source) {
            match source {
                Source::Kbd => self.kbd_irq.pulse(),
                Source::Aux => self.aux_irq.pulse(),
            }
        }
    }

    fn load(&mut self, b: u8, source: Source) {
        self.out = Some((b, source));
        self.raise(source);
    }

    fn next_keyboard_byte(&mut self) -> Option<u8> {
        while let Some(b) = self.keyboard.pop() {
            if self.ctr() & CTR_XLATE == 0 {
                return Some(b);
            }
            if let Some(t) = self.translator.feed(b) {
                return Some(t);
            }
        }
        None
    }

    /// Fills an empty output buffer from the controller's replies or an enabled device.
    fn refill(&mut self) {
        if self.out.is_some() {
            return;
        }
        if let Some((b, source)) = self.ctrl_queue.pop_front() {
            self.load(b, source);
            return;
        }
        let kbd_ready = self.ctr() & CTR_KBDDIS == 0 && self.keyboard.has_data();
        let aux_ready = self.ctr() & CTR_AUXDIS == 0 && self.mouse.has_data();
        if aux_ready && (self.prefer_aux || !kbd_ready) {
            if let Some(b) = self.mouse.pop() {
                self.prefer_aux = false;
                self.load(b, Source::Aux);
            }
        } else if kbd_ready {
            // A lone break prefix with nothing after it leaves the buffer empty.
            if let Some(b) = self.next_keyboard_byte() {
                self.prefer_aux = true;
                self.load(b, Source::Kbd);
            }
        }
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.out.take() {
            self.last_read = b;
            self.refill();
        }
        self.last_read
    }

    fn write_ram(&mut self, index: usize, v: u8) {
        let Some(slot) = self.ram.get_mut(index) else { return };
        if index != 0 {
            *slot = v;
            return;
        }
        let old = *slot;
        *slot = v & 0x7f;
        self.sys_flag = v & CTR_SYS != 0;
        // The interrupt line follows OBF & enable: enabling it with a byte waiting is an edge.
        if let Some((_, source)) = self.out {
            let bit = if source == Source::Kbd { CTR_KBDINT } else { CTR_AUXINT };
            if old & bit == 0 && v & bit != 0 {
                self.raise(source);
            }
        }
    }

    fn write_output_port(&mut self, v: u8) {
        self.output_port = v;
        if v & OUT_RESET == 0 {
            self.platform.request(PlatformRequest::Reset);
        }
    }

    fn write_data(&mut self, v: u8) {
        self.last_was_command = false;
        match self.expect.take() {
            Some(DataTarget::Ram(i)) => self.write_ram(i, v),
            Some(DataTarget::OutputPort) => self.write_output_port(v),
            Some(DataTarget::KbdBuffer) => self.reply(v, Source::Kbd),
            Some(DataTarget::AuxBuffer) => self.reply(v, Source::Aux),
            Some(DataTarget::Mouse) => {
                self.ram[0] &= !CTR_AUXDIS;
                self.mouse.write(v);
            }
            None => {
                self.ram[0] &= !CTR_KBDDIS;
                self.keyboard.write(v);
            }
        }
        self.refill();
    }

    fn write_command(&mut self, cmd: u8) {
        self.last_was_command = true;
        if self.expect.take().is_some() {
            log::debug!("i8042: command {cmd:#04x} while a data byte was expected");
        }
        match cmd {
            0x20..=0x3f => self.reply(self.ram[usize::from(cmd & 0x1f)], Source::Kbd),
            0x60..=0x7f => self.expect = Some(DataTarget::Ram(usize::from(cmd & 0x1f))),
            0xa4 => self.reply(0xf1, Source::Kbd),
            0xa7 => self.ram[0] |= CTR_AUXDIS,
            0xa8 => self.ram[0] &= !CTR_AUXDIS,
            0xa9 | 0xab => self.reply(0x00, Source::Kbd),
            0xaa => {
                self.sys_flag = true;
                self.reply(0x55, Source::Kbd);
            }
            0xad => self.ram[0] |= CTR_KBDDIS,
            0xae => self.ram[0] &= !CTR_KBDDIS,
            0xc0 => self.reply(INPUT_PORT, Source::Kbd),
            0xd0 => {
                let mut v = self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF);
                match self.out {
                    Some((_, Source::Kbd)) => v |= OUT_KBD_OBF,
                    Some((_, Source::Aux)) => v |= OUT_AUX_OBF,
                    None => {}
                }
                self.reply(v, Source::Kbd);
            }
            0xd1 => self.expect = Some(DataTarget::OutputPort),
            0xd2 => self.expect = Some(DataTarget::KbdBuffer),
            0xd3 => self.expect = Some(DataTarget::AuxBuffer),
            0xd4 => self.expect = Some(DataTarget::Mouse),
            0xdd => self.output_port &= !OUT_A20,
            0xdf => self.output_port |= OUT_A20,
            0xf0..=0xff => {
                // Pulses the output-port bits whose command bit is 0; only reset matters.
                if cmd & OUT_RESET == 0 {
                    self.platform.request(PlatformRequest::Reset);
                }
            }
            _ => crate::warn_limited!("i8042: unsupported controller command {cmd:#04x}"),
        }
        self.refill();
    }
}

impl BusDevice for I8042 {
    fn debug_label(&self) -> &str {
        "i8042"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(first) = data.first_mut() else { return };
        match offset {
            DATA => *first = self.read_data(),
            STATUS => *first = self.status(),
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            DATA => self.write_data(v),
            STATUS => self.write_command(v),
            _ => log::debug!("i8042: write {v:#04x} to unused offset {offset:#x}"),
        }
    }

    /// The controller, keyboard and mouse as at power-on (the self-test byte is not queued
    /// again: a real keyboard's BAT result comes from its own power-on, not a system reset).
    fn reset(&mut self) {
        *self = I8042::new(self.platform.clone(), self.kbd_irq.clone(), self.aux_irq.clone());
    }
}
