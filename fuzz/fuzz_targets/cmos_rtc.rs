// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the CMOS RTC's index/data ports (time writes, mode changes, NVRAM).
#![no_main]

mod common;

use devices::legacy::cmos_rtc::CmosRtc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rtc = CmosRtc::new();
    common::replay(&mut rtc, data, |_, _| {});
});
