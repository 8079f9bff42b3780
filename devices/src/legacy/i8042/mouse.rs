// SPDX-License-Identifier: Apache-2.0
//! A PS/2 mouse on the controller's auxiliary port, with the IntelliMouse wheel extension.
//!
//! Commands: 0xFF reset (ACK, 0xAA, ID), 0xFE resend, 0xF6 defaults, 0xF5/0xF4 disable/enable
//! data reporting, 0xF3 sample rate, 0xF2 identify (ACK, ID), 0xF0 remote mode, 0xEE wrap
//! mode, 0xEC leave wrap mode, 0xEB read data, 0xEA stream mode, 0xE9 status (ACK + 3 bytes),
//! 0xE8 resolution, 0xE7/0xE6 scaling 2:1/1:1. Anything else is answered 0xFE, as is an
//! invalid sample rate or resolution (a command byte there is executed instead).
//!
//! Setting the sample rates 200, 100, 80 in a row turns the device ID from 0 into 3
//! (IntelliMouse): packets grow a fourth byte, the wheel movement. The five-button ID 4
//! (200, 200, 80) is not offered. Resolution and sample rate are stored and reported but do
//! not scale or pace the host's movements.

use super::queue::ByteQueue;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const RATES: [u8; 7] = [10, 20, 40, 60, 80, 100, 200];
const INTELLIMOUSE_MAGIC: [u8; 3] = [200, 100, 80];
const DEFAULT_RATE: u8 = 100;
const DEFAULT_RESOLUTION: u8 = 2; // 4 counts/mm

/// Left button bit of `buttons` in [`super::I8042::mouse_event`].
pub const MOUSE_LEFT: u8 = 1;
/// Right button bit.
pub const MOUSE_RIGHT: u8 = 2;
/// Middle button bit.
pub const MOUSE_MIDDLE: u8 = 4;

/// The mouse's state.
#[derive(Debug)]
pub(crate) struct Mouse {
    queue: ByteQueue,
    pending: Option<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2to1: bool,
    resolution: u8,
    sample_rate: u8,
    id: u8,
    last_rates: [u8; 3],
    buttons: u8,
    /// Movement not yet reported (remote mode).
    acc: (i32, i32, i32),
    last_sent: u8,
}

/// Clamps to the 9-bit range of a packet; returns the low byte, sign and overflow.
fn clamp9(v: i32) -> (u8, bool, bool) {
    let c = v.clamp(-256, 255);
    (c as u8, c < 0, c != v)
}

/// Scaling 2:1 as the PS/2 mouse applies it in stream mode.
fn scale_2to1(v: i32) -> i32 {
    let m = match v.unsigned_abs() {
        0 => 0,
        1 | 2 => 1,
        3 => 3,
        4 => 6,
        5 => 9,
        n => 2 * n.min(1 << 20),
    } as i32;
    if v < 0 {
        -m
    } else {
        m
    }
}

impl Mouse {
    pub(crate) fn new() -> Self {
        Mouse {
            queue: ByteQueue::new("i8042 mouse"),
            pending: None,
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2to1: false,
            resolution: DEFAULT_RESOLUTION,
            sample_rate: DEFAULT_RATE,
            id: 0,
            last_rates: [0; 3],
            buttons: 0,
            acc: (0, 0, 0),
            last_sent: 0,
        }
    }

    fn set_defaults(&mut self) {
        self.reporting = false;
        self.remote = false;
        self.scaling_2to1 = false;
        self.resolution = DEFAULT_RESOLUTION;
        self.sample_rate = DEFAULT_RATE;
        self.acc = (0, 0, 0);
    }

    /// A byte from the controller (command or parameter).
    pub(crate) fn write(&mut self, b: u8) {
        if let Some(cmd) = self.pending.take() {
            if self.parameter(cmd, b) {
                return;
            }
            if b < 0xe6 {
                self.queue.push_reply(&[RESEND]);
                return;
            }
        }
        if self.wrap && b != 0xff && b != 0xec {
            self.queue.push_reply(&[b]);
            return;
        }
        self.command(b);
    }

    /// Applies a parameter; returns false if it is invalid.
    fn parameter(&mut self, cmd: u8, b: u8) -> bool {
        match cmd {
            0xf3 if RATES.contains(&b) => {
                self.sample_rate = b;
                self.last_rates = [self.last_rates[1], self.last_rates[2], b];
                if self.last_rates == INTELLIMOUSE_MAGIC {
                    self.id = 3;
                }
            }
            0xe8 if b <= 3 => self.resolution = b,
            _ => return false,
        }
        self.queue.push_reply(&[ACK]);
        true
    }

    fn command(&mut self, b: u8) {
        match b {
            0xff => {
                self.queue.clear();
                self.set_defaults();
                self.wrap = false;
                self.id = 0;
                self.last_rates = [0; 3];
                self.queue.push_reply(&[ACK, BAT_OK, self.id]);
            }
            0xfe => {
                self.queue.push_reply(&[self.last_sent]);
            }
            0xf6 => {
                self.set_defaults();
                self.queue.push_reply(&[ACK]);
            }
            0xf5 => {
                self.reporting = false;
                self.queue.push_reply(&[ACK]);
            }
            0xf4 => {
                self.reporting = true;
                self.queue.push_reply(&[ACK]);
            }
            0xf3 | 0xe8 => {
                self.pending = Some(b);
                self.queue.push_reply(&[ACK]);
            }
            0xf2 => {
                self.queue.push_reply(&[ACK, self.id]);
            }
            0xf0 | 0xea => {
                self.remote = b == 0xf0;
                self.acc = (0, 0, 0);
                self.queue.push_reply(&[ACK]);
            }
            0xee | 0xec => {
                self.wrap = b == 0xee;
                self.acc = (0, 0, 0);
                self.queue.push_reply(&[ACK]);
            }
            0xeb => {
                let (dx, dy, dz) = std::mem::take(&mut self.acc);
                let (p, n) = self.packet(dx, dy, dz);
                let mut reply = [ACK, 0, 0, 0, 0];
                reply[1..=n].copy_from_slice(&p[..n]);
                self.queue.push_reply(&reply[..=n]);
            }
            0xe9 => {
                let status = u8::from(self.remote) << 6
                    | u8::from(self.reporting) << 5
                    | u8::from(self.scaling_2to1) << 4
                    | (self.buttons & MOUSE_LEFT) << 2
                    | (self.buttons & MOUSE_MIDDLE) >> 1
                    | (self.buttons & MOUSE_RIGHT) >> 1;
                self.queue.push_reply(&[ACK, status, self.resolution, self.sample_rate]);
            }
            0xe7 | 0xe6 => {
                self.scaling_2to1 = b == 0xe7;
                self.queue.push_reply(&[ACK]);
            }
            _ => {
                log::debug!("i8042 mouse: unknown command {b:#04x}");
                self.queue.push_reply(&[RESEND]);
            }
        }
    }

    /// A movement packet: 3 bytes, or 4 with the IntelliMouse ID. `dy` > 0 is up.
    fn packet(&self, dx: i32, dy: i32, dz: i32) -> ([u8; 4], usize) {
        let (x, xs, xo) = clamp9(dx);
        let (y, ys, yo) = clamp9(dy);
        let b0 = u8::from(yo) << 7
            | u8::from(xo) << 6
            | u8::from(ys) << 5
            | u8::from(xs) << 4
            | 0x08
            | (self.buttons & 7);
        if self.id == 3 {
            ([b0, x, y, dz.clamp(-8, 7) as u8], 4)
        } else {
            ([b0, x, y, 0], 3)
        }
    }

    /// Movement and button state from the host: a packet in stream mode with reporting on,
    /// accumulated for 0xEB in remote mode, dropped otherwise.
    pub(crate) fn event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.buttons = buttons & 7;
        if self.wrap {
            return;
        }
        if self.remote || !self.reporting {
            if self.remote {
                let sat = |a: i32, d: i32| a.saturating_add(d).clamp(-(1 << 16), 1 << 16);
                self.acc = (sat(self.acc.0, dx), sat(self.acc.1, dy), sat(self.acc.2, dz));
            }
            return;
        }
        let (dx, dy) = if self.scaling_2to1 { (scale_2to1(dx), scale_2to1(dy)) } else { (dx, dy) };
        let (p, n) = self.packet(dx, dy, dz);
        self.queue.push_input(&p[..n]);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Mouse) -> Vec<u8> {
        std::iter::from_fn(|| m.pop()).collect()
    }

    fn cmd(m: &mut Mouse, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            m.write(b);
        }
        drain(m)
    }

    #[test]
    fn reset_identify_and_defaults() {
        let mut m = Mouse::new();
        assert_eq!(cmd(&mut m, &[0xff]), vec![ACK, BAT_OK, 0x00]);
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 0x00]);
        assert_eq!(cmd(&mut m, &[0xe9]), vec![ACK, 0x00, DEFAULT_RESOLUTION, DEFAULT_RATE]);
        assert_eq!(cmd(&mut m, &[0x42]), vec![RESEND]);
        assert_eq!(cmd(&mut m, &[0xfe]), vec![RESEND], "resend repeats the last byte");
    }

    #[test]
    fn settings_show_in_status() {
        let mut m = Mouse::new();
        assert_eq!(cmd(&mut m, &[0xf3, 40]), vec![ACK, ACK]);
        assert_eq!(cmd(&mut m, &[0xe8, 3]), vec![ACK, ACK]);
        assert_eq!(cmd(&mut m, &[0xe7]), vec![ACK]);
        assert_eq!(cmd(&mut m, &[0xf4]), vec![ACK]);
        m.event(0, 0, 0, MOUSE_LEFT | MOUSE_RIGHT);
        drain(&mut m);
        assert_eq!(cmd(&mut m, &[0xe9]), vec![ACK, 0x20 | 0x10 | 0x04 | 0x01, 3, 40]);
        assert_eq!(cmd(&mut m, &[0xe6, 0xf0]), vec![ACK, ACK]);
        m.event(0, 0, 0, MOUSE_MIDDLE);
        assert_eq!(cmd(&mut m, &[0xe9]), vec![ACK, 0x40 | 0x20 | 0x02, 3, 40]);
        assert_eq!(cmd(&mut m, &[0xf5, 0xea]), vec![ACK, ACK]);
        assert_eq!(cmd(&mut m, &[0xe9]), vec![ACK, 0x02, 3, 40]);
        assert_eq!(cmd(&mut m, &[0xf6, 0xe9]), vec![ACK, ACK, 0x02, DEFAULT_RESOLUTION, DEFAULT_RATE]);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let mut m = Mouse::new();
        assert_eq!(cmd(&mut m, &[0xf3, 33]), vec![ACK, RESEND]);
        assert_eq!(cmd(&mut m, &[0xe8, 4]), vec![ACK, RESEND]);
        assert_eq!(cmd(&mut m, &[0xe9]), vec![ACK, 0, DEFAULT_RESOLUTION, DEFAULT_RATE]);
        assert_eq!(cmd(&mut m, &[0xf3, 0xf2]), vec![ACK, ACK, 0], "a command instead of a rate");
    }

    #[test]
    fn intellimouse_sequence_gives_id3_and_4_byte_packets() {
        let mut m = Mouse::new();
        cmd(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 60]);
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 0], "wrong sequence");
        cmd(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80]);
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 3]);
        cmd(&mut m, &[0xf4]);
        m.event(1, -1, -2, 0);
        assert_eq!(drain(&mut m), vec![0x08 | 0x20, 0x01, 0xff, 0xfe]);
        m.event(0, 0, 100, 0);
        assert_eq!(drain(&mut m), vec![0x08, 0, 0, 7], "wheel clamped to 4 bits");
        assert_eq!(cmd(&mut m, &[0xff]), vec![ACK, BAT_OK, 0]);
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 0], "reset forgets the ID");
    }

    #[test]
    fn stream_packets_signs_overflow_and_scaling() {
        let mut m = Mouse::new();
        m.event(5, 5, 0, 0);
        assert!(!m.has_data(), "reporting is off after reset");
        cmd(&mut m, &[0xf4]);
        m.event(5, -3, 0, MOUSE_LEFT);
        assert_eq!(drain(&mut m), vec![0x08 | 0x20 | 0x01, 5, 0xfd]);
        m.event(-300, 400, 0, MOUSE_RIGHT | MOUSE_MIDDLE);
        assert_eq!(drain(&mut m), vec![0x80 | 0x40 | 0x10 | 0x08 | 0x06, 0x00, 0xff]);
        cmd(&mut m, &[0xe7]);
        m.event(4, -5, 0, 0);
        assert_eq!(drain(&mut m), vec![0x08 | 0x20, 6, (-9i8) as u8]);
        m.event(i32::MAX, i32::MIN, i32::MIN, 0xff);
        assert_eq!(drain(&mut m), vec![0xc0 | 0x20 | 0x08 | 0x07, 0xff, 0x00]);
    }

    #[test]
    fn remote_mode_and_read_data() {
        let mut m = Mouse::new();
        cmd(&mut m, &[0xf0]);
        m.event(3, 4, 0, 0);
        m.event(2, -1, 0, MOUSE_LEFT);
        assert!(!m.has_data(), "no packets in remote mode");
        assert_eq!(cmd(&mut m, &[0xeb]), vec![ACK, 0x09, 5, 3]);
        assert_eq!(cmd(&mut m, &[0xeb]), vec![ACK, 0x09, 0, 0], "counters cleared");
        for _ in 0..10 {
            m.event(i32::MAX, 0, 0, 0);
        }
        assert_eq!(cmd(&mut m, &[0xeb]), vec![ACK, 0x48, 0xff, 0]);
    }

    #[test]
    fn wrap_mode_echoes_until_reset_wrap() {
        let mut m = Mouse::new();
        assert_eq!(cmd(&mut m, &[0xee]), vec![ACK]);
        assert_eq!(cmd(&mut m, &[0x12, 0xf2, 0xeb]), vec![0x12, 0xf2, 0xeb]);
        assert_eq!(cmd(&mut m, &[0xec]), vec![ACK]);
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 0]);
        m.write(0xee);
        assert_eq!(cmd(&mut m, &[0xff]), vec![ACK, BAT_OK, 0], "reset clears the buffer, leaves wrap mode");
        assert_eq!(cmd(&mut m, &[0xf2]), vec![ACK, 0]);
    }

    #[test]
    fn packets_stop_short_of_reply_room() {
        let mut m = Mouse::new();
        cmd(&mut m, &[0xf4]);
        for _ in 0..100 {
            m.event(1, 1, 0, 0);
        }
        assert_eq!(m.queue.len(), 12);
        m.write(0xe9);
        assert_eq!(drain(&mut m).len(), 16);
    }
}
