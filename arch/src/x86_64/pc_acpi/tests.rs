// SPDX-License-Identifier: Apache-2.0
use std::collections::BTreeMap;
use std::process::Command;

use super::*;
use crate::fw_cfg_loader::link;

const PM: PmIoPorts =
    PmIoPorts { pm1a_evt: 0x600, pm1a_cnt: 0x604, pm_tmr: 0x608, sci_irq: 9, s5_sleep_type: 0 };
/// Where the fake firmware puts the blobs.
const TABLES_AT: u64 = 0xbffd_f000;
const RSDP_AT: u64 = 0xf_5a40;

fn config(cpus: u32) -> PcAcpiConfig {
    PcAcpiConfig { cpus, pm: PM, pci_hole: 0xc000_0000..=0xfebf_ffff, pci_hole64: None, irq0_to_gsi2: false }
}

/// Guest memory after linking: address -> bytes of each allocated file.
struct Linked {
    files: BTreeMap<String, (u64, Vec<u8>)>,
}

impl Linked {
    fn new(cfg: &PcAcpiConfig) -> Self {
        let files: BTreeMap<String, Vec<u8>> = pc_acpi_fw_cfg_files(cfg).unwrap().into_iter().collect();
        assert_eq!(files.len(), 3);
        let script = &files[LOADER_FILE];
        let files = link(script, &files, |name, _, align, zone| match (name, zone) {
            (RSDP_FILE, Zone::FSeg) => {
                assert_eq!(align, 16);
                RSDP_AT
            }
            (TABLES_FILE, Zone::High) => {
                assert_eq!(align, 64);
                TABLES_AT
            }
            other => panic!("unexpected allocation {other:?}"),
        })
        .unwrap();
        assert_eq!(files.len(), 2, "exactly the two blobs are allocated");
        Linked { files }
    }

    fn at(&self, addr: u64, len: usize) -> &[u8] {
        for (base, data) in self.files.values() {
            if addr >= *base && addr + len as u64 <= base + data.len() as u64 {
                let off = (addr - base) as usize;
                return &data[off..off + len];
            }
        }
        panic!("{addr:#x}+{len} is in no allocated file");
    }

    fn table(&self, addr: u64) -> &[u8] {
        let len = u32_at(self.at(addr, 8), 4) as usize;
        self.at(addr, len)
    }

    fn rsdp(&self) -> &[u8] {
        self.at(RSDP_AT, 36)
    }
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn every_pointer_reaches_its_table_and_every_checksum_is_zero() {
    let m = Linked::new(&config(2));
    let rsdp = m.rsdp();
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[15], 2, "revision 2");
    assert_eq!(u32_at(rsdp, 20), 36);
    assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(rsdp), 0, "extended checksum");
    let rsdt_addr = u64::from(u32_at(rsdp, 16));
    let xsdt_addr = u64_at(rsdp, 24);
    let rsdt = m.table(rsdt_addr);
    let xsdt = m.table(xsdt_addr);
    assert_eq!((&rsdt[..4], &xsdt[..4]), (&b"RSDT"[..], &b"XSDT"[..]));
    assert_eq!((rsdt.len(), xsdt.len()), (36 + 8, 36 + 16));
    assert_eq!((sum(rsdt), sum(xsdt)), (0, 0));
    let by_rsdt: Vec<u64> = (0..2).map(|i| u64::from(u32_at(rsdt, 36 + 4 * i))).collect();
    let by_xsdt: Vec<u64> = (0..2).map(|i| u64_at(xsdt, 36 + 8 * i)).collect();
    assert_eq!(by_rsdt, by_xsdt);
    let sigs: Vec<&[u8]> = by_xsdt.iter().map(|&a| &m.table(a)[..4]).collect();
    assert_eq!(sigs, vec![&b"FACP"[..], &b"APIC"[..]]);
    for &a in &by_xsdt {
        assert_eq!(sum(m.table(a)), 0);
    }
    let fadt = m.table(by_xsdt[0]);
    let facs_addr = u64::from(u32_at(fadt, 36));
    assert_eq!(facs_addr % 64, 0, "FACS 64-byte aligned");
    assert_eq!(&m.table(facs_addr)[..4], b"FACS");
    assert_eq!(m.table(facs_addr).len(), 64);
    assert_eq!(u64_at(fadt, 132), 0, "X_FIRMWARE_CTRL zero when FIRMWARE_CTRL is set");
    let dsdt_addr = u64::from(u32_at(fadt, 40));
    assert_eq!(u64_at(fadt, 140), dsdt_addr, "X_DSDT equals DSDT");
    let dsdt = m.table(dsdt_addr);
    assert_eq!(&dsdt[..4], b"DSDT");
    assert_eq!(sum(dsdt), 0);
    // Every table lies in the tables blob, the RSDP alone in the F segment.
    for a in [rsdt_addr, xsdt_addr, facs_addr, dsdt_addr, by_xsdt[0], by_xsdt[1]] {
        assert!((TABLES_AT..TABLES_AT + 0x10000).contains(&a));
    }
}

#[test]
fn unlinked_blobs_hold_offsets_and_zero_checksums() {
    let files: BTreeMap<String, Vec<u8>> = pc_acpi_fw_cfg_files(&config(1)).unwrap().into_iter().collect();
    let tables = &files[TABLES_FILE];
    let rsdp = &files[RSDP_FILE];
    assert_eq!(rsdp.len(), 36);
    assert_eq!((rsdp[8], rsdp[32]), (0, 0));
    let xsdt = u64_at(rsdp, 24) as usize;
    assert_eq!(&tables[xsdt..xsdt + 4], b"XSDT");
    let rsdt = u32_at(rsdp, 16) as usize;
    assert_eq!(&tables[rsdt..rsdt + 4], b"RSDT");
    assert_eq!((rsdt + 44).next_multiple_of(8), xsdt, "RSDT (2 entries) right before the XSDT");
    assert_eq!(&tables[..4], b"FACS", "FACS first, at the blob's 64-byte aligned start");
    let fadt = u64_at(tables, xsdt + 36) as usize;
    assert_eq!(&tables[fadt..fadt + 4], b"FACP");
    assert_eq!(u32_at(tables, fadt + 36), 0, "FIRMWARE_CTRL: FACS offset 0");
    let dsdt = u32_at(tables, fadt + 40) as usize;
    assert_eq!(&tables[dsdt..dsdt + 4], b"DSDT");
    assert_eq!(tables[fadt + 9], 0, "checksums are left to the loader");
    // Script: 2 allocations, 3 FADT + 2 RSDT + 2 XSDT + 2 RSDP pointers, 6 + 2 checksums.
    let script = &files[LOADER_FILE];
    let commands: Vec<u32> = script.chunks(128).map(|e| u32_at(e, 0)).collect();
    assert_eq!(commands.iter().filter(|&&c| c == 1).count(), 2);
    assert_eq!(commands.iter().filter(|&&c| c == 2).count(), 9);
    assert_eq!(commands.iter().filter(|&&c| c == 3).count(), 7);
    assert_eq!(&commands[..2], &[1, 1], "allocations come first");
}

#[test]
fn fadt_describes_the_piix4_pm_block() {
    let m = Linked::new(&config(1));
    let xsdt = m.table(u64_at(m.rsdp(), 24));
    let fadt = m.table(u64_at(xsdt, 36)).to_vec();
    assert_eq!(&fadt[..4], b"FACP");
    assert_eq!((fadt.len(), fadt[8]), (244, 3), "revision 3, 244 bytes");
    assert_eq!(u16_at(&fadt, 46), 9, "SCI_INT");
    assert_eq!(u32_at(&fadt, 48), 0, "no SMI_CMD: always in ACPI mode");
    assert_eq!((fadt[52], fadt[53]), (0, 0), "ACPI_ENABLE/DISABLE");
    assert_eq!((u32_at(&fadt, 56), u32_at(&fadt, 64), u32_at(&fadt, 76)), (0x600, 0x604, 0x608));
    assert_eq!((u32_at(&fadt, 60), u32_at(&fadt, 68), u32_at(&fadt, 72)), (0, 0, 0), "no PM1b/PM2");
    assert_eq!((u32_at(&fadt, 80), u32_at(&fadt, 84)), (0, 0), "no GPE blocks");
    assert_eq!(&fadt[88..94], &[4, 2, 0, 4, 0, 0], "PM1_EVT/PM1_CNT/PM2_CNT/PM_TMR/GPE0/GPE1 lengths");
    assert_eq!((u16_at(&fadt, 96), u16_at(&fadt, 98)), (0x0fff, 0xffff), "no C2/C3");
    assert_eq!(fadt[108], 0x32, "century");
    assert_eq!(u16_at(&fadt, 109), 0x3, "legacy devices and an 8042, VGA present");
    // WBINVD, PROC_C1, SLP_BUTTON, RESET_REG_SUP; PWR_BUTTON clear: fixed-feature button.
    assert_eq!(u32_at(&fadt, 112), (1 << 0) | (1 << 2) | (1 << 5) | (1 << 10));
    assert_eq!(&fadt[116..120], &[1, 8, 0, 1], "RESET_REG: system I/O, 8 bits, byte access");
    assert_eq!(u64_at(&fadt, 120), 0xcf9);
    assert_eq!(fadt[128], 0x06, "RESET_VALUE");
    assert_eq!(&fadt[129..132], &[0, 0, 0]);
    // X_PM1a_EVT, X_PM1a_CNT, X_PM_TMR: system I/O with the widths above.
    for (off, bits, port) in [(148, 32, 0x600), (172, 16, 0x604), (208, 32, 0x608)] {
        assert_eq!((fadt[off], fadt[off + 1]), (1, bits));
        assert_eq!(u64_at(&fadt, off + 4), port);
    }
    for off in [160, 184, 196, 220, 232] {
        assert_eq!(u64_at(&fadt, off + 4), 0, "X block at {off} absent");
    }
}

fn madt_entries(madt: &[u8]) -> Vec<&[u8]> {
    let mut v = vec![];
    let mut off = 44;
    while off < madt.len() {
        let len = usize::from(madt[off + 1]);
        assert!(len >= 2);
        v.push(&madt[off..off + len]);
        off += len;
    }
    assert_eq!(off, madt.len());
    v
}

#[test]
fn madt_lists_cpus_ioapic_and_level_overrides() {
    for (cpus, irq0) in [(1, false), (4, false), (3, true)] {
        let cfg = PcAcpiConfig { irq0_to_gsi2: irq0, ..config(cpus) };
        let m = Linked::new(&cfg);
        let xsdt = m.table(u64_at(m.rsdp(), 24));
        let madt = m.table(u64_at(xsdt, 44)).to_vec();
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!((u32_at(&madt, 36), u32_at(&madt, 40)), (0xfee0_0000, 1), "LAPIC address, PCAT_COMPAT");
        let e = madt_entries(&madt);
        let lapics: Vec<(u8, u8, u32)> =
            e.iter().filter(|e| e[0] == 0).map(|e| (e[2], e[3], u32_at(e, 4))).collect();
        assert_eq!(lapics, (0..cpus as u8).map(|i| (i, i, 1)).collect::<Vec<_>>());
        let ioapics: Vec<(u8, u32, u32)> =
            e.iter().filter(|e| e[0] == 1).map(|e| (e[2], u32_at(e, 4), u32_at(e, 8))).collect();
        assert_eq!(ioapics, vec![(cpus as u8, 0xfec0_0000, 0)]);
        let isos: Vec<(u8, u8, u32, u16)> =
            e.iter().filter(|e| e[0] == 2).map(|e| (e[2], e[3], u32_at(e, 4), u16_at(e, 8))).collect();
        let mut want = vec![(0, 5, 5, 0xd), (0, 9, 9, 0xd), (0, 10, 10, 0xd), (0, 11, 11, 0xd)];
        if irq0 {
            want.insert(0, (0, 0, 2, 0));
        }
        assert_eq!(isos, want);
        let nmis: Vec<&[u8]> = e.iter().filter(|e| e[0] == 4).copied().collect();
        assert_eq!(nmis, vec![&[4u8, 6, 0xff, 0, 0, 1][..]], "LINT1 of every CPU is NMI");
    }
}

#[test]
fn dsdt_is_what_seabios_scans_for() {
    let m = Linked::new(&config(1));
    let fadt = m.table(u64::from(u32_at(m.table(u64::from(u32_at(m.rsdp(), 16))), 36)));
    let dsdt = m.table(u64::from(u32_at(fadt, 40)));
    // SeaBIOS's scanner: NameOp "_HID" DWordPrefix EISAID — PS/2 keyboard present (it skips
    // keyboard init otherwise), and the keyboard's _STA is a constant.
    let hid = |id: [u8; 4]| [&[0x08][..], b"_HID", &[0x0c], &id].concat();
    let has = |pat: &[u8]| dsdt.windows(pat.len()).any(|w| w == pat);
    for id in [[0x41, 0xd0, 0x03, 0x03], [0x41, 0xd0, 0x0a, 0x03], [0x41, 0xd0, 0x0c, 0x0f]] {
        assert!(has(&hid(id)), "_HID {id:x?}");
    }
    assert!(has(&[0x08, b'_', b'S', b'T', b'A', 0x0a, 0x0f]));
    for name in
        [&b"LNKA"[..], b"LNKB", b"LNKC", b"LNKD", b"LNKS", b"PRQ3", b"_PRT", b"_S5_", b"COM1", b"P40C"]
    {
        assert!(has(name), "{}", String::from_utf8_lossy(name));
    }
    // OperationRegion(P40C, PCI_Config, 0x60, 0x04).
    assert!(has(&[0x5b, 0x80, b'P', b'4', b'0', b'C', 0x02, 0x0a, 0x60, 0x0a, 0x04]));
    // \_S5_: Package(4) {0, 0, 0, 0}.
    assert!(has(&[b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]));
}

#[test]
fn interrupt_routing_matches_seabios_and_the_piix3() {
    // SeaBIOS (piix_pci_slot_get_irq) and QEMU's i440FX: slot s, pin p (0 = INTA#) uses PIRQ
    // (s - 1 + p) mod 4; the PM function's INTA# is the SCI.
    for slot in 1u8..32 {
        for pin in 0u8..4 {
            let want = if slot == 1 && pin == 0 {
                "LNKS"
            } else {
                dsdt::LINKS[(usize::from(slot) - 1 + usize::from(pin)) % 4]
            };
            assert_eq!(dsdt::link_of(slot, pin), want, "slot {slot} pin {pin}");
        }
    }
    assert_eq!(dsdt::link_of(3, 0), "LNKC", "e1000 at 00:03.0 is on PIRQC");
}

#[test]
fn pci_windows_are_in_the_root_bridge_crs() {
    let cfg = PcAcpiConfig { pci_hole64: Some(0x1_0000_0000..=0x1f_ffff_ffff), ..config(1) };
    let files: BTreeMap<String, Vec<u8>> = pc_acpi_fw_cfg_files(&cfg).unwrap().into_iter().collect();
    let t = &files[TABLES_FILE];
    let has = |pat: &[u8]| t.windows(pat.len()).any(|w| w == pat);
    // DWordMemory min/max/translation/length of the 32-bit window.
    let dword = [0xc000_0000u32, 0xfebf_ffff, 0, 0x3ec0_0000].map(u32::to_le_bytes).concat();
    assert!(has(&dword));
    let qword = [0x1_0000_0000u64, 0x1f_ffff_ffff, 0, 0x1f_0000_0000].map(u64::to_le_bytes).concat();
    assert!(has(&qword));
    let vga = [0xa_0000u32, 0xb_ffff, 0, 0x2_0000].map(u32::to_le_bytes).concat();
    assert!(has(&vga));
    // WordIO 0x0d00-0xffff and IO(Decode16, 0xcf8, 0xcf8, 1, 8).
    assert!(has(&[0x00, 0x0d, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf3]));
    assert!(has(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]));
}

#[test]
fn pci_window_covers_seabios_allocations() {
    assert_eq!(pci_hole_below_4g(1 << 30), 0x4000_0000..=0xfebf_ffff);
    assert_eq!(pci_hole_below_4g(0xa000_0000), 0xa000_0000..=0xfebf_ffff);
    assert_eq!(pci_hole_below_4g(8 << 30), 0xc000_0000..=0xfebf_ffff);
    for ram in [256 << 20, 1 << 30, 2 << 30, 0xb000_0000u64, 3 << 30, 16 << 30] {
        let hole = pci_hole_below_4g(ram);
        // SeaBIOS i440fx_mem_addr_setup: BARs from 2 GiB or 3 GiB up to the IOAPIC.
        let seabios_start = if ram.min(3 << 30) <= 2 << 30 { 0x8000_0000 } else { 0xc000_0000 };
        assert!(*hole.start() <= seabios_start && *hole.end() == 0xfebf_ffff, "{ram:#x}");
        let cfg = PcAcpiConfig { pci_hole: hole, ..config(1) };
        assert!(pc_acpi_fw_cfg_files(&cfg).is_ok());
    }
}

#[test]
fn refuses_what_it_cannot_describe() {
    assert!(matches!(pc_acpi_fw_cfg_files(&config(0)), Err(Error::TooManyCpus(0))));
    assert!(matches!(pc_acpi_fw_cfg_files(&config(255)), Err(Error::TooManyCpus(255))));
    assert!(pc_acpi_fw_cfg_files(&config(254)).is_ok());
    // Reaching the IOAPIC, empty (start after end), below 1 MiB.
    let (start, end) = (0xd000_0000, 0xc000_0000);
    for hole in [0xc000_0000..=0xfec0_0000, RangeInclusive::new(start, end), 0..=0xfff] {
        let cfg = PcAcpiConfig { pci_hole: hole, ..config(1) };
        assert!(matches!(pc_acpi_fw_cfg_files(&cfg), Err(Error::BadPciWindow(..))));
    }
    let cfg = PcAcpiConfig { pci_hole64: Some(0x8000_0000..=0x1_ffff_ffff), ..config(1) };
    assert!(matches!(pc_acpi_fw_cfg_files(&cfg), Err(Error::BadPciWindow(..))));
}

/// Runs `iasl` with `args` in `dir`; its combined output.
fn iasl(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("iasl").args(args).current_dir(dir).output().expect("iasl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn iasl_disassembles_every_table_cleanly() {
    if Command::new("iasl").arg("-v").output().is_err() {
        eprintln!("SKIPPED: iasl not installed (apt-get install acpica-tools)");
        return;
    }
    let m = Linked::new(&PcAcpiConfig { pci_hole64: Some(0x1_0000_0000..=0x1f_ffff_ffff), ..config(4) });
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pc-acpi-").unwrap();
    let dir = dir.as_path();
    let keep = std::env::var_os("PC_ACPI_KEEP").map(std::path::PathBuf::from);
    let xsdt_addr = u64_at(m.rsdp(), 24);
    let xsdt = m.table(xsdt_addr);
    let fadt = m.table(u64_at(xsdt, 36));
    let tables: Vec<(&str, &[u8])> = vec![
        ("rsdt", m.table(u64::from(u32_at(m.rsdp(), 16)))),
        ("xsdt", xsdt),
        ("facp", fadt),
        ("apic", m.table(u64_at(xsdt, 44))),
        ("facs", m.table(u64::from(u32_at(fadt, 36)))),
        ("dsdt", m.table(u64::from(u32_at(fadt, 40)))),
    ];
    for (name, bytes) in &tables {
        std::fs::write(dir.join(format!("{name}.dat")), bytes).unwrap();
        let (ok, out) = iasl(dir, &["-d", &format!("{name}.dat")]);
        assert!(ok, "iasl -d {name}:\n{out}");
        let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap();
        // A revision-1 DSDT (32-bit integers, as QEMU's PC DSDT) is flagged with "****".
        let dsl = dsl.replace("**** 32-bit table (V1), no 64-bit math support", "");
        for bad in ["**** ", "Invalid", "Error", "Warning"] {
            assert!(!dsl.contains(bad), "{name}.dsl has {bad:?}:\n{dsl}");
        }
        assert!(!out.contains("Error"), "iasl -d {name}:\n{out}");
    }
    // The disassembled DSDT compiles back without errors or warnings.
    let (ok, out) = iasl(dir, &["-p", "recompiled", "dsdt.dsl"]);
    assert!(ok && out.contains("0 Errors, 0 Warnings"), "iasl dsdt.dsl:\n{out}");
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
    let flat = dsl.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "Device (PCI0) { Name (_HID, EisaId (\"PNP0A03\")",
        "Package (0x04) { 0x0003FFFF, Zero, LNKC, Zero }",
        "Package (0x04) { 0x001FFFFF, 0x03, LNKB, Zero }",
        "Device (LNKA) { Name (_HID, EisaId (\"PNP0C0F\")",
        "Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, ) { 0x00000005, 0x0000000A, 0x0000000B, }",
        "Method (_SRS, 1, Serialized) // _SRS: Set Resource Settings { CreateDWordField (Arg0, 0x05, PRRI) PRQ0 = PRRI",
        "Method (_DIS, 0, NotSerialized) // _DIS: Disable Device { PRQ1 |= 0x80 }",
        "Return (IQCR (PRQ2))",
        "Return (IQST (PRQ3))",
        "IRQNoFlags () {1} }) } Device (MOU)",
        "IRQNoFlags () {12}",
        "0x03F8, // Range Minimum 0x03F8, // Range Maximum 0x01, // Alignment 0x08, // Length ) IRQNoFlags () {4}",
        "Field (PCI0.ISA.P40C, ByteAcc, NoLock, Preserve) { PRQ0, 8, PRQ1, 8, PRQ2, 8, PRQ3, 8 }",
        "Name (\\_S5, Package (0x04) // _S5_: S5 System State { Zero, Zero, Zero, Zero })",
        "OperationRegion (P40C, PCI_Config, 0x60, 0x04)",
    ] {
        assert!(flat.contains(want), "dsdt.dsl lacks {want:?}:\n{dsl}");
    }
    // PC_ACPI_KEEP=DIR keeps the binaries and their disassembly for inspection.
    if let Some(keep) = keep {
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), keep.join(e.file_name())).unwrap();
        }
    }
}
