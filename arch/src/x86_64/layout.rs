// SPDX-License-Identifier: Apache-2.0
//! The guest-physical memory map of a PC guest.
//!
//! ```text
//! 0x0000_0000  real-mode IVT, BDA; our GDT (0x500), IDT (0x540)
//! 0x0000_6000  PVH start info, module list and memory map
//! 0x0000_7000  Linux zero page (boot_params)
//! 0x0000_9000  boot page tables (PML4, PDPT, PD)
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA: MP table
//! 0x000a_0000  legacy VGA / option ROM / BIOS area (reserved)
//! 0x000e_0000  ACPI tables (RSDP first, where a BIOS-area scan finds it)
//! 0x0010_0000  kernel, then RAM; the initramfs goes at the top of low RAM
//! 0xc000_0000  PCI hole (32-bit MMIO), IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000  RAM above 4 GiB for guests larger than 3 GiB
//! ```

/// GDT for the 64-bit entry state.
pub const GDT_ADDR: u64 = 0x500;
/// IDT (empty) for the 64-bit entry state.
pub const IDT_ADDR: u64 = 0x540;
/// PVH `hvm_start_info`, module list and memory map (one page).
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// Linux boot_params ("zero page").
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 of the boot page tables; PDPT and PD follow in the next two pages.
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Longest command line we place (Linux's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;
/// Extended BIOS data area: start of the reserved range below 640 KiB.
pub const EBDA_ADDR: u64 = 0x9_fc00;
/// MP floating pointer and configuration table.
pub const MPTABLE_ADDR: u64 = EBDA_ADDR;
/// Start of the legacy hole (VGA, option ROMs, BIOS).
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// ACPI RSDP and the tables after it.
pub const ACPI_ADDR: u64 = 0xe_0000;
/// Size reserved for the ACPI tables.
pub const ACPI_SIZE: u64 = 0x1_0000;
/// First byte of RAM above the legacy hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Start of the 32-bit PCI/MMIO hole.
pub const PCI_HOLE_START: u64 = 0xc000_0000;
/// First byte above 4 GiB.
pub const RAM_ABOVE_4G_START: u64 = 0x1_0000_0000;
/// IOAPIC registers.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Local APIC registers (same address in every vCPU).
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// KVM's identity-map page (needed on Intel for real-mode emulation), inside the PCI hole.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
/// KVM's three-page TSS area, right after the identity map page.
pub const KVM_TSS_ADDR: u64 = 0xfeff_d000;

// The fixed low-memory structures must not overlap; checked when compiling.
const _: () = {
    assert!(IDT_ADDR >= GDT_ADDR + 5 * 8);
    assert!(IDT_ADDR + 8 <= PVH_INFO_ADDR && PVH_INFO_ADDR + 4096 <= ZERO_PAGE_ADDR);
    assert!(ZERO_PAGE_ADDR + 4096 <= BOOT_STACK_POINTER + 16);
    assert!(PML4_ADDR + 3 * 4096 <= CMDLINE_ADDR);
    assert!(CMDLINE_ADDR + CMDLINE_MAX as u64 <= EBDA_ADDR);
    assert!(ACPI_ADDR + ACPI_SIZE <= HIGH_RAM_START);
    assert!(KVM_IDENTITY_MAP_ADDR > LAPIC_ADDR && KVM_TSS_ADDR + 3 * 4096 <= 1 << 32);
};

/// An e820 entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved.
    Reserved = 2,
    /// ACPI tables, reclaimable once read.
    Acpi = 3,
}

/// One e820 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

/// Where guest RAM lives for a given size: one or two ranges around the PCI hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total guest RAM in bytes.
    pub ram_size: u64,
}

impl MemoryLayout {
    /// Smallest guest we build: the fixed low-memory structures plus room for a kernel.
    pub const MIN_RAM: u64 = 32 << 20;

    /// A layout for `ram_size` bytes of RAM.
    pub fn new(ram_size: u64) -> Self {
        MemoryLayout { ram_size }
    }

    /// RAM below the PCI hole, in bytes (starting at 0).
    pub fn low_ram_size(&self) -> u64 {
        self.ram_size.min(PCI_HOLE_START)
    }

    /// RAM above 4 GiB, in bytes.
    pub fn high_ram_size(&self) -> u64 {
        self.ram_size.saturating_sub(PCI_HOLE_START)
    }

    /// The guest-physical RAM ranges `(start, len)` to back with host memory.
    pub fn ram_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = vec![(0, self.low_ram_size())];
        if self.high_ram_size() > 0 {
            ranges.push((RAM_ABOVE_4G_START, self.high_ram_size()));
        }
        ranges
    }

    /// The end of the guest-physical address space used by RAM.
    pub fn ram_end(&self) -> u64 {
        match self.high_ram_size() {
            0 => self.low_ram_size(),
            high => RAM_ABOVE_4G_START + high,
        }
    }

    /// The e820 map the guest is given.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut map = vec![
            E820Entry { addr: 0, size: EBDA_ADDR, kind: E820Kind::Ram },
            E820Entry { addr: EBDA_ADDR, size: HIGH_RAM_START - EBDA_ADDR, kind: E820Kind::Reserved },
            E820Entry {
                addr: HIGH_RAM_START,
                size: self.low_ram_size() - HIGH_RAM_START,
                kind: E820Kind::Ram,
            },
        ];
        if self.high_ram_size() > 0 {
            map.push(E820Entry { addr: RAM_ABOVE_4G_START, size: self.high_ram_size(), kind: E820Kind::Ram });
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_range_and_no_high_memory() {
        let l = MemoryLayout::new(256 << 20);
        assert_eq!(l.ram_ranges(), vec![(0, 256 << 20)]);
        assert_eq!(l.ram_end(), 256 << 20);
        let e820 = l.e820();
        assert_eq!(e820.len(), 3);
        assert_eq!(e820[2], E820Entry { addr: 1 << 20, size: 255 << 20, kind: E820Kind::Ram });
    }

    #[test]
    fn large_guest_splits_around_the_pci_hole() {
        let l = MemoryLayout::new(5 << 30);
        assert_eq!(l.low_ram_size(), 3 << 30);
        assert_eq!(l.high_ram_size(), 2 << 30);
        assert_eq!(l.ram_ranges(), vec![(0, 3 << 30), (4 << 30, 2 << 30)]);
        assert_eq!(l.ram_end(), 6 << 30);
        let e820 = l.e820();
        assert_eq!(e820.last().unwrap().addr, 4 << 30);
        // Nothing in the map overlaps the hole or the APICs.
        for e in &e820 {
            assert!(e.addr + e.size <= PCI_HOLE_START || e.addr >= RAM_ABOVE_4G_START);
        }
    }
}
