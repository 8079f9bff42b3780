// SPDX-License-Identifier: Apache-2.0
//! The BIOS linker/loader script ("etc/table-loader"), with which a VMM hands ACPI tables to
//! firmware (SeaBIOS, OVMF) through fw_cfg without knowing where they will end up in memory.
//!
//! The script is an array of 128-byte little-endian commands, executed in order:
//! - `ALLOCATE` (1): `file[56]`, `align: u32`, `zone: u8` — copy fw_cfg file `file` into
//!   guest memory at an `align`-aligned address in `zone` (1 = high memory, 2 = the F segment
//!   0xF0000-0xFFFFF, where an RSDP scan looks).
//! - `ADD_POINTER` (2): `dest_file[56]`, `src_file[56]`, `offset: u32`, `size: u8` — the
//!   `size`-byte (1, 2, 4 or 8) little-endian integer at `offset` in `dest_file` gets the
//!   address `src_file` was allocated at added to it. Pointer fields therefore hold, before
//!   linking, the offset of their target within `src_file`.
//! - `ADD_CHECKSUM` (3): `file[56]`, `offset: u32`, `start: u32`, `length: u32` — subtract the
//!   byte sum of `file[start..start + length]` from the byte at `offset`, which makes the
//!   range sum to zero whatever the byte held before.
//!
//! File names are NUL-terminated within their 56 bytes; the rest of an entry is zero. Files
//! must be allocated before a command names them. [`TableLoader`] builds a script; [`link`]
//! executes one the way the firmware does (used by tests to check what the guest will see).

use std::collections::BTreeMap;

/// Size of one command.
pub const ENTRY_LEN: usize = 128;
/// Size of a file-name field, including its terminating NUL.
pub const FILE_NAME_LEN: usize = 56;
/// Command: allocate and copy a file.
pub const COMMAND_ALLOCATE: u32 = 1;
/// Command: add a file's address to a pointer field.
pub const COMMAND_ADD_POINTER: u32 = 2;
/// Command: fix an 8-bit checksum.
pub const COMMAND_ADD_CHECKSUM: u32 = 3;

/// Where firmware places an allocated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Zone {
    /// Reserved RAM high in the 32-bit address space (SeaBIOS's ZoneHigh).
    High = 1,
    /// The F segment (0xF0000-0xFFFFF), where the legacy RSDP scan looks.
    FSeg = 2,
}

/// Errors while building or executing a script.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A file name that does not fit a 56-byte field with its NUL (or contains a NUL).
    #[error("fw_cfg file name {0:?} is empty, contains NUL or is longer than 55 bytes")]
    BadName(String),
    /// An alignment that is not a power of two.
    #[error("allocation alignment {0} is not a power of two")]
    BadAlign(u32),
    /// A pointer width other than 1, 2, 4 or 8.
    #[error("pointer size {0} is not 1, 2, 4 or 8")]
    BadPointerSize(u8),
    /// A script whose length is not a multiple of 128.
    #[error("table-loader script of {0} bytes is not a whole number of commands")]
    BadScriptLength(usize),
    /// A command names a file that was not allocated (or does not exist).
    #[error("table-loader command {0} names unknown or unallocated file {1:?}")]
    UnknownFile(usize, String),
    /// A command's range lies outside its file.
    #[error("table-loader command {0} reaches outside file {1:?}")]
    OutOfRange(usize, String),
    /// A command field is invalid (zone, alignment, size, name).
    #[error("table-loader command {0} is malformed")]
    Malformed(usize),
}

fn name_field(name: &str) -> Result<[u8; FILE_NAME_LEN], Error> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= FILE_NAME_LEN || bytes.contains(&0) {
        return Err(Error::BadName(name.to_string()));
    }
    let mut field = [0u8; FILE_NAME_LEN];
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

/// A linker/loader script under construction.
#[derive(Debug, Default, Clone)]
pub struct TableLoader {
    entries: Vec<[u8; ENTRY_LEN]>,
}

impl TableLoader {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, command: u32, parts: &[&[u8]]) {
        let mut e = [0u8; ENTRY_LEN];
        e[..4].copy_from_slice(&command.to_le_bytes());
        let mut at = 4;
        for p in parts {
            e[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.entries.push(e);
    }

    /// Allocates `file` at an `align`-aligned address in `zone` and copies it there.
    pub fn allocate(&mut self, file: &str, align: u32, zone: Zone) -> Result<(), Error> {
        if !align.is_power_of_two() {
            return Err(Error::BadAlign(align));
        }
        let name = name_field(file)?;
        self.push(COMMAND_ALLOCATE, &[&name, &align.to_le_bytes(), &[zone as u8]]);
        Ok(())
    }

    /// Adds the address of `src_file` to the `size`-byte pointer at `offset` in `dest_file`.
    pub fn add_pointer(
        &mut self,
        dest_file: &str,
        src_file: &str,
        offset: u32,
        size: u8,
    ) -> Result<(), Error> {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(Error::BadPointerSize(size));
        }
        let (dest, src) = (name_field(dest_file)?, name_field(src_file)?);
        self.push(COMMAND_ADD_POINTER, &[&dest, &src, &offset.to_le_bytes(), &[size]]);
        Ok(())
    }

    /// Makes `file[start..start + length]` sum to zero by adjusting the byte at `offset`.
    pub fn add_checksum(&mut self, file: &str, offset: u32, start: u32, length: u32) -> Result<(), Error> {
        let name = name_field(file)?;
        self.push(
            COMMAND_ADD_CHECKSUM,
            &[&name, &offset.to_le_bytes(), &start.to_le_bytes(), &length.to_le_bytes()],
        );
        Ok(())
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the script has no command.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The script, as the content of fw_cfg file "etc/table-loader".
    pub fn to_bytes(&self) -> Vec<u8> {
        self.entries.concat()
    }
}

fn read_name(entry: &[u8], at: usize, index: usize) -> Result<String, Error> {
    let field = &entry[at..at + FILE_NAME_LEN];
    let len = field.iter().position(|&b| b == 0).ok_or(Error::Malformed(index))?;
    String::from_utf8(field[..len].to_vec()).map_err(|_| Error::Malformed(index))
}

fn u32_at(entry: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]])
}

/// Executes `script` as firmware does. `files` holds the fw_cfg files; `place(name, size,
/// align, zone)` chooses where an allocated file goes. Returns every allocated file's address
/// and its linked content. Unknown commands are skipped, as SeaBIOS does; unlike SeaBIOS,
/// which only warns, any malformed command is an error here.
pub fn link(
    script: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
    mut place: impl FnMut(&str, usize, u32, Zone) -> u64,
) -> Result<BTreeMap<String, (u64, Vec<u8>)>, Error> {
    if script.len() % ENTRY_LEN != 0 {
        return Err(Error::BadScriptLength(script.len()));
    }
    let mut loaded: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
    for (i, e) in script.chunks_exact(ENTRY_LEN).enumerate() {
        match u32_at(e, 0) {
            COMMAND_ALLOCATE => {
                let name = read_name(e, 4, i)?;
                let align = u32_at(e, 60);
                let zone = match e[64] {
                    1 => Zone::High,
                    2 => Zone::FSeg,
                    _ => return Err(Error::Malformed(i)),
                };
                if !align.is_power_of_two() {
                    return Err(Error::Malformed(i));
                }
                let data = files.get(&name).ok_or_else(|| Error::UnknownFile(i, name.clone()))?.clone();
                let addr = place(&name, data.len(), align, zone);
                loaded.insert(name, (addr, data));
            }
            COMMAND_ADD_POINTER => {
                let dest = read_name(e, 4, i)?;
                let src = read_name(e, 60, i)?;
                let offset = u32_at(e, 116) as usize;
                let size = usize::from(e[120]);
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Err(Error::Malformed(i));
                }
                let src_addr = loaded.get(&src).ok_or_else(|| Error::UnknownFile(i, src.clone()))?.0;
                let (_, data) = loaded.get_mut(&dest).ok_or_else(|| Error::UnknownFile(i, dest.clone()))?;
                let field = offset
                    .checked_add(size)
                    .and_then(|end| data.get_mut(offset..end))
                    .ok_or_else(|| Error::OutOfRange(i, dest.clone()))?;
                let mut value = [0u8; 8];
                value[..size].copy_from_slice(field);
                let sum = u64::from_le_bytes(value).wrapping_add(src_addr);
                field.copy_from_slice(&sum.to_le_bytes()[..size]);
            }
            COMMAND_ADD_CHECKSUM => {
                let name = read_name(e, 4, i)?;
                let (offset, start, length) = (u32_at(e, 60) as usize, u32_at(e, 64) as usize, u32_at(e, 68));
                let (_, data) = loaded.get_mut(&name).ok_or_else(|| Error::UnknownFile(i, name.clone()))?;
                let range = start
                    .checked_add(length as usize)
                    .and_then(|end| data.get(start..end))
                    .ok_or_else(|| Error::OutOfRange(i, name.clone()))?;
                let sum = range.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                let byte = data.get_mut(offset).ok_or_else(|| Error::OutOfRange(i, name.clone()))?;
                *byte = byte.wrapping_sub(sum);
            }
            _ => {}
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_at(e: &[u8], at: usize) -> &[u8] {
        let f = &e[at..at + FILE_NAME_LEN];
        &f[..f.iter().position(|&b| b == 0).unwrap()]
    }

    #[test]
    fn allocate_layout() {
        let mut l = TableLoader::new();
        l.allocate("etc/acpi/rsdp", 16, Zone::FSeg).unwrap();
        l.allocate("etc/acpi/tables", 64, Zone::High).unwrap();
        let b = l.to_bytes();
        assert_eq!(b.len(), 2 * ENTRY_LEN);
        assert_eq!(&b[0..4], &[1, 0, 0, 0]);
        assert_eq!(name_at(&b, 4), b"etc/acpi/rsdp");
        assert!(b[4 + 13..60].iter().all(|&x| x == 0), "name padded with NULs");
        assert_eq!(&b[60..64], &[16, 0, 0, 0]);
        assert_eq!(b[64], 2);
        assert!(b[65..128].iter().all(|&x| x == 0));
        assert_eq!(&b[128 + 60..128 + 65], &[64, 0, 0, 0, 1]);
    }

    #[test]
    fn pointer_layout() {
        let mut l = TableLoader::new();
        l.add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 0x1234_5678, 8).unwrap();
        let b = l.to_bytes();
        assert_eq!(b.len(), ENTRY_LEN);
        assert_eq!(&b[0..4], &[2, 0, 0, 0]);
        assert_eq!(name_at(&b, 4), b"etc/acpi/rsdp");
        assert_eq!(name_at(&b, 60), b"etc/acpi/tables");
        assert_eq!(&b[116..120], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(b[120], 8);
        assert!(b[121..].iter().all(|&x| x == 0));
    }

    #[test]
    fn checksum_layout() {
        let mut l = TableLoader::new();
        l.add_checksum("etc/acpi/tables", 9, 0x40, 0x1f4).unwrap();
        let b = l.to_bytes();
        assert_eq!(&b[0..4], &[3, 0, 0, 0]);
        assert_eq!(name_at(&b, 4), b"etc/acpi/tables");
        assert_eq!(&b[60..72], &[9, 0, 0, 0, 0x40, 0, 0, 0, 0xf4, 1, 0, 0]);
        assert!(b[72..].iter().all(|&x| x == 0));
    }

    #[test]
    fn rejects_bad_arguments() {
        let mut l = TableLoader::new();
        let long = "x".repeat(56);
        assert_eq!(l.allocate(&long, 16, Zone::High), Err(Error::BadName(long.clone())));
        assert!(l.allocate(&"x".repeat(55), 16, Zone::High).is_ok(), "55 bytes + NUL fit");
        assert!(matches!(l.allocate("", 16, Zone::High), Err(Error::BadName(_))));
        assert!(matches!(l.allocate("a\0b", 16, Zone::High), Err(Error::BadName(_))));
        assert_eq!(l.allocate("a", 24, Zone::High), Err(Error::BadAlign(24)));
        assert_eq!(l.allocate("a", 0, Zone::High), Err(Error::BadAlign(0)));
        assert_eq!(l.add_pointer("a", "b", 0, 3), Err(Error::BadPointerSize(3)));
        assert!(matches!(l.add_checksum(&long, 0, 0, 1), Err(Error::BadName(_))));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn link_patches_pointers_and_checksums() {
        let mut files = BTreeMap::new();
        // "tab": a 4-byte pointer at 0 pointing to offset 8 of itself, a checksummed range.
        let mut tab = vec![0u8; 16];
        tab[0] = 8;
        tab[8..12].copy_from_slice(b"DATA");
        files.insert("tab".to_string(), tab);
        // "root": an 8-byte pointer at 2 to offset 8 of "tab", checksum byte at 1.
        let mut root = vec![0u8; 10];
        root[2] = 8;
        files.insert("root".to_string(), root);
        let mut l = TableLoader::new();
        l.allocate("tab", 64, Zone::High).unwrap();
        l.allocate("root", 16, Zone::FSeg).unwrap();
        l.add_pointer("tab", "tab", 0, 4).unwrap();
        l.add_pointer("root", "tab", 2, 8).unwrap();
        l.add_checksum("root", 1, 0, 10).unwrap();
        l.add_checksum("tab", 15, 0, 16).unwrap();
        let mut seen = vec![];
        let out = link(&l.to_bytes(), &files, |name, size, align, zone| {
            seen.push((name.to_string(), size, align, zone));
            if zone == Zone::FSeg {
                0xf_5a40
            } else {
                0x7ffd_f000
            }
        })
        .unwrap();
        assert_eq!(seen, vec![("tab".into(), 16, 64, Zone::High), ("root".into(), 10, 16, Zone::FSeg)]);
        let (tab_addr, tab) = &out["tab"];
        let (root_addr, root) = &out["root"];
        assert_eq!((*tab_addr, *root_addr), (0x7ffd_f000, 0xf_5a40));
        assert_eq!(u32::from_le_bytes(tab[0..4].try_into().unwrap()), 0x7ffd_f008);
        assert_eq!(u64::from_le_bytes(root[2..10].try_into().unwrap()), 0x7ffd_f008);
        assert_eq!(root.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(tab.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }

    #[test]
    fn link_rejects_bad_scripts() {
        let files: BTreeMap<String, Vec<u8>> = [("f".to_string(), vec![0u8; 8])].into();
        let place = |_: &str, _: usize, _: u32, _: Zone| 0x1000;
        assert_eq!(link(&[0; 100], &files, place), Err(Error::BadScriptLength(100)));
        let mut l = TableLoader::new();
        l.allocate("g", 16, Zone::High).unwrap();
        assert_eq!(link(&l.to_bytes(), &files, place), Err(Error::UnknownFile(0, "g".into())));
        let mut l = TableLoader::new();
        l.allocate("f", 16, Zone::High).unwrap();
        l.add_pointer("f", "f", 6, 4).unwrap();
        assert_eq!(link(&l.to_bytes(), &files, place), Err(Error::OutOfRange(1, "f".into())));
        let mut l = TableLoader::new();
        l.allocate("f", 16, Zone::High).unwrap();
        l.add_checksum("f", 0, 4, 5).unwrap();
        assert_eq!(link(&l.to_bytes(), &files, place), Err(Error::OutOfRange(1, "f".into())));
        let mut l = TableLoader::new();
        l.add_checksum("f", 0, 0, 8).unwrap();
        assert_eq!(link(&l.to_bytes(), &files, place), Err(Error::UnknownFile(0, "f".into())));
        // Unknown commands are skipped.
        let mut script = vec![0u8; ENTRY_LEN];
        script[0] = 4;
        assert!(link(&script, &files, place).unwrap().is_empty());
        // A bad zone is malformed.
        let mut l = TableLoader::new();
        l.allocate("f", 16, Zone::High).unwrap();
        let mut b = l.to_bytes();
        b[64] = 3;
        assert_eq!(link(&b, &files, place), Err(Error::Malformed(0)));
    }
}
