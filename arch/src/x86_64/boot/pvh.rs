// SPDX-License-Identifier: Apache-2.0
//! PVH boot of an uncompressed ELF `vmlinux` (xenbits "misc/pvh"): the kernel's
//! `XEN_ELFNOTE_PHYS32_ENTRY` note gives a 32-bit entry point that takes an `hvm_start_info`
//! (command line, initramfs as module 0, e820-style memory map, RSDP) in EBX. Skipping the
//! bzImage's self-decompression saves seconds where guest code is slow.

use std::fs::File;

use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{load_initramfs, write_cmdline, EntryMode, Error, KernelEntry};
use crate::x86_64::layout::{MemoryLayout, CMDLINE_ADDR, HIGH_RAM_START, PVH_INFO_ADDR};

/// `hvm_start_info.magic`.
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// The module list follows the start info.
const MODLIST_OFFSET: u64 = 0x40;
/// The memory map follows the module list.
const MEMMAP_OFFSET: u64 = 0x80;
/// Entries that fit in the rest of the page.
const MEMMAP_MAX: usize = ((0x1000 - MEMMAP_OFFSET) / 24) as usize;
/// Highest address the initramfs may reach (the kernel maps low memory only at first).
const INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

/// Loads an ELF vmlinux with a PVH entry note and writes the start info.
pub fn load_pvh(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &str,
    rsdp_addr: u64,
) -> Result<KernelEntry, Error> {
    let loaded = Elf::load(mem, None, kernel, Some(GuestAddress(HIGH_RAM_START))).map_err(Error::Elf)?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(Error::NoPvhEntry);
    };
    let kernel_end = loaded.kernel_end;

    write_cmdline(mem, cmdline)?;

    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: rsdp_addr,
        ..Default::default()
    };
    if let Some(file) = initramfs {
        let (paddr, size) = load_initramfs(mem, layout, file, kernel_end, INITRD_ADDR_MAX)?;
        let module = hvm_modlist_entry { paddr, size, ..Default::default() };
        let at = PVH_INFO_ADDR + MODLIST_OFFSET;
        mem.write_obj(module, GuestAddress(at)).map_err(|_| Error::GuestWrite("PVH module list"))?;
        info.nr_modules = 1;
        info.modlist_paddr = at;
    }
    let e820 = layout.e820();
    for (i, e) in e820.iter().take(MEMMAP_MAX).enumerate() {
        let entry = hvm_memmap_table_entry { addr: e.addr, size: e.size, type_: e.kind as u32, reserved: 0 };
        let at = PVH_INFO_ADDR + MEMMAP_OFFSET + 24 * i as u64;
        mem.write_obj(entry, GuestAddress(at)).map_err(|_| Error::GuestWrite("PVH memory map"))?;
    }
    info.memmap_paddr = PVH_INFO_ADDR + MEMMAP_OFFSET;
    info.memmap_entries = e820.len().min(MEMMAP_MAX) as u32;
    mem.write_obj(info, GuestAddress(PVH_INFO_ADDR)).map_err(|_| Error::GuestWrite("PVH start info"))?;

    Ok(KernelEntry { entry: entry.0, kernel_end, mode: EntryMode::Pvh32 { start_info: PVH_INFO_ADDR } })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{mem, temp_file};
    use super::*;

    /// A minimal ELF64 executable: one PT_LOAD segment at 1 MiB and one PT_NOTE segment with
    /// a Xen PHYS32_ENTRY note (type 18) pointing at 0x100_0010.
    fn fake_vmlinux(with_note: bool) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&(if with_note { 2u16 } else { 1 }).to_le_bytes());
        let phdr = |f: &mut Vec<u8>, at: usize, kind: u32, off: u64, addr: u64, size: u64| {
            f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
            f[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
            f[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
        };
        phdr(&mut f, 64, 1, 0x100, 0x100_0000, 0x20);
        if with_note {
            phdr(&mut f, 120, 4, 0x180, 0, 24);
            // namesz 4 ("Xen\0"), descsz 8, type 18, name, desc = entry.
            f[0x180..0x184].copy_from_slice(&4u32.to_le_bytes());
            f[0x184..0x188].copy_from_slice(&8u32.to_le_bytes());
            f[0x188..0x18c].copy_from_slice(&18u32.to_le_bytes());
            f[0x18c..0x190].copy_from_slice(b"Xen\0");
            f[0x190..0x198].copy_from_slice(&0x100_0010u64.to_le_bytes());
        }
        f[0x100] = 0xf4;
        f
    }

    #[test]
    fn writes_start_info_with_module_and_memory_map() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut k = temp_file(&fake_vmlinux(true));
        let mut initrd = temp_file(&[7u8; 5000]);
        let e = load_pvh(&m, &layout, &mut k, Some(&mut initrd), "console=ttyS0", 0xe0000).unwrap();
        assert_eq!(e.entry, 0x100_0010);
        assert_eq!(e.mode, EntryMode::Pvh32 { start_info: PVH_INFO_ADDR });
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
        assert_eq!((info.magic, info.version, info.nr_modules), (XEN_HVM_START_MAGIC, 1, 1));
        assert_eq!((info.cmdline_paddr, info.rsdp_paddr), (CMDLINE_ADDR, 0xe0000));
        assert_eq!(info.memmap_entries, 3);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!(module.size, 5000);
        let byte: u8 = m.read_obj(GuestAddress(module.paddr + 4999)).unwrap();
        assert_eq!(byte, 7);
        let last: hvm_memmap_table_entry = m.read_obj(GuestAddress(info.memmap_paddr + 2 * 24)).unwrap();
        assert_eq!((last.addr, last.type_), (HIGH_RAM_START, 1));
        let loaded: u8 = m.read_obj(GuestAddress(0x100_0000)).unwrap();
        assert_eq!(loaded, 0xf4);
    }

    #[test]
    fn elf_without_pvh_note_is_refused() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut k = temp_file(&fake_vmlinux(false));
        assert!(matches!(load_pvh(&m, &layout, &mut k, None, "", 0), Err(Error::NoPvhEntry)));
    }
}
