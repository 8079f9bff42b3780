// SPDX-License-Identifier: Apache-2.0
use std::collections::BTreeSet;
use std::process::Command;

use super::*;

const GIB: u64 = 1 << 30;

/// One parsed structure.
#[derive(Debug)]
struct Parsed {
    ty: u8,
    handle: u16,
    formatted: Vec<u8>,
    strings: Vec<String>,
    /// Bytes in the table, strings and terminator included.
    size: usize,
}

impl Parsed {
    fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.formatted[off], self.formatted[off + 1]])
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.formatted[off..off + 4].try_into().unwrap())
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.formatted[off..off + 8].try_into().unwrap())
    }
    /// The string whose number is at `off` (None for number 0).
    fn string(&self, off: usize) -> Option<&str> {
        match self.formatted[off] {
            0 => None,
            n => Some(self.strings[usize::from(n) - 1].as_str()),
        }
    }
}

/// Splits a structure table, checking each string set's terminator strictly.
fn parse(mut t: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    while !t.is_empty() {
        assert!(t.len() >= 4, "truncated header");
        let len = usize::from(t[1]);
        assert!(len >= 4 && t.len() >= len + 2, "structure type {} overruns", t[0]);
        let end = len + t[len..].windows(2).position(|w| w == [0, 0]).expect("double NUL") + 2;
        let area = &t[len..end - 2];
        let strings: Vec<String> = if area.is_empty() {
            Vec::new()
        } else {
            area.split(|b| *b == 0).map(|s| String::from_utf8(s.to_vec()).unwrap()).collect()
        };
        // A string set is "s1\0s2\0\0": no empty string inside (which would end it early).
        assert!(strings.iter().all(|s| !s.is_empty()), "empty string in type {}", t[0]);
        out.push(Parsed {
            ty: t[0],
            handle: u16::from_le_bytes([t[2], t[3]]),
            formatted: t[..len].to_vec(),
            strings,
            size: end,
        });
        t = &t[end..];
    }
    out
}

/// CPUID leaf 1 (EAX, EDX) of an AMD EPYC-like vCPU, the processor ID of every type 4.
const CPUID1: (u32, u32) = (0x0083_0f10, 0x178b_fbff);

fn files(cpus: u32, ranges: &[(u64, u64)], uuid: Option<[u8; 16]>) -> (Vec<u8>, Vec<u8>) {
    let f = pc_smbios_fw_cfg_files(cpus, ranges, uuid, CPUID1).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].0, ANCHOR_FILE);
    assert_eq!(f[1].0, TABLES_FILE);
    (f[0].1.clone(), f[1].1.clone())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

const UUID: [u8; 16] =
    [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

#[test]
fn anchor_describes_the_table_with_valid_checksums() {
    let (ep, table) = files(2, &[(0, 3 * GIB), (4 * GIB, 2 * GIB)], None);
    assert_eq!(ep.len(), ANCHOR_LEN);
    assert_eq!(&ep[0..4], b"_SM_");
    assert_eq!(ep[5], 0x1f);
    assert_eq!((ep[6], ep[7]), (2, 8));
    assert_eq!(ep[0x0a], 0, "entry point revision");
    assert_eq!(&ep[0x0b..0x10], &[0; 5]);
    assert_eq!(&ep[0x10..0x15], b"_DMI_");
    assert_eq!(ep[0x1e], 0x28);
    assert_eq!(sum(&ep[..0x1f]), 0, "entry point checksum");
    assert_eq!(sum(&ep[0x10..0x1f]), 0, "intermediate checksum");
    assert_eq!(u16::from_le_bytes([ep[0x16], ep[0x17]]) as usize, table.len());
    assert_eq!(u32::from_le_bytes(ep[0x18..0x1c].try_into().unwrap()), 0, "left for SeaBIOS");
    let parsed = parse(&table);
    assert_eq!(u16::from_le_bytes([ep[0x1c], ep[0x1d]]) as usize, parsed.len());
    let max = parsed.iter().map(|p| p.size).max().unwrap();
    assert_eq!(u16::from_le_bytes([ep[8], ep[9]]) as usize, max);
}

#[test]
fn fix_anchor_checksums_after_patching_the_address() {
    let (mut ep, _) = files(1, &[(0, GIB)], None);
    ep[EP_TABLE_ADDR..EP_TABLE_ADDR + 4].copy_from_slice(&0x000f_0e00u32.to_le_bytes());
    assert_ne!(sum(&ep[0x10..0x1f]), 0);
    fix_anchor_checksums(&mut ep);
    assert_eq!(sum(&ep[..0x1f]), 0);
    assert_eq!(sum(&ep[0x10..0x1f]), 0);
    fix_anchor_checksums(&mut ep[..4]); // too short: ignored, no panic
}

#[test]
fn structures_in_order_with_lengths_and_unique_handles() {
    let (_, table) = files(3, &[(0, 3 * GIB), (4 * GIB, 29 * GIB)], None);
    let parsed = parse(&table);
    let types: Vec<u8> = parsed.iter().map(|p| p.ty).collect();
    assert_eq!(types, [1, 3, 4, 4, 4, 16, 17, 17, 19, 19, 32, 127]);
    for p in &parsed {
        let want = match p.ty {
            1 => 27,
            3 => 22,
            4 => 42,
            16 => 23,
            17 => 40,
            19 => 31,
            32 => 11,
            127 => 4,
            t => panic!("unexpected type {t}"),
        };
        assert_eq!(p.formatted.len(), want, "type {}", p.ty);
    }
    let handles: Vec<u16> = parsed.iter().map(|p| p.handle).collect();
    assert_eq!(
        handles,
        [0x100, 0x300, 0x400, 0x401, 0x402, 0x1000, 0x1100, 0x1101, 0x1300, 0x1301, 0x2000, 0x7f00]
    );
    let unique: BTreeSet<u16> = handles.iter().copied().collect();
    assert_eq!(unique.len(), handles.len());
    assert!(!unique.contains(&0), "handle 0 is SeaBIOS's type 0");
}

#[test]
fn ends_with_the_type_127_terminator() {
    let (_, table) = files(1, &[(0, 512 << 20)], None);
    assert_eq!(&table[table.len() - 6..], &[127, 4, 0x00, 0x7f, 0, 0]);
    assert_eq!(parse(&table).iter().filter(|p| p.ty == 127).count(), 1);
}

#[test]
fn structures_without_strings_end_with_two_nuls() {
    let (_, table) = files(1, &[(0, GIB)], None);
    for p in parse(&table).iter().filter(|p| matches!(p.ty, 16 | 19 | 32 | 127)) {
        assert!(p.strings.is_empty());
        assert_eq!(p.size, p.formatted.len() + 2, "type {}", p.ty);
    }
}

#[test]
fn type1_system_information() {
    let (_, table) = files(1, &[(0, GIB)], Some(UUID));
    let t1 = &parse(&table)[0];
    assert_eq!(t1.string(4), Some(MANUFACTURER));
    assert_eq!(t1.string(5), Some("Standard PC (i440FX + PIIX)"));
    assert_eq!(t1.string(6), Some(VERSION));
    assert_eq!(t1.string(7), Some("12345678-9abc-def0-0123-456789abcdef"));
    // SMBIOS 2.6+: time_low, time_mid and time_hi_and_version little-endian.
    assert_eq!(
        &t1.formatted[8..24],
        &[0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
    );
    assert_eq!(t1.formatted[24], 0x06, "wake-up: power switch");
    assert_eq!((t1.string(25), t1.string(26)), (None, None), "no SKU, no family");
    assert_eq!(t1.size, 27 + t1.strings.iter().map(|s| s.len() + 1).sum::<usize>() + 1);

    let (_, table) = files(1, &[(0, GIB)], None);
    let t1 = &parse(&table)[0];
    assert_eq!(&t1.formatted[8..24], &[0; 16], "no UUID: all zero");
    assert_eq!(t1.string(7), None, "no serial number without a UUID");
    assert_eq!(t1.strings.len(), 3);
}

#[test]
fn type3_chassis() {
    let (_, table) = files(1, &[(0, GIB)], None);
    let t3 = &parse(&table)[1];
    assert_eq!(t3.string(4), Some(MANUFACTURER));
    assert_eq!(t3.formatted[5], 0x01, "other");
    assert_eq!(t3.string(6), Some(VERSION));
    assert_eq!(&t3.formatted[9..13], &[3, 3, 3, 2]);
    assert_eq!(t3.formatted[21], 0, "no SKU");
}

#[test]
fn type4_per_vcpu() {
    let (_, table) = files(12, &[(0, GIB)], None);
    let cpus: Vec<Parsed> = parse(&table).into_iter().filter(|p| p.ty == 4).collect();
    assert_eq!(cpus.len(), 12);
    for (n, p) in cpus.iter().enumerate() {
        assert_eq!(p.string(4), Some(format!("CPU {n}").as_str()));
        assert_eq!(p.formatted[5], 0x03, "central processor");
        assert_eq!((p.formatted[6], p.u16(40)), (0xfe, 0x01), "family via family 2: other");
        assert_eq!(p.string(7), Some(MANUFACTURER));
        assert_eq!(
            &p.formatted[8..16],
            &[0x10, 0x0f, 0x83, 0x00, 0xff, 0xfb, 0x8b, 0x17],
            "CPUID 1 EAX, EDX"
        );
        assert_eq!(p.string(16), Some(VERSION));
        assert_eq!((p.u16(20), p.u16(22)), (2000, 2000));
        assert_eq!(p.formatted[24], 0x41, "populated, enabled");
        assert_eq!((p.u16(26), p.u16(28), p.u16(30)), (0xffff, 0xffff, 0xffff));
        assert_eq!(&p.formatted[35..38], &[1, 1, 1]);
    }
}

fn memory(ranges: &[(u64, u64)]) -> (Parsed, Vec<Parsed>, Vec<Parsed>) {
    let (_, table) = files(1, ranges, None);
    let all = parse(&table);
    let t16 = all.iter().position(|p| p.ty == 16).unwrap();
    let mut all: Vec<Parsed> = all.into_iter().skip(t16).collect();
    let rest = all.split_off(1);
    let (t17, t19): (Vec<Parsed>, Vec<Parsed>) =
        rest.into_iter().filter(|p| matches!(p.ty, 17 | 19)).partition(|p| p.ty == 17);
    (all.pop().unwrap(), t17, t19)
}

#[test]
fn small_ram_is_one_dimm_and_one_range() {
    let (t16, t17, t19) = memory(&[(0, 1 << 30)]);
    assert_eq!(&t16.formatted[4..7], &[1, 3, 6]);
    assert_eq!(t16.u32(7), 1 << 20, "KiB");
    assert_eq!((t16.u16(11), t16.u16(13)), (0xfffe, 1));
    assert_eq!(t16.u64(15), 0);
    assert_eq!(t17.len(), 1);
    assert_eq!((t17[0].u16(4), t17[0].u16(12)), (0x1000, 1024));
    assert_eq!(t17[0].string(16), Some("DIMM 0"));
    assert_eq!(t17[0].string(23), Some(MANUFACTURER));
    assert_eq!((t17[0].formatted[14], t17[0].formatted[18]), (0x09, 0x07));
    assert_eq!(t19.len(), 1);
    assert_eq!((t19[0].u32(4), t19[0].u32(8)), (0, (1 << 20) - 1));
    assert_eq!((t19[0].u16(12), t19[0].formatted[14]), (0x1000, 1));
}

#[test]
fn type17_splits_ram_above_16_gib() {
    // 3 GiB below 4 GiB and 37 GiB above: 40 GiB in 16 + 16 + 8 GiB devices.
    let (t16, t17, t19) = memory(&[(0, 3 * GIB), (4 * GIB, 37 * GIB)]);
    assert_eq!(t16.u32(7), 40 << 20);
    assert_eq!(t16.u16(13), 3);
    let sizes: Vec<u16> = t17.iter().map(|p| p.u16(12)).collect();
    assert_eq!(sizes, [16384, 16384, 8192]);
    let names: Vec<&str> = t17.iter().map(|p| p.string(16).unwrap()).collect();
    assert_eq!(names, ["DIMM 0", "DIMM 1", "DIMM 2"]);
    assert!(t17.iter().all(|p| p.u32(28) == 0), "no extended size needed");
    // Exactly 32 GiB: two full devices, no empty third one.
    let (t16, t17, _) = memory(&[(0, 3 * GIB), (4 * GIB, 29 * GIB)]);
    assert_eq!((t16.u16(13), t17.len()), (2, 2));
    assert!(t17.iter().all(|p| p.u16(12) == 16384));
    // Memory array mapped addresses: one per range, in KiB.
    assert_eq!(t19.len(), 2);
    assert_eq!((t19[0].u32(4), t19[0].u32(8)), (0, (3 << 20) - 1));
    assert_eq!((t19[1].u32(4), t19[1].u32(8)), (4 << 20, (41 << 20) - 1));
    assert_eq!((t19[1].u64(15), t19[1].u64(23)), (0, 0));
}

#[test]
fn huge_ram_uses_extended_fields() {
    // 4 TiB above 4 GiB: type 19's KiB addresses overflow, type 16's 2 TiB limit too.
    let (t16, t17, t19) = memory(&[(0, 3 * GIB), (4 * GIB, 4096 * GIB)]);
    assert_eq!((t16.u32(7), t16.u64(15)), (0x8000_0000, 4099 * GIB));
    assert_eq!(t17.len(), 257);
    assert_eq!(t17.last().unwrap().u16(12), 3 << 10);
    assert_eq!((t19[1].u32(4), t19[1].u32(8)), (u32::MAX, u32::MAX));
    assert_eq!((t19[1].u64(15), t19[1].u64(23)), (4 * GIB, 4100 * GIB - 1));
}

#[test]
fn bad_inputs_are_errors() {
    let r = [(0, GIB)];
    assert_eq!(pc_smbios_fw_cfg_files(0, &r, None, (0, 0)), Err(Error::BadCpuCount(0)));
    assert_eq!(pc_smbios_fw_cfg_files(MAX_CPUS + 1, &r, None, (0, 0)), Err(Error::BadCpuCount(MAX_CPUS + 1)));
    assert_eq!(pc_smbios_fw_cfg_files(1, &[], None, (0, 0)), Err(Error::BadRam(0, 0)));
    assert_eq!(pc_smbios_fw_cfg_files(1, &[(0, 0)], None, (0, 0)), Err(Error::BadRamRange(0, 0)));
    assert_eq!(
        pc_smbios_fw_cfg_files(1, &[(u64::MAX, 2)], None, (0, 0)),
        Err(Error::BadRamRange(u64::MAX, 2))
    );
    let many = vec![(0, 1 << 20); 257];
    assert!(matches!(pc_smbios_fw_cfg_files(1, &many, None, (0, 0)), Err(Error::BadRam(_, 257))));
    // 8 TiB + 1 byte needs a 513th memory device.
    let big = [(0, 3 * GIB), (4 * GIB, 8192 * GIB - 3 * GIB + 1)];
    assert!(matches!(pc_smbios_fw_cfg_files(1, &big, None, (0, 0)), Err(Error::BadRam(..))));
    assert!(matches!(pc_smbios_fw_cfg_files(2000, &r, None, (0, 0)), Err(Error::TooLarge(_))));
    // The machine's largest vCPU count fits with room for SeaBIOS's type 0.
    let (ep, table) = files(254, &[(0, 3 * GIB), (4 * GIB, 1024 * GIB)], None);
    assert!(table.len() <= 0xffff - TYPE0_RESERVE);
    assert_eq!(u16::from_le_bytes([ep[0x1c], ep[0x1d]]) as usize, parse(&table).len());
}

/// Runs `dmidecode --from-dump` on a dump of the tables (entry point at 0, structures at 32,
/// the format `dmidecode --dump-bin` writes).
fn dmidecode(ep: &[u8], table: &[u8], args: &[&str]) -> String {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/smbios-").unwrap();
    let path = dir.as_path().join("dump.bin");
    let mut dump = ep.to_vec();
    dump[EP_TABLE_ADDR..EP_TABLE_ADDR + 4].copy_from_slice(&32u32.to_le_bytes());
    fix_anchor_checksums(&mut dump);
    dump.resize(32, 0);
    dump.extend_from_slice(table);
    std::fs::write(&path, dump).unwrap();
    let out = Command::new("dmidecode").arg("--from-dump").arg(&path).args(args).output().unwrap();
    assert!(out.status.success(), "dmidecode failed: {}", String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn dmidecode_parses_the_tables() {
    if Command::new("dmidecode").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dmidecode not installed (apt-get install dmidecode)");
        return;
    }
    let (ep, table) = files(2, &[(0, 3 * GIB), (4 * GIB, 15 * GIB)], Some(UUID));
    let all = dmidecode(&ep, &table, &[]);
    assert!(all.contains("SMBIOS 2.8 present."), "{all}");
    let count = parse(&table).len();
    assert!(all.contains(&format!("{count} structures occupying {} bytes.", table.len())), "{all}");
    for bad in ["Wrong", "Invalid", "Bad", "TRUNCATED", "<OUT OF SPEC>", "Unknown Type", "BAD INDEX"] {
        assert!(!all.contains(bad), "dmidecode complains ({bad}):\n{all}");
    }
    let t1 = dmidecode(&ep, &table, &["-t", "1"]);
    assert!(t1.contains("Manufacturer: rvmm"), "{t1}");
    assert!(t1.contains("Product Name: Standard PC (i440FX + PIIX)"), "{t1}");
    assert!(t1.contains("UUID: 12345678-9abc-def0-0123-456789abcdef"), "{t1}");
    assert!(t1.contains("Wake-up Type: Power Switch"), "{t1}");
    let t4 = dmidecode(&ep, &table, &["-t", "4"]);
    assert!(t4.contains("Socket Designation: CPU 1"), "{t4}");
    assert!(t4.contains("Max Speed: 2000 MHz") && t4.contains("Status: Populated, Enabled"), "{t4}");
    let t17 = dmidecode(&ep, &table, &["-t", "17"]);
    assert!(t17.contains("Size: 16 GB") && t17.contains("Size: 2 GB"), "{t17}");
    let t19 = dmidecode(&ep, &table, &["-t", "19"]);
    assert!(t19.contains("Ending Address: 0x000BFFFFFFF"), "{t19}");
    assert!(t19.contains("Range Size: 15 GB"), "{t19}");
}
