// SPDX-License-Identifier: Apache-2.0
//! Fuzzes fw_cfg: port accesses and DMA requests whose bytes the fuzzer also places in guest
//! memory (so request addresses, lengths and control words are all hostile).
#![no_main]

mod common;

use devices::legacy::fw_cfg::FwCfg;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]) else { return };
    let _ = mem.write_slice(&data[..data.len().min(0x4000)], GuestAddress(0));
    let mut fw = FwCfg::new(mem);
    let _ = fw.add_file("etc/test", data.to_vec());
    common::replay(&mut fw, data, |_, _| {});
});
