// SPDX-License-Identifier: Apache-2.0
//! The BIOS image and the shadow RAM below 1 MiB that the i440FX PAM registers control.
//!
//! The image is mapped read-only at the top of 4 GiB (the reset vector fetches from
//! 0xFFFFFFF0), and its last 128 KiB are copied into guest RAM at 0xE0000-0xFFFFF, where a PC
//! decodes the BIOS at power-on. The 0xC0000-0xFFFFF range is RAM in 13 pieces (twelve 16 KiB
//! ones and the 64 KiB F segment), each a memory slot that is writable exactly when its PAM
//! write-enable bit is set; otherwise guest writes exit and are dropped, as writes to ROM are.
//! Reads always see the RAM, which holds the BIOS copy from power-on: a PAM value that sends
//! reads to ROM therefore reads the same bytes unless the firmware changed them while the
//! segment was writable (SeaBIOS does not).

use std::path::Path;
use std::sync::Arc;

use devices::pci::i440fx::{PAM0, PAM_COUNT};
use hypervisor::Vm;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion};

use crate::board::Error;

/// Memory slot of the BIOS image at the top of 4 GiB.
pub const SLOT_ROM: u32 = 3;
/// First memory slot of the PAM segments.
pub const SLOT_PAM0: u32 = 4;
/// Number of PAM segments.
pub const PAM_SEGMENTS: usize = 13;
/// First memory slot free for other users (PCI RAM BARs).
pub const SLOT_FREE: u32 = SLOT_PAM0 + PAM_SEGMENTS as u32;
/// Start of the shadow area.
pub const SHADOW_START: u64 = 0xc_0000;
/// End of the shadow area (1 MiB).
pub const SHADOW_END: u64 = 0x10_0000;
/// The legacy BIOS window at 0xE0000 is at most this long.
const LOW_ALIAS_MAX: u64 = 0x2_0000;

/// The BIOS image, in host memory that outlives the VM.
pub struct Firmware {
    region: MmapRegion,
}

impl Firmware {
    /// Reads the image (validated by the configuration: a multiple of 64 KiB, up to 16 MiB),
    /// through [`block::host_files`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let open = |e| Error::Open(path.display().to_string(), e);
        let bytes = block::host_files::read(path).map_err(open)?;
        if bytes.is_empty() || bytes.len() % 0x1_0000 != 0 || bytes.len() > 16 << 20 {
            return Err(Error::Devices(format!(
                "{}: not a BIOS image ({} bytes)",
                path.display(),
                bytes.len()
            )));
        }
        let region = MmapRegion::new(bytes.len()).map_err(|_| Error::Memory(1))?;
        // SAFETY: the region was just created with exactly `bytes.len()` bytes and nothing
        // else refers to it yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.as_ptr(), bytes.len()) };
        Ok(Firmware { region })
    }

    fn len(&self) -> u64 {
        self.region.size() as u64
    }

    /// Maps the image read-only below 4 GiB and copies its tail into the shadow RAM.
    pub fn install(&self, vm: &dyn Vm, mem: &GuestMemoryMmap) -> Result<(), Error> {
        let base = (1u64 << 32) - self.len();
        // SAFETY: `Firmware` is created before the VM and dropped after it (see
        // `VirtualMachine`, which declares it after the VM).
        unsafe { vm.map_memory(SLOT_ROM, base, self.len(), self.region.as_ptr() as u64, true)? };
        self.copy_shadow(mem)
    }

    /// Copies the image's tail into the shadow RAM below 1 MiB, where the reset vector's jump
    /// lands: at power-on, and at every reset (the BIOS changed its copy while it ran; a PC
    /// reads the ROM there again after a reset, with PAM back at zero).
    pub fn copy_shadow(&self, mem: &GuestMemoryMmap) -> Result<(), Error> {
        let alias = self.len().min(LOW_ALIAS_MAX);
        let tail_start = (self.len() - alias) as usize;
        // SAFETY: `tail_start + alias` is within the region, which lives as long as `self`.
        let tail =
            unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(tail_start), alias as usize) };
        use vm_memory::Bytes;
        mem.write_slice(tail, GuestAddress(SHADOW_END - alias))
            .map_err(|e| Error::Tables(format!("BIOS shadow copy: {e}")))
    }
}

/// The guest-physical range of PAM segment `n` (0 = 0xF0000-0xFFFFF, 1.. = 16 KiB pieces
/// from 0xC0000) and the PAM register nibble that controls it.
fn segment(n: usize) -> (u64, u64, usize, u32) {
    if n == 0 {
        (0xf_0000, 0x1_0000, 0, 4)
    } else {
        let i = n - 1;
        (SHADOW_START + i as u64 * 0x4000, 0x4000, 1 + i / 2, if i % 2 == 0 { 0 } else { 4 })
    }
}

/// The writability of each PAM segment, kept in step with the host bridge.
pub struct Pam {
    vm: Arc<dyn Vm>,
    host_base: u64,
    writable: [Option<bool>; PAM_SEGMENTS],
}

impl Pam {
    /// PAM control of the shadow RAM of `mem` (region 0 must cover the first MiB).
    pub fn new(vm: Arc<dyn Vm>, mem: &GuestMemoryMmap) -> Result<Self, Error> {
        let region = mem
            .iter()
            .find(|r| r.start_addr().0 == 0 && r.len() >= SHADOW_END)
            .ok_or_else(|| Error::Devices("guest RAM does not cover the first MiB".into()))?;
        Ok(Pam { vm, host_base: region.as_ptr() as u64, writable: [None; PAM_SEGMENTS] })
    }

    /// Maps every segment according to the PAM register values `pam` (PAM0..PAM6).
    pub fn apply(&mut self, pam: [u8; PAM_COUNT]) -> Result<(), Error> {
        for n in 0..PAM_SEGMENTS {
            let (start, len, reg, shift) = segment(n);
            let writable = (pam[reg] >> shift) & 0x2 != 0;
            if self.writable[n] == Some(writable) {
                continue;
            }
            let slot = SLOT_PAM0 + n as u32;
            if self.writable[n].is_some() {
                self.vm.unmap_memory(slot)?;
            }
            // SAFETY: the range lies in guest RAM region 0 (checked in `new`), which
            // `VirtualMachine` drops after the VM, so it outlives it.
            unsafe { self.vm.map_memory(slot, start, len, self.host_base + start, !writable)? };
            self.writable[n] = Some(writable);
        }
        Ok(())
    }

    /// Reads the PAM registers from the host bridge's configuration space.
    pub fn registers(read_config: impl Fn(usize) -> u32) -> [u8; PAM_COUNT] {
        let mut pam = [0u8; PAM_COUNT];
        for (n, p) in pam.iter_mut().enumerate() {
            let off = PAM0 + n;
            *p = (read_config(off / 4) >> (8 * (off % 4))) as u8;
        }
        pam
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_the_shadow_area() {
        let mut covered = vec![false; ((SHADOW_END - SHADOW_START) / 0x4000) as usize];
        for n in 0..PAM_SEGMENTS {
            let (start, len, reg, shift) = segment(n);
            assert!(reg < PAM_COUNT && (shift == 0 || shift == 4));
            for piece in (start..start + len).step_by(0x4000) {
                let i = ((piece - SHADOW_START) / 0x4000) as usize;
                assert!(!covered[i], "overlap at {piece:#x}");
                covered[i] = true;
            }
        }
        assert!(covered.iter().all(|c| *c));
        // PAM0 high nibble: F segment; PAM1 low nibble: 0xC0000; PAM6 high nibble: 0xEC000.
        assert_eq!(segment(0), (0xf_0000, 0x1_0000, 0, 4));
        assert_eq!(segment(1), (0xc_0000, 0x4000, 1, 0));
        assert_eq!(segment(12), (0xe_c000, 0x4000, 6, 4));
    }

    #[test]
    fn registers_are_read_from_config_space() {
        // PAM0 is the byte at 0x59 (register 0x58/4, byte 1).
        let pam = Pam::registers(|reg| match reg {
            0x16 => 0x3000_0000 | 0x0000_1100 | 0x0011_0000,
            0x17 => 0x3322_1100,
            _ => 0,
        });
        assert_eq!(pam, [0x11, 0x11, 0x30, 0x00, 0x11, 0x22, 0x33]);
    }
}
