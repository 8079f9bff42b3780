// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the i8042 controller's ports.
#![no_main]

mod common;

use devices::legacy::i8042::I8042;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut kbd = I8042::new(common::platform());
    common::replay(&mut kbd, data, |_, _| {});
});
