// SPDX-License-Identifier: Apache-2.0
//! A PS/2 (MF2) keyboard on the controller's first port.
//!
//! Commands: 0xFF reset (ACK, BAT 0xAA), 0xFE resend, 0xF6 defaults, 0xF5 disable, 0xF4
//! enable, 0xF3 typematic rate, 0xF2 identify (ACK, 0xAB, 0x83), 0xF0 get/set scan-code set,
//! 0xEE echo, 0xED LEDs. Anything else is answered with 0xFE. A command byte (0xED and up)
//! sent where a parameter was expected aborts the pending command and is executed instead.
//!
//! Not emulated: typematic repeat (the host repeats keys by sending presses again), the set-3
//! per-key commands 0xF7-0xFD (answered 0xFE) and scan-code set 3 itself: a keyboard set to
//! set 3 still sends set-2 codes (logged once). Set 1 is produced by translating set 2.

use super::queue::ByteQueue;
use super::translate::Translator;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const ECHO: u8 = 0xee;
/// The MF2 keyboard's identification bytes (0x83 reads 0x41 through translation).
const ID: [u8; 2] = [0xab, 0x83];
const DEFAULT_TYPEMATIC: u8 = 0x2b; // 10.9 characters/s after 500 ms

/// A key, named by its scan-code set-2 make code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A key whose make code is this one byte (0x01-0x84), e.g. 0x1C for 'A'.
    Plain(u8),
    /// A key whose make code is 0xE0 then this byte (0x01-0x84), e.g. 0x14 for right Ctrl.
    Extended(u8),
    /// Print Screen (make E0 12 E0 7C, break E0 F0 7C E0 F0 12).
    PrintScreen,
    /// Pause/Break (make E1 14 77 E1 F0 14 F0 77; it has no break code).
    Pause,
}

impl Key {
    /// The set-2 bytes sent for a press (`pressed`) or release; `None` if the code is invalid.
    pub fn set2_sequence(self, pressed: bool) -> Option<Vec<u8>> {
        let valid = |c: u8| (0x01..=0x84).contains(&c);
        Some(match (self, pressed) {
            (Key::Plain(c), true) if valid(c) => vec![c],
            (Key::Plain(c), false) if valid(c) => vec![0xf0, c],
            (Key::Extended(c), true) if valid(c) => vec![0xe0, c],
            (Key::Extended(c), false) if valid(c) => vec![0xe0, 0xf0, c],
            (Key::PrintScreen, true) => vec![0xe0, 0x12, 0xe0, 0x7c],
            (Key::PrintScreen, false) => vec![0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12],
            (Key::Pause, true) => vec![0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77],
            (Key::Pause, false) => Vec::new(),
            _ => return None,
        })
    }
}

/// The keyboard's state.
#[derive(Debug)]
pub(crate) struct Keyboard {
    queue: ByteQueue,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    scanning: bool,
    scancode_set: u8,
    leds: u8,
    typematic: u8,
    /// The last byte handed to the controller, for 0xFE (resend).
    last_sent: u8,
    set3_logged: bool,
}

impl Keyboard {
    pub(crate) fn new() -> Self {
        Keyboard {
            queue: ByteQueue::new("i8042 keyboard"),
            pending: None,
            scanning: true,
            scancode_set: 2,
            leds: 0,
            typematic: DEFAULT_TYPEMATIC,
            last_sent: 0,
            set3_logged: false,
        }
    }

    fn set_defaults(&mut self) {
        self.scancode_set = 2;
        self.typematic = DEFAULT_TYPEMATIC;
    }

    /// A byte from the controller (command or parameter).
    pub(crate) fn write(&mut self, b: u8) {
        if let Some(cmd) = self.pending.take() {
            if b < 0xed {
                self.parameter(cmd, b);
                return;
            }
            // A command where a parameter was expected: the pending one is abandoned.
        }
        self.command(b);
    }

    fn parameter(&mut self, cmd: u8, b: u8) {
        match cmd {
            0xed => {
                self.leds = b & 7;
                self.queue.push_reply(&[ACK]);
            }
            0xf3 => {
                self.typematic = b & 0x7f;
                self.queue.push_reply(&[ACK]);
            }
            0xf0 => match b {
                0 => {
                    self.queue.push_reply(&[ACK, self.scancode_set]);
                }
                1..=3 => {
                    self.scancode_set = b;
                    self.queue.push_reply(&[ACK]);
                }
                _ => {
                    self.queue.push_reply(&[RESEND]);
                }
            },
            _ => {}
        }
    }

    fn command(&mut self, b: u8) {
        match b {
            0xff => {
                self.queue.clear();
                self.set_defaults();
                self.leds = 0;
                self.scanning = true;
                self.queue.push_reply(&[ACK, BAT_OK]);
            }
            0xfe => {
                self.queue.push_reply(&[self.last_sent]);
            }
            0xf6 => {
                self.set_defaults();
                self.queue.push_reply(&[ACK]);
            }
            0xf5 => {
                self.queue.clear();
                self.set_defaults();
                self.scanning = false;
                self.queue.push_reply(&[ACK]);
            }
            0xf4 => {
                self.queue.clear();
                self.scanning = true;
                self.queue.push_reply(&[ACK]);
            }
            0xf2 => {
                self.queue.push_reply(&[ACK, ID[0], ID[1]]);
            }
            0xee => {
                self.queue.push_reply(&[ECHO]);
            }
            0xed | 0xf3 | 0xf0 => {
                self.pending = Some(b);
                self.queue.push_reply(&[ACK]);
            }
            _ => {
                log::debug!("i8042 keyboard: unknown command {b:#04x}");
                self.queue.push_reply(&[RESEND]);
            }
        }
    }

    /// A key press or release from the host; dropped while scanning is disabled.
    pub(crate) fn key(&mut self, key: Key, pressed: bool) {
        if !self.scanning {
            return;
        }
        let Some(seq) = key.set2_sequence(pressed) else {
            crate::warn_limited!("i8042 keyboard: invalid key {key:?}");
            return;
        };
        match self.scancode_set {
            1 => self.queue.push_input(&Translator::sequence(&seq)),
            3 if !self.set3_logged => {
                crate::warn_limited!("i8042 keyboard: scan-code set 3 is not implemented, sending set 2");
                self.set3_logged = true;
                self.queue.push_input(&seq)
            }
            _ => self.queue.push_input(&seq),
        };
    }

    /// The next byte for the controller.
    pub(crate) fn pop(&mut self) -> Option<u8> {
        let b = self.queue.pop()?;
        self.last_sent = b;
        Some(b)
    }

    /// Whether a byte is waiting.
    pub(crate) fn has_data(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The LED bits last set (bit 0 Scroll, 1 Num, 2 Caps Lock).
    pub(crate) fn leds(&self) -> u8 {
        self.leds
    }

    #[cfg(test)]
    pub(crate) fn typematic(&self) -> u8 {
        self.typematic
    }

    #[cfg(test)]
    pub(crate) fn scanning(&self) -> bool {
        self.scanning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(k: &mut Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| k.pop()).collect()
    }

    fn cmd(k: &mut Keyboard, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            k.write(b);
        }
        drain(k)
    }

    #[test]
    fn reset_identify_echo_and_unknown() {
        let mut k = Keyboard::new();
        assert_eq!(cmd(&mut k, &[0xff]), vec![ACK, BAT_OK]);
        assert_eq!(cmd(&mut k, &[0xf2]), vec![ACK, 0xab, 0x83]);
        assert_eq!(cmd(&mut k, &[0xee]), vec![ECHO]);
        assert_eq!(cmd(&mut k, &[0x12]), vec![RESEND]);
        assert_eq!(cmd(&mut k, &[0xf7]), vec![RESEND]);
        assert_eq!(cmd(&mut k, &[0xf2]), vec![ACK, 0xab, 0x83]);
        assert_eq!(cmd(&mut k, &[0xfe]), vec![0x83], "resend repeats the last byte");
    }

    #[test]
    fn scancode_set_leds_and_typematic() {
        let mut k = Keyboard::new();
        assert_eq!(cmd(&mut k, &[0xf0, 0x00]), vec![ACK, ACK, 2]);
        assert_eq!(cmd(&mut k, &[0xf0, 0x01]), vec![ACK, ACK]);
        assert_eq!(cmd(&mut k, &[0xf0, 0x00]), vec![ACK, ACK, 1]);
        assert_eq!(cmd(&mut k, &[0xf0, 0x07]), vec![ACK, RESEND]);
        assert_eq!(cmd(&mut k, &[0xf0, 0x00]), vec![ACK, ACK, 1], "bad set changes nothing");
        assert_eq!(cmd(&mut k, &[0xed, 0x07]), vec![ACK, ACK]);
        assert_eq!(k.leds(), 7);
        assert_eq!(cmd(&mut k, &[0xed, 0x02]), vec![ACK, ACK]);
        assert_eq!(k.leds(), 2);
        assert_eq!(cmd(&mut k, &[0xf3, 0x20]), vec![ACK, ACK]);
        assert_eq!(k.typematic(), 0x20);
        assert_eq!(cmd(&mut k, &[0xf6]), vec![ACK]);
        assert_eq!(k.typematic(), DEFAULT_TYPEMATIC);
        assert_eq!(cmd(&mut k, &[0xf0, 0x00]), vec![ACK, ACK, 2], "defaults restore set 2");
    }

    #[test]
    fn command_in_place_of_parameter_is_executed() {
        let mut k = Keyboard::new();
        assert_eq!(cmd(&mut k, &[0xed, 0xf2]), vec![ACK, ACK, 0xab, 0x83]);
        assert_eq!(cmd(&mut k, &[0xf3, 0xff]), vec![ACK, BAT_OK], "reset clears the buffer");
        assert_eq!(cmd(&mut k, &[0x01]), vec![RESEND], "no parameter pending any more");
    }

    #[test]
    fn enable_disable_and_keys() {
        let mut k = Keyboard::new();
        k.key(Key::Plain(0x1c), true);
        k.key(Key::Plain(0x1c), false);
        assert_eq!(drain(&mut k), vec![0x1c, 0xf0, 0x1c]);
        assert_eq!(cmd(&mut k, &[0xf5]), vec![ACK]);
        assert!(!k.scanning());
        k.key(Key::Plain(0x1c), true);
        assert!(!k.has_data(), "no keys while disabled");
        k.key(Key::Plain(0x1c), true);
        assert_eq!(cmd(&mut k, &[0xf4]), vec![ACK]);
        k.key(Key::Extended(0x14), true);
        k.key(Key::Extended(0x14), false);
        assert_eq!(drain(&mut k), vec![0xe0, 0x14, 0xe0, 0xf0, 0x14]);
        k.key(Key::Pause, true);
        k.key(Key::Pause, false);
        assert_eq!(drain(&mut k), vec![0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]);
        k.key(Key::PrintScreen, true);
        k.key(Key::PrintScreen, false);
        assert_eq!(drain(&mut k), vec![0xe0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12]);
        k.key(Key::Plain(0xf0), true);
        k.key(Key::Extended(0), true);
        k.key(Key::Plain(0xfa), false);
        assert!(!k.has_data(), "invalid codes are dropped");
    }

    #[test]
    fn set1_keys_are_translated_by_the_keyboard() {
        let mut k = Keyboard::new();
        cmd(&mut k, &[0xf0, 0x01]);
        k.key(Key::Plain(0x1c), true);
        k.key(Key::Plain(0x1c), false);
        k.key(Key::Extended(0x14), false);
        assert_eq!(drain(&mut k), vec![0x1e, 0x9e, 0xe0, 0x9d]);
    }

    #[test]
    fn keys_stop_short_of_reply_room_and_replies_still_fit() {
        let mut k = Keyboard::new();
        for _ in 0..40 {
            k.key(Key::Extended(0x14), false); // 3 bytes each
        }
        assert_eq!(k.queue.len(), 12);
        k.write(0xf2);
        let out = drain(&mut k);
        assert_eq!(out.len(), 15);
        assert_eq!(&out[12..], &[ACK, 0xab, 0x83]);
    }
}
