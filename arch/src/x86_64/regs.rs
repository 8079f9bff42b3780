// SPDX-License-Identifier: Apache-2.0
//! The 64-bit entry state of the boot vCPU: GDT, identity-mapped page tables, control
//! registers and general registers as the Linux 64-bit boot protocol expects them, and the
//! local APIC's LINT0/LINT1 wiring (ExtINT from the PIC, NMI) that a BIOS would program.

use hypervisor::{FpuState, LapicState, Regs, Segment, SpecialRegs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, PML4_ADDR, ZERO_PAGE_ADDR};

/// Errors while writing the boot structures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Guest memory does not cover the low pages the structures live in.
    #[error("guest memory does not cover the boot structures at {0:#x}")]
    Write(u64),
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const PAGE_PRESENT_RW: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;

/// GDT entries: null, 64-bit code, data, TSS, 32-bit code (selectors 0x8, 0x10, 0x18, 0x20).
const GDT: [u64; 5] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
    gdt_entry(0xc09b, 0, 0xfffff),
];

/// Packs a descriptor from flags (type in bits 0-7, G/DB/L/AVL in bits 12-15), base and limit.
const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// Unpacks descriptor `index` of [`GDT`] into the segment form KVM takes.
fn segment(index: usize) -> Segment {
    let e = GDT[index];
    let flags = (e >> 40) & 0xf0ff;
    let base = ((e >> 16) & 0x00ff_ffff) | ((e >> 32) & 0xff00_0000);
    let limit_raw = (e & 0xffff) | ((e >> 32) & 0xf_0000);
    let granular = (flags >> 15) & 1;
    Segment {
        base,
        limit: if granular == 1 { ((limit_raw << 12) | 0xfff) as u32 } else { limit_raw as u32 },
        selector: (index * 8) as u16,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: granular as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: u8::from((flags >> 7) & 1 == 0),
        padding: 0,
    }
}

fn write_gdt_idt(mem: &GuestMemoryMmap, sregs: &mut SpecialRegs) -> Result<(), Error> {
    for (i, desc) in GDT.iter().enumerate() {
        let at = GDT_ADDR + 8 * i as u64;
        mem.write_obj(*desc, GuestAddress(at)).map_err(|_| Error::Write(at))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR)).map_err(|_| Error::Write(IDT_ADDR))?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    Ok(())
}

/// Loads CS from GDT entry `code`, the data segments from the flat data entry, TR from the TSS.
fn load_flat_segments(sregs: &mut SpecialRegs, code: usize) {
    let data = segment(2);
    sregs.cs = segment(code);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(3);
}

/// Writes the GDT and returns the special registers of a vCPU in 32-bit flat protected mode
/// with paging off, the PVH entry state.
pub fn setup_protected_mode(mem: &GuestMemoryMmap, mut sregs: SpecialRegs) -> Result<SpecialRegs, Error> {
    write_gdt_idt(mem, &mut sregs)?;
    load_flat_segments(&mut sregs, 4);
    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & !CR0_PG;
    sregs.cr4 = 0;
    sregs.efer = 0;
    Ok(sregs)
}

/// General registers at the PVH entry point: EBX = `hvm_start_info`.
pub fn pvh_entry_regs(entry: u64, start_info: u64) -> Regs {
    Regs { rflags: 0x2, rip: entry, rbx: start_info, ..Default::default() }
}

/// Writes the GDT, an empty IDT and page tables identity-mapping the first 1 GiB with 2 MiB
/// pages, and returns the special registers of a vCPU in 64-bit mode using them.
pub fn setup_long_mode(mem: &GuestMemoryMmap, mut sregs: SpecialRegs) -> Result<SpecialRegs, Error> {
    write_gdt_idt(mem, &mut sregs)?;
    let pdpt = PML4_ADDR + 0x1000;
    let pd = PML4_ADDR + 0x2000;
    mem.write_obj(pdpt | PAGE_PRESENT_RW, GuestAddress(PML4_ADDR)).map_err(|_| Error::Write(PML4_ADDR))?;
    mem.write_obj(pd | PAGE_PRESENT_RW, GuestAddress(pdpt)).map_err(|_| Error::Write(pdpt))?;
    for i in 0..512u64 {
        let at = pd + i * 8;
        mem.write_obj((i << 21) | PAGE_PRESENT_RW | PAGE_SIZE_2M, GuestAddress(at))
            .map_err(|_| Error::Write(at))?;
    }

    load_flat_segments(&mut sregs, 1);
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    Ok(sregs)
}

/// General registers at the 64-bit kernel entry point: RIP, stack, RSI = boot_params.
pub fn entry_regs(entry: u64) -> Regs {
    Regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_ADDR,
        ..Default::default()
    }
}

/// FPU state after reset: control word 0x37f, MXCSR 0x1f80.
pub fn reset_fpu() -> FpuState {
    FpuState { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(lapic: &LapicState, offset: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, v) in b.iter_mut().enumerate() {
        *v = lapic.regs[offset + i] as u8;
    }
    u32::from_le_bytes(b)
}

fn set_lapic_reg(lapic: &mut LapicState, offset: usize, value: u32) {
    for (i, v) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[offset + i] = *v as _;
    }
}

/// Programs LINT0 as ExtINT (the 8259 PIC's output) and LINT1 as NMI, as a BIOS does.
pub fn wire_lint(mut lapic: LapicState) -> LapicState {
    let lvt0 = lapic_reg(&lapic, APIC_LVT0);
    set_lapic_reg(&mut lapic, APIC_LVT0, (lvt0 & !0x700) | (APIC_MODE_EXTINT << 8));
    let lvt1 = lapic_reg(&lapic, APIC_LVT1);
    set_lapic_reg(&mut lapic, APIC_LVT1, (lvt1 & !0x700) | (APIC_MODE_NMI << 8));
    lapic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    #[test]
    fn gdt_entries_round_trip_into_segments() {
        let cs = segment(1);
        assert_eq!((cs.selector, cs.type_, cs.l, cs.db, cs.present, cs.g), (8, 0xb, 1, 0, 1, 1));
        assert_eq!((cs.base, cs.limit), (0, 0xffff_ffff));
        let ds = segment(2);
        assert_eq!((ds.selector, ds.type_, ds.l, ds.db, ds.s), (0x10, 0x3, 0, 1, 1));
        let tr = segment(3);
        assert_eq!((tr.selector, tr.type_, tr.s), (0x18, 0xb, 0));
        assert_eq!(segment(0).unusable, 1);
    }

    #[test]
    fn long_mode_tables_identity_map_first_gigabyte() {
        let m = mem();
        let s = setup_long_mode(&m, SpecialRegs::default()).unwrap();
        assert_eq!(s.cr3, PML4_ADDR);
        assert_ne!(s.cr0 & CR0_PG, 0);
        assert_ne!(s.efer & EFER_LMA, 0);
        let pml4: u64 = m.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, (PML4_ADDR + 0x1000) | 3);
        let last: u64 = m.read_obj(GuestAddress(PML4_ADDR + 0x2000 + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
        let gdt1: u64 = m.read_obj(GuestAddress(GDT_ADDR + 8)).unwrap();
        assert_eq!(gdt1, 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn pvh_entry_is_flat_32_bit_protected_mode() {
        let m = mem();
        let s = setup_protected_mode(&m, SpecialRegs { cr0: CR0_PG, efer: EFER_LME, ..Default::default() })
            .unwrap();
        assert_eq!((s.cs.selector, s.cs.db, s.cs.l, s.cs.type_), (0x20, 1, 0, 0xb));
        assert_eq!((s.cr0 & CR0_PG, s.cr0 & CR0_PE, s.efer, s.cr4), (0, CR0_PE, 0, 0));
        assert_eq!(s.gdt.limit, 39);
        // Every descriptor survives in guest memory (the IDT must not overlap the GDT).
        for (i, desc) in GDT.iter().enumerate() {
            let in_mem: u64 = m.read_obj(GuestAddress(GDT_ADDR + 8 * i as u64)).unwrap();
            assert_eq!(in_mem, *desc, "GDT entry {i}");
        }
        let r = pvh_entry_regs(0x100_0010, 0x6000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0010, 0x6000, 2));
    }

    #[test]
    fn setup_fails_cleanly_without_low_memory() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0x10_0000), 0x1000)]).unwrap();
        assert!(setup_long_mode(&m, SpecialRegs::default()).is_err());
    }

    #[test]
    fn lint_pins_are_wired() {
        let l = wire_lint(LapicState::default());
        assert_eq!((lapic_reg(&l, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lapic_reg(&l, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
        let r = entry_regs(0x100_0200);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100_0200, ZERO_PAGE_ADDR, 2));
        assert_eq!(reset_fpu().fcw, 0x37f);
    }
}
