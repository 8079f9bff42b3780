// SPDX-License-Identifier: Apache-2.0
//! Fuzzes PCI configuration mechanism #1 (0xCF8/0xCFC) with the i440FX host bridge on bus 0.
#![no_main]

mod common;

use std::sync::{Arc, Mutex};

use devices::pci::i440fx::I440fx;
use devices::pci::{PciConfigIo, PciRoot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut root = PciRoot::new();
    root.add(0, 0, Arc::new(Mutex::new(I440fx::new())));
    let mut io = PciConfigIo::new(root);
    common::replay(&mut io, data, |_, _| {});
});
