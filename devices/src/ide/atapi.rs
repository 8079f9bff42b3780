// SPDX-License-Identifier: Apache-2.0
//! An ATAPI CD/DVD-ROM drive: the ATA commands a packet device takes (IDENTIFY PACKET
//! DEVICE, PACKET, DEVICE RESET, ...), and the SCSI/MMC-3 packet commands on its read-only,
//! 2048-byte-sector medium.
//!
//! Packet protocol (ATA/ATAPI-6, 9.10 and 9.11): after PACKET the drive asks for the 12
//! command bytes (interrupt reason C/D = 1, no interrupt: IDENTIFY word 0 reports the
//! "accelerated DRQ" type). Data-in goes by PIO in blocks no larger than the byte count limit
//! the host wrote to the cylinder registers (each block interrupts, with I/O = 1 and the byte
//! count in the cylinder registers), or by DMA when the PACKET feature register has bit 0 set.
//! Completion interrupts with C/D = I/O = 1; a failure sets ERR, the sense key in the error
//! register's high nibble and the full sense for REQUEST SENSE.
//!
//! After power-on the drive reports UNIT ATTENTION (power on or reset occurred) to the first
//! command other than INQUIRY, REQUEST SENSE, GET CONFIGURATION or GET EVENT STATUS
//! NOTIFICATION, as real drives do; SeaBIOS's `scsi_is_ready` and Linux retry past it.
//!
//! Not modelled: removing or changing the medium (START STOP UNIT with LoEj is accepted and
//! the medium stays), audio and raw (READ CD) reads, DVD structures, writing.

use block::DiskImage;

use crate::stats::BlockOp;

use super::ata::{dma_mode_words, identify_bytes, put_string, reset_result};
use super::channel::{DmaOp, DmaResult, DmaSrc, Drive, Media, PacketSrc, Phase, ST_DRDY, ST_DSC};

/// Bytes per CD/DVD sector.
pub const CD_SECTOR: u64 = 2048;
/// Largest medium reported as a CD (an 80-minute disc); larger ones are DVDs.
pub const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;

/// SCSI sense data: key, additional sense code and qualifier.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

const fn sense(key: u8, asc: u8, ascq: u8) -> Sense {
    Sense { key, asc, ascq }
}

/// No error.
pub const NO_SENSE: Sense = sense(0, 0, 0);
/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
pub const INVALID_OPCODE: Sense = sense(5, 0x20, 0);
/// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub const LBA_OUT_OF_RANGE: Sense = sense(5, 0x21, 0);
/// ILLEGAL REQUEST, INVALID FIELD IN CDB.
pub const INVALID_FIELD: Sense = sense(5, 0x24, 0);
/// ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED.
pub const SAVING_NOT_SUPPORTED: Sense = sense(5, 0x39, 0);
/// ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED.
pub const REMOVAL_PREVENTED: Sense = sense(5, 0x53, 2);
/// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
pub const POWER_ON: Sense = sense(6, 0x29, 0);
/// MEDIUM ERROR, UNRECOVERED READ ERROR.
pub const READ_ERROR: Sense = sense(3, 0x11, 0);
/// ABORTED COMMAND (a bus-master failure).
pub const ABORTED: Sense = sense(0x0b, 0, 0);

/// Interrupt reason (sector count register): command/data.
const IR_COD: u8 = 0x01;
/// Interrupt reason: transfer to the host.
const IR_IO: u8 = 0x02;

/// The state of a CD-ROM drive with its medium.
pub struct Cdrom {
    /// The medium.
    pub image: Box<dyn DiskImage>,
    /// Size in 2048-byte blocks.
    pub blocks: u64,
    /// Sense of the last command.
    pub sense: Sense,
    /// A power-on UNIT ATTENTION is pending.
    pub unit_attention: bool,
    /// A "new media" event is still to be reported.
    pub new_media: bool,
    /// PREVENT MEDIUM REMOVAL is in force.
    pub locked: bool,
    /// Byte count limit of the current packet command.
    pub byte_limit: u16,
    /// The current packet command transfers by DMA.
    pub dma: bool,
}

/// What a packet command returns.
pub enum Reply {
    /// No data phase.
    None,
    /// A reply built in memory (already cut to the allocation length).
    Data(Vec<u8>),
    /// Bytes of the medium.
    Read {
        /// First byte.
        offset: u64,
        /// Length.
        len: u64,
    },
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn cut(mut v: Vec<u8>, alloc: usize) -> Reply {
    v.truncate(alloc);
    Reply::Data(v)
}

/// A block address as 4 bytes: big-endian LBA, or 0/M/S/F with the 150-frame lead-in offset.
fn address(lba: u64, msf: bool) -> [u8; 4] {
    if msf {
        let l = lba + 150;
        [0, (l / 4500).min(255) as u8, ((l / 75) % 60) as u8, (l % 75) as u8]
    } else {
        (lba.min(u64::from(u32::MAX)) as u32).to_be_bytes()
    }
}

impl Cdrom {
    /// A drive holding `image`.
    pub fn new(image: Box<dyn DiskImage>) -> Self {
        let blocks = image.size() / CD_SECTOR;
        Cdrom {
            image,
            blocks,
            sense: NO_SENSE,
            unit_attention: true,
            new_media: true,
            locked: false,
            byte_limit: 0,
            dma: false,
        }
    }

    fn is_dvd(&self) -> bool {
        self.blocks > CD_MAX_BLOCKS
    }

    /// Runs one packet command.
    pub fn execute(&mut self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        let op = cdb[0];
        if self.unit_attention && !matches!(op, 0x03 | 0x12 | 0x46 | 0x4a) {
            self.unit_attention = false;
            return Err(POWER_ON);
        }
        let r = match op {
            0x00 | 0xbb => Ok(Reply::None),
            0x03 => Ok(self.request_sense(cdb)),
            0x12 => self.inquiry(cdb),
            0x1a | 0x5a => self.mode_sense(cdb, op == 0x5a),
            0x1b => self.start_stop(cdb),
            0x1e => {
                self.locked = cdb[4] & 1 != 0;
                Ok(Reply::None)
            }
            0x25 => Ok(self.read_capacity()),
            0x28 => self.read(be32(&cdb[2..6]), be16(&cdb[7..9]) as u64),
            0xa8 => self.read(be32(&cdb[2..6]), be32(&cdb[6..10])),
            0x2b => match be32(&cdb[2..6]) < self.blocks {
                true => Ok(Reply::None),
                false => Err(LBA_OUT_OF_RANGE),
            },
            0x43 => self.read_toc(cdb),
            0x46 => self.get_configuration(cdb),
            0x4a => self.event_status(cdb),
            0x51 => self.disc_information(cdb),
            0xbd => Ok(cut(vec![0; 8], be16(&cdb[8..10]))),
            _ => {
                log::debug!("ide: unsupported packet command {op:#04x}");
                Err(INVALID_OPCODE)
            }
        };
        if r.is_ok() && op != 0x03 {
            self.sense = NO_SENSE;
        }
        r
    }

    fn request_sense(&mut self, cdb: &[u8; 12]) -> Reply {
        if std::mem::take(&mut self.unit_attention) {
            self.sense = POWER_ON;
        }
        let s = std::mem::replace(&mut self.sense, NO_SENSE);
        let mut v = vec![0u8; 18];
        v[0] = 0x70;
        v[2] = s.key;
        v[7] = 10;
        (v[12], v[13]) = (s.asc, s.ascq);
        cut(v, usize::from(cdb[4]))
    }

    fn inquiry(&self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        if cdb[1] & 1 != 0 {
            return Err(INVALID_FIELD);
        }
        let mut v = vec![0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0];
        v.extend_from_slice(b"VMM     VMM DVD-ROM     1.0 ");
        Ok(cut(v, be16(&cdb[3..5])))
    }

    fn read_capacity(&self) -> Reply {
        let last = self.blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
        let mut v = last.to_be_bytes().to_vec();
        v.extend_from_slice(&(CD_SECTOR as u32).to_be_bytes());
        Reply::Data(v)
    }

    fn read(&self, lba: u64, count: u64) -> Result<Reply, Sense> {
        if lba.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(LBA_OUT_OF_RANGE);
        }
        Ok(Reply::Read { offset: lba * CD_SECTOR, len: count * CD_SECTOR })
    }

    fn start_stop(&self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        let (load_eject, start) = (cdb[4] & 2 != 0, cdb[4] & 1 != 0);
        if load_eject && !start && self.locked {
            return Err(REMOVAL_PREVENTED);
        }
        Ok(Reply::None)
    }

    fn mode_pages(&self, page: u8) -> Option<Vec<u8>> {
        let recovery = [0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0];
        let mut caps = vec![0x2a, 0x14, 0x0f, 0x00, 0x71, 0x00, 0x29 | (u8::from(self.locked) << 1), 0];
        caps.extend_from_slice(&[0x05, 0x84, 0x01, 0x00, 0x02, 0x00, 0x05, 0x84, 0, 0, 0, 0, 0, 0]);
        match page {
            0x01 => Some(recovery.to_vec()),
            0x2a => Some(caps),
            0x3f => Some([recovery.to_vec(), caps].concat()),
            _ => None,
        }
    }

    fn mode_sense(&self, cdb: &[u8; 12], ten: bool) -> Result<Reply, Sense> {
        let (page, control) = (cdb[2] & 0x3f, cdb[2] >> 6);
        if control == 3 {
            return Err(SAVING_NOT_SUPPORTED);
        }
        let mut pages = self.mode_pages(page).ok_or(INVALID_FIELD)?;
        if control == 1 {
            // Changeable values: nothing is.
            let mut i = 0;
            while i + 1 < pages.len() {
                let (len, total) = (usize::from(pages[i + 1]), pages.len());
                pages[i + 2..(i + 2 + len).min(total)].fill(0);
                i += 2 + len;
            }
        }
        let (mut v, alloc) = if ten {
            let len = (6 + pages.len()) as u16;
            (vec![(len >> 8) as u8, len as u8, 0, 0, 0, 0, 0, 0], be16(&cdb[7..9]))
        } else {
            (vec![(3 + pages.len()) as u8, 0, 0, 0], usize::from(cdb[4]))
        };
        v.extend_from_slice(&pages);
        Ok(cut(v, alloc))
    }

    fn read_toc(&self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        let msf = cdb[1] & 2 != 0;
        let format = match cdb[2] & 0xf {
            0 => cdb[9] >> 6,
            f => f,
        };
        let track = cdb[6];
        let mut v = vec![0, 0, 1, 1];
        match format {
            0 => {
                if track > 1 && track != 0xaa {
                    return Err(INVALID_FIELD);
                }
                if track <= 1 {
                    v.extend_from_slice(&[0, 0x14, 1, 0]);
                    v.extend_from_slice(&address(0, msf));
                }
                v.extend_from_slice(&[0, 0x14, 0xaa, 0]);
                v.extend_from_slice(&address(self.blocks, msf));
            }
            1 => {
                v.extend_from_slice(&[0, 0x14, 1, 0]);
                v.extend_from_slice(&address(0, msf));
            }
            2 => {
                let lead_out = address(self.blocks, true);
                for (point, p) in [
                    (0xa0, [1, 0, 0]),
                    (0xa1, [1, 0, 0]),
                    (0xa2, [lead_out[1], lead_out[2], lead_out[3]]),
                    (1, [0, 2, 0]),
                ] {
                    v.extend_from_slice(&[1, 0x14, 0, point, 0, 0, 0, 0]);
                    v.extend_from_slice(&p);
                }
            }
            _ => return Err(INVALID_FIELD),
        }
        let len = (v.len() - 2) as u16;
        v[..2].copy_from_slice(&len.to_be_bytes());
        Ok(cut(v, be16(&cdb[7..9])))
    }

    fn get_configuration(&self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        let (rt, start) = (cdb[1] & 3, be16(&cdb[2..4]) as u16);
        let (dvd, cd) = (u8::from(self.is_dvd()), u8::from(!self.is_dvd()));
        let features: [(u16, Vec<u8>); 5] = [
            (0x0000, vec![0x03, 8, 0x00, 0x10, dvd, 0, 0x00, 0x08, cd, 0]),
            (0x0001, vec![0x03, 4, 0, 0, 0, 2]),
            (0x0002, vec![0x07, 4, 0x02, 0, 0, 0]),
            (0x0003, vec![0x03, 4, 0x29, 0, 0, 0]),
            (0x0010, vec![0x01, 8, 0, 0, 0x08, 0x00, 0, if dvd == 1 { 0x10 } else { 1 }, 0, 0]),
        ];
        let profile: u16 = if dvd == 1 { 0x0010 } else { 0x0008 };
        let mut v = vec![0, 0, 0, 0, 0, 0, (profile >> 8) as u8, profile as u8];
        for (code, body) in &features {
            let wanted = match rt {
                0 | 1 => *code >= start,
                2 => *code == start,
                _ => return Err(INVALID_FIELD),
            };
            if wanted {
                v.extend_from_slice(&code.to_be_bytes());
                v.extend_from_slice(body);
            }
        }
        let len = (v.len() - 4) as u32;
        v[..4].copy_from_slice(&len.to_be_bytes());
        Ok(cut(v, be16(&cdb[7..9])))
    }

    fn event_status(&mut self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        if cdb[1] & 1 == 0 {
            // Only polled operation is supported.
            return Err(INVALID_FIELD);
        }
        let v = if cdb[4] & 0x10 != 0 {
            let event = if std::mem::take(&mut self.new_media) { 2 } else { 0 };
            vec![0, 6, 0x04, 0x10, event, 0x02, 0, 0]
        } else {
            vec![0, 2, 0x80, 0x10]
        };
        Ok(cut(v, be16(&cdb[7..9])))
    }

    fn disc_information(&self, cdb: &[u8; 12]) -> Result<Reply, Sense> {
        if cdb[1] & 7 != 0 {
            return Err(INVALID_FIELD);
        }
        let mut v = vec![0u8; 34];
        v[1] = 32;
        // Complete disc, complete last session; one session with track 1.
        v[2..8].copy_from_slice(&[0x0e, 1, 1, 1, 1, 0x20]);
        v[16..24].fill(0xff);
        Ok(cut(v, be16(&cdb[7..9])))
    }
}

impl Drive {
    fn cdrom(&mut self) -> Option<&mut Cdrom> {
        match &mut self.media {
            Media::Cdrom(c) => Some(c),
            _ => None,
        }
    }

    fn identify_packet(&self) -> [u16; 256] {
        let mut w = [0u16; 256];
        // ATAPI, CD-ROM, removable, accelerated DRQ, 12-byte packets.
        w[0] = 0x85c0;
        put_string(&mut w[10..20], &self.serial);
        put_string(&mut w[23..27], "1.0");
        put_string(&mut w[27..47], "VMM DVD-ROM");
        // DMA, LBA, IORDY supported.
        w[49] = 0x0b00;
        w[53] = 0x0006;
        dma_mode_words(&mut w, self.xfer_mode);
        w[64] = 0x0003;
        w[65..69].fill(120);
        (w[71], w[72]) = (30, 30);
        w[80] = 0x007e;
        // PACKET and DEVICE RESET.
        w[82] = 0x0210;
        w[83] = 0x4000;
        w[84] = 0x4000;
        w[85] = 0x0210;
        w[87] = 0x4000;
        w[93] = reset_result(self.unit);
        w
    }

    /// Runs an ATA command on a packet device.
    pub(super) fn atapi_ata_command(&mut self, cmd: u8) {
        match cmd {
            0xa1 => {
                let data = identify_bytes(self.identify_packet());
                self.pio_in(data, Phase::BufferIn);
            }
            0xa0 => self.packet(),
            0x08 => {
                // DEVICE RESET: the signature, no interrupt.
                self.end_transfer();
                self.tf.set_signature(true);
                (self.status, self.error) = (0, 0x01);
            }
            0xec | 0x20 | 0x21 | 0x24 => {
                // A packet device aborts these and shows its signature.
                self.abort();
                self.tf.set_signature(true);
            }
            0xef => self.set_features(),
            0x90 => self.diagnostic(),
            0xe0..=0xe3 | 0xe6 => self.complete(),
            0xe5 => {
                self.complete();
                self.tf.nsector = 0xff;
            }
            _ => {
                log::debug!("ide: unsupported ATA command {cmd:#04x} for a packet device");
                self.abort();
            }
        }
    }

    fn packet(&mut self) {
        let (feature, limit) = (self.tf.feature, u16::from_le_bytes([self.tf.lba_mid, self.tf.lba_high]));
        let Some(c) = self.cdrom() else { return };
        c.dma = feature & 1 != 0;
        c.byte_limit = limit;
        self.tf.nsector = IR_COD;
        self.pio_out(12, Phase::PacketCdb, false);
    }

    /// The 12 packet bytes are in: run the command.
    pub(super) fn atapi_packet_received(&mut self) {
        let mut cdb = [0u8; 12];
        let n = self.buf.len().min(12);
        cdb[..n].copy_from_slice(&self.buf[..n]);
        let Some(c) = self.cdrom() else { return };
        let dma = c.dma;
        let (src, len) = match c.execute(&cdb) {
            Err(s) => return self.check_condition(s),
            Ok(Reply::None) => return self.packet_done(),
            Ok(Reply::Data(v)) => {
                let len = v.len() as u64;
                (DmaSrc::Buf(v), len)
            }
            Ok(Reply::Read { offset, len }) => {
                self.stats.record(BlockOp::Read, 0);
                (DmaSrc::Disk(offset), len)
            }
        };
        if len == 0 {
            self.packet_done();
        } else if dma {
            self.request_dma(DmaOp { to_memory: true, len, src }, Phase::PacketDma);
        } else {
            let src = match src {
                DmaSrc::Buf(v) => PacketSrc::Buf(v, 0),
                DmaSrc::Disk(o) => PacketSrc::Disk(o),
            };
            self.atapi_next_block(src, len);
        }
    }

    /// Loads the next PIO data-in block of a packet command, or completes it.
    pub(super) fn atapi_next_block(&mut self, src: PacketSrc, remaining: u64) {
        if remaining == 0 {
            return self.packet_done();
        }
        let Some(c) = self.cdrom() else { return };
        let mut n = match c.byte_limit {
            0 | 0xffff => 0xfffe,
            l => u64::from(l),
        };
        if n < remaining {
            // Blocks before the last must hold an even number of bytes.
            n = (n & !1).max(2);
        }
        let n = n.min(remaining);
        let mut buf = vec![0u8; n as usize];
        let src = match src {
            PacketSrc::Buf(data, pos) => {
                let end = (pos + buf.len()).min(data.len());
                buf[..end - pos.min(end)].copy_from_slice(&data[pos.min(end)..end]);
                PacketSrc::Buf(data, pos + n as usize)
            }
            PacketSrc::Disk(offset) => {
                if let Err(e) = c.image.read_at(offset, &mut buf) {
                    crate::warn_limited!("ide: CD read at byte {offset:#x}: {e}");
                    self.stats.error();
                    return self.check_condition(READ_ERROR);
                }
                self.stats.read_bytes(n);
                PacketSrc::Disk(offset + n)
            }
        };
        self.tf.lba_mid = n as u8;
        self.tf.lba_high = (n >> 8) as u8;
        self.tf.nsector = IR_IO;
        self.pio_in(buf, Phase::PacketIn { src, remaining: remaining - n });
    }

    fn packet_done(&mut self) {
        self.complete();
        self.tf.nsector = IR_IO | IR_COD;
    }

    fn check_condition(&mut self, s: Sense) {
        if let Some(c) = self.cdrom() {
            c.sense = s;
        }
        self.fail(s.key << 4);
        self.tf.nsector = IR_IO | IR_COD;
    }

    /// Ends a packet command's DMA transfer.
    pub(super) fn atapi_dma_finish(&mut self, result: DmaResult) {
        if !matches!(std::mem::replace(&mut self.phase, Phase::Idle), Phase::PacketDma) {
            return;
        }
        match result {
            DmaResult::Ok => self.packet_done(),
            DmaResult::Short => self.status = ST_DRDY | ST_DSC,
            DmaResult::HostError => self.check_condition(ABORTED),
            DmaResult::MediaError => self.check_condition(READ_ERROR),
        }
    }
}
