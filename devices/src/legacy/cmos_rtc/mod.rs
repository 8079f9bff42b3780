// SPDX-License-Identifier: Apache-2.0
//! The MC146818A/DS12887-compatible CMOS RTC and its NVRAM (ports 0x70/0x71, ISA IRQ 8).
//!
//! Port 0x70 selects a register (bit 7 is the NMI mask, kept but otherwise ignored), port
//! 0x71 reads or writes it. Time registers report the host's UTC time plus an offset the
//! guest can change by writing them (as `hwclock --systohc` does), in BCD or binary and 12-
//! or 24-hour form as status register B selects.
//!
//! Time model (see `state.rs`): a 32.768 kHz divider chain that starts at the host's
//! wall-clock time and then runs on the host's monotonic clock, as a real RTC runs on its
//! crystal: a step of the host's wall clock after the VM starts is not followed.
//! - Register A: DV2-0 = 010 runs the chain; 11x holds it in reset (time stops; the first
//!   update comes 500 ms after 010 is written back); any other value turns the oscillator
//!   off (time stops; it resumes where it was), as on the DS12887. RS3-0 select the periodic
//!   rate: 0 = none, 1 and 2 = 256 and 128 Hz, 3-15 = 8192 Hz down to 2 Hz. UIP (bit 7)
//!   reads 1 during the 244 us before each update; the 1984 us update cycle itself takes no
//!   time here (the time registers change at once), so a guest that sees UIP = 0 has at
//!   least 244 us to read a coherent time, which is what the datasheet promises.
//! - Register B: SET stops updates (the time is frozen for the guest to load; clearing SET
//!   restarts it from the loaded value) and clears UIE as it rises. PIE, AIE and UIE enable
//!   the periodic, alarm and update-ended interrupts. DSE (daylight saving) and SQWE (no
//!   square-wave pin) are stored but have no effect.
//! - Register C: PF, AF and UF are set by their events whether or not enabled; IRQF is set
//!   while any flag is set together with its enable bit. Reading C clears them all.
//! - Alarm: registers 0x01/0x03/0x05 are compared as bytes with the time registers at each
//!   update; a byte of binary 11xxxxxx matches anything.
//!
//! Interrupt delivery: the MC146818's IRQ# is an active-low level that stays asserted until
//! register C is read, but on the PC it reaches the 8259 and IOAPIC as ISA IRQ 8, an edge.
//! The device therefore `pulse()`s its [`IrqLine`] each time IRQF goes from 0 to 1 (which is
//! what the in-kernel KVM PIC/IOAPIC need for IRQ 8); while IRQF stays 1 nothing more is
//! sent, so a guest must read register C to get another interrupt, as on real hardware.
//!
//! Timing: the first time an interrupt source is enabled on a device with an IRQ line, the
//! device starts a timer thread (`timer.rs`) that wakes at the next deadline of an enabled
//! source. It waits without a timeout when no source is enabled and exits when the device is
//! dropped. Periodic wake-ups are capped at 1024 per second: at 2048-8192 Hz the ticks in
//! between are coalesced into one PF (counted by [`CmosRtc::coalesced_periodic_ticks`]), so
//! a guest sees at most about 1024 periodic interrupts a second.

mod calendar;
mod state;
mod timer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use calendar::DateTime;
use state::Rtc;
use timer::Shared;

use crate::bus::{lock, BusDevice};
use crate::irq::IrqLine;

/// Index port.
pub const CMOS_BASE: u16 = 0x70;
/// Index and data ports.
pub const CMOS_LEN: u16 = 2;
/// The RTC's ISA interrupt (an edge at the PIC and IOAPIC, GSI 8).
pub const CMOS_IRQ: u32 = 8;

/// Where the RTC reads time from.
pub trait Clock: Send + Sync {
    /// Wall-clock time in nanoseconds since the Unix epoch (read once, when the RTC is built).
    fn wall_ns(&self) -> i128;
    /// Monotonic time in nanoseconds from an arbitrary origin; never goes backwards.
    fn monotonic_ns(&self) -> u64;
}

/// The host's clocks: `SystemTime` for the start, `Instant` after that.
pub struct HostClock {
    origin: Instant,
    /// Added to the wall clock: 0 for an RTC in UTC, the zone's offset for local time.
    offset_ns: i128,
}

impl HostClock {
    /// A clock whose monotonic origin is now, reading UTC.
    pub fn new() -> Self {
        Self::with_offset_secs(0)
    }

    /// A clock `secs` seconds ahead of UTC (an RTC in local time: the zone's offset east).
    pub fn with_offset_secs(secs: i64) -> Self {
        HostClock { origin: Instant::now(), offset_ns: i128::from(secs) * 1_000_000_000 }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn wall_ns(&self) -> i128 {
        self.offset_ns
            + match SystemTime::now().duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            }
    }

    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to (tests, fuzzing, deterministic runs).
pub struct ManualClock {
    start_ns: i128,
    elapsed_ns: AtomicU64,
}

impl ManualClock {
    /// A clock reading `unix_secs` seconds after the epoch.
    pub fn new(unix_secs: i64) -> Self {
        ManualClock { start_ns: i128::from(unix_secs) * 1_000_000_000, elapsed_ns: AtomicU64::new(0) }
    }

    /// Moves the clock forward by `ns` nanoseconds.
    pub fn advance_ns(&self, ns: u64) {
        let _ =
            self.elapsed_ns.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| Some(e.saturating_add(ns)));
    }
}

impl Clock for ManualClock {
    fn wall_ns(&self) -> i128 {
        self.start_ns + i128::from(self.elapsed_ns.load(Ordering::SeqCst))
    }

    fn monotonic_ns(&self) -> u64 {
        self.elapsed_ns.load(Ordering::SeqCst)
    }
}

/// The CMOS RTC.
pub struct CmosRtc {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
    /// Never start a timer thread (tests that drive time by hand, or a failed spawn).
    timer_disabled: bool,
}

impl CmosRtc {
    /// An RTC on the host's clock, without an interrupt line (its flags can still be polled).
    pub fn new() -> Self {
        Self::with_clock(Arc::new(HostClock::new()), None)
    }

    /// An RTC on the host's clock that signals `irq` (ISA IRQ 8, see [`CMOS_IRQ`]).
    pub fn with_irq(irq: Arc<dyn IrqLine>) -> Self {
        Self::with_clock(Arc::new(HostClock::new()), Some(irq))
    }

    /// An RTC on a given clock, with an optional interrupt line.
    pub fn with_clock(clock: Arc<dyn Clock>, irq: Option<Arc<dyn IrqLine>>) -> Self {
        CmosRtc { shared: Arc::new(Shared::new(Rtc::new(clock, irq))), timer: None, timer_disabled: false }
    }

    /// Sets an NVRAM byte (used by firmware set-up: memory sizes, boot order).
    pub fn set_nvram(&mut self, index: u8, value: u8) {
        if let Some(b) = lock(&self.shared.state).nvram.get_mut(usize::from(index)) {
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
        let mut rtc = lock(&self.shared.state);
        let nvram = &mut rtc.nvram;
        let mut put16 = |index: usize, v: u16| {
            nvram[index] = v as u8;
            nvram[index + 1] = (v >> 8) as u8;
        };
        put16(0x15, base_kib);
        put16(0x17, ext_kib);
        put16(0x30, ext_kib);
        put16(0x34, above_16m);
        nvram[0x5b] = high as u8;
        nvram[0x5c] = (high >> 8) as u8;
        nvram[0x5d] = (high >> 16) as u8;
        nvram[0x5f] = cpus.saturating_sub(1);
    }

    /// Whether the guest masked NMIs through bit 7 of the index port.
    pub fn nmi_masked(&self) -> bool {
        lock(&self.shared.state).nmi_masked
    }

    /// Periodic ticks that came while PF was still set (not acknowledged by a read of
    /// register C, or between two coalesced wake-ups at rates above 1024 Hz).
    pub fn coalesced_periodic_ticks(&self) -> u64 {
        lock(&self.shared.state).coalesced
    }

    /// Starts the timer thread once an interrupt source is enabled.
    fn start_timer(&mut self) {
        if self.timer.is_some() || self.timer_disabled {
            return;
        }
        match timer::spawn(self.shared.clone()) {
            Ok(handle) => self.timer = Some(handle),
            Err(e) => {
                crate::warn_limited!("cmos: cannot start the timer thread, RTC interrupts are lost: {e}");
                self.timer_disabled = true;
            }
        }
    }
}

impl Default for CmosRtc {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CmosRtc {
    fn drop(&mut self) {
        if let Some(handle) = self.timer.take() {
            timer::stop(&self.shared, handle);
        }
    }
}

impl BusDevice for CmosRtc {
    fn debug_label(&self) -> &str {
        "cmos-rtc"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut rtc = lock(&self.shared.state);
        let v = match offset {
            0 => rtc.index | if rtc.nmi_masked { 0x80 } else { 0 },
            1 => {
                let v = rtc.read_data();
                if rtc.index == state::STATUS_C {
                    // IRQF is clear again: the timer may have new deadlines.
                    self.shared.wake.notify_all();
                }
                v
            }
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        let wants_timer = {
            let mut rtc = lock(&self.shared.state);
            match offset {
                0 => {
                    rtc.nmi_masked = v & 0x80 != 0;
                    rtc.index = v & 0x7f;
                    return;
                }
                1 => rtc.write_data(v),
                _ => return,
            }
            rtc.wants_timer()
        };
        self.shared.wake.notify_all();
        if wants_timer {
            self.start_timer();
        }
    }

    /// What the MC146818's RESET pin does: the interrupt enables (PIE, AIE, UIE) and SQWE
    /// in register B and every flag in register C are cleared; time, calendar and NVRAM
    /// (the BIOS settings) stay.
    fn reset(&mut self) {
        lock(&self.shared.state).reset_pin();
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests;
