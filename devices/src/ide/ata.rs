// SPDX-License-Identifier: Apache-2.0
//! The ATA command set of a hard disk (ATA/ATAPI-6): IDENTIFY DEVICE, PIO and DMA reads and
//! writes with 28-bit LBA, 48-bit LBA or CHS addressing, multiple mode, cache flushes, SET
//! FEATURES, and the power-management commands a guest may issue.
//!
//! The geometry reported (and used to translate CHS addresses) is 16 heads and 63 sectors
//! per track, with up to 16383 cylinders, until INITIALIZE DEVICE PARAMETERS sets another.

use block::DiskImage;

use crate::stats::BlockOp;

use super::channel::{
    Addr, DmaOp, DmaResult, DmaSrc, Drive, Media, Phase, ERR_ABRT, ERR_IDNF, ERR_UNC, ST_DRDY, ST_DSC,
};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Largest READ/WRITE MULTIPLE block, in sectors (IDENTIFY word 47).
pub const MAX_MULTIPLE: u64 = 16;
const DEFAULT_HEADS: u64 = 16;
const DEFAULT_SPT: u64 = 63;
const MAX_LBA28: u64 = 0x0fff_ffff;

/// The state of an ATA disk.
pub struct Disk {
    /// The image.
    pub image: Box<dyn DiskImage>,
    /// Size in sectors.
    pub sectors: u64,
    /// Sectors per READ/WRITE MULTIPLE block (0 = multiple mode off).
    pub multiple: u64,
    /// Heads of the current CHS translation.
    pub heads: u64,
    /// Sectors per track of the current CHS translation.
    pub spt: u64,
    /// Volatile write cache enabled (when off, every write is flushed).
    pub write_cache: bool,
}

impl Disk {
    /// A disk on `image` (a trailing partial sector is not addressable).
    pub fn new(image: Box<dyn DiskImage>) -> Self {
        let sectors = image.size() / SECTOR;
        let mut d = Disk { image, sectors, multiple: 0, heads: 0, spt: 0, write_cache: true };
        d.reset();
        d
    }

    /// Power-on/reset defaults.
    pub fn reset(&mut self) {
        self.multiple = 0;
        self.heads = DEFAULT_HEADS;
        self.spt = DEFAULT_SPT;
    }

    fn default_cylinders(&self) -> u64 {
        (self.sectors / (DEFAULT_HEADS * DEFAULT_SPT)).min(16383)
    }

    fn current_cylinders(&self) -> u64 {
        (self.sectors / (self.heads * self.spt).max(1)).min(65535)
    }
}

/// Stores `s` as an ATA string: space-padded, two characters per word, first one high.
pub fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.as_bytes().iter().copied().chain(std::iter::repeat(b' '));
    for w in words.iter_mut() {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from_be_bytes([hi, lo]);
    }
}

/// Serializes IDENTIFY data, filling in the integrity word (255).
pub fn identify_bytes(mut words: [u16; 256]) -> Vec<u8> {
    words[255] = 0x00a5;
    let sum = words[..255].iter().fold(0xa5u8, |s, w| s.wrapping_add(*w as u8).wrapping_add((*w >> 8) as u8));
    words[255] |= u16::from(sum.wrapping_neg()) << 8;
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Words 63 and 88: supported modes in the low byte, the selected one in the high byte.
pub fn dma_mode_words(words: &mut [u16; 256], xfer_mode: u8) {
    words[63] = 0x0007;
    words[88] = 0x003f;
    let n = xfer_mode & 7;
    match xfer_mode >> 3 {
        4 => words[63] |= 0x100 << n,
        8 => words[88] |= 0x100 << n,
        _ => {}
    }
}

/// Word 93, the hardware reset result, as the master (`unit` 0) or slave reports it.
pub fn reset_result(unit: usize) -> u16 {
    if unit == 0 {
        0x600b
    } else {
        0x6b00
    }
}

impl Drive {
    fn disk(&mut self) -> Option<&mut Disk> {
        match &mut self.media {
            Media::Disk(d) => Some(d),
            _ => None,
        }
    }

    fn identify_device(&self, d: &Disk) -> [u16; 256] {
        let mut w = [0u16; 256];
        let (cyl, cur_cyl) = (d.default_cylinders(), d.current_cylinders());
        w[0] = 0x0040;
        w[1] = cyl as u16;
        w[3] = DEFAULT_HEADS as u16;
        w[6] = DEFAULT_SPT as u16;
        put_string(&mut w[10..20], &self.serial);
        put_string(&mut w[23..27], "1.0");
        put_string(&mut w[27..47], "VMM HARDDISK");
        w[47] = 0x8000 | MAX_MULTIPLE as u16;
        // DMA, LBA, IORDY supported.
        w[49] = 0x0b00;
        w[50] = 0x4000;
        w[51] = 0x0200;
        w[52] = 0x0200;
        // Words 54-58, 64-70 and 88 are valid.
        w[53] = 0x0007;
        w[54] = cur_cyl as u16;
        w[55] = d.heads as u16;
        w[56] = d.spt as u16;
        let cur_cap = (cur_cyl * d.heads * d.spt).min(u64::from(u32::MAX)) as u32;
        (w[57], w[58]) = (cur_cap as u16, (cur_cap >> 16) as u16);
        if d.multiple > 0 {
            w[59] = 0x0100 | d.multiple as u16;
        }
        let lba28 = d.sectors.min(MAX_LBA28) as u32;
        (w[60], w[61]) = (lba28 as u16, (lba28 >> 16) as u16);
        dma_mode_words(&mut w, self.xfer_mode);
        // PIO modes 3 and 4; 120 ns cycle times.
        w[64] = 0x0003;
        w[65..69].fill(120);
        // ATA-1 to ATA-6.
        w[80] = 0x007e;
        // Supported: NOP, write cache, power management. Then FLUSH CACHE (EXT), LBA48.
        w[82] = 0x4028;
        w[83] = 0x7400;
        w[84] = 0x4000;
        w[85] = 0x4008 | if d.write_cache { 0x0020 } else { 0 };
        w[86] = 0x3400;
        w[87] = 0x4000;
        w[93] = reset_result(self.unit);
        for (i, x) in w[100..104].iter_mut().enumerate() {
            *x = (d.sectors >> (16 * i)) as u16;
        }
        w
    }

    /// Decodes the address and count of a read/write/verify command.
    fn ata_address(&self, ext: bool) -> Result<(u64, u64, Addr), u8> {
        let tf = &self.tf;
        if ext {
            let lba = u64::from_le_bytes([
                tf.lba_low,
                tf.lba_mid,
                tf.lba_high,
                tf.hob_lba_low,
                tf.hob_lba_mid,
                tf.hob_lba_high,
                0,
                0,
            ]);
            let count = match u64::from(u16::from_le_bytes([tf.nsector, tf.hob_nsector])) {
                0 => 65536,
                n => n,
            };
            return Ok((lba, count, Addr::Lba48));
        }
        let count = match tf.nsector {
            0 => 256,
            n => u64::from(n),
        };
        if tf.device & 0x40 != 0 {
            let lba = u64::from_le_bytes([tf.lba_low, tf.lba_mid, tf.lba_high, tf.device & 0xf, 0, 0, 0, 0]);
            return Ok((lba, count, Addr::Lba28));
        }
        let Media::Disk(d) = &self.media else { return Err(ERR_ABRT) };
        let cyl = u64::from(u16::from_le_bytes([tf.lba_mid, tf.lba_high]));
        let head = u64::from(tf.device & 0xf);
        let sector = u64::from(tf.lba_low);
        if sector == 0 || sector > d.spt || head >= d.heads {
            return Err(ERR_IDNF);
        }
        Ok(((cyl * d.heads + head) * d.spt + sector - 1, count, Addr::Chs))
    }

    /// Writes a sector address back into the registers, in the command's addressing mode.
    fn set_address(&mut self, lba: u64, addr: Addr) {
        let b = lba.to_le_bytes();
        match addr {
            Addr::Lba48 => {
                let tf = &mut self.tf;
                (tf.lba_low, tf.lba_mid, tf.lba_high) = (b[0], b[1], b[2]);
                (tf.hob_lba_low, tf.hob_lba_mid, tf.hob_lba_high) = (b[3], b[4], b[5]);
            }
            Addr::Lba28 => {
                let tf = &mut self.tf;
                (tf.lba_low, tf.lba_mid, tf.lba_high) = (b[0], b[1], b[2]);
                tf.device = (tf.device & 0xf0) | (b[3] & 0xf);
            }
            Addr::Chs => {
                let Some(d) = self.disk() else { return };
                let (heads, spt) = (d.heads.max(1), d.spt.max(1));
                let sector = lba % spt + 1;
                let track = lba / spt;
                let (head, cyl) = (track % heads, track / heads);
                let tf = &mut self.tf;
                tf.lba_low = sector as u8;
                (tf.lba_mid, tf.lba_high) = (cyl as u8, (cyl >> 8) as u8);
                tf.device = (tf.device & 0xf0) | (head as u8 & 0xf);
            }
        }
    }

    /// Runs an ATA command on a disk.
    pub(super) fn ata_command(&mut self, cmd: u8) {
        match cmd {
            0xec => {
                let Media::Disk(d) = &self.media else { return };
                let data = identify_bytes(self.identify_device(d));
                self.pio_in(data, Phase::BufferIn);
            }
            0x20 | 0x21 => self.ata_rw(false, false, false, false),
            0x24 => self.ata_rw(false, true, false, false),
            0xc4 => self.ata_rw(false, false, true, false),
            0x29 => self.ata_rw(false, true, true, false),
            0x30 | 0x31 => self.ata_rw(true, false, false, false),
            0x34 => self.ata_rw(true, true, false, false),
            0xc5 => self.ata_rw(true, false, true, false),
            0x39 => self.ata_rw(true, true, true, false),
            0xc8 | 0xc9 => self.ata_rw(false, false, false, true),
            0x25 => self.ata_rw(false, true, false, true),
            0xca | 0xcb => self.ata_rw(true, false, false, true),
            0x35 => self.ata_rw(true, true, false, true),
            0x40 | 0x41 => self.ata_verify(false),
            0x42 => self.ata_verify(true),
            0xe7 | 0xea => self.ata_flush(),
            0xc6 => self.set_multiple(),
            0xef => self.set_features(),
            0x91 => self.init_device_params(),
            0x90 => self.diagnostic(),
            // RECALIBRATE, SEEK, and IDLE/STANDBY (IMMEDIATE), SLEEP: nothing to do.
            0x10..=0x1f | 0x70 | 0xe0..=0xe3 | 0xe6 => self.complete(),
            0xe5 => {
                self.complete();
                // Active or idle.
                self.tf.nsector = 0xff;
            }
            _ => {
                log::debug!("ide: unsupported ATA command {cmd:#04x}");
                self.abort();
            }
        }
    }

    /// EXECUTE DEVICE DIAGNOSTIC: the signature, and "passed" in the error register.
    pub(super) fn diagnostic(&mut self) {
        let packet = self.is_packet();
        self.tf.set_signature(packet);
        self.end_transfer();
        self.status = if packet { 0 } else { ST_DRDY | ST_DSC };
        self.error = 0x01;
        self.irq = true;
    }

    /// SET FEATURES, shared with packet devices.
    pub(super) fn set_features(&mut self) {
        let (feature, count) = (self.tf.feature, self.tf.nsector);
        let ok = match feature {
            0x03 => {
                let n = count & 7;
                let valid = match count >> 3 {
                    0 => n <= 1,
                    1 => n <= 4,
                    4 => n <= 2,
                    8 => n <= 5,
                    _ => false,
                };
                if valid {
                    self.xfer_mode = count;
                }
                valid
            }
            0x02 | 0x82 => match self.disk() {
                Some(d) => {
                    d.write_cache = feature == 0x02;
                    true
                }
                None => false,
            },
            // Revert to power-on defaults after reset: on or off, nothing else changes.
            0x66 | 0xcc => true,
            _ => false,
        };
        if ok {
            self.complete();
        } else {
            self.abort();
        }
    }

    fn set_multiple(&mut self) {
        let n = u64::from(self.tf.nsector);
        match self.disk() {
            Some(d) if n == 0 || (n.is_power_of_two() && n <= MAX_MULTIPLE) => {
                d.multiple = n;
                self.complete();
            }
            _ => self.abort(),
        }
    }

    fn init_device_params(&mut self) {
        let (spt, heads) = (u64::from(self.tf.nsector), u64::from(self.tf.device & 0xf) + 1);
        match self.disk() {
            Some(d) if spt > 0 => {
                (d.spt, d.heads) = (spt, heads);
                self.complete();
            }
            _ => self.abort(),
        }
    }

    fn ata_flush(&mut self) {
        let Some(d) = self.disk() else { return };
        match d.image.flush() {
            Ok(()) => {
                self.stats.record(BlockOp::Flush, 0);
                self.complete()
            }
            Err(e) => {
                crate::warn_limited!("ide: flush failed: {e}");
                self.stats.error();
                self.abort();
            }
        }
    }

    /// Decodes and range-checks the address of the current command.
    fn checked_range(&mut self, ext: bool) -> Option<(u64, u64, Addr)> {
        let sectors = self.disk().map_or(0, |d| d.sectors);
        match self.ata_address(ext) {
            Ok((lba, count, addr)) if lba.checked_add(count).is_some_and(|end| end <= sectors) => {
                Some((lba, count, addr))
            }
            Ok((lba, _, addr)) => {
                log::debug!("ide: sector {lba} beyond the {sectors}-sector disk");
                self.stats.error();
                self.fail(ERR_IDNF | ERR_ABRT);
                if lba < sectors {
                    self.set_address(lba, addr);
                }
                None
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn ata_verify(&mut self, ext: bool) {
        if let Some((lba, count, addr)) = self.checked_range(ext) {
            self.set_address(lba + count - 1, addr);
            self.complete();
        }
    }

    fn ata_rw(&mut self, write: bool, ext: bool, multiple: bool, dma: bool) {
        let Some(d) = self.disk() else { return };
        if write && d.image.read_only() {
            log::debug!("ide: write to a read-only disk");
            self.stats.error();
            return self.abort();
        }
        let per_block = if multiple { d.multiple } else { 1 };
        if per_block == 0 {
            return self.abort();
        }
        let Some((lba, count, addr)) = self.checked_range(ext) else { return };
        // The command counts once; its bytes as they move.
        self.stats.record(if write { BlockOp::Write } else { BlockOp::Read }, 0);
        if dma {
            let op = DmaOp { to_memory: !write, len: count * SECTOR, src: DmaSrc::Disk(lba * SECTOR) };
            self.request_dma(op, Phase::AtaDma { lba, count, addr, write });
        } else if write {
            let n = per_block.min(count);
            self.pio_out(
                (n * SECTOR) as usize,
                Phase::AtaWrite { lba, remaining: count, per_block, addr },
                false,
            );
        } else {
            self.ata_read_block(lba, count, per_block, addr);
        }
    }

    /// Loads the next PIO read block (at most `per_block` sectors from `lba`).
    pub(super) fn ata_read_block(&mut self, lba: u64, remaining: u64, per_block: u64, addr: Addr) {
        let n = per_block.min(remaining);
        let mut buf = vec![0u8; (n * SECTOR) as usize];
        let Some(d) = self.disk() else { return };
        if let Err(e) = d.image.read_at(lba * SECTOR, &mut buf) {
            crate::warn_limited!("ide: read of sector {lba}: {e}");
            self.stats.error();
            self.fail(ERR_UNC);
            self.set_address(lba, addr);
            return;
        }
        self.stats.read_bytes(buf.len() as u64);
        self.set_address(lba + n - 1, addr);
        self.pio_in(buf, Phase::AtaRead { lba: lba + n, remaining: remaining - n, per_block, addr });
    }

    /// Stores a PIO write block that the host has filled, then asks for the next one.
    pub(super) fn ata_write_block(&mut self, lba: u64, remaining: u64, per_block: u64, addr: Addr) {
        let buf = std::mem::take(&mut self.buf);
        let n = buf.len() as u64 / SECTOR;
        let Some(d) = self.disk() else { return };
        let cache = d.write_cache;
        let r =
            d.image.write_at(lba * SECTOR, &buf).and_then(|()| if cache { Ok(()) } else { d.image.flush() });
        if let Err(e) = r {
            crate::warn_limited!("ide: write of sector {lba}: {e}");
            self.stats.error();
            self.fail(ERR_ABRT);
            self.set_address(lba, addr);
            return;
        }
        self.stats.write_bytes(buf.len() as u64);
        self.set_address(lba + n - 1, addr);
        let left = remaining.saturating_sub(n);
        if left == 0 {
            self.complete();
        } else {
            let next = per_block.min(left);
            let phase = Phase::AtaWrite { lba: lba + n, remaining: left, per_block, addr };
            self.pio_out((next * SECTOR) as usize, phase, true);
        }
    }

    /// Ends an ATA DMA command.
    pub(super) fn ata_dma_finish(&mut self, result: DmaResult) {
        let Phase::AtaDma { lba, count, addr, write } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        match result {
            DmaResult::Ok => {
                let flush = write && self.disk().is_some_and(|d| !d.write_cache);
                if flush && self.disk().is_some_and(|d| d.image.flush().is_err()) {
                    return self.abort();
                }
                self.set_address(lba + count - 1, addr);
                self.complete();
            }
            DmaResult::Short => self.status = ST_DRDY | ST_DSC,
            DmaResult::HostError => self.abort(),
            DmaResult::MediaError => self.fail(if write { ERR_ABRT } else { ERR_UNC }),
        }
    }
}
