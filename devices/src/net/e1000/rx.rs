// SPDX-License-Identifier: Apache-2.0
//! Receive (SDM 3.2): address filtering and the legacy descriptor ring between RDH and RDT.
//!
//! Frames come from the backend through [`E1000::rx_ready`] (called by the I/O thread) or
//! from loopback. A frame is filtered (exact RAL/RAH matches, the MTA hash, promiscuous and
//! broadcast modes, the VLAN filter table), padded to 60 bytes, its VLAN tag stripped when
//! CTRL.VME is set, its CRC appended unless RCTL.SECRC, then written over as many
//! descriptors as its length needs (RCTL.BSIZE/BSEX buffers). If the free descriptors are too
//! few the frame is held (one frame) and [`E1000::wants_rx`] turns false until the guest
//! moves RDT; frames arriving while one is held are dropped and counted as missed.

use vm_memory::{Bytes, GuestAddress};

use super::regs::*;
use super::tx::size_bucket;
use super::E1000;

const DESC_SIZE: u64 = 16;
/// Frames moved from the backend per `rx_ready` call, so the lock is released regularly.
const RX_BUDGET: usize = 64;
const MIN_FRAME: usize = 60;
/// Longest frame (with CRC) without RCTL.LPE.
const MAX_NORMAL_FRAME: usize = 1522;
/// Longest frame (with CRC) with RCTL.LPE.
const MAX_LONG_FRAME: usize = 16384;

const STAT_DD: u8 = 1 << 0;
const STAT_EOP: u8 = 1 << 1;
const STAT_IXSM: u8 = 1 << 2;
const STAT_VP: u8 = 1 << 3;
const ERR_RXE: u8 = 1 << 7;

/// A frame ready for the ring but waiting for descriptors.
#[derive(Debug)]
pub(super) struct HeldFrame {
    data: Vec<u8>,
    vlan: Option<u16>,
}

/// The Ethernet CRC-32 (IEEE 802.3), as appended to a frame (little-endian).
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

impl E1000 {
    fn rx_enabled(&self) -> bool {
        self.raw(RCTL) & RCTL_EN != 0 && self.bus_master() && self.raw(STATUS) & STATUS_LU != 0
    }

    /// (base, size, head, tail) of a usable RX ring.
    fn rx_ring(&self) -> Option<(u64, u32, u32, u32)> {
        let size = self.raw(RDLEN) / DESC_SIZE as u32;
        let (head, tail) = (self.raw(RDH), self.raw(RDT));
        if size == 0 || head >= size || tail >= size {
            return None;
        }
        let base = (u64::from(self.raw(RDBAH)) << 32) | u64::from(self.raw(RDBAL));
        Some((base, size, head, tail))
    }

    fn rx_free(&self) -> u32 {
        self.rx_ring().map_or(0, |(_, size, head, tail)| (tail + size - head) % size)
    }

    /// Whether the device can take a frame from the backend now: receiver enabled, bus
    /// mastering on, a free descriptor, and no frame held back.
    pub fn wants_rx(&self) -> bool {
        self.rx_enabled() && self.rx_held.is_none() && self.rx_free() > 0
    }

    /// The backend is readable: moves up to a bounded number of frames into the ring.
    pub fn rx_ready(&mut self) {
        let mut buf = std::mem::take(&mut self.rx_buf);
        for _ in 0..RX_BUDGET {
            if !self.wants_rx() {
                break;
            }
            match self.backend.recv(&mut buf) {
                Ok(Some(n)) => self.rx_frame(&buf[..n]),
                Ok(None) => break,
                Err(e) => {
                    crate::warn_limited!("e1000: backend receive failed: {e}");
                    break;
                }
            }
        }
        self.rx_buf = buf;
    }

    /// Retries a held frame after RDT moved.
    pub(super) fn rx_retry_held(&mut self) {
        if let Some(held) = self.rx_held.take() {
            if !self.rx_enabled() || !self.deliver(&held.data, held.vlan) {
                self.rx_held = Some(held);
            }
        }
    }

    /// Whether the receive filters accept a frame with this destination and tag.
    fn rx_accept(&self, frame: &[u8], vlan: Option<u16>) -> bool {
        let rctl = self.raw(RCTL);
        if let Some(tci) = vlan {
            if rctl & RCTL_VFE != 0 {
                let vid = u32::from(tci & 0xfff);
                if self.raw(VFTA + 4 * (vid >> 5)) & (1 << (vid & 31)) == 0 {
                    return false;
                }
            }
        }
        let dst = &frame[..6];
        if dst == [0xff; 6] {
            return rctl & (RCTL_BAM | RCTL_MPE) != 0;
        }
        let multicast = dst[0] & 1 != 0;
        if (multicast && rctl & RCTL_MPE != 0) || (!multicast && rctl & RCTL_UPE != 0) {
            return true;
        }
        for i in 0..16 {
            let rah = self.raw(RAH0 + 8 * i);
            // Only valid entries that match destination addresses (AS = 00).
            if rah & RAH_AV == 0 || rah & 0x3_0000 != 0 {
                continue;
            }
            let ral = self.raw(RAL0 + 8 * i).to_le_bytes();
            let rah = (rah as u16).to_le_bytes();
            if dst == [ral[0], ral[1], ral[2], ral[3], rah[0], rah[1]] {
                return true;
            }
        }
        if multicast {
            let word = u32::from(u16::from_le_bytes([dst[4], dst[5]]));
            let shift = [4, 3, 2, 0][((rctl >> RCTL_MO_SHIFT) & 3) as usize];
            let hash = (word >> shift) & 0xfff;
            return self.raw(MTA + 4 * (hash >> 5)) & (1 << (hash & 31)) != 0;
        }
        false
    }

    /// One frame from the wire (backend or loopback).
    pub(super) fn rx_frame(&mut self, frame: &[u8]) {
        if !self.rx_enabled() || frame.len() < 14 {
            return;
        }
        let rctl = self.raw(RCTL);
        let max = if rctl & RCTL_LPE != 0 { MAX_LONG_FRAME } else { MAX_NORMAL_FRAME };
        if frame.len() + 4 > max {
            self.stat_inc(ROC);
            self.stats.rx_drop();
            return;
        }
        let tagged =
            frame.len() >= 18 && u32::from(u16::from_be_bytes([frame[12], frame[13]])) == self.raw(VET);
        let tci = tagged.then(|| u16::from_be_bytes([frame[14], frame[15]]));
        if !self.rx_accept(frame, tci) {
            return;
        }
        let strip = tagged && self.raw(CTRL) & CTRL_VME != 0;
        let mut data = Vec::with_capacity(frame.len() + 4);
        if strip {
            data.extend_from_slice(&frame[..12]);
            data.extend_from_slice(&frame[16..]);
        } else {
            data.extend_from_slice(frame);
        }
        if data.len() < MIN_FRAME {
            data.resize(MIN_FRAME, 0);
        }
        if rctl & RCTL_SECRC == 0 {
            let crc = crc32(&data);
            data.extend_from_slice(&crc.to_le_bytes());
        }
        let vlan = if strip { tci } else { None };
        if self.rx_held.is_some() {
            self.stat_inc(MPC);
            self.stats.rx_drop();
            return;
        }
        if !self.deliver(&data, vlan) {
            self.stat_inc(RNBC);
            self.rx_held = Some(HeldFrame { data, vlan });
        }
    }

    /// Writes a frame into the ring; false (nothing written) if the free descriptors cannot
    /// hold it. A frame that cannot be written for other reasons is dropped (true).
    fn deliver(&mut self, data: &[u8], vlan: Option<u16>) -> bool {
        let Some((base, size, mut head, tail)) = self.rx_ring() else {
            crate::warn_limited!(
                "e1000: RX ring (RDLEN {:#x}, RDH {}, RDT {}) unusable; frame dropped",
                self.raw(RDLEN),
                self.raw(RDH),
                self.raw(RDT)
            );
            self.stats.rx_drop();
            return true;
        };
        let Some(bsize) = rx_buffer_size(self.raw(RCTL)) else {
            crate::warn_limited!("e1000: reserved RX buffer size; frame dropped");
            self.stats.rx_drop();
            return true;
        };
        let free = (tail + size - head) % size;
        if (free as usize) < data.len().div_ceil(bsize) {
            return false;
        }
        let mut offset = 0;
        while offset < data.len() {
            if head == tail {
                // Null descriptors used up the room: the rest of the frame is lost.
                crate::warn_limited!("e1000: RX ring ran out in the middle of a frame");
                self.set_ics(ICR_RXO);
                self.stats.rx_drop();
                return true;
            }
            let at = base.wrapping_add(u64::from(head) * DESC_SIZE);
            let mut desc = [0u8; 16];
            if self.mem.read_slice(&mut desc, GuestAddress(at)).is_err() {
                crate::warn_limited!(
                    "e1000: RX descriptor {head} at {at:#x} outside guest memory; frame dropped"
                );
                self.stats.rx_drop();
                return true;
            }
            let buffer =
                u64::from_le_bytes([desc[0], desc[1], desc[2], desc[3], desc[4], desc[5], desc[6], desc[7]]);
            let mut status = STAT_DD | STAT_IXSM;
            let (mut written, mut errors) = (0usize, 0u8);
            if buffer != 0 {
                let n = bsize.min(data.len() - offset);
                if self.mem.write_slice(&data[offset..offset + n], GuestAddress(buffer)).is_err() {
                    crate::warn_limited!("e1000: RX buffer {buffer:#x}+{n:#x} outside guest memory");
                    errors = ERR_RXE;
                }
                offset += n;
                written = n;
                if offset >= data.len() {
                    status |= STAT_EOP;
                }
                if vlan.is_some() {
                    status |= STAT_VP;
                }
            }
            let mut wb = [0u8; 8];
            wb[0..2].copy_from_slice(&(written as u16).to_le_bytes());
            wb[4] = status;
            wb[5] = errors;
            wb[6..8].copy_from_slice(&vlan.unwrap_or(0).to_le_bytes());
            if self.mem.write_slice(&wb, GuestAddress(at.wrapping_add(8))).is_err() {
                crate::warn_limited!("e1000: RX descriptor {head} write-back failed");
            }
            head = (head + 1) % size;
            self.set_raw(RDH, head);
        }
        self.count_rx(data);
        let mut cause = ICR_RXT0;
        let free = (tail + size - head) % size;
        let rdmts = (self.raw(RCTL) >> RCTL_RDMTS_SHIFT) & 3;
        if u64::from(free) * DESC_SIZE <= u64::from(self.raw(RDLEN)) >> (rdmts.min(2) + 1) {
            cause |= ICR_RXDMT0;
        }
        self.set_ics(cause);
        true
    }

    fn count_rx(&mut self, data: &[u8]) {
        let crc = if self.raw(RCTL) & RCTL_SECRC == 0 { 0 } else { 4 };
        let wire = data.len() as u64 + crc;
        // The frame as the host sent it: without the CRC (and with the padding).
        self.stats.rx(wire.saturating_sub(4));
        self.stat_inc(TPR);
        self.stat_inc(GPRC);
        self.stat_add64(GORCL, wire);
        self.stat_add64(TORL, wire);
        self.stat_inc(size_bucket(PRC64, wire));
        if data[..6] == [0xff; 6] {
            self.stat_inc(BPRC);
        } else if data[0] & 1 != 0 {
            self.stat_inc(MPRC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
