// SPDX-License-Identifier: Apache-2.0
//! Guest RAM: allocated once per VM (it lives across guest resets) and advised to the host
//! kernel like QEMU advises its RAM blocks.

use arch::x86_64::layout;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::board::Error;

/// Maps guest RAM for `layout` (anonymous, private, not reserved: the host commits pages as
/// the guest touches them) and advises it with [`advise`].
pub(crate) fn allocate(layout: &layout::MemoryLayout) -> Result<GuestMemoryMmap, Error> {
    let ranges: Vec<(GuestAddress, usize)> =
        layout.ram_ranges().iter().map(|&(start, len)| (GuestAddress(start), len as usize)).collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).map_err(|_| Error::Memory(layout.ram_size >> 20))?;
    advise(&mem);
    Ok(mem)
}

/// What each RAM mapping is advised, and why.
const ADVICE: [(libc::c_int, &str); 2] = [
    // Transparent huge pages: the host maps guest RAM in 2 MiB pages where it can, so the
    // second-level (EPT/NPT) tables map it in 2 MiB pages too: far fewer nested page faults
    // while a guest first touches its memory (each costs an exit; very many when nested) and
    // fewer TLB misses afterwards. Only a hint: with THP off it does nothing.
    (libc::MADV_HUGEPAGE, "transparent huge pages"),
    // A core dump of the vmm leaves out the guest's memory: the guest's data is not the
    // vmm's, and the dump stays small.
    (libc::MADV_DONTDUMP, "no core dump"),
];

/// Advises every RAM mapping of `mem` as [`ADVICE`] says. A refusal is logged and ignored:
/// each piece of advice is an optimisation or a precaution, never needed to run the guest.
/// (Also keeps each RAM mapping a VMA of its own, since advice changes its flags, so
/// `/proc/PID/smaps` shows guest RAM apart from the vmm's own memory.)
pub(crate) fn advise(mem: &GuestMemoryMmap) {
    for region in mem.iter() {
        let (addr, len) = (region.as_ptr(), region.len() as usize);
        for (advice, what) in ADVICE {
            // SAFETY: `addr..addr+len` is exactly one mapping that `mem` owns; madvise with
            // these advice values changes how the kernel backs it, never its contents.
            let rc = unsafe { libc::madvise(addr.cast(), len, advice) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                log::debug!("guest RAM at {:#x}: madvise ({what}): {err}", region.start_addr().0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags smaps shows for the mapping that starts at `addr` ("hg" huge page advised,
    /// "dd" do not dump).
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((start, _)) = range.split_once('-') {
                    if let Ok(start) = usize::from_str_radix(start, 16) {
                        inside = start == addr;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.trim().to_string();
                }
            }
        }
        panic!("no mapping at {addr:#x}");
    }

    #[test]
    fn ram_is_advised_and_a_mapping_of_its_own() {
        let layout = layout::MemoryLayout::new(64 << 20);
        let mem = allocate(&layout).unwrap();
        for region in mem.iter() {
            let flags = vm_flags(region.as_ptr() as usize);
            assert!(flags.split(' ').any(|f| f == "dd"), "not excluded from core dumps: {flags}");
            // "hg" only where the kernel has transparent huge pages.
            if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
                assert!(flags.split(' ').any(|f| f == "hg"), "no huge page advice: {flags}");
            }
        }
    }
}
