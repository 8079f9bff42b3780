// SPDX-License-Identifier: Apache-2.0
//! ACPI tables of the SeaBIOS "pc" machine, handed to the firmware through fw_cfg with the
//! BIOS linker/loader, so SeaBIOS installs them instead of building its own.
//!
//! Three fw_cfg files (see [`pc_acpi_fw_cfg_files`]):
//! - [`TABLES_FILE`]: FACS (offset 0, 64-byte aligned), DSDT, FADT, MADT, RSDT, XSDT —
//!   allocated in high memory;
//! - [`RSDP_FILE`]: the RSDP (revision 2, pointing at both RSDT and XSDT) — allocated in the
//!   F segment, where an OS scanning for "RSD PTR " finds it;
//! - [`LOADER_FILE`]: the script that allocates both, adds the tables blob's address to every
//!   pointer (which holds an offset within the blob until then) and then fixes every checksum.
//!
//! The FADT is revision 3 (ACPI 2.0/3.0 layout, 244 bytes, which every OS since Windows XP
//! reads): PM1a event/control blocks and PM timer of the PIIX4 PM function, SCI on IRQ 9, no
//! SMI command port (so the OS finds the machine already in ACPI mode; the PM1a control
//! register reads SCI_EN = 1), no GPE block, the fixed-feature power button (PWR_BUTTON clear)
//! and no sleep button, the reset register (0xCF9 <- 0x06), legacy devices and an 8042, C2/C3
//! unsupported and the RTC century at CMOS 0x32. FIRMWARE_CTRL and DSDT are 32-bit pointers;
//! X_DSDT repeats the DSDT's address and X_FIRMWARE_CTRL stays 0 (ACPI: it must be zero when
//! FIRMWARE_CTRL is set). The MADT lists the local APICs, the IOAPIC after them and
//! level-triggered, active-high overrides for the SCI and the PCI link IRQs 5, 10 and 11. No
//! HPET table: the machine has no HPET. The DSDT is described in [`dsdt`].

pub mod dsdt;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;

use super::acpi::{
    bytes_of, madt, set_pm_blocks, IrqOverride, PmIoPorts, IAPC_8042, IAPC_LEGACY_DEVICES, MPS_CONFORMING,
    MPS_LEVEL_HIGH, OEM_ID, OEM_REVISION, OEM_TABLE_ID,
};
use super::layout::{IOAPIC_ADDR, PCI_HOLE_START};
use crate::fw_cfg_loader::{self, TableLoader, Zone};

/// fw_cfg file holding every table but the RSDP.
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// fw_cfg file holding the RSDP.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// fw_cfg file holding the linker/loader script.
pub const LOADER_FILE: &str = "etc/table-loader";
/// The reset register (the PIIX3 reset control register, CF9h).
pub const RESET_PORT: u16 = 0xcf9;
/// The value written to [`RESET_PORT`] to reset (system reset, reset CPU).
pub const RESET_VALUE: u8 = 0x06;
/// CMOS index of the RTC century register.
pub const RTC_CENTURY: u8 = 0x32;
/// PCI link IRQs, which the MADT declares level-triggered and active high.
pub const PCI_IRQS: [u8; 3] = dsdt::LINK_IRQS;

/// Length of a revision-3 FADT.
const FADT_REV3_LEN: usize = 244;
/// FADT field offsets.
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;
/// RSDP field offsets.
const RSDP_RSDT: usize = 16;
const RSDP_XSDT: usize = 24;
const RSDP_CHECKSUM: usize = 8;
const RSDP_EXT_CHECKSUM: usize = 32;
const RSDP_V1_LEN: usize = 20;
/// Offset of the checksum in a table header.
const SDT_CHECKSUM: usize = 9;

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcAcpiConfig {
    /// vCPUs; local APIC IDs 0..cpus, the IOAPIC's ID is `cpus`.
    pub cpus: u32,
    /// The PM1a blocks, PM timer, SCI and S5 sleep type of the PIIX4 PM function.
    pub pm: PmIoPorts,
    /// The 32-bit PCI memory window (first and last byte), e.g. 0xc000_0000..=0xfebf_ffff; it
    /// must end below the IOAPIC.
    pub pci_hole: RangeInclusive<u64>,
    /// A PCI memory window above 4 GiB, if the firmware may place BARs there.
    pub pci_hole64: Option<RangeInclusive<u64>>,
    /// Whether ISA IRQ 0 (the PIT) arrives at IOAPIC input 2, as on real chipsets and on
    /// QEMU, which installs that GSI routing in KVM (and tells SeaBIOS through fw_cfg key
    /// 0x8002). KVM's default routing, which this project keeps, wires GSI 0 to IOAPIC pin 0:
    /// then this must be `false` (identity, no override), or the guest's timer never ticks
    /// through the IOAPIC.
    pub irq0_to_gsi2: bool,
}

/// Errors while building the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No vCPU, or more than 8-bit APIC IDs can name next to the IOAPIC.
    #[error("{0} vCPUs cannot be described with 8-bit APIC IDs")]
    TooManyCpus(u32),
    /// A PCI window that is empty, crosses 4 GiB or overlaps the APICs and BIOS.
    #[error("PCI window {0:#x}..={1:#x} is not usable")]
    BadPciWindow(u64, u64),
    /// The loader script could not be written.
    #[error("table-loader script")]
    Loader(#[from] fw_cfg_loader::Error),
}

/// The 32-bit PCI window as QEMU's PC machine describes it: from the end of RAM below 4 GiB
/// (`low_ram_end`, at most [`PCI_HOLE_START`]) up to the IOAPIC. It contains the window
/// SeaBIOS assigns BARs from (0x8000_0000 with up to 2 GiB of RAM below 4 GiB, else
/// 0xc000_0000, up to 0xfec0_0000), so Linux finds every BAR inside the root bridge's `_CRS`.
pub fn pci_hole_below_4g(low_ram_end: u64) -> RangeInclusive<u64> {
    low_ram_end.clamp(0x10_0000, PCI_HOLE_START)..=IOAPIC_ADDR - 1
}

/// The three fw_cfg files — ([`TABLES_FILE`], [`RSDP_FILE`], [`LOADER_FILE`]) with their
/// contents — that make SeaBIOS install this machine's ACPI tables.
pub fn pc_acpi_fw_cfg_files(cfg: &PcAcpiConfig) -> Result<Vec<(String, Vec<u8>)>, Error> {
    if cfg.cpus == 0 || cfg.cpus >= 255 {
        return Err(Error::TooManyCpus(cfg.cpus));
    }
    let (start, end) = (*cfg.pci_hole.start(), *cfg.pci_hole.end());
    if start > end || end >= IOAPIC_ADDR || start < 0x10_0000 {
        return Err(Error::BadPciWindow(start, end));
    }
    let hole = start as u32..=end as u32;
    if let Some(h) = &cfg.pci_hole64 {
        if h.start() > h.end() || *h.start() < 1 << 32 {
            return Err(Error::BadPciWindow(*h.start(), *h.end()));
        }
    }

    let mut b = Blob::new()?;
    let facs = b.add(&bytes_of(&FACS::new()), 64);
    let dsdt = dsdt::dsdt(&hole, cfg.pci_hole64.as_ref(), cfg.pm.s5_sleep_type);
    let dsdt = b.add_table(dsdt.as_slice(), &[])?;
    let fadt_bytes = fadt(&cfg.pm);
    let fadt = b.add_table(
        &fadt_bytes,
        &[(FADT_FIRMWARE_CTRL, 4, facs), (FADT_DSDT, 4, dsdt), (FADT_X_DSDT, 8, dsdt)],
    )?;
    let madt = b.add_table(madt(cfg.cpus, &overrides(cfg)).as_slice(), &[])?;
    let entries = [fadt, madt];

    let mut rsdt = Sdt::new(*b"RSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let mut xsdt = Sdt::new(*b"XSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let (mut rsdt_ptrs, mut xsdt_ptrs) = (Vec::new(), Vec::new());
    for (i, &t) in entries.iter().enumerate() {
        rsdt.append_slice(&[0; 4]);
        xsdt.append_slice(&[0; 8]);
        rsdt_ptrs.push((36 + 4 * i, 4, t));
        xsdt_ptrs.push((36 + 8 * i, 8, t));
    }
    let rsdt = b.add_table(rsdt.as_slice(), &rsdt_ptrs)?;
    let xsdt = b.add_table(xsdt.as_slice(), &xsdt_ptrs)?;

    let mut rsdp = bytes_of(&Rsdp::new(OEM_ID, 0));
    rsdp[RSDP_CHECKSUM] = 0;
    rsdp[RSDP_EXT_CHECKSUM] = 0;
    rsdp[RSDP_RSDT..RSDP_RSDT + 4].copy_from_slice(&rsdt.to_le_bytes());
    rsdp[RSDP_XSDT..RSDP_XSDT + 8].copy_from_slice(&u64::from(xsdt).to_le_bytes());
    b.loader.add_pointer(RSDP_FILE, TABLES_FILE, RSDP_RSDT as u32, 4)?;
    b.loader.add_pointer(RSDP_FILE, TABLES_FILE, RSDP_XSDT as u32, 8)?;
    b.loader.add_checksum(RSDP_FILE, RSDP_CHECKSUM as u32, 0, RSDP_V1_LEN as u32)?;
    b.loader.add_checksum(RSDP_FILE, RSDP_EXT_CHECKSUM as u32, 0, rsdp.len() as u32)?;

    Ok(vec![
        (TABLES_FILE.to_string(), b.data),
        (RSDP_FILE.to_string(), rsdp),
        (LOADER_FILE.to_string(), b.loader.to_bytes()),
    ])
}

/// The tables blob and the script that links it.
struct Blob {
    data: Vec<u8>,
    loader: TableLoader,
}

impl Blob {
    fn new() -> Result<Self, Error> {
        let mut loader = TableLoader::new();
        // The FACS, first in the blob, must be 64-byte aligned.
        loader.allocate(TABLES_FILE, 64, Zone::High)?;
        loader.allocate(RSDP_FILE, 16, Zone::FSeg)?;
        Ok(Blob { data: Vec::new(), loader })
    }

    /// Appends `bytes` at an `align`-aligned offset, which it returns.
    fn add(&mut self, bytes: &[u8], align: usize) -> u32 {
        let at = self.data.len().next_multiple_of(align);
        self.data.resize(at, 0);
        self.data.extend_from_slice(bytes);
        at as u32
    }

    /// Appends a table whose `pointers` (field offset, size, target offset in the blob) are
    /// linked to their targets, then its checksum computed over the linked table.
    fn add_table(&mut self, table: &[u8], pointers: &[(usize, u8, u32)]) -> Result<u32, Error> {
        let at = self.add(table, 8);
        let base = at as usize;
        self.data[base + SDT_CHECKSUM] = 0;
        for &(field, size, target) in pointers {
            let size_bytes = usize::from(size);
            let value = u64::from(target).to_le_bytes();
            self.data[base + field..base + field + size_bytes].copy_from_slice(&value[..size_bytes]);
            self.loader.add_pointer(TABLES_FILE, TABLES_FILE, at + field as u32, size)?;
        }
        self.loader.add_checksum(TABLES_FILE, at + SDT_CHECKSUM as u32, at, table.len() as u32)?;
        Ok(at)
    }
}

/// The MADT's interrupt source overrides.
fn overrides(cfg: &PcAcpiConfig) -> Vec<IrqOverride> {
    let mut v = Vec::new();
    if cfg.irq0_to_gsi2 {
        v.push(IrqOverride { irq: 0, gsi: 2, flags: MPS_CONFORMING });
    }
    let level: BTreeSet<u8> = PCI_IRQS.iter().copied().chain([cfg.pm.sci_irq]).collect();
    v.extend(level.into_iter().map(|irq| IrqOverride { irq, gsi: u32::from(irq), flags: MPS_LEVEL_HIGH }));
    v
}

/// The revision-3 FADT, with zero FIRMWARE_CTRL/DSDT/X_DSDT (the blob links them).
fn fadt(pm: &PmIoPorts) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    set_pm_blocks(&mut f, pm);
    // C2 and C3 are not supported (latencies above 100 and 1000 us).
    f.p_lvl2_lat = 0x0fff.into();
    f.p_lvl3_lat = 0xffff.into();
    f.century = RTC_CENTURY;
    f.iapc_boot_arch = (IAPC_LEGACY_DEVICES | IAPC_8042).into();
    f.reset_reg = GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, u64::from(RESET_PORT));
    f.reset_value = RESET_VALUE;
    let mut b = bytes_of(&f.finalize());
    b.truncate(FADT_REV3_LEN);
    b[4..8].copy_from_slice(&(FADT_REV3_LEN as u32).to_le_bytes());
    b[8] = 3;
    // Bytes 129-131 (ARM boot flags, minor version) are reserved in revision 3.
    b[129..132].fill(0);
    b
}
