// SPDX-License-Identifier: Apache-2.0
//! Transmit (SDM 3.3): the descriptor ring between TDH and TDT, legacy descriptors, and the
//! extended context and data descriptors with checksum offload and TCP segmentation.
//!
//! A TDT (or TCTL) write processes descriptors until the ring is empty, but at most one ring's
//! worth and [`TX_FRAME_BUDGET`] frames per doorbell; the rest waits for the next doorbell.
//! Every guest value is checked: a descriptor or buffer outside guest memory, an oversized
//! packet (over 64 KiB), or an unusable TSO context drops that packet with a logged guest
//! error. Two offload contexts are kept, one for TSO and one for checksum-only packets, as
//! the SDM describes (the TSE bit of a context descriptor picks which it loads).

use vm_memory::{Bytes, GuestAddress};

use super::regs::*;
use super::E1000;

const DESC_SIZE: u64 = 16;
/// Largest packet (or TSO segment) assembled from descriptors.
pub(super) const MAX_TX_FRAME: usize = 0x10000;
/// Most segments one TSO packet may produce.
const MAX_TSO_SEGMENTS: u32 = 4096;
/// Most frames sent per doorbell.
pub(super) const TX_FRAME_BUDGET: u32 = 65536;

const CMD_EOP: u8 = 1 << 0;
const CMD_IC: u8 = 1 << 2;
const CMD_TSE: u8 = 1 << 2;
const CMD_RS: u8 = 1 << 3;
const CMD_RPS: u8 = 1 << 4;
const CMD_DEXT: u8 = 1 << 5;
const CMD_VLE: u8 = 1 << 6;
const TUCMD_TCP: u8 = 1 << 0;
const TUCMD_IP: u8 = 1 << 1;
const DTYP_CONTEXT: u8 = 0;
const DTYP_DATA: u8 = 1;
/// POPTS: insert the IP checksum.
pub(super) const POPTS_IXSM: u8 = 1 << 0;
/// POPTS: insert the TCP/UDP checksum.
pub(super) const POPTS_TXSM: u8 = 1 << 1;
const STA_DD: u8 = 1 << 0;

/// Offload parameters from a context descriptor.
#[derive(Debug, Default, Clone, Copy)]
struct TxContext {
    ipcss: usize,
    ipcso: usize,
    ipcse: usize,
    tucss: usize,
    tucso: usize,
    tucse: usize,
    paylen: u32,
    hdr_len: usize,
    mss: usize,
    ipv4: bool,
    tcp: bool,
}

impl TxContext {
    fn parse(d: &[u8; 16]) -> Self {
        TxContext {
            ipcss: d[0].into(),
            ipcso: d[1].into(),
            ipcse: u16::from_le_bytes([d[2], d[3]]).into(),
            tucss: d[4].into(),
            tucso: d[5].into(),
            tucse: u16::from_le_bytes([d[6], d[7]]).into(),
            paylen: u32::from_le_bytes([d[8], d[9], d[10], d[11]]) & 0xf_ffff,
            hdr_len: d[13].into(),
            mss: u16::from_le_bytes([d[14], d[15]]).into(),
            ipv4: d[11] & TUCMD_IP != 0,
            tcp: d[11] & TUCMD_TCP != 0,
        }
    }
}

/// The packet being assembled.
#[derive(Debug, Default)]
pub(super) struct TxState {
    csum_ctx: TxContext,
    tso_ctx: TxContext,
    data: Vec<u8>,
    /// TSO: the headers of the first segment, replayed in front of every segment.
    header: Vec<u8>,
    started: bool,
    popts: u8,
    tse: bool,
    vlan: Option<u16>,
    dropping: bool,
    segments: u32,
    sent_payload: u32,
    frames_this_doorbell: u32,
}

impl TxState {
    fn end_packet(&mut self) {
        self.data.clear();
        self.header.clear();
        self.started = false;
        self.popts = 0;
        self.tse = false;
        self.vlan = None;
        self.dropping = false;
        self.segments = 0;
        self.sent_payload = 0;
    }
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// The 16-bit ones' complement sum of `data` (not complemented).
pub(super) fn ones_sum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Stores the checksum of `frame[css..=cse]` (to the end if `cse` is 0) at `cso`.
fn insert_checksum(frame: &mut [u8], css: usize, cso: usize, cse: usize) {
    let end = if cse == 0 { frame.len() } else { (cse + 1).min(frame.len()) };
    if css >= end || cso + 2 > frame.len() {
        crate::warn_limited!(
            "e1000: checksum offsets start {css} at {cso} outside a {}-byte frame",
            frame.len()
        );
        return;
    }
    let sum = !ones_sum(&frame[css..end], 0);
    // A computed zero is sent as 0xffff (the same value; zero means "none" for UDP).
    put16(frame, cso, if sum == 0 { 0xffff } else { sum });
}

impl E1000 {
    /// Processes the transmit ring (TDT or TCTL written).
    pub(super) fn start_xmit(&mut self) {
        if self.raw(TCTL) & TCTL_EN == 0 || !self.bus_master() {
            return;
        }
        let size = self.raw(TDLEN) / DESC_SIZE as u32;
        let (mut head, tail) = (self.raw(TDH), self.raw(TDT));
        if size == 0 || head >= size || tail >= size {
            if head != tail {
                crate::warn_limited!(
                    "e1000: TX ring of {size} descriptors with head {head} tail {tail} ignored"
                );
            }
            return;
        }
        let base = (u64::from(self.raw(TDBAH)) << 32) | u64::from(self.raw(TDBAL));
        let mut cause = 0;
        let mut processed = 0;
        self.tx.frames_this_doorbell = 0;
        while head != tail && processed < size && self.tx.frames_this_doorbell < TX_FRAME_BUDGET {
            processed += 1;
            let at = base.wrapping_add(u64::from(head) * DESC_SIZE);
            let mut desc = [0u8; 16];
            if self.mem.read_slice(&mut desc, GuestAddress(at)).is_err() {
                crate::warn_limited!("e1000: TX descriptor {head} at {at:#x} outside guest memory");
                self.tx.end_packet();
            } else {
                self.process_descriptor(&desc);
                if desc[11] & (CMD_RS | CMD_RPS) != 0 {
                    // Descriptor done; clear the excess-collision and late-collision bits.
                    let sta = (desc[12] | STA_DD) & !0x06;
                    if self.mem.write_slice(&[sta], GuestAddress(at.wrapping_add(12))).is_err() {
                        crate::warn_limited!("e1000: TX descriptor {head} write-back failed");
                    }
                    cause |= ICR_TXDW;
                }
            }
            head = (head + 1) % size;
            self.set_raw(TDH, head);
        }
        if processed > 0 {
            if head == tail {
                cause |= ICR_TXQE;
            }
            self.set_ics(cause);
        }
    }

    fn process_descriptor(&mut self, d: &[u8; 16]) {
        let cmd = d[11];
        let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
        let len;
        let mut legacy_csum = None;
        if cmd & CMD_DEXT != 0 {
            match d[10] >> 4 {
                DTYP_CONTEXT => {
                    let ctx = TxContext::parse(d);
                    if cmd & CMD_TSE != 0 {
                        self.tx.tso_ctx = ctx;
                    } else {
                        self.tx.csum_ctx = ctx;
                    }
                    return;
                }
                DTYP_DATA => {
                    len = (lower & 0xf_ffff) as usize;
                    if !self.tx.started {
                        self.begin_packet(d[13], cmd & CMD_TSE != 0);
                    }
                }
                other => {
                    crate::warn_limited!("e1000: TX descriptor type {other} dropped the packet");
                    self.tx.dropping = true;
                    len = 0;
                }
            }
        } else {
            len = (lower & 0xffff) as usize;
            if !self.tx.started {
                self.begin_packet(0, false);
            }
            if cmd & CMD_IC != 0 {
                legacy_csum = Some((usize::from(d[13]), usize::from(d[10])));
            }
        }
        if cmd & CMD_VLE != 0 && self.raw(CTRL) & CTRL_VME != 0 {
            self.tx.vlan = Some(u16::from_le_bytes([d[14], d[15]]));
        }
        self.fetch(addr, len);
        if cmd & CMD_EOP != 0 {
            self.finish_packet(legacy_csum);
        }
    }

    fn begin_packet(&mut self, popts: u8, tse: bool) {
        self.tx.end_packet();
        self.tx.started = true;
        self.tx.popts = popts;
        self.tx.tse = tse;
        if tse {
            let c = self.tx.tso_ctx;
            let segments = c.paylen.div_ceil(c.mss.max(1) as u32);
            if c.mss == 0 || c.hdr_len == 0 || c.hdr_len + c.mss > MAX_TX_FRAME || segments > MAX_TSO_SEGMENTS
            {
                crate::warn_limited!(
                    "e1000: TSO context (header {}, MSS {}, payload {}) unusable; packet dropped",
                    c.hdr_len,
                    c.mss,
                    c.paylen
                );
                self.tx.dropping = true;
            }
        }
    }

    /// Appends `len` bytes at guest address `addr` to the packet, sending TSO segments as
    /// they fill.
    fn fetch(&mut self, mut addr: u64, mut len: usize) {
        if self.tx.dropping {
            return;
        }
        if !self.tx.tse {
            if self.tx.data.len() + len > MAX_TX_FRAME {
                crate::warn_limited!("e1000: TX packet over {MAX_TX_FRAME} bytes dropped");
                self.tx.dropping = true;
                return;
            }
            if !self.dma_append(addr, len) {
                self.tx.dropping = true;
            }
            return;
        }
        let hdr_len = self.tx.tso_ctx.hdr_len;
        let seg_max = hdr_len + self.tx.tso_ctx.mss;
        while len > 0 {
            let n = (seg_max - self.tx.data.len()).min(len);
            if !self.dma_append(addr, n) {
                self.tx.dropping = true;
                return;
            }
            addr = addr.wrapping_add(n as u64);
            len -= n;
            if self.tx.header.is_empty() && self.tx.data.len() >= hdr_len {
                self.tx.header = self.tx.data[..hdr_len].to_vec();
            }
            if self.tx.data.len() == seg_max {
                if self.tx.segments >= MAX_TSO_SEGMENTS {
                    crate::warn_limited!("e1000: TSO packet over {MAX_TSO_SEGMENTS} segments dropped");
                    self.tx.dropping = true;
                    return;
                }
                self.send_segment();
                let header = std::mem::take(&mut self.tx.header);
                self.tx.data.clear();
                self.tx.data.extend_from_slice(&header);
                self.tx.header = header;
            }
        }
    }

    fn dma_append(&mut self, addr: u64, len: usize) -> bool {
        let start = self.tx.data.len();
        self.tx.data.resize(start + len, 0);
        if self.mem.read_slice(&mut self.tx.data[start..], GuestAddress(addr)).is_err() {
            crate::warn_limited!("e1000: TX buffer {addr:#x}+{len:#x} outside guest memory; packet dropped");
            self.tx.data.truncate(start);
            return false;
        }
        true
    }

    fn finish_packet(&mut self, legacy_csum: Option<(usize, usize)>) {
        if !self.tx.dropping {
            if self.tx.tse {
                let hdr_len = self.tx.tso_ctx.hdr_len;
                let len = self.tx.data.len();
                if len > hdr_len || (self.tx.segments == 0 && len == hdr_len) {
                    self.send_segment();
                }
                self.stat_inc(TSCTC);
            } else {
                let mut frame = std::mem::take(&mut self.tx.data);
                if let Some((css, cso)) = legacy_csum {
                    insert_checksum(&mut frame, css, cso, 0);
                } else {
                    let c = self.tx.csum_ctx;
                    if self.tx.popts & POPTS_TXSM != 0 {
                        insert_checksum(&mut frame, c.tucss, c.tucso, c.tucse);
                    }
                    if self.tx.popts & POPTS_IXSM != 0 {
                        insert_checksum(&mut frame, c.ipcss, c.ipcso, c.ipcse);
                    }
                }
                let vlan = self.tx.vlan;
                self.send_frame(&frame, vlan);
                self.tx.data = frame;
            }
        }
        self.tx.end_packet();
    }

    /// Sends the TSO segment in `tx.data`: fixes lengths, IP ID, sequence number and flags,
    /// then inserts the checksums.
    fn send_segment(&mut self) {
        let c = self.tx.tso_ctx;
        let mut frame = std::mem::take(&mut self.tx.data);
        let len = frame.len();
        let payload = len.saturating_sub(c.hdr_len) as u32;
        let last = self.tx.sent_payload.saturating_add(payload) >= c.paylen;
        if c.ipv4 {
            put16(&mut frame, c.ipcss + 2, len.saturating_sub(c.ipcss) as u16);
            if let Some(id) = get16(&frame, c.ipcss + 4) {
                put16(&mut frame, c.ipcss + 4, id.wrapping_add(self.tx.segments as u16));
            }
        } else {
            put16(&mut frame, c.ipcss + 4, len.saturating_sub(c.ipcss + 40) as u16);
        }
        let l4_len = len.saturating_sub(c.tucss);
        if c.tcp {
            if let (Some(hi), Some(lo)) = (get16(&frame, c.tucss + 4), get16(&frame, c.tucss + 6)) {
                let seq = ((u32::from(hi) << 16) | u32::from(lo)).wrapping_add(self.tx.sent_payload);
                put16(&mut frame, c.tucss + 4, (seq >> 16) as u16);
                put16(&mut frame, c.tucss + 6, seq as u16);
            }
            if !last {
                if let Some(flags) = frame.get_mut(c.tucss + 13) {
                    *flags &= !0x09; // PSH and FIN only on the last segment
                }
            }
        } else {
            put16(&mut frame, c.tucss + 4, l4_len as u16);
        }
        if self.tx.popts & POPTS_TXSM != 0 {
            // The driver left the pseudo-header sum without the length; add this segment's.
            if let Some(partial) = get16(&frame, c.tucso) {
                let with_len = ones_sum(&[], u32::from(partial) + l4_len as u32);
                put16(&mut frame, c.tucso, with_len);
            }
            insert_checksum(&mut frame, c.tucss, c.tucso, c.tucse);
        }
        if self.tx.popts & POPTS_IXSM != 0 {
            insert_checksum(&mut frame, c.ipcss, c.ipcso, c.ipcse);
        }
        let vlan = self.tx.vlan;
        self.send_frame(&frame, vlan);
        self.tx.segments += 1;
        self.tx.sent_payload = self.tx.sent_payload.saturating_add(payload);
        self.tx.data = frame;
    }

    /// Puts one frame on the wire (or loops it back), counting it.
    fn send_frame(&mut self, frame: &[u8], vlan: Option<u16>) {
        if frame.len() < 14 {
            crate::warn_limited!("e1000: TX frame of {} bytes dropped", frame.len());
            self.stats.tx_drop();
            return;
        }
        let tagged;
        let frame = match vlan {
            Some(tci) => {
                let mut f = Vec::with_capacity(frame.len() + 4);
                f.extend_from_slice(&frame[..12]);
                f.extend_from_slice(&(self.raw(VET) as u16).to_be_bytes());
                f.extend_from_slice(&tci.to_be_bytes());
                f.extend_from_slice(&frame[12..]);
                tagged = f;
                &tagged[..]
            }
            None => frame,
        };
        self.tx.frames_this_doorbell += 1;
        let wire = frame.len() as u64 + 4;
        self.stat_inc(TPT);
        self.stat_inc(GPTC);
        self.stat_add64(GOTCL, wire);
        self.stat_add64(TOTL, wire);
        self.stat_inc(size_bucket(PTC64, wire));
        if frame[..6] == [0xff; 6] {
            self.stat_inc(BPTC);
        } else if frame[0] & 1 != 0 {
            self.stat_inc(MPTC);
        }
        if self.raw(RCTL) & RCTL_LBM_MASK == RCTL_LBM_MAC || self.phy.loopback() {
            self.stats.tx(frame.len() as u64);
            self.rx_frame(frame);
        } else if let Err(e) = self.backend.send(frame) {
            log::debug!("e1000: backend dropped a {}-byte frame: {e}", frame.len());
            self.stats.tx_drop();
        } else {
            self.stats.tx(frame.len() as u64);
        }
    }

    pub(super) fn stat_inc(&mut self, reg: u32) {
        let v = self.raw(reg).saturating_add(1);
        self.set_raw(reg, v);
    }

    pub(super) fn stat_add64(&mut self, low: u32, n: u64) {
        let v = (u64::from(self.raw(low + 4)) << 32) | u64::from(self.raw(low));
        let v = v.saturating_add(n);
        self.set_raw(low, v as u32);
        self.set_raw(low + 4, (v >> 32) as u32);
    }
}

/// The size-histogram counter (64, 65-127, ..., 1024 and up) for a frame of `len` bytes.
pub(super) fn size_bucket(first: u32, len: u64) -> u32 {
    let i = match len {
        ..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        _ => 5,
    };
    first + 4 * i
}
