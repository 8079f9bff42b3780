// SPDX-License-Identifier: Apache-2.0
//! Shared by the fuzz targets: replays fuzzer bytes as guest register accesses.
#![allow(dead_code)] // each target uses a different part

use std::sync::Arc;

use devices::bus::BusDevice;
use devices::irq::IrqLine;
use devices::legacy::{PlatformControl, PlatformRequest};

/// An interrupt line that goes nowhere.
pub struct NullIrq;

impl IrqLine for NullIrq {
    fn pulse(&self) {}
    fn set_level(&self, _: bool) {}
}

/// A platform that ignores power-off and reset.
pub struct NullPlatform;

impl PlatformControl for NullPlatform {
    fn request(&self, _: PlatformRequest) {}
}

/// Shared no-op handles.
pub fn irq() -> Arc<dyn IrqLine> {
    Arc::new(NullIrq)
}

/// Shared no-op platform.
pub fn platform() -> Arc<dyn PlatformControl> {
    Arc::new(NullPlatform)
}

/// Each access is 3+ bytes: kind (bit 0: write; bits 1-2: size 1/2/4/8), offset, data.
/// Offsets are taken as given, so out-of-range ones are exercised too.
pub fn replay(dev: &mut dyn BusDevice, data: &[u8], mut extra: impl FnMut(&mut dyn BusDevice, u8)) {
    let mut i = 0;
    while i + 2 <= data.len() {
        let kind = data[i];
        let offset = u64::from(data[i + 1]) | if kind & 0x80 != 0 { 1 << 40 } else { 0 };
        let size = 1usize << ((kind >> 1) & 3);
        i += 2;
        if kind & 0x40 != 0 {
            extra(dev, kind);
            continue;
        }
        if kind & 1 == 1 {
            let end = (i + size).min(data.len());
            dev.write(offset, &data[i..end]);
            i = end;
        } else {
            let mut buf = [0u8; 8];
            dev.read(offset, &mut buf[..size]);
        }
    }
}
