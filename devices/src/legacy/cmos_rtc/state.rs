// SPDX-License-Identifier: Apache-2.0
//! The RTC's registers and time model, without the timer thread.
//!
//! Time is kept as the position of the 32.768 kHz divider chain, in nanoseconds, which runs
//! on the host's monotonic clock while the oscillator is on (register A DV2-0 = 010). The
//! chain starts at the host's wall-clock time when the device is built, so the guest's
//! seconds roll over when the host's do. Guest seconds are the chain's whole seconds plus
//! an offset the guest changes by writing the time registers. Update, alarm and periodic
//! events are applied lazily: every register access (and every timer wake-up) first
//! processes the events between the last processed chain position and now, so flags are
//! right even for a guest that polls register C with interrupts disabled.

use std::sync::Arc;

use super::calendar::{from_bcd, to_bcd, DateTime};
use super::Clock;
use crate::irq::IrqLine;

pub(super) const SECONDS: u8 = 0x00;
pub(super) const SECONDS_ALARM: u8 = 0x01;
pub(super) const MINUTES: u8 = 0x02;
pub(super) const MINUTES_ALARM: u8 = 0x03;
pub(super) const HOURS: u8 = 0x04;
pub(super) const HOURS_ALARM: u8 = 0x05;
pub(super) const DAY_OF_WEEK: u8 = 0x06;
pub(super) const DAY_OF_MONTH: u8 = 0x07;
pub(super) const MONTH: u8 = 0x08;
pub(super) const YEAR: u8 = 0x09;
pub(super) const STATUS_A: u8 = 0x0a;
pub(super) const STATUS_B: u8 = 0x0b;
pub(super) const STATUS_C: u8 = 0x0c;
pub(super) const STATUS_D: u8 = 0x0d;
pub(super) const CENTURY: u8 = 0x32;

/// Register A: update in progress (read-only).
pub(super) const A_UIP: u8 = 0x80;
/// Register A: the divider-control field DV2-0.
const A_DV_MASK: u8 = 0x70;
/// DV2-0 = 010: oscillator on, divider chain counting (the only time-keeping setting).
const A_DV_NORMAL: u8 = 0x20;
/// DV2-0 = 11x: oscillator on, divider chain held in reset.
const A_DV_RESET: u8 = 0x60;
/// Register A: rate select RS3-0.
const A_RATE_MASK: u8 = 0x0f;
/// 32.768 kHz time base, 1024 Hz periodic rate: the power-on value.
pub(super) const A_DEFAULT: u8 = 0x26;

pub(super) const B_SET: u8 = 0x80;
pub(super) const B_PIE: u8 = 0x40;
pub(super) const B_AIE: u8 = 0x20;
pub(super) const B_UIE: u8 = 0x10;
/// Register B: square-wave output enable.
const B_SQWE: u8 = 0x08;
pub(super) const B_BINARY: u8 = 0x04;
pub(super) const B_24H: u8 = 0x02;

pub(super) const C_IRQF: u8 = 0x80;
pub(super) const C_PF: u8 = 0x40;
pub(super) const C_AF: u8 = 0x20;
pub(super) const C_UF: u8 = 0x10;

/// Valid RAM and time.
pub(super) const D_VRT: u8 = 0x80;

/// An alarm byte of binary 11xxxxxx matches any value.
const ALARM_DONT_CARE: u8 = 0xc0;

pub(super) const NS_PER_SEC: i128 = 1_000_000_000;
/// The time base: cycles of the divider chain per second.
pub(super) const TIME_BASE_HZ: i128 = 32_768;
/// UIP rises this many time-base cycles (244.14 us, the datasheet's tBUC) before an update.
const UIP_CYCLES: i128 = 8;
/// The fastest the timer thread wakes for periodic interrupts: 1024 Hz. Faster rates (2048-
/// 8192 Hz) are coalesced: the ticks in between still count, but set PF once per wake-up.
pub(super) const MIN_PERIODIC_WAKE_NS: i128 = NS_PER_SEC / 1024;

/// The register file and time model.
pub(super) struct Rtc {
    pub(super) index: u8,
    pub(super) nmi_masked: bool,
    /// Registers 0x00-0x7f. The time registers' bytes are unused (time is computed), UIP in
    /// register A is computed, and register C holds the PF/AF/UF flags and IRQF.
    pub(super) nvram: [u8; 128],
    clock: Arc<dyn Clock>,
    irq: Option<Arc<dyn IrqLine>>,
    /// The divider chain's position (ns since the Unix epoch, in chain time) at `mono_base`.
    chain_base: i128,
    /// Monotonic time (ns) at which the chain was at `chain_base`.
    mono_base: u64,
    /// The monotonic time of the last `sync`.
    pub(super) mono_now: u64,
    /// The monotonic time of the timer thread's last `sync`.
    pub(super) timer_synced: u64,
    /// The chain position up to which events have been applied.
    processed: i128,
    /// Guest seconds minus the chain's whole seconds.
    secs_offset: i64,
    /// The guest time (Unix seconds), frozen while register B's SET bit is 1.
    held: Option<i64>,
    /// Periodic ticks that found PF already set (coalesced into one interrupt).
    pub(super) coalesced: u64,
    /// Tells the timer thread to exit.
    pub(super) stop: bool,
}

/// The divider-chain cycle count at chain position `ns`.
fn cycles(ns: i128) -> i128 {
    (ns * TIME_BASE_HZ).div_euclid(NS_PER_SEC)
}

/// The first chain position (ns) at which the chain has counted `cycle` cycles.
fn cycle_start_ns(cycle: i128) -> i128 {
    -((-cycle * NS_PER_SEC).div_euclid(TIME_BASE_HZ))
}

/// How many periodic ticks of period `p` cycles happened up to chain position `ns`. The
/// periodic flag rises half a period away from the update (datasheet figure "update-ended
/// and periodic interrupt relationship"), so ticks are at cycles `k * p + p / 2`.
fn ticks(ns: i128, p: i128) -> i128 {
    (cycles(ns) + p / 2).div_euclid(p)
}

impl Rtc {
    pub(super) fn new(clock: Arc<dyn Clock>, irq: Option<Arc<dyn IrqLine>>) -> Self {
        let mut nvram = [0u8; 128];
        nvram[usize::from(STATUS_A)] = A_DEFAULT;
        nvram[usize::from(STATUS_B)] = B_24H;
        nvram[usize::from(STATUS_D)] = D_VRT;
        let chain_base = clock.wall_ns();
        let mono_base = clock.monotonic_ns();
        Rtc {
            index: 0,
            nmi_masked: false,
            nvram,
            clock,
            irq,
            chain_base,
            mono_base,
            mono_now: mono_base,
            timer_synced: 0,
            processed: chain_base,
            secs_offset: 0,
            held: None,
            coalesced: 0,
            stop: false,
        }
    }

    /// The RESET pin: interrupt enables and square-wave output off, flags cleared.
    pub(super) fn reset_pin(&mut self) {
        *self.reg_mut(STATUS_B) &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        *self.reg_mut(STATUS_C) = 0;
        self.index = 0;
        self.nmi_masked = false;
    }

    fn reg(&self, index: u8) -> u8 {
        self.nvram[usize::from(index & 0x7f)]
    }

    fn reg_mut(&mut self, index: u8) -> &mut u8 {
        &mut self.nvram[usize::from(index & 0x7f)]
    }

    /// Whether an interrupt source is enabled, so a timer thread is worth having.
    pub(super) fn wants_timer(&self) -> bool {
        self.irq.is_some() && self.reg(STATUS_B) & (B_PIE | B_AIE | B_UIE) != 0
    }

    /// The oscillator is on and the chain counts.
    fn running(&self) -> bool {
        self.reg(STATUS_A) & A_DV_MASK == A_DV_NORMAL
    }

    fn chain_at(&self, mono: u64) -> i128 {
        if self.running() {
            self.chain_base + i128::from(mono.saturating_sub(self.mono_base))
        } else {
            self.chain_base
        }
    }

    fn chain_to_mono(&self, chain: i128) -> u64 {
        let delta = (chain - self.chain_base).clamp(0, i128::from(u64::MAX));
        self.mono_base.saturating_add(delta as u64)
    }

    /// The periodic interrupt's period in time-base cycles, or `None` if RS3-0 = 0. With the
    /// 32.768 kHz time base, rates 1 and 2 give 256 and 128 Hz (as on the real parts), rates
    /// 3-15 give 8192 Hz down to 2 Hz.
    pub(super) fn period_cycles(&self) -> Option<i128> {
        match self.reg(STATUS_A) & A_RATE_MASK {
            0 => None,
            r @ (1 | 2) => Some(1 << (r + 6)),
            r => Some(1 << (r - 1)),
        }
    }

    pub(super) fn clock_now(&self) -> u64 {
        self.clock.monotonic_ns()
    }

    /// Brings events and the cached time up to the clock's present.
    pub(super) fn sync(&mut self) {
        self.sync_and_signal(true);
    }

    /// `sync`, optionally without pulsing the IRQ: a read of register C takes the flags it
    /// raises into the value it returns, so an edge for them would only reach the guest's
    /// handler as an interrupt with nothing to handle.
    fn sync_and_signal(&mut self, signal: bool) {
        let now = self.clock.monotonic_ns();
        self.mono_now = now;
        self.advance(self.chain_at(now), signal);
    }

    /// Applies the update, alarm and periodic events in `(processed, to]`.
    fn advance(&mut self, to: i128, signal: bool) {
        let from = self.processed;
        if to <= from {
            return;
        }
        self.processed = to;
        let mut flags = 0;
        if let Some(p) = self.period_cycles() {
            let n = ticks(to, p) - ticks(from, p);
            if n > 0 {
                let already = self.reg(STATUS_C) & C_PF != 0;
                let missed = if already { n } else { n - 1 };
                self.coalesced = self.coalesced.saturating_add(u64::try_from(missed).unwrap_or(u64::MAX));
                flags |= C_PF;
            }
        }
        if self.held.is_none() {
            let (s_from, s_to) = (from.div_euclid(NS_PER_SEC), to.div_euclid(NS_PER_SEC));
            let updates = s_to - s_from;
            if updates > 0 {
                flags |= C_UF;
                // The alarm pattern repeats daily: the last day of updates covers every match.
                let first = s_to - updates.min(86_400) + 1;
                let offset = i128::from(self.secs_offset);
                if (first..=s_to).any(|s| self.alarm_matches(s + offset)) {
                    flags |= C_AF;
                }
            }
        }
        *self.reg_mut(STATUS_C) |= flags;
        self.update_irqf(signal);
    }

    /// Whether the alarm registers match guest time `secs` (compared as register bytes in the
    /// current data mode, with 11xxxxxx meaning "any").
    fn alarm_matches(&self, secs: i128) -> bool {
        let tod = secs.rem_euclid(86_400) as u32;
        let matches = |alarm: u8, now: u8| alarm & ALARM_DONT_CARE == ALARM_DONT_CARE || alarm == now;
        matches(self.reg(SECONDS_ALARM), self.encode(tod % 60))
            && matches(self.reg(MINUTES_ALARM), self.encode(tod / 60 % 60))
            && matches(self.reg(HOURS_ALARM), self.encode_hour(tod / 3600))
    }

    /// Recomputes IRQF (any flag whose enable bit is set); pulses the IRQ on a 0 to 1 change.
    ///
    /// The MC146818's IRQ# is an active-low level held until register C is read, but on the
    /// PC it reaches the PIC and IOAPIC as ISA IRQ 8, which both treat as an edge: so a rise
    /// of IRQF is one `pulse()`, and nothing is sent while IRQF stays 1.
    fn update_irqf(&mut self, signal: bool) {
        let c = self.reg(STATUS_C);
        let was = c & C_IRQF != 0;
        let now = c & self.reg(STATUS_B) & (C_PF | C_AF | C_UF) != 0;
        *self.reg_mut(STATUS_C) = if now { c | C_IRQF } else { c & !C_IRQF };
        if now && !was && signal {
            if let Some(irq) = &self.irq {
                irq.pulse();
            }
        }
    }

    /// The monotonic time at which the timer thread must next run, or `None` if no enabled
    /// source can raise IRQF (including while IRQF is already 1: only reading register C,
    /// which wakes the thread, can re-arm it). Periods shorter than 1/1024 s are served no
    /// sooner than 1/1024 s after the thread's previous run, whatever woke it.
    pub(super) fn next_wakeup(&self) -> Option<u64> {
        let c = self.reg(STATUS_C);
        if self.irq.is_none() || !self.running() || c & C_IRQF != 0 {
            return None;
        }
        let b = self.reg(STATUS_B);
        let now = self.processed;
        let mut next: Option<i128> = None;
        if b & B_PIE != 0 {
            if let Some(p) = self.period_cycles() {
                let mut tick = cycle_start_ns((ticks(now, p) + 1) * p - p / 2);
                if p * NS_PER_SEC < MIN_PERIODIC_WAKE_NS * TIME_BASE_HZ {
                    let earliest = self.chain_base
                        + i128::from(self.timer_synced.saturating_add(MIN_PERIODIC_WAKE_NS as u64))
                        - i128::from(self.mono_base);
                    tick = tick.max(earliest);
                }
                next = Some(tick);
            }
        }
        if b & (B_UIE | B_AIE) != 0 && self.held.is_none() {
            let second = (now.div_euclid(NS_PER_SEC) + 1) * NS_PER_SEC;
            next = Some(next.map_or(second, |n| n.min(second)));
        }
        next.map(|n| self.chain_to_mono(n))
    }

    /// The guest's current time in Unix seconds.
    fn guest_secs(&self) -> i64 {
        self.held.unwrap_or_else(|| {
            let chain_secs = self.processed.div_euclid(NS_PER_SEC);
            let secs = chain_secs + i128::from(self.secs_offset);
            secs.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
    }

    fn now(&self) -> DateTime {
        DateTime::from_unix(self.guest_secs())
    }

    /// UIP: set in the 244 us before each update while updates happen.
    fn update_in_progress(&self) -> bool {
        self.running()
            && self.held.is_none()
            && cycles(self.processed).rem_euclid(TIME_BASE_HZ) >= TIME_BASE_HZ - UIP_CYCLES
    }

    fn encode(&self, v: u32) -> u8 {
        if self.reg(STATUS_B) & B_BINARY != 0 {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.reg(STATUS_B) & B_BINARY != 0 {
            u32::from(v)
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.reg(STATUS_B) & B_24H != 0 {
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
        if self.reg(STATUS_B) & B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    /// A guest read of the selected register.
    pub(super) fn read_data(&mut self) -> u8 {
        self.sync_and_signal(self.index != STATUS_C);
        let t = self.now();
        match self.index {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            DAY_OF_WEEK => self.encode(t.weekday),
            DAY_OF_MONTH => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year.rem_euclid(100) as u32),
            CENTURY => self.encode(t.year.div_euclid(100).rem_euclid(100) as u32),
            STATUS_A => self.reg(STATUS_A) | if self.update_in_progress() { A_UIP } else { 0 },
            // Reading C clears every flag and with them IRQF.
            STATUS_C => std::mem::take(self.reg_mut(STATUS_C)),
            i => self.reg(i),
        }
    }

    /// A guest write of the selected register.
    pub(super) fn write_data(&mut self, value: u8) {
        self.sync();
        let index = self.index;
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
            // Read-only, or derived from the date.
            DAY_OF_WEEK | STATUS_C | STATUS_D => return,
            STATUS_A => return self.write_a(value),
            STATUS_B => return self.write_b(value),
            i => {
                *self.reg_mut(i) = value;
                return;
            }
        };
        *field = if index == HOURS { self.decode_hour(value) } else { self.decode(value) };
        self.set_time(t);
    }

    /// Register A: UIP is read-only; a DV2-0 change starts, stops or re-phases the chain.
    fn write_a(&mut self, value: u8) {
        let was_running = self.running();
        let was_reset = self.reg(STATUS_A) & A_DV_RESET == A_DV_RESET;
        *self.reg_mut(STATUS_A) = value & !A_UIP;
        let dv = value & A_DV_MASK;
        if dv != A_DV_NORMAL && dv & A_DV_RESET != A_DV_RESET {
            log::debug!("cmos: divider control {:#x} turns the oscillator off", dv >> 4);
        }
        match (was_running, self.running()) {
            (true, false) => {
                // Frozen where it stands (the chain no longer advances).
                self.chain_base = self.processed;
                self.mono_base = self.mono_now;
            }
            (false, true) => {
                // Out of reset, the first update comes 500 ms later; with the oscillator
                // merely off, the chain resumes where it stopped.
                if was_reset {
                    self.chain_base = self.processed.div_euclid(NS_PER_SEC) * NS_PER_SEC + NS_PER_SEC / 2;
                }
                self.mono_base = self.mono_now;
                self.processed = self.chain_base;
            }
            _ => {}
        }
    }

    /// Register B: SET freezes the time (and clears UIE as it rises); enable bits may raise
    /// IRQF at once if their flag is already set.
    fn write_b(&mut self, mut value: u8) {
        let old = self.reg(STATUS_B);
        if value & B_SET != 0 && old & B_SET == 0 {
            value &= !B_UIE;
            self.held = Some(self.guest_secs());
        }
        if value & B_SET == 0 {
            if let Some(held) = self.held.take() {
                let chain_secs = self.processed.div_euclid(NS_PER_SEC);
                self.secs_offset = clamp_i64(i128::from(held) - chain_secs);
            }
        }
        *self.reg_mut(STATUS_B) = value;
        self.update_irqf(true);
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
        let secs = t.to_unix();
        match &mut self.held {
            Some(held) => *held = secs,
            None => {
                let chain_secs = self.processed.div_euclid(NS_PER_SEC);
                self.secs_offset = clamp_i64(i128::from(secs) - chain_secs);
            }
        }
    }

    /// The guest time minus the host's, in seconds (for tests).
    #[cfg(test)]
    pub(super) fn offset_from_wall(&self) -> i64 {
        let wall = self.clock.wall_ns().div_euclid(NS_PER_SEC);
        clamp_i64(i128::from(self.guest_secs()) - wall)
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}
