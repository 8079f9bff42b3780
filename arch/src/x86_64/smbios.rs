// SPDX-License-Identifier: Apache-2.0
//! SMBIOS tables of the SeaBIOS "pc" machine, handed to the firmware through fw_cfg so SeaBIOS
//! installs them instead of building its own defaults (as QEMU does).
//!
//! Two fw_cfg files (see [`pc_smbios_fw_cfg_files`]):
//! - [`ANCHOR_FILE`]: an SMBIOS 2.8 32-bit entry point ("_SM_" with the intermediate "_DMI_"
//!   anchor, 31 bytes). Its structure table address is 0: SeaBIOS copies the structures to
//!   the F segment (or high memory), stores their address, adjusts length, count and maximum
//!   structure size for the type 0 it adds, and recomputes both checksums (which are already
//!   valid for address 0 here).
//! - [`TABLES_FILE`]: the structures back to back, ending with type 127.
//!
//! Structures (handles as QEMU numbers them, so they never collide with SeaBIOS's type 0 at
//! handle 0): type 1 system information (0x100), type 3 chassis (0x300), type 4 processor per
//! vCPU (0x400 + n), type 16 physical memory array (0x1000), type 17 memory devices of at most
//! 16 GiB each (0x1100 + n), type 19 memory array mapped address per RAM range (0x1300 + n),
//! type 32 boot information (0x2000) and type 127 end of table (0x7f00). No type 0: SeaBIOS
//! inserts its own BIOS information (vendor "SeaBIOS", its version and date) when the tables
//! lack one, which is what QEMU relies on by default too.
//!
//! Type 4's processor ID is the caller's: CPUID leaf 1 EAX (signature) and EDX (features) of
//! the first vCPU, as QEMU fills it and `dmidecode` decodes it.

/// fw_cfg file holding the entry point.
pub const ANCHOR_FILE: &str = "etc/smbios/smbios-anchor";
/// fw_cfg file holding the structure table.
pub const TABLES_FILE: &str = "etc/smbios/smbios-tables";
/// Manufacturer string of the system, chassis, processors and memory devices.
pub const MANUFACTURER: &str = "rvmm";
/// Product name of the system (type 1).
pub const PRODUCT: &str = "Standard PC (i440FX + PIIX)";
/// Version of the system, chassis and processors, like QEMU's machine type name.
pub const VERSION: &str = concat!("pc-i440fx-", env!("CARGO_PKG_VERSION"));
/// Most vCPUs: type 4 handles 0x400 + n must stay below type 16's 0x1000.
pub const MAX_CPUS: u32 = 0xc00;
/// Largest memory device (type 17), as QEMU splits RAM.
pub const MAX_DIMM_SIZE: u64 = 16 << 30;
/// Bytes of the 16-bit structure table length left for the type 0 SeaBIOS adds.
pub const TYPE0_RESERVE: usize = 256;

/// Length of the SMBIOS 2.1 (32-bit) entry point structure.
pub const ANCHOR_LEN: usize = 0x1f;
/// Entry point field offsets.
const EP_CHECKSUM: usize = 4;
const EP_MAX_STRUCT: usize = 8;
const EP_INTERMEDIATE: usize = 0x10;
const EP_INTERMEDIATE_CHECKSUM: usize = 0x15;
const EP_TABLE_LEN: usize = 0x16;
/// Offset of the structure table address in the entry point.
pub const EP_TABLE_ADDR: usize = 0x18;
const EP_NUM_STRUCTS: usize = 0x1c;

/// Formatted-area lengths of each structure, as of SMBIOS 2.8.
const T1_LEN: u8 = 27;
const T3_LEN: u8 = 22;
const T4_LEN: u8 = 42;
const T16_LEN: u8 = 23;
const T17_LEN: u8 = 40;
const T19_LEN: u8 = 31;
const T32_LEN: u8 = 11;
const T127_LEN: u8 = 4;

/// Handles of each structure type (the first one where there are several).
const T1_HANDLE: u16 = 0x100;
const T3_HANDLE: u16 = 0x300;
const T4_HANDLE: u16 = 0x400;
const T16_HANDLE: u16 = 0x1000;
const T17_HANDLE: u16 = 0x1100;
const T19_HANDLE: u16 = 0x1300;
const T32_HANDLE: u16 = 0x2000;
const T127_HANDLE: u16 = 0x7f00;
/// Most type 17 and type 19 structures before their handles reach the next type's.
const MAX_DIMMS: u64 = (T19_HANDLE - T17_HANDLE) as u64;
const MAX_RAM_RANGES: usize = 0x100;

/// "No structure" and "not provided" handles.
const HANDLE_NONE: u16 = 0xffff;
const HANDLE_NOT_PROVIDED: u16 = 0xfffe;

/// Errors while building the tables.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No vCPU, or more than the type 4 handles can number.
    #[error("{0} vCPUs cannot be described in SMBIOS (1..={MAX_CPUS})")]
    BadCpuCount(u32),
    /// A RAM range that is empty or wraps around the address space.
    #[error("RAM range {0:#x}+{1:#x} is empty or wraps")]
    BadRamRange(u64, u64),
    /// No RAM range, or more ranges or memory devices than the handles can number.
    #[error("{0} bytes of RAM in {1} ranges cannot be described in SMBIOS")]
    BadRam(u64, usize),
    /// The structures exceed what the 16-bit table length of the entry point can hold.
    #[error("SMBIOS structure table of {0} bytes is too large")]
    TooLarge(usize),
}

/// One structure: the formatted area, then its strings.
struct Structure {
    formatted: Vec<u8>,
    strings: Vec<u8>,
    count: u8,
}

impl Structure {
    fn new(ty: u8, len: u8, handle: u16) -> Self {
        let mut formatted = vec![0; usize::from(len)];
        formatted[0] = ty;
        formatted[1] = len;
        formatted[2..4].copy_from_slice(&handle.to_le_bytes());
        Structure { formatted, strings: Vec::new(), count: 0 }
    }

    fn u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.formatted[off] = v;
        self
    }

    fn u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.formatted[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.formatted[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.formatted[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        self.formatted[off..off + v.len()].copy_from_slice(v);
        self
    }

    /// Appends `s` to the strings and stores its number at `off`; an empty string is "none"
    /// (number 0).
    fn string(&mut self, off: usize, s: &str) -> &mut Self {
        debug_assert!(!s.contains('\0'));
        if s.is_empty() {
            return self.u8(off, 0);
        }
        self.count += 1;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        let n = self.count;
        self.u8(off, n)
    }

    /// The structure as it appears in the table: the strings end with an extra NUL, and a
    /// structure without strings ends with two.
    fn encode(&self) -> Vec<u8> {
        let mut v = self.formatted.clone();
        v.extend_from_slice(&self.strings);
        v.push(0);
        if self.strings.is_empty() {
            v.push(0);
        }
        v
    }
}

/// The structures so far, with the counts the entry point reports.
#[derive(Default)]
struct Table {
    data: Vec<u8>,
    count: u16,
    max_size: usize,
}

impl Table {
    fn push(&mut self, s: &Structure) {
        let bytes = s.encode();
        self.max_size = self.max_size.max(bytes.len());
        self.count = self.count.saturating_add(1);
        self.data.extend_from_slice(&bytes);
    }
}

/// The UUID as SMBIOS 2.6+ stores it: `uuid` is in RFC 4122 (big-endian, printed) order; the
/// first three fields go little-endian.
fn smbios_uuid(uuid: &[u8; 16]) -> [u8; 16] {
    let mut u = *uuid;
    u[0..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}

/// `uuid` in its usual printed form.
fn uuid_string(u: &[u8; 16]) -> String {
    let hex = |r: std::ops::Range<usize>| u[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16))
}

/// Type 1, System Information. `uuid` (RFC 4122 byte order) also becomes the serial number;
/// without one, the UUID is all zero ("not present") and there is no serial number.
fn type1(uuid: Option<[u8; 16]>) -> Structure {
    let mut s = Structure::new(1, T1_LEN, T1_HANDLE);
    s.string(4, MANUFACTURER).string(5, PRODUCT).string(6, VERSION);
    s.string(7, &uuid.map(|u| uuid_string(&u)).unwrap_or_default());
    s.bytes(8, &smbios_uuid(&uuid.unwrap_or([0; 16])));
    s.u8(24, 0x06); // wake-up type: power switch
    s
}

/// Type 3, System Enclosure or Chassis.
fn type3() -> Structure {
    let mut s = Structure::new(3, T3_LEN, T3_HANDLE);
    s.string(4, MANUFACTURER).u8(5, 0x01).string(6, VERSION); // type: other
    s.u8(9, 0x03).u8(10, 0x03).u8(11, 0x03); // boot-up, power supply and thermal: safe
    s.u8(12, 0x02); // security status: unknown
    s
}

/// Type 4, Processor Information, for vCPU `n`: one socket per vCPU with one core and one
/// thread, as the MADT and MP table describe them.
fn type4(n: u16, processor_id: u64) -> Structure {
    let mut s = Structure::new(4, T4_LEN, T4_HANDLE + n);
    s.string(4, &format!("CPU {n}"));
    s.u8(5, 0x03); // central processor
    s.u8(6, 0xfe); // family: see processor family 2
    s.string(7, MANUFACTURER);
    s.u64(8, processor_id);
    s.string(16, VERSION);
    s.u16(20, 2000).u16(22, 2000); // max and current speed, MHz
    s.u8(24, 0x41); // socket populated, CPU enabled
    s.u8(25, 0x01); // upgrade: other
    s.u16(26, HANDLE_NONE).u16(28, HANDLE_NONE).u16(30, HANDLE_NONE); // no cache structures
    s.u8(35, 1).u8(36, 1).u8(37, 1); // cores, enabled cores, threads
    s.u16(38, 0x02); // characteristics: unknown
    s.u16(40, 0x01); // processor family 2: other
    s
}

/// Type 16, Physical Memory Array, of `ram` bytes in `devices` memory devices.
fn type16(ram: u64, devices: u16) -> Structure {
    let mut s = Structure::new(16, T16_LEN, T16_HANDLE);
    s.u8(4, 0x01).u8(5, 0x03).u8(6, 0x06); // location other, system memory, multi-bit ECC
    let kib = ram.div_ceil(1 << 10);
    if kib < 0x8000_0000 {
        s.u32(7, kib as u32);
    } else {
        s.u32(7, 0x8000_0000).u64(15, ram);
    }
    s.u16(11, HANDLE_NOT_PROVIDED).u16(13, devices);
    s
}

/// Type 17, Memory Device number `n` of `size` bytes.
fn type17(n: u16, size: u64) -> Structure {
    let mut s = Structure::new(17, T17_LEN, T17_HANDLE + n);
    s.u16(4, T16_HANDLE).u16(6, HANDLE_NOT_PROVIDED);
    s.u16(8, 0xffff).u16(10, 0xffff); // total and data width: unknown
    let mib = size.div_ceil(1 << 20);
    if mib < 0x7fff {
        s.u16(12, mib as u16);
    } else {
        s.u16(12, 0x7fff).u32(28, mib as u32);
    }
    s.u8(14, 0x09); // DIMM
    s.string(16, &format!("DIMM {n}"));
    s.u8(18, 0x07); // RAM
    s.u16(19, 0x02); // type detail: other
    s.string(23, MANUFACTURER);
    s
}

/// Type 19, Memory Array Mapped Address number `n`, for `len` bytes at `start`.
fn type19(n: u16, start: u64, len: u64) -> Structure {
    let mut s = Structure::new(19, T19_LEN, T19_HANDLE + n);
    let last = start + (len - 1);
    let (start_kib, last_kib) = (start >> 10, last >> 10);
    if start_kib < u64::from(u32::MAX) && last_kib < u64::from(u32::MAX) {
        s.u32(4, start_kib as u32).u32(8, last_kib as u32);
    } else {
        s.u32(4, u32::MAX).u32(8, u32::MAX).u64(15, start).u64(23, last);
    }
    s.u16(12, T16_HANDLE).u8(14, 1); // partition width
    s
}

/// The memory devices for `ram` bytes: 16 GiB each, the last one holding the rest.
fn dimm_sizes(ram: u64) -> Vec<u64> {
    let n = ram.div_ceil(MAX_DIMM_SIZE);
    (0..n).map(|i| if i + 1 < n { MAX_DIMM_SIZE } else { (ram - 1) % MAX_DIMM_SIZE + 1 }).collect()
}

/// The 32-bit entry point for `table`, its structure table address 0 and checksums valid.
fn anchor(table: &Table) -> Vec<u8> {
    let mut ep = vec![0u8; ANCHOR_LEN];
    ep[0..4].copy_from_slice(b"_SM_");
    ep[5] = ANCHOR_LEN as u8;
    ep[6] = 2; // SMBIOS 2.8
    ep[7] = 8;
    ep[EP_MAX_STRUCT..EP_MAX_STRUCT + 2].copy_from_slice(&(table.max_size as u16).to_le_bytes());
    ep[EP_INTERMEDIATE..EP_INTERMEDIATE + 5].copy_from_slice(b"_DMI_");
    ep[EP_TABLE_LEN..EP_TABLE_LEN + 2].copy_from_slice(&(table.data.len() as u16).to_le_bytes());
    ep[EP_NUM_STRUCTS..EP_NUM_STRUCTS + 2].copy_from_slice(&table.count.to_le_bytes());
    ep[0x1e] = 0x28; // BCD revision
    fix_anchor_checksums(&mut ep);
    ep
}

/// Recomputes both checksums of a 32-bit entry point (after its table address changed).
pub fn fix_anchor_checksums(ep: &mut [u8]) {
    if ep.len() < ANCHOR_LEN {
        return;
    }
    let sum = |b: &[u8]| b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    ep[EP_INTERMEDIATE_CHECKSUM] = 0;
    ep[EP_INTERMEDIATE_CHECKSUM] = sum(&ep[EP_INTERMEDIATE..ANCHOR_LEN]).wrapping_neg();
    ep[EP_CHECKSUM] = 0;
    ep[EP_CHECKSUM] = sum(&ep[..EP_INTERMEDIATE]).wrapping_neg();
}

/// The two fw_cfg files — ([`ANCHOR_FILE`], [`TABLES_FILE`]) with their contents — that make
/// SeaBIOS install this machine's SMBIOS tables: `cpus` processors, RAM in `ram_ranges`
/// (`(start, length)` in bytes, e.g. below and above 4 GiB), the system UUID `uuid` in RFC 4122
/// byte order (all zero if `None`), and `cpuid1` = (EAX, EDX) of CPUID leaf 1 as every
/// processor's ID.
pub fn pc_smbios_fw_cfg_files(
    cpus: u32,
    ram_ranges: &[(u64, u64)],
    uuid: Option<[u8; 16]>,
    cpuid1: (u32, u32),
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let processor_id = u64::from(cpuid1.0) | (u64::from(cpuid1.1) << 32);
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::BadCpuCount(cpus));
    }
    let mut ram = 0u64;
    for &(start, len) in ram_ranges {
        if len == 0 || start.checked_add(len - 1).is_none() {
            return Err(Error::BadRamRange(start, len));
        }
        ram = ram.checked_add(len).ok_or(Error::BadRam(u64::MAX, ram_ranges.len()))?;
    }
    let dimms = ram.div_ceil(MAX_DIMM_SIZE);
    if ram == 0 || dimms > MAX_DIMMS || ram_ranges.len() > MAX_RAM_RANGES {
        return Err(Error::BadRam(ram, ram_ranges.len()));
    }

    let mut table = Table::default();
    table.push(&type1(uuid));
    table.push(&type3());
    for n in 0..cpus {
        table.push(&type4(n as u16, processor_id));
    }
    table.push(&type16(ram, dimms as u16));
    for (n, size) in dimm_sizes(ram).into_iter().enumerate() {
        table.push(&type17(n as u16, size));
    }
    for (n, &(start, len)) in ram_ranges.iter().enumerate() {
        table.push(&type19(n as u16, start, len));
    }
    table.push(&Structure::new(32, T32_LEN, T32_HANDLE)); // boot status 0: no errors
    table.push(&Structure::new(127, T127_LEN, T127_HANDLE));
    if table.data.len() > usize::from(u16::MAX) - TYPE0_RESERVE {
        return Err(Error::TooLarge(table.data.len()));
    }
    Ok(vec![(ANCHOR_FILE.to_string(), anchor(&table)), (TABLES_FILE.to_string(), table.data)])
}

#[cfg(test)]
mod tests;
