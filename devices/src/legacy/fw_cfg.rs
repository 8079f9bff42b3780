// SPDX-License-Identifier: Apache-2.0
//! The firmware configuration device (`fw_cfg`) of QEMU's PC machines, I/O-port flavour, as
//! SeaBIOS reads it: how much RAM, which CPUs, the boot order, and named files (ACPI tables
//! for the table loader, SMBIOS, e820).
//!
//! Ports (all in the block at [`FW_CFG_BASE`]):
//! - `+0` selector, 16-bit little-endian write: picks an item and rewinds its offset;
//! - `+1` data, 8-bit read: the next byte of the item (0 past its end); writes are ignored;
//! - `+4` DMA address, high 32 bits then `+8` low 32 bits, big-endian; writing the low half
//!   runs the DMA request at that guest address. Reading `+4` returns the DMA signature.
//!
//! A DMA request is 16 big-endian bytes in guest memory: control (bit 3 select with the key in
//! the top 16 bits, bit 1 read, bit 2 skip, bit 4 write), length, address. The device copies,
//! then writes control back as 0 (done) or with bit 0 set (error). Every guest address and
//! length is checked against guest memory first; a bad one is an error bit, never a partial
//! host access.
//!
//! Not wired into the VMM yet: it comes with the SeaBIOS machine (issue 4).

use std::collections::BTreeMap;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::bus::BusDevice;

/// First port of the device.
pub const FW_CFG_BASE: u16 = 0x510;
/// Ports spanned (selector/data, DMA address).
pub const FW_CFG_LEN: u16 = 12;
/// Item: "QEMU".
pub const KEY_SIGNATURE: u16 = 0x0000;
/// Item: feature bits (bit 0 traditional interface, bit 1 DMA).
pub const KEY_ID: u16 = 0x0001;
/// Item: the file directory.
pub const KEY_FILE_DIR: u16 = 0x0019;
/// First key given to a named file.
pub const FIRST_FILE_KEY: u16 = 0x0020;
/// "QEMU CFG", read from the DMA address port.
pub const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SKIP: u32 = 1 << 2;
const DMA_SELECT: u32 = 1 << 3;
const DMA_WRITE: u32 = 1 << 4;
const FILE_NAME_LEN: usize = 56;
/// Zeros written per step when a DMA read runs past the end of its item (no host buffer of
/// the guest's length is ever allocated).
const ZERO_CHUNK: usize = 64 << 10;

/// Errors when adding items.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A file name longer than the directory entry allows.
    #[error("fw_cfg file name '{0}' is longer than 55 bytes")]
    NameTooLong(String),
    /// Two files with one name.
    #[error("fw_cfg file '{0}' already exists")]
    DuplicateFile(String),
    /// No keys left.
    #[error("fw_cfg has no free file keys")]
    Full,
}

/// The fw_cfg device.
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selector: u16,
    offset: usize,
    dma_high: u32,
    mem: GuestMemoryMmap,
}

impl FwCfg {
    /// A device with the signature and ID items, doing DMA into `mem`.
    pub fn new(mem: GuestMemoryMmap) -> Self {
        let mut items = BTreeMap::new();
        items.insert(KEY_SIGNATURE, b"QEMU".to_vec());
        items.insert(KEY_ID, 3u32.to_le_bytes().to_vec());
        let mut fw = FwCfg { items, files: Vec::new(), selector: 0, offset: 0, dma_high: 0, mem };
        fw.rebuild_dir();
        fw
    }

    /// Sets a numbered item (little-endian integers are the convention for numeric keys).
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(key, data);
    }

    /// Adds a named file and returns its key.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, Error> {
        if name.len() >= FILE_NAME_LEN {
            return Err(Error::NameTooLong(name.to_string()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(Error::DuplicateFile(name.to_string()));
        }
        let key = u16::try_from(self.files.len())
            .ok()
            .and_then(|n| FIRST_FILE_KEY.checked_add(n))
            .filter(|k| *k < 0x4000)
            .ok_or(Error::Full)?;
        self.items.insert(key, data);
        self.files.push((name.to_string(), key));
        self.rebuild_dir();
        Ok(key)
    }

    /// The directory: count, then {size, key, reserved, name[56]}, all big-endian.
    fn rebuild_dir(&mut self) {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (name, key) in &self.files {
            let size = self.items.get(key).map_or(0, |d| d.len() as u32);
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(KEY_FILE_DIR, dir);
    }

    fn select(&mut self, key: u16) {
        // Bit 14 asks for write access, bit 15 selects architecture-specific items; both are
        // part of the key here, as no item is writable.
        self.selector = key;
        self.offset = 0;
    }

    fn next_byte(&mut self) -> u8 {
        let b = self.items.get(&self.selector).and_then(|d| d.get(self.offset)).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }

    /// Runs the DMA request at `addr`; returns the control word written back.
    fn dma(&mut self, addr: u64) -> u32 {
        let mut req = [0u8; 16];
        if self.mem.read_slice(&mut req, GuestAddress(addr)).is_err() {
            log::debug!("fw_cfg: DMA request at {addr:#x} outside guest memory");
            return DMA_ERROR;
        }
        let control = u32::from_be_bytes([req[0], req[1], req[2], req[3]]);
        let len = u32::from_be_bytes([req[4], req[5], req[6], req[7]]) as usize;
        let target =
            u64::from_be_bytes([req[8], req[9], req[10], req[11], req[12], req[13], req[14], req[15]]);
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let status = if control & DMA_READ != 0 {
            self.dma_read(target, len)
        } else if control & DMA_WRITE != 0 {
            // No item is writable: the write is refused, as on QEMU for read-only items.
            DMA_ERROR
        } else {
            if control & DMA_SKIP != 0 {
                self.offset = self.offset.saturating_add(len);
            }
            0
        };
        // The control word is written back last; if even that fails there is no one to tell.
        let _ = self.mem.write_slice(&status.to_be_bytes(), GuestAddress(addr));
        status
    }

    /// Copies `len` bytes of the selected item (zeros past its end) to guest memory at `target`,
    /// straight from the item: a kernel or initramfs of any size the guest's RAM holds.
    fn dma_read(&mut self, target: u64, len: usize) -> u32 {
        if !self.mem.check_range(GuestAddress(target), len) {
            log::debug!("fw_cfg: DMA read of {len} bytes to {target:#x} rejected");
            return DMA_ERROR;
        }
        let data = self.items.get(&self.selector).map(Vec::as_slice).unwrap_or(&[]);
        let src = data.get(self.offset.min(data.len())..).unwrap_or(&[]);
        let n = src.len().min(len);
        if self.mem.write_slice(&src[..n], GuestAddress(target)).is_err() {
            return DMA_ERROR;
        }
        static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];
        let mut done = n;
        while done < len {
            let step = (len - done).min(ZERO_CHUNK);
            if self.mem.write_slice(&ZEROS[..step], GuestAddress(target + done as u64)).is_err() {
                return DMA_ERROR;
            }
            done += step;
        }
        self.offset = self.offset.saturating_add(len);
        0
    }
}

impl BusDevice for FwCfg {
    fn debug_label(&self) -> &str {
        "fw_cfg"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (1, _) => {
                for b in data.iter_mut() {
                    *b = self.next_byte();
                }
            }
            (4, 4) => data.copy_from_slice(&((DMA_SIGNATURE >> 32) as u32).to_be_bytes()),
            (8, 4) => data.copy_from_slice(&(DMA_SIGNATURE as u32).to_be_bytes()),
            (4, 8) => data.copy_from_slice(&DMA_SIGNATURE.to_be_bytes()),
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (0, [lo, hi]) => self.select(u16::from_le_bytes([*lo, *hi])),
            (0, [lo]) => self.select(u16::from(*lo)),
            (4, [a, b, c, d]) => self.dma_high = u32::from_be_bytes([*a, *b, *c, *d]),
            (8, [a, b, c, d]) => {
                let addr = (u64::from(self.dma_high) << 32) | u64::from(u32::from_be_bytes([*a, *b, *c, *d]));
                self.dma_high = 0;
                self.dma(addr);
            }
            (4, [a, b, c, d, e, f, g, h]) => {
                self.dma(u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]));
            }
            _ => log::trace!("fw_cfg: ignored write of {} bytes at +{offset}", data.len()),
        }
    }

    /// The selector, offset and DMA address register back to zero; the items stay (they
    /// describe the machine, which a reset does not change).
    fn reset(&mut self) {
        self.selector = 0;
        self.offset = 0;
        self.dma_high = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw() -> FwCfg {
        FwCfg::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap())
    }

    fn read_item(f: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        f.write(0, &key.to_le_bytes());
        let mut out = vec![0u8; len];
        for b in out.iter_mut() {
            let mut x = [0u8];
            f.read(1, &mut x);
            *b = x[0];
        }
        out
    }

    fn dma_request(f: &FwCfg, at: u64, control: u32, len: u32, target: u64) {
        let mut req = control.to_be_bytes().to_vec();
        req.extend_from_slice(&len.to_be_bytes());
        req.extend_from_slice(&target.to_be_bytes());
        f.mem.write_slice(&req, GuestAddress(at)).unwrap();
    }

    fn start_dma(f: &mut FwCfg, at: u64) -> u32 {
        f.write(4, &((at >> 32) as u32).to_be_bytes());
        f.write(8, &(at as u32).to_be_bytes());
        let mut c = [0u8; 4];
        f.mem.read_slice(&mut c, GuestAddress(at)).unwrap();
        u32::from_be_bytes(c)
    }

    #[test]
    fn reset_deselects_and_rewinds_but_keeps_the_items() {
        let mut f = fw();
        f.add_item(0x20, b"abcdef".to_vec());
        assert_eq!(read_item(&mut f, 0x20, 2), b"ab");
        f.write(4, &0x1234u32.to_be_bytes()); // DMA address, high half
        f.reset();
        let mut x = [0u8];
        f.read(1, &mut x);
        assert_eq!(x[0], b'Q', "selector 0 (the signature) from its first byte");
        assert_eq!(read_item(&mut f, 0x20, 6), b"abcdef", "items survive");
        assert_eq!(f.dma_high, 0);
    }

    #[test]
    fn signature_id_and_reads_past_the_end() {
        let mut f = fw();
        assert_eq!(read_item(&mut f, KEY_SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut f, KEY_ID, 4), vec![3, 0, 0, 0]);
        assert_eq!(read_item(&mut f, 0x1234, 2), vec![0, 0], "unknown key reads zeros");
        // Selecting again rewinds.
        assert_eq!(read_item(&mut f, KEY_SIGNATURE, 1), b"Q");
        let mut sig = [0u8; 8];
        f.read(4, &mut sig);
        assert_eq!(&sig, b"QEMU CFG");
        let mut x = [0xaau8; 2];
        f.read(0, &mut x);
        assert_eq!(x, [0, 0]);
    }

    #[test]
    fn file_directory_lists_files_big_endian() {
        let mut f = fw();
        assert_eq!(f.add_file("etc/acpi/tables", vec![1; 300]), Ok(0x20));
        assert_eq!(f.add_file("etc/e820", vec![2; 20]), Ok(0x21));
        assert_eq!(f.add_file("etc/e820", vec![]), Err(Error::DuplicateFile("etc/e820".into())));
        assert!(matches!(f.add_file(&"x".repeat(56), vec![]), Err(Error::NameTooLong(_))));
        let dir = read_item(&mut f, KEY_FILE_DIR, 4 + 2 * 64);
        assert_eq!(&dir[..4], &2u32.to_be_bytes());
        assert_eq!(&dir[4..8], &300u32.to_be_bytes());
        assert_eq!(&dir[8..10], &0x20u16.to_be_bytes());
        assert_eq!(&dir[12..27], b"etc/acpi/tables");
        assert_eq!(dir[27], 0);
        assert_eq!(&dir[68 + 8..68 + 16], b"etc/e820");
        assert_eq!(read_item(&mut f, 0x21, 3), vec![2, 2, 2]);
    }

    #[test]
    fn dma_select_read_and_skip() {
        let mut f = fw();
        f.add_item(0x0005, 4u16.to_le_bytes().to_vec());
        let key = f.add_file("greeting", b"hello world".to_vec()).unwrap();
        dma_request(&f, 0x1000, (u32::from(key) << 16) | DMA_SELECT | DMA_SKIP, 6, 0);
        assert_eq!(start_dma(&mut f, 0x1000), 0);
        dma_request(&f, 0x1000, DMA_READ, 8, 0x2000);
        assert_eq!(start_dma(&mut f, 0x1000), 0);
        let mut got = [0u8; 8];
        f.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert_eq!(&got, b"world\0\0\0", "past the end reads zeros");
        // The 8-byte form of the address write also works.
        dma_request(&f, 0x1100, (5 << 16) | DMA_SELECT | DMA_READ, 2, 0x2100);
        f.write(4, &0x1100u64.to_be_bytes());
        let v: u16 = f.mem.read_obj(GuestAddress(0x2100)).unwrap();
        assert_eq!(v, 4);
    }

    #[test]
    fn large_dma_reads_copy_the_item_and_zero_the_rest() {
        // A kernel-sized item in a memory of two regions: copied straight, zeros after it.
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x10_0000), 0x40_0000),
        ])
        .unwrap();
        let mut f = FwCfg::new(mem);
        let item: Vec<u8> = (0..0x18_0001u32).map(|i| (i % 253) as u8).collect();
        f.add_item(0x0011, item.clone());
        let len = 0x18_0001 + 3 * ZERO_CHUNK as u32 + 7;
        // Dirty the target first, so the zeros are seen to be written.
        f.mem.write_slice(&vec![0xee; len as usize], GuestAddress(0x8_0000)).unwrap();
        dma_request(&f, 0x1000, (0x11 << 16) | DMA_SELECT | DMA_READ, len, 0x8_0000);
        assert_eq!(start_dma(&mut f, 0x1000), 0);
        let mut got = vec![0u8; len as usize];
        f.mem.read_slice(&mut got, GuestAddress(0x8_0000)).unwrap();
        assert_eq!(&got[..item.len()], &item[..]);
        assert!(got[item.len()..].iter().all(|b| *b == 0));
        // The next read continues past the end: zeros only.
        f.mem.write_slice(&[0xee; 16], GuestAddress(0x2000)).unwrap();
        dma_request(&f, 0x1000, DMA_READ, 16, 0x2000);
        assert_eq!(start_dma(&mut f, 0x1000), 0);
        let v: [u8; 16] = f.mem.read_obj(GuestAddress(0x2000)).unwrap();
        assert_eq!(v, [0; 16]);
        // A length running past the end of RAM is refused before anything is written.
        f.mem.write_slice(&[0xee; 16], GuestAddress(0x4f_fff0)).unwrap();
        dma_request(&f, 0x1000, (0x11 << 16) | DMA_SELECT | DMA_READ, 17, 0x4f_fff0);
        assert_eq!(start_dma(&mut f, 0x1000), DMA_ERROR);
        let v: [u8; 16] = f.mem.read_obj(GuestAddress(0x4f_fff0)).unwrap();
        assert_eq!(v, [0xee; 16]);
    }

    #[test]
    fn bad_dma_requests_set_the_error_bit_and_touch_nothing() {
        let mut f = fw();
        // Target outside guest memory.
        dma_request(&f, 0x1000, (KEY_SIGNATURE as u32) << 16 | DMA_SELECT | DMA_READ, 16, 0xfff8);
        assert_eq!(start_dma(&mut f, 0x1000), DMA_ERROR);
        // Huge length (beyond guest memory).
        dma_request(&f, 0x1000, DMA_READ, u32::MAX, 0);
        assert_eq!(start_dma(&mut f, 0x1000), DMA_ERROR);
        // Writes are refused.
        dma_request(&f, 0x1000, DMA_WRITE, 4, 0x2000);
        assert_eq!(start_dma(&mut f, 0x1000), DMA_ERROR);
        // The request itself outside guest memory: nothing to write back, no panic.
        f.write(4, &0x1u32.to_be_bytes());
        f.write(8, &0u32.to_be_bytes());
        // Odd-sized and out-of-range accesses are ignored.
        f.write(2, &[1, 2, 3]);
        f.write(u64::MAX, &[1]);
        let mut b = [0u8; 3];
        f.read(9, &mut b);
        assert_eq!(b, [0; 3]);
    }
}
