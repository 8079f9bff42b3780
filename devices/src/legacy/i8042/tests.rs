// SPDX-License-Identifier: Apache-2.0
//! Controller-level tests: ports, controller commands, device commands through the
//! controller, translation, interrupts and hostile input.

use std::sync::Arc;

use super::super::test_util::Recorder;
use super::*;
use crate::irq::test_util::FakeIrq;

struct Rig {
    k: I8042,
    rec: Arc<Recorder>,
    irq1: Arc<FakeIrq>,
    irq12: Arc<FakeIrq>,
}

fn rig() -> Rig {
    let rec = Arc::new(Recorder::default());
    let irq1 = Arc::new(FakeIrq::default());
    let irq12 = Arc::new(FakeIrq::default());
    let k = I8042::new(rec.clone(), irq1.clone(), irq12.clone());
    Rig { k, rec, irq1, irq12 }
}

impl Rig {
    fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.k.read(STATUS, &mut b);
        b[0]
    }
    fn data(&mut self) -> u8 {
        let mut b = [0u8];
        self.k.read(DATA, &mut b);
        b[0]
    }
    fn cmd(&mut self, c: u8) {
        self.k.write(STATUS, &[c]);
    }
    fn put(&mut self, v: u8) {
        self.k.write(DATA, &[v]);
    }
    /// Reads every waiting byte with the status seen before each.
    fn drain(&mut self) -> Vec<(u8, u8)> {
        let mut v = Vec::new();
        while self.status() & STR_OBF != 0 {
            let s = self.status();
            v.push((s, self.data()));
            assert!(v.len() < 100, "output never empties");
        }
        v
    }
    fn bytes(&mut self) -> Vec<u8> {
        self.drain().into_iter().map(|(_, b)| b).collect()
    }
    fn ctr(&mut self) -> u8 {
        self.cmd(0x20);
        self.data()
    }
    fn set_ctr(&mut self, v: u8) {
        self.cmd(0x60);
        self.put(v);
    }
    fn kbd(&mut self, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            self.put(b);
        }
        self.bytes()
    }
    fn aux(&mut self, bytes: &[u8]) -> Vec<(u8, u8)> {
        for &b in bytes {
            self.cmd(0xd4);
            self.put(b);
        }
        self.drain()
    }
}

#[test]
fn power_on_status_and_unused_offsets() {
    let mut r = rig();
    assert_eq!(r.status(), STR_KEYLOCK_OFF, "nothing to read, input buffer empty, cold boot");
    assert_eq!(r.ctr(), CTR_POWER_ON);
    for off in [1u64, 2, 3, 5, 1 << 40] {
        let mut b = [0u8; 2];
        r.k.read(off, &mut b);
        assert_eq!(b, [0xff, 0xff], "offset {off}");
        r.k.write(off, &[0xfe]);
    }
    let mut b = [0u8; 4];
    r.k.read(STATUS, &mut b);
    assert_eq!(b, [STR_KEYLOCK_OFF | STR_A2, 0xff, 0xff, 0xff], "A2 set by the 0x20 command");
    r.k.read(DATA, &mut []);
    r.k.write(DATA, &[]);
    assert!(r.rec.seen().is_empty());
}

#[test]
fn reset_is_power_on_again_with_the_same_lines() {
    let mut r = rig();
    r.set_ctr(0x47);
    r.k.key_event(Key::Plain(0x1e), true);
    r.k.reset();
    assert_eq!(r.status(), STR_KEYLOCK_OFF, "output buffer empty, cold-boot flag");
    assert_eq!(r.ctr(), CTR_POWER_ON);
    assert!(r.rec.seen().is_empty(), "a reset asks the platform for nothing");
    // The same interrupt lines serve the controller after the reset.
    let pulses = r.irq1.pulses();
    r.set_ctr(CTR_POWER_ON | 0x01);
    r.k.key_event(Key::Plain(0x1e), true);
    assert!(r.irq1.pulses() > pulses);
}

#[test]
fn a2_tracks_the_last_port_written() {
    let mut r = rig();
    r.cmd(0xae);
    assert_ne!(r.status() & STR_A2, 0);
    r.put(0xee);
    assert_eq!(r.status() & STR_A2, 0);
    assert_eq!(r.data(), 0xee);
}

#[test]
fn empty_output_buffer_rereads_last_byte() {
    let mut r = rig();
    r.cmd(0xaa);
    assert_eq!(r.data(), 0x55);
    assert_eq!(r.status() & STR_OBF, 0);
    assert_eq!(r.data(), 0x55);
}

#[test]
fn command_byte_and_ram() {
    let mut r = rig();
    r.set_ctr(0xff);
    assert_eq!(r.ctr(), 0x7f, "bit 7 is reserved");
    assert_ne!(r.status() & STR_SYS, 0, "system flag follows bit 2");
    r.set_ctr(0x00);
    assert_eq!(r.ctr(), 0x00);
    assert_eq!(r.status() & STR_SYS, 0);
    r.cmd(0x65);
    r.put(0x5a);
    r.cmd(0x7f);
    r.put(0xa5);
    r.cmd(0x25);
    assert_eq!(r.data(), 0x5a);
    r.cmd(0x3f);
    assert_eq!(r.data(), 0xa5);
    assert_eq!(r.ctr(), 0x00, "other RAM bytes leave the command byte alone");
}

#[test]
fn self_test_interface_tests_and_password() {
    let mut r = rig();
    r.cmd(0xaa);
    assert_eq!(r.drain(), vec![(STR_KEYLOCK_OFF | STR_SYS | STR_A2 | STR_OBF, 0x55)]);
    r.cmd(0xab);
    assert_eq!(r.bytes(), vec![0x00]);
    r.cmd(0xa9);
    assert_eq!(r.bytes(), vec![0x00]);
    r.cmd(0xa4);
    assert_eq!(r.bytes(), vec![0xf1]);
    r.cmd(0xc0);
    assert_eq!(r.bytes(), vec![INPUT_PORT]);
}

#[test]
fn enable_disable_commands_set_clock_bits_and_hold_data() {
    let mut r = rig();
    r.cmd(0xad);
    assert_eq!(r.ctr() & CTR_KBDDIS, CTR_KBDDIS);
    r.cmd(0xa7);
    assert_eq!(r.ctr() & CTR_AUXDIS, CTR_AUXDIS);
    r.k.key_event(Key::Plain(0x1c), true);
    assert_eq!(r.status() & STR_OBF, 0, "keyboard interface disabled: byte held");
    r.cmd(0xae);
    assert_eq!(r.bytes(), vec![0x1e]);
    assert_eq!(r.ctr() & CTR_KBDDIS, 0);
    r.aux(&[0xf4]);
    r.cmd(0xa7); // sending to the mouse re-enabled the port
    r.k.mouse_event(1, 1, 0);
    assert_eq!(r.status() & STR_OBF, 0, "aux interface disabled: packet held");
    r.cmd(0xa8);
    let out = r.drain();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(s, _)| s & STR_AUX != 0));
    assert_eq!(r.ctr() & CTR_AUXDIS, 0);
}

#[test]
fn writing_a_device_enables_its_interface() {
    let mut r = rig();
    r.set_ctr(CTR_KBDDIS | CTR_AUXDIS);
    r.put(0xee);
    assert_eq!(r.bytes(), vec![0xee]);
    assert_eq!(r.ctr() & (CTR_KBDDIS | CTR_AUXDIS), CTR_AUXDIS);
    assert_eq!(r.aux(&[0xf2]).len(), 2);
    assert_eq!(r.ctr() & CTR_AUXDIS, 0);
}

#[test]
fn output_port_read_write_a20_and_reset() {
    let mut r = rig();
    r.cmd(0xd0);
    assert_eq!(r.bytes(), vec![OUT_POWER_ON & !(OUT_KBD_OBF | OUT_AUX_OBF)]);
    r.cmd(0xd1);
    r.put(0xdd); // A20 off, reset line high
    assert!(r.rec.seen().is_empty());
    r.cmd(0xd0);
    assert_eq!(r.bytes(), vec![0xcd]);
    r.cmd(0xdf);
    r.cmd(0xd0);
    assert_eq!(r.bytes()[0] & OUT_A20, OUT_A20);
    r.cmd(0xdd);
    r.cmd(0xd0);
    assert_eq!(r.bytes()[0] & OUT_A20, 0);
    // The OBF bits report what is in the output buffer when the command runs.
    r.cmd(0xd2);
    r.put(0x11);
    r.cmd(0xd0);
    assert_eq!(r.bytes(), vec![0x11, 0xcd | OUT_KBD_OBF]);
    r.cmd(0xd3);
    r.put(0x22);
    r.cmd(0xd0);
    assert_eq!(r.bytes(), vec![0x22, 0xcd | OUT_AUX_OBF]);
    r.cmd(0xd1);
    r.put(0xde); // bit 0 low
    assert_eq!(r.rec.seen(), vec![PlatformRequest::Reset]);
}

#[test]
fn pulse_commands_reset_only_when_bit0_pulses() {
    let mut r = rig();
    for c in [0xff, 0xf1, 0xfd, 0xf3] {
        r.cmd(c);
    }
    assert!(r.rec.seen().is_empty());
    r.cmd(0xfe);
    assert_eq!(r.rec.seen(), vec![PlatformRequest::Reset]);
    r.cmd(0xf0);
    assert_eq!(r.rec.seen().len(), 2);
}

#[test]
fn write_output_buffer_commands_mark_source_and_raise_irqs() {
    let mut r = rig();
    r.cmd(0xd2);
    r.put(0x5a);
    assert_eq!(r.irq1.pulses(), 1);
    assert_eq!(r.drain(), vec![(STR_KEYLOCK_OFF | STR_OBF, 0x5a)]);
    r.cmd(0xd3);
    r.put(0xa5);
    assert_eq!(r.irq12.pulses(), 1);
    assert_eq!(r.drain(), vec![(STR_KEYLOCK_OFF | STR_OBF | STR_AUX, 0xa5)]);
    assert_eq!(r.irq1.pulses(), 1);
}

#[test]
fn linux_aux_loopback_probe() {
    // i8042_check_aux: loop a byte through the aux port with AUX interrupts enabled.
    let mut r = rig();
    r.set_ctr(CTR_KBDDIS | CTR_KBDINT | CTR_XLATE);
    r.cmd(0xd3);
    r.put(0x5a);
    assert_eq!(r.irq12.pulses(), 0, "AUX interrupt disabled");
    assert_eq!(r.drain(), vec![(STR_KEYLOCK_OFF | STR_OBF | STR_AUX, 0x5a)]);
    r.set_ctr(CTR_KBDDIS | CTR_AUXINT);
    r.cmd(0xd3);
    r.put(0xa5);
    assert_eq!(r.irq12.pulses(), 1);
    assert_eq!(r.bytes(), vec![0xa5]);
    r.cmd(0xa9);
    assert_eq!(r.bytes(), vec![0x00]);
}

#[test]
fn seabios_keyboard_setup_sequence() {
    let mut r = rig();
    assert!(r.drain().is_empty(), "flush");
    r.cmd(0xaa);
    assert_eq!(r.bytes(), vec![0x55]);
    r.cmd(0xab);
    assert_eq!(r.bytes(), vec![0x00]);
    let base = CTR_KBDDIS | CTR_AUXDIS;
    // Each ps2_command: interrupts off, enable the target port, command, restore.
    let kbd_cmd = |r: &mut Rig, bytes: &[u8]| {
        r.set_ctr(base);
        r.set_ctr(base & !CTR_KBDDIS);
        let out = r.kbd(bytes);
        r.set_ctr(base);
        out
    };
    let pulses = r.irq1.pulses();
    assert_eq!(kbd_cmd(&mut r, &[0xff]), vec![0xfa, 0xaa]);
    assert_eq!(kbd_cmd(&mut r, &[0xf5]), vec![0xfa]);
    assert_eq!(kbd_cmd(&mut r, &[0xf0, 0x02]), vec![0xfa, 0xfa]);
    assert_eq!(kbd_cmd(&mut r, &[0xf4]), vec![0xfa]);
    r.set_ctr(CTR_AUXDIS | CTR_XLATE | CTR_KBDINT);
    assert_eq!(r.irq1.pulses(), pulses, "device replies were polled with interrupts off");
    r.k.key_event(Key::Plain(0x1c), true);
    assert_eq!(r.irq1.pulses(), pulses + 1);
    assert_eq!(r.drain(), vec![(STR_KEYLOCK_OFF | STR_OBF, 0x1e)]);
}

#[test]
fn keyboard_commands_through_the_controller() {
    let mut r = rig();
    assert_eq!(r.kbd(&[0xf2]), vec![0xfa, 0xab, 0x41], "identify, translated");
    assert_eq!(r.kbd(&[0xf0, 0x00]), vec![0xfa, 0xfa, 0x41], "set 2, translated");
    r.set_ctr(CTR_KBDINT);
    assert_eq!(r.kbd(&[0xf2]), vec![0xfa, 0xab, 0x83], "identify, raw");
    assert_eq!(r.kbd(&[0xf0, 0x00]), vec![0xfa, 0xfa, 0x02]);
    assert_eq!(r.kbd(&[0xff]), vec![0xfa, 0xaa]);
    assert_eq!(r.kbd(&[0xed, 0x04]), vec![0xfa, 0xfa]);
    assert_eq!(r.k.keyboard_leds(), 4);
    assert_eq!(r.kbd(&[0xf3, 0x00]), vec![0xfa, 0xfa]);
    assert_eq!(r.kbd(&[0xf5]), vec![0xfa]);
    r.k.key_event(Key::Plain(0x1c), true);
    assert!(r.bytes().is_empty(), "scanning disabled");
    assert_eq!(r.kbd(&[0xf4]), vec![0xfa]);
    assert_eq!(r.kbd(&[0xf6]), vec![0xfa]);
    assert_eq!(r.kbd(&[0xee]), vec![0xee]);
    assert_eq!(r.kbd(&[0xfe]), vec![0xee], "resend");
    assert_eq!(r.kbd(&[0x77]), vec![0xfe], "unknown");
}

#[test]
fn mouse_commands_through_the_controller() {
    let mut r = rig();
    let aux = |r: &mut Rig, b: &[u8]| -> Vec<u8> {
        let out = r.aux(b);
        assert!(out.iter().all(|(s, _)| s & (STR_AUX | STR_OBF) == STR_AUX | STR_OBF));
        out.into_iter().map(|(_, b)| b).collect()
    };
    assert_eq!(aux(&mut r, &[0xff]), vec![0xfa, 0xaa, 0x00]);
    assert_eq!(aux(&mut r, &[0xf2]), vec![0xfa, 0x00]);
    assert_eq!(aux(&mut r, &[0xf3, 200, 0xf3, 100, 0xf3, 80]), vec![0xfa; 6]);
    assert_eq!(aux(&mut r, &[0xf2]), vec![0xfa, 0x03], "IntelliMouse");
    assert_eq!(aux(&mut r, &[0xe8, 0x03, 0xe7]), vec![0xfa; 3]);
    assert_eq!(aux(&mut r, &[0xe9]), vec![0xfa, 0x10, 0x03, 80]);
    assert_eq!(aux(&mut r, &[0xe6, 0xf4]), vec![0xfa; 2]);
    assert_eq!(aux(&mut r, &[0xe9]), vec![0xfa, 0x20, 0x03, 80]);
    r.k.mouse_wheel_event(-2, 3, 1, MOUSE_LEFT);
    assert_eq!(aux(&mut r, &[]), vec![0x19, 0xfe, 0x03, 0x01]);
    assert_eq!(aux(&mut r, &[0xf5, 0xf0]), vec![0xfa; 2]);
    r.k.mouse_event(4, 0, 0);
    assert!(aux(&mut r, &[]).is_empty(), "remote mode");
    assert_eq!(aux(&mut r, &[0xeb]), vec![0xfa, 0x08, 0x04, 0x00, 0x00]);
    assert_eq!(aux(&mut r, &[0xea, 0xf6]), vec![0xfa; 2]);
    assert_eq!(aux(&mut r, &[0x00]), vec![0xfe], "unknown");
}

#[test]
fn translation_of_keys() {
    let mut r = rig();
    let keys = |r: &mut Rig, k: Key| {
        r.k.key_event(k, true);
        r.k.key_event(k, false);
        r.bytes()
    };
    assert_eq!(keys(&mut r, Key::Plain(0x1c)), vec![0x1e, 0x9e], "a");
    assert_eq!(keys(&mut r, Key::Extended(0x14)), vec![0xe0, 0x1d, 0xe0, 0x9d], "right ctrl");
    assert_eq!(keys(&mut r, Key::Pause), vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
    assert_eq!(keys(&mut r, Key::PrintScreen), vec![0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa]);
    assert_eq!(keys(&mut r, Key::Plain(0x83)), vec![0x41, 0xc1], "F7");
    r.set_ctr(CTR_KBDINT);
    assert_eq!(keys(&mut r, Key::Plain(0x1c)), vec![0x1c, 0xf0, 0x1c], "untranslated");
    assert_eq!(keys(&mut r, Key::Extended(0x14)), vec![0xe0, 0x14, 0xe0, 0xf0, 0x14]);
}

#[test]
fn irqs_follow_the_enable_bits() {
    let mut r = rig();
    r.set_ctr(CTR_XLATE);
    r.k.key_event(Key::Plain(0x1c), true);
    assert_eq!(r.irq1.pulses(), 0);
    r.set_ctr(CTR_XLATE | CTR_AUXINT);
    assert_eq!(r.irq1.pulses(), 0, "enabling the other interrupt does not raise IRQ 1");
    r.set_ctr(CTR_XLATE | CTR_KBDINT);
    assert_eq!(r.irq1.pulses(), 1, "enabling with a byte waiting raises it");
    r.set_ctr(CTR_XLATE | CTR_KBDINT);
    assert_eq!(r.irq1.pulses(), 1, "no new edge without a change");
    r.k.key_event(Key::Plain(0x1c), false);
    assert_eq!(r.irq1.pulses(), 1, "output buffer still full");
    assert_eq!(r.data(), 0x1e);
    assert_eq!(r.irq1.pulses(), 2, "next byte loaded");
    assert_eq!(r.data(), 0x9e);
    assert_eq!(r.irq1.pulses(), 2);
    r.cmd(0x20);
    assert_eq!(r.irq1.pulses(), 3, "controller replies raise IRQ 1 too");
    r.data();
    r.aux(&[0xf4]);
    assert_eq!(r.irq12.pulses(), 0);
    r.set_ctr(CTR_AUXINT);
    r.k.mouse_event(0, 0, MOUSE_RIGHT);
    assert_eq!((r.irq1.pulses(), r.irq12.pulses()), (3, 1));
    assert_eq!(r.bytes(), vec![0x0a, 0, 0]);
    assert_eq!(r.irq12.pulses(), 3, "one edge per byte");
}

#[test]
fn keyboard_and_mouse_bytes_interleave_with_correct_status() {
    let mut r = rig();
    r.aux(&[0xf4]);
    r.k.key_event(Key::Extended(0x14), true);
    r.k.mouse_event(1, 2, 0);
    let out = r.drain();
    let kbd: Vec<u8> = out.iter().filter(|(s, _)| s & STR_AUX == 0).map(|&(_, b)| b).collect();
    let aux: Vec<u8> = out.iter().filter(|(s, _)| s & STR_AUX != 0).map(|&(_, b)| b).collect();
    assert_eq!(kbd, vec![0xe0, 0x1d]);
    assert_eq!(aux, vec![0x08, 1, 2]);
    assert_ne!(out[0].0 & STR_AUX, out[1].0 & STR_AUX, "sources alternate");
}

#[test]
fn queues_are_bounded() {
    let mut r = rig();
    r.aux(&[0xf4]);
    r.set_ctr(CTR_KBDDIS | CTR_AUXDIS | CTR_XLATE);
    for _ in 0..1000 {
        r.k.key_event(Key::Plain(0x1c), true);
        r.k.mouse_event(1, 1, 0);
        r.cmd(0x20);
    }
    let replies = r.bytes();
    assert_eq!(replies.len(), 1 + CTRL_QUEUE_LEN, "the output buffer plus the reply queue");
    assert!(replies.iter().all(|&b| b == CTR_KBDDIS | CTR_AUXDIS | CTR_XLATE));
    r.set_ctr(CTR_XLATE);
    let out = r.drain();
    assert_eq!(out.len(), 12 + 12, "12 key bytes and four 3-byte packets");
    assert_eq!(out.iter().filter(|(s, _)| s & STR_AUX != 0).count(), 12);
    assert!(r.drain().is_empty());
}

#[test]
fn data_byte_commands_are_cancelled_by_a_new_command() {
    let mut r = rig();
    for c in [0x60, 0xd1, 0xd2, 0xd3, 0xd4, 0x7f] {
        r.cmd(c);
        r.cmd(0xaa);
        assert_eq!(r.bytes(), vec![0x55], "after {c:#x}");
        r.put(0xee); // goes to the keyboard, not to the cancelled target
        assert_eq!(r.bytes(), vec![0xee], "after {c:#x}");
    }
    assert_eq!(r.ctr(), CTR_POWER_ON);
    assert!(r.rec.seen().is_empty());
}

#[test]
fn hostile_sequences_never_panic() {
    let mut r = rig();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let v = (x >> 8) as u8;
        match x % 7 {
            0 => r.cmd(v),
            1 | 2 => r.put(v),
            3 => {
                r.data();
            }
            4 => {
                r.status();
            }
            5 => r.k.key_event(if v & 1 == 0 { Key::Plain(v) } else { Key::Extended(v) }, x & 0x100 != 0),
            _ => r.k.mouse_wheel_event(x as i32, (x >> 3) as i32, v as i32, v),
        }
    }
    // Still a working controller afterwards.
    r.set_ctr(CTR_KBDINT);
    r.drain();
    r.cmd(0xaa);
    assert_eq!(r.bytes(), vec![0x55]);
    assert_eq!(r.kbd(&[0xff]), vec![0xfa, 0xaa]);
}
