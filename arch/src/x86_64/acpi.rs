// SPDX-License-Identifier: Apache-2.0
//! ACPI tables: RSDP, XSDT, FADT (+FACS), DSDT and MADT, built with `acpi_tables`.
//!
//! The platform is a legacy (not hardware-reduced) PC: the FADT points at the PM1a event and
//! control blocks and the PM timer of [`PmIoPorts`], SCI on IRQ 9, and the DSDT carries the
//! `\_S5` sleep-type package the guest writes to PM1a_CNT to power itself off. The MADT
//! lists one local APIC per vCPU, the IOAPIC, the SCI override and LINT1 as NMI, so every
//! vCPU is found and started by an SMP guest.

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{ACPI_ADDR, ACPI_SIZE, IOAPIC_ADDR, LAPIC_ADDR};

pub(crate) const OEM_ID: [u8; 6] = *b"RVMMPC";
pub(crate) const OEM_TABLE_ID: [u8; 8] = *b"RVMMPC01";
pub(crate) const OEM_REVISION: u32 = 1;
/// FADT IA-PC boot architecture flag: LPC/ISA devices present.
pub(crate) const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// FADT IA-PC boot architecture flag: an 8042 keyboard controller is present.
pub(crate) const IAPC_8042: u16 = 1 << 1;
/// FADT IA-PC boot architecture flag: do not probe for VGA.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// MADT interrupt source override flags: level-triggered, active high.
pub(crate) const MPS_LEVEL_HIGH: u16 = 0x000d;
/// MADT interrupt source override flags: conforming to the bus (ISA: edge, active high).
pub(crate) const MPS_CONFORMING: u16 = 0;

/// An ISA interrupt source override of the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IrqOverride {
    /// ISA IRQ.
    pub irq: u8,
    /// The global system interrupt (IOAPIC input) it arrives at.
    pub gsi: u32,
    /// MPS INTI flags (polarity bits 0-1, trigger mode bits 2-3).
    pub flags: u16,
}

/// The I/O ports of the ACPI fixed hardware the tables describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmIoPorts {
    /// PM1a event block (status, enable), 4 bytes.
    pub pm1a_evt: u16,
    /// PM1a control block, 2 bytes.
    pub pm1a_cnt: u16,
    /// PM timer, 4 bytes.
    pub pm_tmr: u16,
    /// The SCI interrupt line.
    pub sci_irq: u8,
    /// The SLP_TYP value of S5 (soft off) in `\_S5`.
    pub s5_sleep_type: u8,
}

/// Errors while writing the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tables do not fit in the reserved window.
    #[error("ACPI tables need {0} bytes, more than the reserved window")]
    TooBig(u64),
    /// Guest memory does not cover the window.
    #[error("cannot write ACPI tables into guest memory")]
    GuestWrite,
    /// More vCPUs than an xAPIC ID can name.
    #[error("{0} vCPUs cannot be described with 8-bit APIC IDs")]
    TooManyCpus(u32),
}

/// IOAPIC ID: after the vCPUs' local APIC IDs.
pub fn ioapic_id(cpu_count: u32) -> u8 {
    cpu_count as u8
}

pub(crate) fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The MADT: one enabled local APIC per vCPU (IDs 0..), the IOAPIC after them, `overrides`,
/// and LINT1 of every processor as NMI.
pub(crate) fn madt(cpu_count: u32, overrides: &[IrqOverride]) -> Sdt {
    // MADT header: local APIC address, flags = PCAT_COMPAT (dual 8259s present).
    let mut madt = Sdt::new(*b"APIC", 44, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    madt.write_u32(36, LAPIC_ADDR as u32);
    madt.write_u32(40, 1);
    for cpu in 0..cpu_count {
        // Processor Local APIC: type 0, length 8, UID, APIC ID, flags = enabled.
        madt.append_slice(&[0, 8, cpu as u8, cpu as u8, 1, 0, 0, 0]);
    }
    // I/O APIC: type 1, length 12, ID, reserved, address, GSI base 0.
    let mut ioapic = vec![1, 12, ioapic_id(cpu_count), 0];
    ioapic.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes());
    madt.append_slice(&ioapic);
    for o in overrides {
        // Interrupt source override: type 2, length 10, ISA bus, IRQ, GSI, flags.
        let mut iso = vec![2, 10, 0, o.irq];
        iso.extend_from_slice(&o.gsi.to_le_bytes());
        iso.extend_from_slice(&o.flags.to_le_bytes());
        madt.append_slice(&iso);
    }
    // Local APIC NMI: all processors, LINT1.
    madt.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    madt.update_checksum();
    madt
}

fn dsdt(pm: &PmIoPorts) -> Sdt {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let typ = aml::Path::new("_S5_");
    let sleep_type = pm.s5_sleep_type;
    let s5 = aml::Name::new(typ, &aml::Package::new(vec![&sleep_type, &sleep_type, &0u8, &0u8]));
    s5.to_aml_bytes(&mut dsdt);
    dsdt.update_checksum();
    dsdt
}

/// A system-I/O generic address of a `bytes`-wide (2 or 4) fixed-hardware register block.
pub(crate) fn io_gas(port: u16, bytes: u8) -> GAS {
    let size = if bytes == 2 { AccessSize::WordAccess } else { AccessSize::DwordAccess };
    GAS::new(AddressSpace::SystemIo, bytes * 8, 0, size, u64::from(port))
}

/// Fills in the FADT's SCI and the PM1a event, PM1a control and PM timer blocks, in both the
/// 32-bit and the generic-address fields.
pub(super) fn set_pm_blocks(f: &mut FADTBuilder, pm: &PmIoPorts) {
    f.sci_int = u16::from(pm.sci_irq).into();
    f.pm1a_evt_blk = u32::from(pm.pm1a_evt).into();
    f.pm1a_cnt_blk = u32::from(pm.pm1a_cnt).into();
    f.pm_tmr_blk = u32::from(pm.pm_tmr).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    f.x_pm1a_evt_blk = io_gas(pm.pm1a_evt, 4);
    f.x_pm1a_cnt_blk = io_gas(pm.pm1a_cnt, 2);
    f.x_pm_tmr_blk = io_gas(pm.pm_tmr, 4);
}

fn fadt(pm: &PmIoPorts, facs: u64, dsdt: u64) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_64(facs)
        .dsdt_64(dsdt)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // PWR_BUTTON clear: the power button is the fixed-feature one of PM1 (PWRBTN_STS/EN),
        // which the VMM presses on request; SLP_BUTTON set: there is no sleep button.
        .flag(Flags::SlpButton);
    set_pm_blocks(&mut f, pm);
    // IA-PC boot architecture: legacy (ISA) devices present; no VGA. The 8042 flag stays
    // clear on this serial-console machine (the PC machine's FADT sets it), so the guest
    // does not spend boot time probing a keyboard; keyboard-controller reset still works.
    f.iapc_boot_arch = (IAPC_LEGACY_DEVICES | IAPC_VGA_NOT_PRESENT).into();
    bytes_of(&f.finalize())
}

/// Builds every table, writes them at [`ACPI_ADDR`] and returns the RSDP's address.
pub fn write_acpi_tables(mem: &GuestMemoryMmap, cpu_count: u32, pm: &PmIoPorts) -> Result<u64, Error> {
    if cpu_count >= 255 {
        return Err(Error::TooManyCpus(cpu_count));
    }
    let mut blob: Vec<u8> = Vec::new();
    let place = |blob: &mut Vec<u8>, bytes: &[u8], align: usize| -> u64 {
        let at = blob.len().next_multiple_of(align);
        blob.resize(at, 0);
        blob.extend_from_slice(bytes);
        ACPI_ADDR + at as u64
    };
    // RSDP first, so a scan of the BIOS area finds it at a 16-byte boundary.
    blob.resize(Rsdp::len(), 0);
    let facs = place(&mut blob, &bytes_of(&FACS::new()), 64);
    let dsdt = place(&mut blob, dsdt(pm).as_slice(), 16);
    let fadt = place(&mut blob, &fadt(pm, facs, dsdt), 16);
    // The SCI is level-triggered, active high (ISA default is edge).
    let sci = IrqOverride { irq: pm.sci_irq, gsi: u32::from(pm.sci_irq), flags: MPS_LEVEL_HIGH };
    let madt = place(&mut blob, madt(cpu_count, &[sci]).as_slice(), 16);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt);
    xsdt.add_entry(madt);
    let xsdt = place(&mut blob, &bytes_of(&xsdt), 16);
    blob[..Rsdp::len()].copy_from_slice(&bytes_of(&Rsdp::new(OEM_ID, xsdt)));
    if blob.len() as u64 > ACPI_SIZE {
        return Err(Error::TooBig(blob.len() as u64));
    }
    mem.write_slice(&blob, GuestAddress(ACPI_ADDR)).map_err(|_| Error::GuestWrite)?;
    Ok(ACPI_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PM: PmIoPorts =
        PmIoPorts { pm1a_evt: 0x600, pm1a_cnt: 0x604, pm_tmr: 0x608, sci_irq: 9, s5_sleep_type: 0 };

    fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut hdr = [0u8; 8];
        mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
        let len = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
        let mut t = vec![0u8; len];
        mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
        t
    }

    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn tables_chain_from_rsdp_with_valid_checksums() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let rsdp_addr = write_acpi_tables(&mem, 4, &PM).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(sums_to_zero(&rsdp[..20]) && sums_to_zero(&rsdp));
        let xsdt = table(&mem, u64_at(&rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(sums_to_zero(&xsdt));
        let fadt = table(&mem, u64_at(&xsdt, 36));
        let madt = table(&mem, u64_at(&xsdt, 44));
        assert_eq!((&fadt[..4], &madt[..4]), (&b"FACP"[..], &b"APIC"[..]));
        assert!(sums_to_zero(&fadt) && sums_to_zero(&madt));
        // FADT: SCI, PM1a event/control, PM timer; X_DSDT points at a valid DSDT with \_S5_.
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9);
        assert_eq!((u32_at(&fadt, 56), u32_at(&fadt, 64), u32_at(&fadt, 76)), (0x600, 0x604, 0x608));
        assert_eq!(u16::from_le_bytes([fadt[109], fadt[110]]), 0x5, "legacy devices, no VGA, no 8042");
        // Flags: WBINVD, PROC_C1, SLP_BUTTON (none); PWR_BUTTON clear (fixed-feature button).
        assert_eq!(u32_at(&fadt, 112) & 0x3f, 0x1 | 0x4 | 0x20);
        let dsdt = table(&mem, u64_at(&fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(sums_to_zero(&dsdt));
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        let facs = table(&mem, u64_at(&fadt, 132));
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u64_at(&fadt, 132) % 64, 0);
        // MADT: 4 local APICs with IDs 0..3, then the IOAPIC with ID 4.
        let mut off = 44;
        let mut apic_ids = vec![];
        let mut ioapic = None;
        let mut iso = None;
        while off < madt.len() {
            match madt[off] {
                0 => apic_ids.push(madt[off + 3]),
                1 => ioapic = Some((madt[off + 2], u32_at(&madt, off + 4))),
                2 => iso = Some((madt[off + 3], u32_at(&madt, off + 4))),
                _ => {}
            }
            off += madt[off + 1] as usize;
        }
        assert_eq!(off, madt.len());
        assert_eq!(apic_ids, vec![0, 1, 2, 3]);
        assert_eq!(ioapic, Some((4, IOAPIC_ADDR as u32)));
        assert_eq!(iso, Some((9, 9)));
    }

    #[test]
    fn refuses_what_it_cannot_describe() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert!(matches!(write_acpi_tables(&mem, 255, &PM), Err(Error::TooManyCpus(255))));
        let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        assert!(matches!(write_acpi_tables(&small, 1, &PM), Err(Error::GuestWrite)));
    }
}
