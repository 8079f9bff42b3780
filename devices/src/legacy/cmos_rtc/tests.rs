// SPDX-License-Identifier: Apache-2.0
//! Tests of the CMOS RTC: registers, time keeping, interrupts and the timer thread.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::*;
use super::*;
use crate::irq::test_util::FakeIrq;

// 2026-11-23 11:30:45 UTC, a Monday.
const NOW: i64 = 1_795_433_445;

fn rtc() -> CmosRtc {
    CmosRtc::with_clock(Arc::new(ManualClock::new(NOW)), None)
}

fn offset(r: &CmosRtc) -> i64 {
    lock(&r.shared.state).offset_from_wall()
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
    assert_eq!(DateTime::from_unix(NOW + offset(&r)).hour, 15);
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
    let before = offset(&r);
    wr(&mut r, MONTH, 0x13);
    wr(&mut r, SECONDS, 0x99);
    assert_eq!(offset(&r), before);
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
    let high =
        u32::from(rd(&mut r, 0x5b)) | u32::from(rd(&mut r, 0x5c)) << 8 | u32::from(rd(&mut r, 0x5d)) << 16;
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

#[test]
fn reset_pin_clears_interrupt_enables_and_flags_but_keeps_time_and_nvram() {
    let mut r = rtc();
    wr(&mut r, 0x40, 0xab);
    let before = offset(&r);
    wr(&mut r, STATUS_B, B_24H | B_PIE | B_AIE | B_UIE | 0x08);
    r.set_nvram(STATUS_C, 0xf0);
    r.write(0, &[0x80]);
    r.reset();
    assert!(!r.nmi_masked());
    assert_eq!(rd(&mut r, STATUS_B), B_24H, "enables and SQWE cleared, modes kept");
    assert_eq!(rd(&mut r, STATUS_C), 0, "flags cleared");
    assert_eq!(rd(&mut r, 0x40), 0xab, "NVRAM kept");
    assert_eq!(offset(&r), before, "time kept");
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// An RTC on a manual clock with a recording IRQ line.
struct Bench {
    rtc: CmosRtc,
    clock: Arc<ManualClock>,
    irq: Arc<FakeIrq>,
}

/// A bench whose time only moves through `advance` (no timer thread: `poll` does its work).
fn bench() -> Bench {
    let mut b = threaded_bench();
    b.rtc.timer_disabled = true;
    b
}

fn threaded_bench() -> Bench {
    let clock = Arc::new(ManualClock::new(NOW));
    let irq = Arc::new(FakeIrq::default());
    let rtc = CmosRtc::with_clock(clock.clone(), Some(irq.clone()));
    Bench { rtc, clock, irq }
}

impl Bench {
    fn rd(&mut self, reg: u8) -> u8 {
        rd(&mut self.rtc, reg)
    }

    fn wr(&mut self, reg: u8, v: u8) {
        wr(&mut self.rtc, reg, v)
    }

    /// Moves time on and does what the timer thread would.
    fn advance(&self, ns: u64) {
        self.clock.advance_ns(ns);
        lock(&self.rtc.shared.state).sync();
    }

    fn pulses(&self) -> u32 {
        self.irq.pulses()
    }

    fn next_wakeup(&self) -> Option<u64> {
        lock(&self.rtc.shared.state).next_wakeup()
    }

    fn now(&self) -> u64 {
        self.clock.monotonic_ns()
    }
}

/// Polls `cond` for up to two seconds of real time.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    cond()
}

#[test]
fn time_runs_on_the_clock() {
    let b = bench();
    let mut b = b;
    b.advance(1500 * MS);
    assert_eq!(b.rd(SECONDS), 0x46);
    b.advance(15 * SEC);
    assert_eq!((b.rd(MINUTES), b.rd(SECONDS)), (0x31, 0x01));
    // Flags are set even with every interrupt disabled, for guests that poll.
    assert_eq!(b.rd(STATUS_C), C_PF | C_UF);
    assert_eq!(b.pulses(), 0, "no source enabled");
}

#[test]
fn periodic_interrupt_sets_pf_and_pulses_once_until_c_is_read() {
    let mut b = bench();
    b.wr(STATUS_B, B_24H | B_PIE); // register A: 1024 Hz
    b.advance(400_000);
    assert_eq!(b.pulses(), 0, "first tick half a period (488 us) in");
    b.advance(100_000);
    assert_eq!(b.pulses(), 1);
    b.advance(5 * MS);
    assert_eq!(b.pulses(), 1, "IRQF stays 1 until register C is read");
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
    assert_eq!(b.rd(STATUS_C), 0, "read clears");
    b.advance(MS);
    assert_eq!(b.pulses(), 2, "re-armed by the read");
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
    // The 5 ticks between 0.5 and 5.5 ms found PF pending; the one after the read did not.
    assert_eq!(b.rtc.coalesced_periodic_ticks(), 5);
}

#[test]
fn periodic_rates_follow_the_datasheet_table() {
    let hz = [0u64, 256, 128, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2];
    for (rate, &f) in hz.iter().enumerate() {
        let mut b = bench();
        b.wr(STATUS_A, 0x20 | rate as u8);
        b.advance(SEC);
        // With nobody reading C, every tick but the first is coalesced.
        assert_eq!(b.rtc.coalesced_periodic_ticks(), f.saturating_sub(1), "rate {rate}");
        assert_eq!(b.rd(STATUS_C) & C_PF != 0, f != 0, "rate {rate}");
    }
}

#[test]
fn periodic_rate_change_takes_effect() {
    let mut b = bench();
    b.wr(STATUS_A, 0x2f); // 2 Hz: ticks at 250 and 750 ms
    b.wr(STATUS_B, B_24H | B_PIE);
    b.advance(200 * MS);
    assert_eq!(b.rd(STATUS_C), 0);
    b.advance(60 * MS);
    assert_eq!(b.pulses(), 1);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
    b.wr(STATUS_A, 0x26);
    b.advance(MS);
    assert_eq!(b.pulses(), 2, "1024 Hz now");
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
    b.wr(STATUS_A, 0x20); // rate 0: no periodic ticks
    b.advance(SEC);
    assert_eq!(b.rd(STATUS_C), C_UF, "only the update");
    assert_eq!(b.pulses(), 2);
}

#[test]
fn update_ended_interrupt_once_a_second() {
    let mut b = bench();
    b.wr(STATUS_A, 0x20);
    b.wr(STATUS_B, B_24H | B_UIE);
    b.advance(999 * MS);
    assert_eq!(b.pulses(), 0);
    assert_eq!(b.rd(STATUS_C), 0);
    b.advance(MS);
    assert_eq!(b.pulses(), 1);
    assert_eq!(b.rd(SECONDS), 0x46, "the update ended");
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_UF);
    b.advance(SEC);
    assert_eq!(b.pulses(), 2);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_UF);
}

#[test]
fn disabled_sources_set_flags_without_interrupting() {
    let mut b = bench();
    b.wr(SECONDS_ALARM, 0xc0);
    b.wr(MINUTES_ALARM, 0xc0);
    b.wr(HOURS_ALARM, 0xc0);
    b.advance(2 * SEC);
    assert_eq!(b.pulses(), 0);
    assert_eq!(b.rd(STATUS_C), C_PF | C_AF | C_UF, "no IRQF");
    // Enabling a source whose flag is already set interrupts at once.
    b.advance(MS);
    assert_eq!(b.pulses(), 0);
    b.wr(STATUS_B, B_24H | B_PIE);
    assert_eq!(b.pulses(), 1);
    // Disabling drops IRQF; enabling again is a new edge.
    b.wr(STATUS_B, B_24H);
    assert_eq!(b.rd(STATUS_B), B_24H);
    b.wr(STATUS_B, B_24H | B_PIE);
    assert_eq!(b.pulses(), 2);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
}

#[test]
fn alarm_matches_the_time_bytes_with_dont_care() {
    let mut b = bench();
    b.wr(STATUS_A, 0x20);
    b.wr(SECONDS_ALARM, 0x00);
    b.wr(MINUTES_ALARM, 0x31);
    b.wr(HOURS_ALARM, 0x11);
    b.wr(STATUS_B, B_24H | B_AIE);
    b.advance(14 * SEC + 500 * MS); // 11:30:59.5
    assert_eq!(b.pulses(), 0);
    assert_eq!(b.rd(STATUS_C), C_UF);
    b.advance(500 * MS); // 11:31:00
    assert_eq!(b.pulses(), 1);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_AF | C_UF);
    // Every minute at :30.
    b.wr(SECONDS_ALARM, 0x30);
    b.wr(MINUTES_ALARM, 0xc0);
    b.wr(HOURS_ALARM, 0xff);
    b.advance(29 * SEC);
    assert_eq!(b.rd(STATUS_C), C_UF);
    b.advance(SEC);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_AF | C_UF);
    b.advance(59 * SEC);
    assert_eq!(b.rd(STATUS_C), C_UF);
    b.advance(SEC); // 11:32:30
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_AF | C_UF);
    assert_eq!(b.pulses(), 3);
    // A match during a long unobserved stretch is still flagged.
    b.wr(STATUS_B, B_24H);
    b.wr(SECONDS_ALARM, 0x00);
    b.wr(MINUTES_ALARM, 0x00);
    b.wr(HOURS_ALARM, 0x05); // 05:00:00, some 17.5 hours away
    b.advance(20 * 3600 * SEC);
    assert_eq!(b.rd(STATUS_C), C_AF | C_UF);
    // An impossible alarm never matches.
    b.wr(SECONDS_ALARM, 0x60);
    b.advance(2 * 86_400 * SEC);
    assert_eq!(b.rd(STATUS_C), C_UF);
}

#[test]
fn alarm_compares_in_12_hour_binary_mode() {
    let mut b = bench();
    b.wr(STATUS_A, 0x20);
    b.wr(STATUS_B, B_BINARY | B_AIE);
    b.wr(SECONDS_ALARM, 0);
    b.wr(MINUTES_ALARM, 0);
    b.wr(HOURS_ALARM, 0x80 | 1); // 1 PM
    b.advance((3600 + 29 * 60 + 14) * SEC); // 12:59:59
    assert_eq!(b.rd(STATUS_C), C_UF);
    b.advance(SEC);
    assert_eq!(b.rd(HOURS), 0x80 | 1);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_AF | C_UF);
}

#[test]
fn set_bit_stops_updates_and_clears_uie() {
    let mut b = bench();
    b.wr(STATUS_B, B_24H | B_UIE);
    b.wr(STATUS_B, B_24H | B_UIE | B_SET);
    assert_eq!(b.rd(STATUS_B), B_24H | B_SET, "SET rising clears UIE");
    b.wr(STATUS_B, B_24H | B_SET | B_UIE | B_PIE);
    b.advance(3 * SEC - 100_000); // in the UIP window of the next update
    assert_eq!(b.rd(SECONDS), 0x45, "frozen");
    assert_eq!(b.rd(STATUS_A), A_DEFAULT, "no UIP while SET");
    assert_eq!(b.rd(STATUS_C) & C_UF, 0, "no update");
    assert_eq!(b.rd(STATUS_C), 0);
    b.advance(2 * MS);
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF, "periodic ticks go on");
    b.wr(SECONDS, 0x10);
    assert_eq!(b.rd(SECONDS), 0x10);
    b.wr(STATUS_B, B_24H | B_UIE);
    assert_eq!(b.rd(SECONDS), 0x10);
    b.advance(SEC);
    assert_eq!(b.rd(SECONDS), 0x11);
    assert_eq!(b.rd(STATUS_C) & (C_IRQF | C_UF), C_IRQF | C_UF);
}

#[test]
fn uip_is_set_in_the_244_us_before_an_update() {
    let mut b = bench();
    b.advance(999_700 * 1000);
    assert_eq!(b.rd(STATUS_A), A_DEFAULT);
    b.advance(100_000); // 999.8 ms: 200 us before the update
    assert_eq!(b.rd(STATUS_A), A_UIP | A_DEFAULT);
    assert_eq!(b.rd(SECONDS), 0x45, "not yet updated");
    b.advance(200_000);
    assert_eq!(b.rd(STATUS_A), A_DEFAULT);
    assert_eq!(b.rd(SECONDS), 0x46);
    // UIP is read-only.
    b.advance(999_900 * 1000);
    b.wr(STATUS_A, 0x26);
    assert_eq!(b.rd(STATUS_A), A_UIP | A_DEFAULT);
    b.wr(STATUS_A, 0xa6);
    b.advance(SEC / 2);
    assert_eq!(b.rd(STATUS_A), A_DEFAULT);
}

#[test]
fn divider_reset_and_oscillator_off_stop_the_clock() {
    let mut b = bench();
    b.advance(200 * MS);
    assert_eq!(b.rd(STATUS_C), C_PF);
    b.wr(STATUS_A, 0x66); // chain in reset
    b.advance(2 * SEC);
    assert_eq!(b.rd(SECONDS), 0x45);
    assert_eq!(b.rd(STATUS_C), 0, "no periodic, no update");
    b.wr(STATUS_A, 0x20);
    b.advance(499 * MS);
    assert_eq!(b.rd(STATUS_C), 0);
    b.advance(MS);
    assert_eq!(b.rd(STATUS_C), C_UF, "first update 500 ms after leaving reset");
    assert_eq!(b.rd(SECONDS), 0x46);
    // DV = 000 turns the oscillator off; back to 010 it resumes where it was (at .3 s).
    b.advance(300 * MS);
    b.wr(STATUS_A, 0x00);
    b.advance(5 * SEC);
    assert_eq!((b.rd(SECONDS), b.rd(STATUS_C)), (0x46, 0));
    b.wr(STATUS_A, 0x20);
    b.advance(699 * MS);
    assert_eq!(b.rd(STATUS_C), 0);
    b.advance(MS);
    assert_eq!((b.rd(SECONDS), b.rd(STATUS_C)), (0x47, C_UF));
}

#[test]
fn timer_deadlines_and_the_1024_hz_cap() {
    let mut b = bench();
    assert_eq!(b.next_wakeup(), None, "no source enabled");
    b.wr(STATUS_B, B_24H | B_UIE);
    assert_eq!(b.next_wakeup(), Some(SEC), "the next update");
    b.wr(STATUS_B, B_24H | B_PIE);
    assert_eq!(b.next_wakeup(), Some(488_282), "tick at 16 cycles, rounded up");
    b.wr(STATUS_A, 0x23); // 8192 Hz
    assert_eq!(b.next_wakeup(), Some(976_562), "capped: 1/1024 s after the last timer run");
    b.advance(976_562);
    lock(&b.rtc.shared.state).timer_synced = b.now();
    assert_eq!(b.pulses(), 1);
    assert_eq!(b.next_wakeup(), None, "IRQF pending: nothing to do until C is read");
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_PF);
    assert_eq!(b.rtc.coalesced_periodic_ticks(), 7, "8 ticks in 976 us, one PF");
    let at = b.next_wakeup().unwrap();
    assert!(at >= b.now() + 976_562);
    b.wr(STATUS_A, 0x66);
    assert_eq!(b.next_wakeup(), None, "chain in reset");
    b.wr(STATUS_A, 0x26);
    b.wr(STATUS_B, B_24H);
    assert_eq!(b.next_wakeup(), None);
    // Without an IRQ line there is never a deadline.
    let mut r = rtc();
    wr(&mut r, STATUS_B, B_24H | B_PIE | B_UIE);
    assert_eq!(lock(&r.shared.state).next_wakeup(), None);
    assert!(r.timer.is_none(), "no thread without an IRQ line");
}

#[test]
fn timer_thread_starts_lazily_and_delivers() {
    let mut b = threaded_bench();
    b.wr(STATUS_B, B_24H);
    assert!(b.rtc.timer.is_none(), "no source, no thread");
    b.wr(STATUS_A, 0x20);
    b.wr(STATUS_B, B_24H | B_UIE);
    assert!(b.rtc.timer.is_some());
    b.clock.advance_ns(SEC);
    b.rtc.shared.wake.notify_all(); // the thread's real-time sleep would take a second
    assert!(wait_for(|| b.pulses() == 1));
    assert_eq!(b.rd(STATUS_C), C_IRQF | C_UF);
    b.clock.advance_ns(SEC);
    b.rtc.shared.wake.notify_all();
    assert!(wait_for(|| b.pulses() == 2));
}

#[test]
fn timer_thread_on_the_host_clock_caps_periodic_interrupts() {
    let irq = Arc::new(FakeIrq::default());
    let mut r = CmosRtc::with_clock(Arc::new(HostClock::new()), Some(irq.clone()));
    wr(&mut r, STATUS_A, 0x23); // 8192 Hz
    wr(&mut r, STATUS_B, B_24H | B_PIE);
    // Act as a guest whose handler reads register C for each interrupt.
    let start = Instant::now();
    let mut acked = 0;
    while start.elapsed() < Duration::from_millis(100) {
        if irq.pulses() != acked {
            acked = irq.pulses();
            assert_ne!(rd(&mut r, STATUS_C) & C_PF, 0);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let pulses = f64::from(irq.pulses());
    assert!(pulses >= 5.0, "interrupts delivered: {pulses}");
    assert!(pulses <= elapsed * 1024.0 + 3.0, "{pulses} interrupts in {elapsed} s");
    assert!(r.coalesced_periodic_ticks() > 0);
}

#[test]
fn dropping_the_device_stops_its_thread() {
    for enabled in [true, false] {
        let mut b = threaded_bench();
        b.wr(STATUS_B, B_24H | B_PIE);
        if !enabled {
            b.wr(STATUS_B, B_24H); // parked without a deadline
        }
        let shared = Arc::downgrade(&b.rtc.shared);
        assert!(b.rtc.timer.is_some());
        let start = Instant::now();
        drop(b);
        assert!(start.elapsed() < Duration::from_millis(500));
        assert!(shared.upgrade().is_none(), "the thread has let go of the state");
    }
}

#[test]
fn hostile_accesses_never_panic() {
    let mut b = threaded_bench();
    for index in 0..=255u8 {
        for value in (0..=255u8).step_by(3).chain([0xff, 0x80, 0x7f]) {
            b.rtc.write(0, &[index]);
            b.rtc.write(1, &[value]);
            let mut v = [0u8; 4];
            b.rtc.read(1, &mut v);
            b.rtc.read(0, &mut v);
            b.clock.advance_ns(u64::from(value) * 1_000_003);
        }
    }
    // Extreme dates in binary mode.
    b.wr(STATUS_A, 0x26);
    b.wr(STATUS_B, B_BINARY | B_24H | B_PIE | B_AIE);
    b.wr(CENTURY, 0xff);
    b.wr(YEAR, 0xff);
    b.clock.advance_ns(u64::MAX / 2);
    for reg in 0..0x80 {
        b.rd(reg);
    }
    b.rtc.write(5, &[1]);
    b.rtc.read(u64::MAX, &mut [0u8; 2]);
    b.rtc.write(1, &[]);
    b.rtc.read(1, &mut []);
}

#[test]
fn host_clock_with_an_offset_reads_local_time() {
    let utc = HostClock::new();
    let east = HostClock::with_offset_secs(5 * 3600 + 1800);
    let west = HostClock::with_offset_secs(-8 * 3600);
    let d_east = east.wall_ns() - utc.wall_ns();
    let d_west = west.wall_ns() - utc.wall_ns();
    let second = 1_000_000_000i128;
    assert!((d_east - (5 * 3600 + 1800) * second).abs() < second, "{d_east}");
    assert!((d_west + 8 * 3600 * second).abs() < second, "{d_west}");
}
