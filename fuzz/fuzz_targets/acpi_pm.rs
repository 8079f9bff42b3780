// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the ACPI PM1 event/control blocks and PM timer, with power-button presses.
#![no_main]

mod common;

use devices::legacy::acpi_pm::AcpiPm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pm = AcpiPm::new(common::irq(), common::platform());
    let mut presses = Vec::new();
    common::replay(&mut pm, data, |_, kind| presses.push(kind));
    for _ in presses {
        pm.press_power_button();
    }
    common::replay(&mut pm, data, |_, _| {});
});
