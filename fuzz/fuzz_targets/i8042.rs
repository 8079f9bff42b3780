// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the i8042 controller: guest port accesses interleaved with host key and mouse
//! events.
#![no_main]

mod common;

use devices::bus::BusDevice;
use devices::legacy::i8042::{Key, I8042};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut kbd = I8042::new(common::platform(), common::irq(), common::irq());
    // Each step is 2 bytes: an operation and its value.
    for step in data.chunks_exact(2) {
        let (op, v) = (step[0], step[1]);
        let port = u64::from(op >> 4);
        match op & 7 {
            0 | 1 => {
                let mut b = [0u8; 2];
                let len = 1 + usize::from(op & 8 != 0);
                kbd.read(port, &mut b[..len]);
            }
            2 | 3 => kbd.write(port, &[v]),
            4 => {
                let key = match op >> 5 {
                    0 | 1 | 2 => Key::Plain(v),
                    3 | 4 | 5 => Key::Extended(v),
                    6 => Key::Pause,
                    _ => Key::PrintScreen,
                };
                kbd.key_event(key, op & 0x10 != 0);
            }
            5 => kbd.mouse_wheel_event(i32::from(v as i8) * 3, i32::from(op) - 128, i32::from(v), op),
            6 => kbd.mouse_event(i32::from(v) << 4, -i32::from(v), v),
            _ => {
                let _ = kbd.keyboard_leds();
            }
        }
    }
});
