// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the 16550 UART's registers, interleaved with host input.
#![no_main]

mod common;

use devices::legacy::uart16550::Uart16550;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut uart = Uart16550::new(common::irq(), Box::new(std::io::sink()));
    // Register accesses, then the same bytes as host input, then accesses again.
    common::replay(&mut uart, data, |_, _| {});
    uart.queue_input(data);
    common::replay(&mut uart, data, |_, _| {});
});
