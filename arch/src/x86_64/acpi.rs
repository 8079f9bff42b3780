// SPDX-License-Identifier: Apache-2.0
//! ACPI tables: RSDP, XSDT, FADT (+FACS), DSDT and MADT, built with `acpi_tables`.
//!
//! The platform is a legacy (not hardware-reduced) PC: the FADT points at the PM1a event and
//! control blocks and the PM timer of [`PmIoPorts`], SCI on IRQ 9, and the DSDT carries the
//! `\_S5` sleep-type package the guest writes to PM1a_CNT to power itself off. The MADT
//! lists one local APIC per vCPU, the IOAPIC, the SCI override and LINT1 as NMI, so every
//! vCPU is found and started by an SMP guest.
//!
//! A machine with a PCI bus ([`PciHostBridge`]) also gets `\_SB.PCI0` in the DSDT: a
//! PNP0A03 root bridge for bus 0 whose `_CRS` holds the configuration ports 0xCF8-0xCFF and
//! the windows the VMM placed BARs in, and whose `_PRT` wires INTx pins straight to IOAPIC
//! inputs 16-23 ([`pci_intx_gsi`]; no interrupt links, since nothing reroutes them).

use std::ops::RangeInclusive;

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
use super::pc_acpi::dsdt::{eisa_hid, io, name, raw, Raw};

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

/// The PCI root bridge of bus 0 the DSDT describes, with the windows its BARs are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciHostBridge {
    /// I/O port window.
    pub io: RangeInclusive<u16>,
    /// Memory window below 4 GiB.
    pub mem32: RangeInclusive<u32>,
    /// Memory window above RAM, if any BAR is there.
    pub mem64: Option<RangeInclusive<u64>>,
}

/// First IOAPIC input of the PCI interrupt pins.
pub const PCI_INTX_FIRST_GSI: u32 = 16;
/// IOAPIC inputs the PCI interrupt pins share (16-23).
pub const PCI_INTX_GSIS: u32 = 8;

/// The IOAPIC input (GSI) that pin `pin` (0 = INTA#) of device `slot` on bus 0 drives on a
/// machine with [`PciHostBridge`]: 16 + (slot + pin) mod 8, the rotation of the usual board
/// swizzle, so neighbouring slots' INTA# lines do not share an input.
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    PCI_INTX_FIRST_GSI + (u32::from(slot) + u32::from(pin)) % PCI_INTX_GSIS
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

/// `_PRT` of bus 0: every pin of slots 1-31 to its IOAPIC input ([`pci_intx_gsi`]), as
/// `{address, pin, 0, GSI}` packages (a zero source names a GSI, level-triggered).
fn pci_prt() -> Raw {
    let entries: Vec<(u32, u8, u32)> = (1u8..32)
        .flat_map(|slot| (0u8..4).map(move |pin| (slot, pin)))
        .map(|(slot, pin)| ((u32::from(slot) << 16) | 0xffff, pin, pci_intx_gsi(slot, pin)))
        .collect();
    let packages: Vec<aml::Package> =
        entries.iter().map(|(adr, pin, gsi)| aml::Package::new(vec![adr, pin, &aml::ZERO, gsi])).collect();
    name("_PRT", &aml::Package::new(packages.iter().map(|p| p as &dyn Aml).collect()))
}

/// `\_SB.PCI0`: the root bridge of bus 0 with its windows and interrupt routing.
fn pci_root_bridge(pci: &PciHostBridge) -> Raw {
    use aml::AddressSpaceCacheable::NotCacheable;
    let bus = aml::AddressSpace::new_bus_number(0u16, 0u16);
    let cf8 = io(0xcf8, 8);
    let io_window = aml::AddressSpace::new_io(*pci.io.start(), *pci.io.end(), None);
    let mem32 = aml::AddressSpace::new_memory(NotCacheable, true, *pci.mem32.start(), *pci.mem32.end(), None);
    let mem64 = pci
        .mem64
        .as_ref()
        .map(|m| aml::AddressSpace::new_memory(NotCacheable, true, *m.start(), *m.end(), None));
    let mut windows: Vec<&dyn Aml> = vec![&bus, &cf8, &io_window, &mem32];
    if let Some(m) = &mem64 {
        windows.push(m);
    }
    let hid = eisa_hid("PNP0A03");
    let uid = name("_UID", &0u8);
    let bbn = name("_BBN", &0u8);
    let crs = name("_CRS", &aml::ResourceTemplate::new(windows));
    let prt = pci_prt();
    raw(&aml::Device::new("PCI0".into(), vec![&hid, &uid, &bbn, &crs, &prt]))
}

fn dsdt(pm: &PmIoPorts, pci: Option<&PciHostBridge>) -> Sdt {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let typ = aml::Path::new("_S5_");
    let sleep_type = pm.s5_sleep_type;
    let s5 = aml::Name::new(typ, &aml::Package::new(vec![&sleep_type, &sleep_type, &0u8, &0u8]));
    s5.to_aml_bytes(&mut dsdt);
    if let Some(pci) = pci {
        let pci0 = pci_root_bridge(pci);
        aml::Scope::new("\\_SB_".into(), vec![&pci0]).to_aml_bytes(&mut dsdt);
    }
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

/// Builds every table, writes them at [`ACPI_ADDR`] and returns the RSDP's address. `pci`
/// describes the PCI bus, if the machine has one.
pub fn write_acpi_tables(
    mem: &GuestMemoryMmap,
    cpu_count: u32,
    pm: &PmIoPorts,
    pci: Option<&PciHostBridge>,
) -> Result<u64, Error> {
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
    let dsdt = place(&mut blob, dsdt(pm, pci).as_slice(), 16);
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
        let rsdp_addr = write_acpi_tables(&mem, 4, &PM, None).unwrap();
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

    const PCI: PciHostBridge =
        PciHostBridge { io: 0x1000..=0xffff, mem32: 0xc000_0000..=0xfebf_ffff, mem64: None };

    /// The DSDT the tables at the RSDP in `mem` point to.
    fn dsdt_of(mem: &GuestMemoryMmap, rsdp: u64) -> Vec<u8> {
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp)).unwrap();
        let xsdt = table(mem, u64_at(&r, 24));
        let fadt = table(mem, u64_at(&xsdt, 36));
        table(mem, u64_at(&fadt, 140))
    }

    #[test]
    fn pci_pins_rotate_over_ioapic_inputs_16_to_23() {
        assert_eq!(pci_intx_gsi(1, 0), 17);
        assert_eq!(pci_intx_gsi(7, 0), 23);
        assert_eq!(pci_intx_gsi(8, 0), 16);
        assert_eq!(pci_intx_gsi(9, 0), 17);
        assert_eq!(pci_intx_gsi(7, 1), 16, "INTB# of slot 7 is INTA# of slot 8");
        assert_eq!(pci_intx_gsi(31, 3), 18);
        for slot in 0..32 {
            let inta: Vec<u32> = (0..4).map(|pin| pci_intx_gsi(slot, pin)).collect();
            assert!(inta.iter().all(|g| (16..24).contains(g)), "{inta:?}");
            assert_eq!(inta.iter().collect::<std::collections::BTreeSet<_>>().len(), 4, "slot {slot}");
        }
    }

    #[test]
    fn dsdt_has_the_pci_root_bridge_only_with_a_pci_bus() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let plain = dsdt_of(&mem, write_acpi_tables(&mem, 1, &PM, None).unwrap());
        // Header, then Name(_S5_, Package(4) {0, 0, 0, 0}) and nothing else.
        assert_eq!(&plain[36..], &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]);
        let pci = dsdt_of(&mem, write_acpi_tables(&mem, 1, &PM, Some(&PCI)).unwrap());
        assert!(sums_to_zero(&pci));
        let has = |pat: &[u8]| pci.windows(pat.len()).any(|w| w == pat);
        for name in [&b"_SB_"[..], b"PCI0", b"_CRS", b"_PRT", b"_BBN", b"_UID"] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
        // _HID EISAID PNP0A03; DWordMemory 0xc0000000-0xfebfffff; WordIO 0x1000-0xffff;
        // IO(Decode16, 0xcf8, 0xcf8, 1, 8).
        assert!(has(&[0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03]));
        assert!(has(&[0xc000_0000u32, 0xfebf_ffff, 0, 0x3ec0_0000].map(u32::to_le_bytes).concat()));
        assert!(has(&[0x00, 0x10, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf0]));
        assert!(has(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]));
        // No 64-bit window unless one is given.
        assert!(!has(&[0x8a, 0x2b, 0x00]));
        let with64 = PciHostBridge { mem64: Some(0x10_0000_0000..=0x1f_ffff_ffff), ..PCI };
        let pci64 = dsdt_of(&mem, write_acpi_tables(&mem, 1, &PM, Some(&with64)).unwrap());
        let qword = [0x10_0000_0000u64, 0x1f_ffff_ffff, 0, 0x10_0000_0000].map(u64::to_le_bytes).concat();
        assert!(pci64.windows(qword.len()).any(|w| w == qword));
    }

    #[test]
    fn iasl_reads_the_pci_root_bridge() {
        use std::process::Command;
        if Command::new("iasl").arg("-v").output().is_err() {
            eprintln!("SKIPPED: iasl not installed (apt-get install acpica-tools)");
            return;
        }
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let dsdt = dsdt_of(&mem, write_acpi_tables(&mem, 2, &PM, Some(&PCI)).unwrap());
        let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/direct-acpi-").unwrap();
        let dir = dir.as_path();
        std::fs::write(dir.join("dsdt.dat"), &dsdt).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("iasl").args(args).current_dir(dir).output().unwrap();
            let text =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        };
        let (ok, out) = run(&["-d", "dsdt.dat"]);
        assert!(ok, "iasl -d:\n{out}");
        let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
        let (ok, out) = run(&["-p", "recompiled", "dsdt.dsl"]);
        assert!(ok && out.contains("0 Errors, 0 Warnings"), "iasl dsdt.dsl:\n{out}\n{dsl}");
        let flat = dsl.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            "Device (PCI0) { Name (_HID, EisaId (\"PNP0A03\")",
            "Name (_UID, Zero)",
            "Name (_BBN, Zero)",
            "0x0000, // Range Minimum 0x0000, // Range Maximum 0x0000, // Translation Offset 0x0001, // Length",
            "0x1000, // Range Minimum 0xFFFF, // Range Maximum 0x0000, // Translation Offset 0xF000, // Length",
            "0xC0000000, // Range Minimum 0xFEBFFFFF, // Range Maximum",
            "Package (0x04) { 0x0001FFFF, Zero, Zero, 0x11 }",
            "Package (0x04) { 0x0008FFFF, Zero, Zero, 0x10 }",
            "Package (0x04) { 0x001FFFFF, 0x03, Zero, 0x12 }",
        ] {
            assert!(flat.contains(want), "dsdt.dsl lacks {want:?}:\n{dsl}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_describe() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert!(matches!(write_acpi_tables(&mem, 255, &PM, None), Err(Error::TooManyCpus(255))));
        let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        assert!(matches!(write_acpi_tables(&small, 1, &PM, None), Err(Error::GuestWrite)));
    }
}
