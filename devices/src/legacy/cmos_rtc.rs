// SPDX-License-Identifier: Apache-2.0
//! The MC146818-compatible CMOS RTC and its NVRAM (ports 0x70/0x71).
//!
//! Port 0x70 selects a register (bit 7 is the NMI mask, kept but otherwise ignored), port
//! 0x71 reads or writes it. Time registers report the host's UTC time plus an offset the
//! guest can change by writing them (as `hwclock --systohc` does), in BCD or binary and 12-
//! or 24-hour form as status register B selects. The update-in-progress flag is never set:
//! reads are always coherent. Not yet emulated: periodic, alarm and update-ended interrupts
//! (IRQ 8); a guest that enables them gets no interrupt.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// Index port.
pub const CMOS_BASE: u16 = 0x70;
/// Index and data ports.
pub const CMOS_LEN: u16 = 2;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;

const B_24H: u8 = 0x02;
const B_BINARY: u8 = 0x04;
const B_SET: u8 = 0x80;
/// 32.768 kHz time base, 1024 Hz periodic rate: the power-on value.
const A_DEFAULT: u8 = 0x26;
/// Valid RAM and time.
const D_VRT: u8 = 0x80;

/// A calendar date and time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Full year.
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    /// 0-23.
    pub hour: u32,
    /// 0-59.
    pub minute: u32,
    /// 0-59.
    pub second: u32,
    /// 1 = Sunday ... 7 = Saturday, as the RTC counts.
    pub weekday: u32,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    /// The date and time `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday (5 in RTC numbering).
            weekday: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

fn from_bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0xf)
}

/// Where the RTC reads the time from (the host clock, or a fixed one in tests).
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// The CMOS RTC.
pub struct CmosRtc {
    index: u8,
    nmi_masked: bool,
    nvram: [u8; 128],
    /// Guest time minus host time, in seconds.
    offset: i64,
    clock: Clock,
}

impl CmosRtc {
    /// An RTC on the host's clock.
    pub fn new() -> Self {
        Self::with_clock(Box::new(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
        }))
    }

    /// An RTC on a given clock.
    pub fn with_clock(clock: Clock) -> Self {
        let mut nvram = [0u8; 128];
        nvram[STATUS_A as usize] = A_DEFAULT;
        nvram[STATUS_B as usize] = B_24H;
        nvram[STATUS_D as usize] = D_VRT;
        CmosRtc { index: 0, nmi_masked: false, nvram, offset: 0, clock }
    }

    /// Sets an NVRAM byte (used by firmware set-up: memory sizes, boot order).
    pub fn set_nvram(&mut self, index: u8, value: u8) {
        if let Some(b) = self.nvram.get_mut(usize::from(index)) {
            *b = value;
        }
    }

    /// Fills the NVRAM fields a PC BIOS reads to size memory and count CPUs (the layout
    /// SeaBIOS and other PC firmware expect): base memory (0x15-0x16, KiB), extended memory
    /// above 1 MiB (0x17-0x18 and 0x30-0x31, KiB, at most 65535), memory above 16 MiB
    /// (0x34-0x35, 64 KiB units), memory above 4 GiB (0x5b-0x5d, 64 KiB units) and the
    /// number of CPUs less one (0x5f). `below_4g` and `above_4g` are RAM sizes in bytes.
    pub fn set_memory_fields(&mut self, below_4g: u64, above_4g: u64, cpus: u8) {
        const MIB: u64 = 1 << 20;
        let base_kib: u16 = 640;
        let ext_kib = (below_4g.saturating_sub(MIB) / 1024).min(0xffff) as u16;
        let above_16m = (below_4g.saturating_sub(16 * MIB) / 65536).min(0xffff) as u16;
        let high = (above_4g / 65536).min(0xff_ffff) as u32;
        let mut put16 = |index: u8, v: u16| {
            self.nvram[usize::from(index)] = v as u8;
            self.nvram[usize::from(index) + 1] = (v >> 8) as u8;
        };
        put16(0x15, base_kib);
        put16(0x17, ext_kib);
        put16(0x30, ext_kib);
        put16(0x34, above_16m);
        self.nvram[0x5b] = high as u8;
        self.nvram[0x5c] = (high >> 8) as u8;
        self.nvram[0x5d] = (high >> 16) as u8;
        self.nvram[0x5f] = cpus.saturating_sub(1);
    }

    /// Whether the guest masked NMIs through bit 7 of the index port.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    fn now(&self) -> DateTime {
        DateTime::from_unix((self.clock)().saturating_add(self.offset))
    }

    fn encode(&self, v: u32) -> u8 {
        if self.nvram[STATUS_B as usize] & B_BINARY != 0 {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.nvram[STATUS_B as usize] & B_BINARY != 0 {
            u32::from(v)
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.nvram[STATUS_B as usize] & B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { 0x80 } else { 0 };
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.nvram[STATUS_B as usize] & B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    fn read_register(&mut self, index: u8) -> u8 {
        let t = self.now();
        match index {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            DAY_OF_WEEK => self.encode(t.weekday),
            DAY_OF_MONTH => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year.rem_euclid(100) as u32),
            CENTURY => self.encode(t.year.div_euclid(100) as u32),
            STATUS_C => std::mem::take(&mut self.nvram[STATUS_C as usize]),
            i => self.nvram[usize::from(i & 0x7f)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        let mut t = self.now();
        let field = match index {
            SECONDS => &mut t.second,
            MINUTES => &mut t.minute,
            HOURS => &mut t.hour,
            DAY_OF_MONTH => &mut t.day,
            MONTH => &mut t.month,
            YEAR | CENTURY => {
                let v = i64::from(self.decode(value));
                t.year = if index == YEAR {
                    t.year.div_euclid(100) * 100 + v % 100
                } else {
                    v * 100 + t.year.rem_euclid(100)
                };
                return self.set_time(t);
            }
            // Read-only or derived.
            DAY_OF_WEEK | STATUS_C | STATUS_D => return,
            STATUS_A => {
                // Bit 7 (update in progress) is read-only.
                self.nvram[STATUS_A as usize] = value & 0x7f;
                return;
            }
            i => {
                self.nvram[usize::from(i & 0x7f)] = value;
                return;
            }
        };
        *field = if index == HOURS { self.decode_hour(value) } else { self.decode(value) };
        self.set_time(t);
    }

    fn set_time(&mut self, t: DateTime) {
        let valid = (1..=12).contains(&t.month)
            && (1..=31).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        if !valid {
            log::debug!("cmos: ignoring invalid time {t:?}");
            return;
        }
        self.offset = t.to_unix() - (self.clock)();
    }
}

impl Default for CmosRtc {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for CmosRtc {
    fn debug_label(&self) -> &str {
        "cmos-rtc"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            0 => self.index | if self.nmi_masked { 0x80 } else { 0 },
            1 => self.read_register(self.index),
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => {
                self.nmi_masked = v & 0x80 != 0;
                self.index = v & 0x7f;
            }
            1 => {
                // While SET is held the guest is loading a new time; each field write below
                // still applies immediately, which gives the same end result.
                if self.index == STATUS_B && v & B_SET != 0 {
                    log::trace!("cmos: time set in progress");
                }
                self.write_register(self.index, v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 11:30:45 UTC, a Monday.
    const NOW: i64 = 1_795_433_445;

    fn rtc() -> CmosRtc {
        CmosRtc::with_clock(Box::new(|| NOW))
    }

    fn rd(r: &mut CmosRtc, reg: u8) -> u8 {
        r.write(0, &[reg]);
        let mut b = [0u8];
        r.read(1, &mut b);
        b[0]
    }

    fn wr(r: &mut CmosRtc, reg: u8, v: u8) {
        r.write(0, &[reg]);
        r.write(1, &[v]);
    }

    #[test]
    fn calendar_conversion_round_trips() {
        let t = DateTime::from_unix(NOW);
        assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2026, 11, 23, 11, 30, 45));
        assert_eq!(t.weekday, 2, "Monday");
        assert_eq!(t.to_unix(), NOW);
        assert_eq!(DateTime::from_unix(0).weekday, 5);
        let leap = DateTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        for s in [0i64, 68_169_600, 951_782_399, 4_102_444_800] {
            assert_eq!(DateTime::from_unix(s).to_unix(), s);
        }
    }

    #[test]
    fn time_registers_in_bcd_24h() {
        let mut r = rtc();
        assert_eq!(rd(&mut r, SECONDS), 0x45);
        assert_eq!(rd(&mut r, MINUTES), 0x30);
        assert_eq!(rd(&mut r, HOURS), 0x11);
        assert_eq!(rd(&mut r, DAY_OF_WEEK), 0x02);
        assert_eq!(rd(&mut r, DAY_OF_MONTH), 0x23);
        assert_eq!(rd(&mut r, MONTH), 0x11);
        assert_eq!(rd(&mut r, YEAR), 0x26);
        assert_eq!(rd(&mut r, CENTURY), 0x20);
        assert_eq!(rd(&mut r, STATUS_A), A_DEFAULT, "update-in-progress never set");
        assert_eq!(rd(&mut r, STATUS_D), D_VRT);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut r = rtc();
        wr(&mut r, STATUS_B, B_BINARY);
        assert_eq!(rd(&mut r, SECONDS), 45);
        assert_eq!(rd(&mut r, HOURS), 11, "11 AM");
        wr(&mut r, HOURS, 0x80 | 3); // 3 PM in 12-hour binary
        assert_eq!(DateTime::from_unix(NOW + r.offset).hour, 15);
        assert_eq!(rd(&mut r, HOURS), 0x80 | 3);
    }

    #[test]
    fn guest_can_set_the_clock() {
        let mut r = rtc();
        wr(&mut r, STATUS_B, B_24H | B_SET);
        wr(&mut r, YEAR, 0x27);
        wr(&mut r, HOURS, 0x05);
        wr(&mut r, STATUS_B, B_24H);
        assert_eq!(rd(&mut r, YEAR), 0x27);
        assert_eq!(rd(&mut r, HOURS), 0x05);
        assert_eq!(rd(&mut r, MINUTES), 0x30);
        // An impossible value changes nothing.
        let before = r.offset;
        wr(&mut r, MONTH, 0x13);
        wr(&mut r, SECONDS, 0x99);
        assert_eq!(r.offset, before);
    }

    #[test]
    fn memory_size_fields_for_the_bios() {
        let mut r = rtc();
        r.set_memory_fields(3 << 30, 2 << 30, 4);
        let rd16 = |r: &mut CmosRtc, i: u8| u16::from(rd(r, i)) | (u16::from(rd(r, i + 1)) << 8);
        assert_eq!(rd16(&mut r, 0x15), 640);
        assert_eq!(rd16(&mut r, 0x17), 0xffff, "capped");
        assert_eq!(rd16(&mut r, 0x30), 0xffff);
        assert_eq!(rd16(&mut r, 0x34), (((3u64 << 30) - (16 << 20)) / 65536) as u16);
        let high = u32::from(rd(&mut r, 0x5b))
            | u32::from(rd(&mut r, 0x5c)) << 8
            | u32::from(rd(&mut r, 0x5d)) << 16;
        assert_eq!(high, (2u32 << 30) / 65536);
        assert_eq!(rd(&mut r, 0x5f), 3);
        let mut small = rtc();
        small.set_memory_fields(8 << 20, 0, 1);
        assert_eq!(rd16(&mut small, 0x17), 7 * 1024);
        assert_eq!(rd16(&mut small, 0x34), 0);
        assert_eq!(rd(&mut small, 0x5f), 0);
    }

    #[test]
    fn nvram_index_nmi_and_status_c() {
        let mut r = rtc();
        wr(&mut r, 0x40, 0xab);
        assert_eq!(rd(&mut r, 0x40), 0xab);
        r.set_nvram(0x34, 0x12);
        assert_eq!(rd(&mut r, 0x34), 0x12);
        r.write(0, &[0x80 | 0x40]);
        assert!(r.nmi_masked());
        let mut b = [0u8];
        r.read(0, &mut b);
        assert_eq!(b[0], 0xc0);
        r.read(1, &mut b);
        assert_eq!(b[0], 0xab, "index masked to 7 bits");
        r.set_nvram(STATUS_C, 0x90);
        assert_eq!(rd(&mut r, STATUS_C), 0x90);
        assert_eq!(rd(&mut r, STATUS_C), 0, "status C clears on read");
        wr(&mut r, STATUS_D, 0);
        assert_eq!(rd(&mut r, STATUS_D), D_VRT, "status D is read-only");
        r.read(7, &mut b);
        assert_eq!(b[0], 0xff);
        r.write(1, &[]);
    }
}
