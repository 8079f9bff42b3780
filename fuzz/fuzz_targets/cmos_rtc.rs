// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the CMOS RTC's index/data ports (time writes, mode changes, NVRAM, interrupt
//! sources) on a manual clock that the fuzzer moves forward, with the timer thread running.
#![no_main]

mod common;

use std::sync::Arc;

use devices::legacy::cmos_rtc::{CmosRtc, ManualClock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let clock = Arc::new(ManualClock::new(1_795_433_445));
    let mut rtc = CmosRtc::with_clock(clock.clone(), Some(common::irq()));
    // "Extra" accesses move time on by up to about 8 s, from nanoseconds to seconds.
    common::replay(&mut rtc, data, |_, kind| clock.advance_ns(1u64 << (kind & 0x3f).min(33)));
});
