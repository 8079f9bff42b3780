// SPDX-License-Identifier: Apache-2.0
//! Register-level tests of the whole controller, driven the way guest drivers drive it.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::eeprom::{EECD_CS, EECD_DI, EECD_DO, EECD_SK, EERD_DONE, EERD_START};
use super::phy;
use super::regs::*;
use super::tx::ones_sum;
use super::*;
use crate::irq::test_util::FakeIrq;
use crate::net::rx_events::NetRxEvents;
use crate::net::{MemBackend, MemBackendHandle};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const MEM_SIZE: usize = 0x10_0000;
const TX_RING: u64 = 0x1_0000;
const TX_BUF: u64 = 0x2_0000;
const RX_RING: u64 = 0x3_0000;
const RX_BUF: u64 = 0x4_0000;

struct Rig {
    dev: E1000,
    net: MemBackendHandle,
    irq: Arc<FakeIrq>,
    mem: GuestMemoryMmap,
}

fn rig() -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let (backend, net) = MemBackend::new().unwrap();
    let irq = Arc::new(FakeIrq::default());
    let mut dev = E1000::new(MAC, mem.clone(), irq.clone(), Box::new(backend));
    // Memory, I/O and bus mastering on.
    dev.config_write(1, 0, &[0x07, 0x00]);
    Rig { dev, net, irq, mem }
}

impl Rig {
    fn wr(&mut self, off: u32, v: u32) {
        self.dev.bar_write(MMIO_BAR, off.into(), &v.to_le_bytes());
    }
    fn rd(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(MMIO_BAR, off.into(), &mut b);
        u32::from_le_bytes(b)
    }
    fn tx_ring(&mut self, descs: u32) {
        self.wr(TDBAL, TX_RING as u32);
        self.wr(TDBAH, 0);
        self.wr(TDLEN, descs * 16);
        self.wr(TDH, 0);
        self.wr(TDT, 0);
        self.wr(TCTL, TCTL_EN);
    }
    fn put_desc(&self, ring: u64, i: u64, d: [u8; 16]) {
        self.mem.write_slice(&d, GuestAddress(ring + 16 * i)).unwrap();
    }
    fn desc(&self, ring: u64, i: u64) -> [u8; 16] {
        let mut d = [0u8; 16];
        self.mem.read_slice(&mut d, GuestAddress(ring + 16 * i)).unwrap();
        d
    }
    /// An RX ring of `n` descriptors, buffer i at RX_BUF + i * 0x4000, all given to the device.
    fn rx_ring(&mut self, n: u32, rctl: u32) {
        for i in 0..u64::from(n) {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&(RX_BUF + i * 0x4000).to_le_bytes());
            self.put_desc(RX_RING, i, d);
        }
        self.wr(RDBAL, RX_RING as u32);
        self.wr(RDLEN, n * 16);
        self.wr(RDH, 0);
        self.wr(RDT, n - 1);
        self.wr(RCTL, RCTL_EN | rctl);
    }
    fn rx_buf(&self, i: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(RX_BUF + i * 0x4000)).unwrap();
        v
    }
}

fn legacy(addr: u64, len: u16, cmd: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[11] = cmd;
    d
}

fn data_desc(addr: u64, len: u32, dcmd: u8, popts: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&((len & 0xf_ffff) | (1 << 20) | (u32::from(dcmd | 0x20) << 24)).to_le_bytes());
    d[13] = popts;
    d
}

#[allow(clippy::too_many_arguments)]
fn context_desc(
    ipcss: u8,
    ipcso: u8,
    tucss: u8,
    tucso: u8,
    tucmd: u8,
    paylen: u32,
    hdr: u8,
    mss: u16,
) -> [u8; 16] {
    // IPCSE: the IP header ends where the TCP header starts.
    let ipcse = tucss.saturating_sub(1);
    let mut d = [ipcss, ipcso, ipcse, 0, tucss, tucso, 0, 0, 0, 0, 0, 0, 0, hdr, 0, 0];
    d[8..12].copy_from_slice(&((paylen & 0xf_ffff) | (u32::from(tucmd | 0x20) << 24)).to_le_bytes());
    d[14..16].copy_from_slice(&mss.to_le_bytes());
    d
}

fn frame_to(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    f.extend((0..len.saturating_sub(14)).map(|i| i as u8));
    f
}

/// Ethernet + IPv4 + TCP with `payload` bytes; checksum fields as Linux leaves them for
/// offload: IP checksum 0, TCP checksum the pseudo-header sum (with length unless `tso`).
fn tcp_packet(payload: usize, tso: bool) -> Vec<u8> {
    let mut p = frame_to([0x02, 0, 0, 0, 0, 9], 14);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (20 + 20 + payload) as u16;
    p.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p[16..18].copy_from_slice(&ip_len.to_be_bytes());
    p.extend_from_slice(&[
        0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    p.extend((0..payload).map(|i| (i * 7) as u8));
    let tcp_len = if tso { 0 } else { 20 + payload as u32 };
    let pseudo = ones_sum(&p[26..34], 6 + tcp_len);
    p[50..52].copy_from_slice(&pseudo.to_be_bytes());
    p
}

fn ip_checksum_ok(f: &[u8]) -> bool {
    ones_sum(&f[14..34], 0) == 0xffff
}

fn tcp_checksum_ok(f: &[u8]) -> bool {
    let tcp_len = f.len() - 34;
    ones_sum(&f[34..], u32::from(ones_sum(&f[26..34], 6 + tcp_len as u32))) == 0xffff
}

#[test]
fn pci_identity_and_bars() {
    let mut r = rig();
    let d = &mut r.dev;
    assert_eq!(d.config_read(0), 0x100e_8086);
    assert_eq!(d.config_read(2), 0x0200_0003);
    assert_eq!(d.config_read(11), 0x001e_8086);
    assert_eq!(d.config_read(15) >> 8 & 0xff, 1, "INTA#");
    d.config_write(4, 0, &[0xff; 4]);
    d.config_write(5, 0, &[0xff; 4]);
    assert_eq!(d.config_read(4), 0xfffe_0000, "128 KiB memory BAR");
    assert_eq!(d.config_read(5), 0xffff_ffc1, "64-byte I/O BAR");
    d.config_write(4, 0, &0xfebc_0000u32.to_le_bytes());
    d.config_write(5, 0, &0xc000u32.to_le_bytes());
    assert_eq!(
        d.bar_ranges(),
        vec![
            PciBarRange { index: 0, kind: BarKind::Mem32, address: 0xfebc_0000, size: 0x2_0000 },
            PciBarRange { index: 1, kind: BarKind::Io, address: 0xc000, size: 0x40 },
        ]
    );
    assert_eq!(d.mac(), MAC);
}

#[test]
fn io_window_reaches_registers() {
    let mut r = rig();
    r.dev.bar_write(IO_BAR, 0, &STATUS.to_le_bytes());
    let mut b = [0u8; 4];
    r.dev.bar_read(IO_BAR, 0, &mut b);
    assert_eq!(u32::from_le_bytes(b), STATUS);
    r.dev.bar_read(IO_BAR, 4, &mut b);
    assert_eq!(u32::from_le_bytes(b) & (STATUS_LU | STATUS_FD), STATUS_LU | STATUS_FD);
    r.dev.bar_write(IO_BAR, 0, &IMS.to_le_bytes());
    r.dev.bar_write(IO_BAR, 4, &ICR_RXT0.to_le_bytes());
    assert_eq!(r.rd(IMS), ICR_RXT0);
    // Beyond the register space and odd sizes: harmless.
    r.dev.bar_write(IO_BAR, 0, &0x7_0000u32.to_le_bytes());
    r.dev.bar_read(IO_BAR, 4, &mut b);
    assert_eq!(b, [0; 4]);
    r.dev.bar_write(IO_BAR, 4, &1u32.to_le_bytes());
    r.dev.bar_write(IO_BAR, 2, &[1]);
    r.dev.bar_read(IO_BAR, 0x3f, &mut b[..1]);
}

#[test]
fn eeprom_through_eecd_and_eerd() {
    let mut r = rig();
    let mut words = [0u16; 64];
    for (addr, w) in words.iter_mut().enumerate() {
        r.wr(EERD, EERD_START | ((addr as u32) << 8));
        let v = r.rd(EERD);
        assert_ne!(v & EERD_DONE, 0);
        *w = (v >> 16) as u16;
    }
    assert_eq!(&words[..3], &[0x54 << 8 | 0x52, 0xab00, 0xefcd]);
    assert_eq!(words.iter().fold(0u16, |s, w| s.wrapping_add(*w)), 0xbaba);
    // Bit-banged read of word 2, as the Linux driver does it.
    let clock = |r: &mut Rig, di: bool| {
        let base = EECD_CS | if di { EECD_DI } else { 0 };
        r.wr(EECD, base | EECD_SK);
        let out = r.rd(EECD) & EECD_DO != 0;
        r.wr(EECD, base);
        out
    };
    r.wr(EECD, EECD_CS);
    for bit in [1, 1, 0, 0, 0, 0, 0, 1, 0] {
        clock(&mut r, bit == 1);
    }
    let mut v = 0u16;
    for _ in 0..16 {
        v = (v << 1) | u16::from(clock(&mut r, false));
    }
    r.wr(EECD, 0);
    assert_eq!(v, words[2]);
}

#[test]
fn phy_through_mdic() {
    let mut r = rig();
    let read = |r: &mut Rig, reg: u32| {
        r.wr(MDIC, MDIC_OP_READ | (phy::PHY_ADDRESS << MDIC_PHY_SHIFT) | (reg << MDIC_REG_SHIFT));
        r.rd(MDIC)
    };
    let v = read(&mut r, phy::PHYID1 as u32);
    assert_eq!(v & (MDIC_READY | MDIC_ERROR), MDIC_READY);
    assert_eq!(v & 0xffff, 0x0141);
    assert_eq!(read(&mut r, phy::PHYID2 as u32) & 0xfff0, 0x0c20);
    let bmsr = read(&mut r, phy::BMSR as u32) as u16;
    assert_ne!(bmsr & phy::BMSR_LSTATUS, 0);
    assert_ne!(bmsr & phy::BMSR_ANEGCOMPLETE, 0);
    // Another PHY address: error.
    r.wr(MDIC, MDIC_OP_READ | (2 << MDIC_PHY_SHIFT));
    assert_ne!(r.rd(MDIC) & MDIC_ERROR, 0);
    // Restarting auto-negotiation completes at once and reports a link change.
    r.rd(ICR);
    let bmcr = u32::from(phy::BMCR_ANENABLE | phy::BMCR_ANRESTART);
    r.wr(MDIC, MDIC_OP_WRITE | (1 << MDIC_PHY_SHIFT) | bmcr | MDIC_INT_EN);
    assert_eq!(r.rd(ICR), ICR_LSC | ICR_MDAC);
    assert_eq!(read(&mut r, 0) & 0xffff, u32::from(phy::BMCR_ANENABLE));
}

#[test]
fn ctrl_reset_restores_defaults() {
    let mut r = rig();
    let defaults: Vec<u32> = [CTRL, STATUS, RAL0, RAH0, PBA, VET].iter().map(|o| r.rd(*o)).collect();
    assert_eq!(defaults[2], 0xab00_5452);
    assert_eq!(defaults[3], 0x8000_efcd);
    r.wr(RAL0, 0x1234_5678);
    r.wr(RAH0, 0);
    r.wr(VET, 0x88a8);
    r.wr(IMS, ICR_RXT0);
    r.wr(ICS, ICR_RXT0);
    assert!(r.irq.level());
    r.tx_ring(8);
    // Linux resets through the I/O window.
    r.dev.bar_write(IO_BAR, 0, &CTRL.to_le_bytes());
    r.dev.bar_write(IO_BAR, 4, &(CTRL_RST | CTRL_SLU).to_le_bytes());
    let after: Vec<u32> = [CTRL, STATUS, RAL0, RAH0, PBA, VET].iter().map(|o| r.rd(*o)).collect();
    assert_eq!(after, defaults);
    assert_eq!(r.rd(CTRL) & CTRL_RST, 0, "self-clearing");
    assert_eq!((r.rd(IMS), r.rd(TCTL), r.rd(TDLEN)), (0, 0, 0));
    assert!(!r.irq.level());
}

#[test]
fn interrupt_mask_cause_and_intx() {
    let mut r = rig();
    r.wr(ICS, ICR_TXDW);
    assert!(!r.irq.level(), "masked");
    assert_eq!(r.rd(ICS), ICR_TXDW, "ICS reads the causes without clearing");
    r.wr(IMS, ICR_TXDW | ICR_RXT0);
    assert!(r.irq.level());
    assert_ne!(r.dev.config_read(1) & (1 << 19), 0, "PCI interrupt status");
    r.wr(IMC, ICR_TXDW);
    assert!(!r.irq.level());
    assert_eq!(r.rd(IMS), ICR_RXT0);
    r.wr(IMS, ICR_TXDW);
    assert!(r.irq.level());
    // INTx disable in the command register holds the line low.
    r.dev.config_write(1, 0, &[0x07, 0x04]);
    assert!(!r.irq.level());
    r.dev.config_write(1, 0, &[0x07, 0x00]);
    assert!(r.irq.level());
    // Write-1-to-clear.
    r.wr(ICR, ICR_TXDW);
    assert!(!r.irq.level());
    // Read-to-clear.
    r.wr(ICS, ICR_RXT0 | ICR_LSC);
    assert!(r.irq.level());
    assert_eq!(r.rd(ICR), ICR_RXT0 | ICR_LSC);
    assert_eq!(r.rd(ICR), 0);
    assert!(!r.irq.level());
    assert_eq!(r.dev.config_read(1) & (1 << 19), 0);
}

#[test]
fn legacy_transmit() {
    let mut r = rig();
    r.tx_ring(8);
    r.wr(IMS, ICR_TXDW);
    let frame = frame_to([0xff; 6], 60);
    r.mem.write_slice(&frame[..20], GuestAddress(TX_BUF)).unwrap();
    r.mem.write_slice(&frame[20..], GuestAddress(TX_BUF + 0x1000)).unwrap();
    r.put_desc(TX_RING, 0, legacy(TX_BUF, 20, 0));
    r.put_desc(TX_RING, 1, legacy(TX_BUF + 0x1000, 40, 0x01 | 0x08)); // EOP | RS
    r.wr(TDT, 2);
    assert_eq!(r.net.take_sent(), vec![frame]);
    assert_eq!(r.rd(TDH), 2);
    assert_eq!(r.desc(TX_RING, 1)[12] & 1, 1, "DD written back");
    assert_eq!(r.desc(TX_RING, 0)[12] & 1, 0, "no RS, no write-back");
    assert!(r.irq.level());
    assert_eq!(r.rd(ICR), ICR_TXDW | ICR_TXQE);
    assert_eq!((r.rd(TPT), r.rd(GPTC), r.rd(BPTC)), (1, 1, 1));
    assert_eq!((r.rd(GOTCL), r.rd(GOTCH)), (64, 0));
    assert_eq!(r.rd(GPTC), 0, "statistics clear on read");
    assert_eq!(r.rd(PTC64), 1);
    // Transmit disabled: nothing moves.
    r.wr(TCTL, 0);
    r.put_desc(TX_RING, 2, legacy(TX_BUF, 60, 0x09));
    r.wr(TDT, 3);
    assert_eq!(r.rd(TDH), 2);
    r.wr(TCTL, TCTL_EN);
    assert_eq!(r.rd(TDH), 3);
    assert_eq!(r.net.take_sent().len(), 1);
}

#[test]
fn checksum_offload_produces_valid_ipv4_tcp() {
    let mut r = rig();
    r.tx_ring(8);
    let pkt = tcp_packet(101, false);
    assert!(!tcp_checksum_ok(&pkt));
    r.mem.write_slice(&pkt, GuestAddress(TX_BUF)).unwrap();
    r.put_desc(TX_RING, 0, context_desc(14, 24, 34, 50, 0x03, 0, 0, 0));
    r.put_desc(TX_RING, 1, data_desc(TX_BUF, 30, 0, 0x03));
    r.put_desc(TX_RING, 2, data_desc(TX_BUF + 30, pkt.len() as u32 - 30, 0x09, 0));
    r.wr(TDT, 3);
    let sent = r.net.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(ip_checksum_ok(&sent[0]));
    assert!(tcp_checksum_ok(&sent[0]));
    assert_eq!(&sent[0][52..], &pkt[52..]);
    // The legacy descriptor's own checksum field (CSO/CSS).
    let mut d = legacy(TX_BUF, pkt.len() as u16, 0x01 | 0x04);
    d[10] = 50;
    d[13] = 34;
    r.put_desc(TX_RING, 3, d);
    r.wr(TDT, 4);
    assert!(tcp_checksum_ok(&r.net.take_sent()[0]));
}

#[test]
fn tso_segments_with_valid_headers() {
    let mut r = rig();
    r.tx_ring(8);
    let (mss, payload) = (100u16, 250usize);
    let pkt = tcp_packet(payload, true);
    r.mem.write_slice(&pkt, GuestAddress(TX_BUF)).unwrap();
    r.put_desc(TX_RING, 0, context_desc(14, 24, 34, 50, 0x07, payload as u32, 54, mss));
    r.put_desc(TX_RING, 1, data_desc(TX_BUF, 54, 0x04, 0x03));
    r.put_desc(TX_RING, 2, data_desc(TX_BUF + 54, payload as u32, 0x04 | 0x09, 0));
    r.wr(TDT, 3);
    let sent = r.net.take_sent();
    assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), vec![154, 154, 104]);
    for (i, s) in sent.iter().enumerate() {
        assert!(ip_checksum_ok(s), "segment {i} IP checksum");
        assert!(tcp_checksum_ok(s), "segment {i} TCP checksum");
        assert_eq!(u16::from_be_bytes([s[16], s[17]]) as usize, s.len() - 14);
        assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + i as u16, "IP ID");
        assert_eq!(u32::from_be_bytes([s[38], s[39], s[40], s[41]]), 0x1000 + 100 * i as u32, "sequence");
        assert_eq!(s[47] & 0x08 != 0, i == 2, "PSH only on the last segment");
        assert_eq!(&s[54..], &pkt[54 + 100 * i..(54 + 100 * (i + 1)).min(pkt.len())]);
    }
    assert_eq!(r.rd(TSCTC), 1);
    assert_eq!(r.rd(TDH), 3);
}

#[test]
fn receive_into_ring() {
    let mut r = rig();
    r.rx_ring(8, RCTL_BAM | RCTL_SECRC);
    r.wr(IMS, ICR_RXT0);
    assert!(r.dev.wants_rx());
    let f = frame_to(MAC, 100);
    r.net.push_rx(&f);
    r.dev.rx_ready();
    let d = r.desc(RX_RING, 0);
    assert_eq!(u16::from_le_bytes([d[8], d[9]]), 100);
    assert_eq!(d[12] & 0x03, 0x03, "DD | EOP");
    assert_eq!(r.rx_buf(0, 100), f);
    assert_eq!(r.rd(RDH), 1);
    assert!(r.irq.level());
    assert_eq!(r.rd(ICR) & ICR_RXT0, ICR_RXT0);
    assert_eq!((r.rd(GPRC), r.rd(TPR), r.rd(GORCL)), (1, 1, 104));
    // Short frames are padded; without SECRC the CRC is appended.
    r.wr(RCTL, RCTL_EN);
    r.net.push_rx(&f[..42]);
    r.dev.rx_ready();
    let d = r.desc(RX_RING, 1);
    assert_eq!(u16::from_le_bytes([d[8], d[9]]), 64);
    let got = r.rx_buf(1, 64);
    assert_eq!(&got[..42], &f[..42]);
    assert_eq!(&got[42..60], &[0; 18]);
    assert_eq!(got[60..], super::rx::crc32(&got[..60]).to_le_bytes());
}

#[test]
fn filters_drop_other_addresses_unless_promiscuous() {
    let mut r = rig();
    r.rx_ring(16, RCTL_SECRC);
    let other = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    r.net.push_rx(&frame_to(other, 60));
    r.net.push_rx(&frame_to([0xff; 6], 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 0, "other unicast and broadcast without BAM dropped");
    assert_eq!(r.net.pending_rx(), 0, "but consumed");
    r.wr(RCTL, RCTL_EN | RCTL_SECRC | RCTL_BAM);
    r.net.push_rx(&frame_to([0xff; 6], 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 1);
    assert_eq!(r.rd(BPRC), 1);
    // A second exact-match entry.
    r.wr(RAL0 + 8, u32::from_le_bytes([other[0], other[1], other[2], other[3]]));
    r.wr(RAH0 + 8, u32::from(u16::from_le_bytes([other[4], other[5]])) | RAH_AV);
    r.net.push_rx(&frame_to(other, 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 2);
    // Multicast through the MTA hash (MO = 00: bits 47:36 of the address).
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    r.net.push_rx(&frame_to(mcast, 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 2);
    let hash = (u32::from(u16::from_le_bytes([0x00, 0xfb])) >> 4) & 0xfff;
    r.wr(MTA + 4 * (hash >> 5), 1 << (hash & 31));
    r.net.push_rx(&frame_to(mcast, 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 3);
    assert_eq!(r.rd(MPRC), 1);
    // Promiscuous modes.
    let stranger = [0x02, 0x99, 0x99, 0x99, 0x99, 0x99];
    r.wr(RCTL, RCTL_EN | RCTL_SECRC | RCTL_UPE);
    r.net.push_rx(&frame_to(stranger, 60));
    r.net.push_rx(&frame_to([0x01, 0, 0x5e, 1, 2, 3], 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 4, "UPE takes unicast only");
    r.wr(RCTL, RCTL_EN | RCTL_SECRC | RCTL_MPE);
    r.net.push_rx(&frame_to([0x01, 0, 0x5e, 1, 2, 3], 60));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 5);
}

#[test]
fn long_frames_span_small_buffers_and_need_lpe() {
    let mut r = rig();
    r.rx_ring(16, RCTL_SECRC | (3 << RCTL_BSIZE_SHIFT)); // 256-byte buffers
    let f = frame_to(MAC, 600);
    r.net.push_rx(&f);
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 3);
    let lens: Vec<u16> =
        (0..3).map(|i| r.desc(RX_RING, i)).map(|d| u16::from_le_bytes([d[8], d[9]])).collect();
    assert_eq!(lens, vec![256, 256, 88]);
    let eop: Vec<u8> = (0..3).map(|i| r.desc(RX_RING, i)[12] & 2).collect();
    assert_eq!(eop, vec![0, 0, 2]);
    let mut got = r.rx_buf(0, 256);
    got.extend(r.rx_buf(1, 256));
    got.extend(r.rx_buf(2, 88));
    assert_eq!(got, f);
    // 2000 bytes: too long without LPE, fine with it (BSEX 16 KiB buffers).
    r.net.push_rx(&frame_to(MAC, 2000));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 3);
    assert_eq!(r.rd(ROC), 1);
    r.wr(RCTL, RCTL_EN | RCTL_SECRC | RCTL_LPE | RCTL_BSEX | (1 << RCTL_BSIZE_SHIFT));
    r.net.push_rx(&frame_to(MAC, 2000));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 4);
    assert_eq!(u16::from_le_bytes(r.desc(RX_RING, 3)[8..10].try_into().unwrap()), 2000);
}

#[test]
fn full_ring_holds_a_frame_until_rdt_moves() {
    let mut r = rig();
    r.rx_ring(8, RCTL_SECRC); // seven descriptors given
    for i in 0..9u8 {
        let mut f = frame_to(MAC, 60);
        f[20] = i;
        r.net.push_rx(&f);
    }
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 7);
    assert!(!r.dev.wants_rx(), "ring full");
    assert_eq!(r.net.pending_rx(), 2, "left in the backend");
    // The driver hands back two descriptors.
    r.wr(RDT, 1);
    assert!(r.dev.wants_rx());
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 1);
    assert_eq!(r.rx_buf(0, 21)[20], 8, "frames keep their order");
    // A frame needing more descriptors than are free is held, not dropped.
    r.wr(RCTL, RCTL_EN | RCTL_SECRC | (3 << RCTL_BSIZE_SHIFT));
    r.wr(RDT, 2);
    r.net.push_rx(&frame_to(MAC, 600));
    r.dev.rx_ready();
    assert_eq!(r.rd(RDH), 1);
    assert!(!r.dev.wants_rx());
    assert_eq!(r.rd(RNBC), 1);
    r.wr(RDT, 4);
    assert_eq!(r.rd(RDH), 4, "delivered on the RDT write");
    assert_eq!(r.rx_buf(3, 600 - 512), frame_to(MAC, 600)[512..]);
}

#[test]
fn mac_loopback_and_vlan() {
    let mut r = rig();
    r.rx_ring(8, RCTL_SECRC | RCTL_LBM_MAC | RCTL_BAM);
    r.tx_ring(8);
    let ctrl = r.rd(CTRL);
    r.wr(CTRL, ctrl | CTRL_VME);
    let f = frame_to([0xff; 6], 60);
    r.mem.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    let mut d = legacy(TX_BUF, 60, 0x01 | 0x40); // EOP | VLE
    d[14..16].copy_from_slice(&0x0123u16.to_le_bytes());
    r.put_desc(TX_RING, 0, d);
    r.wr(TDT, 1);
    assert!(r.net.take_sent().is_empty(), "looped back, not sent");
    let rd = r.desc(RX_RING, 0);
    assert_eq!(rd[12] & 0x0b, 0x0b, "DD | EOP | VP");
    assert_eq!(u16::from_le_bytes([rd[14], rd[15]]), 0x0123, "tag stripped into special");
    assert_eq!(u16::from_le_bytes([rd[8], rd[9]]), 60);
    assert_eq!(r.rx_buf(0, 60), f);
    // With the VLAN filter on, an unlisted VLAN is dropped.
    let rctl = r.rd(RCTL);
    r.wr(RCTL, rctl | RCTL_VFE);
    r.put_desc(TX_RING, 1, d);
    r.wr(TDT, 2);
    assert_eq!(r.rd(RDH), 1);
    r.wr(VFTA + 4 * (0x123 >> 5), 1 << (0x123 & 31));
    r.put_desc(TX_RING, 2, d);
    r.wr(TDT, 3);
    assert_eq!(r.rd(RDH), 2);
}

#[test]
fn hostile_descriptors_do_not_panic() {
    let mut r = rig();
    r.tx_ring(8);
    // Buffers outside memory, huge lengths, a descriptor ring outside memory.
    r.put_desc(TX_RING, 0, legacy(u64::MAX - 4, 0xffff, 0x09));
    r.put_desc(TX_RING, 1, data_desc(MEM_SIZE as u64 - 8, 0xf_ffff, 0x09, 0x03));
    r.put_desc(TX_RING, 2, context_desc(255, 255, 255, 255, 0x07, 0xf_ffff, 255, 0));
    r.put_desc(TX_RING, 3, data_desc(TX_BUF, 0xf_ffff, 0x04 | 0x09, 0x03));
    r.put_desc(TX_RING, 4, context_desc(200, 254, 250, 255, 0x07, 64, 255, 1));
    r.put_desc(TX_RING, 5, data_desc(TX_BUF, 400, 0x04 | 0x09, 0x03));
    r.put_desc(TX_RING, 6, context_desc(0, 0, 0, 0, 0x03, 0, 0, 0));
    r.put_desc(TX_RING, 7, [0xff; 16]);
    r.wr(TDT, 7);
    assert_eq!(r.rd(TDH), 7);
    // TDT beyond the ring: ignored.
    r.wr(TDT, 100);
    assert_eq!(r.rd(TDH), 7);
    r.wr(TDT, 0);
    assert_eq!(r.rd(TDH), 0);
    r.wr(TDBAL, 0xffff_fff0);
    r.wr(TDBAH, 0xffff_ffff);
    r.wr(TDT, 5);
    assert_eq!(r.rd(TDH), 5, "unreadable descriptors skipped");
    r.wr(TDLEN, 0);
    r.wr(TDT, 1);
    // Receive: buffers and ring outside memory, bad head.
    r.rx_ring(8, RCTL_BAM | RCTL_UPE | RCTL_MPE);
    r.put_desc(RX_RING, 0, [0xff; 16]);
    r.net.push_rx(&frame_to(MAC, 100));
    r.net.push_rx(&[0xff; 3]);
    r.net.push_rx(&[]);
    r.dev.rx_ready();
    r.wr(RDBAL, 0xffff_fff0);
    r.wr(RDBAH, 0xffff_ffff);
    r.wr(RDT, 3);
    r.net.push_rx(&frame_to(MAC, 100));
    assert!(r.dev.wants_rx());
    r.dev.rx_ready();
    r.wr(RDH, 0xffff);
    assert!(!r.dev.wants_rx());
    r.wr(RCTL, RCTL_EN | RCTL_BSEX);
    r.dev.rx_ready();
    // Odd access sizes and offsets.
    r.dev.bar_write(MMIO_BAR, 0x1_fffe, &[1, 2, 3, 4]);
    r.dev.bar_write(MMIO_BAR, u64::MAX, &[1]);
    let mut b = [0u8; 3];
    r.dev.bar_read(MMIO_BAR, 1, &mut b);
    r.dev.bar_read(7, 0, &mut b);
}

#[test]
fn event_loop_delivers_frames() {
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
    let mut r = rig();
    r.rx_ring(8, RCTL_SECRC);
    let Rig { dev, net, mem, .. } = r;
    let dev = Arc::new(Mutex::new(dev));
    let mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> = EventManager::new().unwrap();
    em.add_subscriber(Arc::new(Mutex::new(NetRxEvents::new("e1000-test", dev.clone()).unwrap())));
    net.push_rx(&frame_to(MAC, 80));
    let rdh = |d: &Mutex<E1000>| {
        let mut b = [0u8; 4];
        crate::bus::lock(d).bar_read(MMIO_BAR, RDH.into(), &mut b);
        u32::from_le_bytes(b)
    };
    for _ in 0..50 {
        if rdh(&dev) == 1 {
            break;
        }
        em.run_with_timeout(10).unwrap();
    }
    assert_eq!(rdh(&dev), 1, "frame not delivered");
    let mut d = [0u8; 16];
    mem.read_slice(&mut d, GuestAddress(RX_RING)).unwrap();
    assert_eq!(u16::from_le_bytes([d[8], d[9]]), 80);
}

#[test]
fn pci_reset_restores_registers_and_configuration_space() {
    let mut r = rig();
    r.wr(IMS, ICR_RXT0);
    r.wr(ICS, ICR_RXT0);
    assert!(r.irq.level());
    r.dev.config_write(4, 0, &0xfebc_0000u32.to_le_bytes());
    PciDevice::reset(&mut r.dev);
    assert!(!r.irq.level(), "INTx low");
    assert_eq!(r.dev.config_read(1) & 0x7, 0, "decoding and bus mastering off");
    assert_eq!(r.dev.config_read(4) & 0xffff_fff0, 0, "BAR0 unassigned");
    r.dev.config_write(1, 0, &[0x07, 0x00]);
    assert_eq!((r.rd(IMS), r.rd(RAL0)), (0, 0xab00_5452));
}

#[test]
fn host_counters_see_frames_both_ways_and_are_not_cleared_by_the_guest() {
    let mut r = rig();
    let stats = r.dev.stats();
    r.tx_ring(8);
    let frame = frame_to([0xff; 6], 60);
    r.mem.write_slice(&frame, GuestAddress(TX_BUF)).unwrap();
    r.put_desc(TX_RING, 0, legacy(TX_BUF, 60, 0x09));
    r.wr(TDT, 1);
    assert_eq!(r.net.take_sent().len(), 1);
    r.rx_ring(8, RCTL_BAM | RCTL_SECRC);
    let f = frame_to(MAC, 100);
    r.net.push_rx(&f);
    r.dev.rx_ready();
    // Without SECRC the guest gets the CRC too; the counter does not.
    r.wr(RCTL, RCTL_EN);
    r.net.push_rx(&f[..42]);
    r.dev.rx_ready();
    assert_eq!(r.rd(GPTC), 1, "the guest's register, cleared on read");
    let c = stats.snapshot();
    assert_eq!((c.tx_packets, c.tx_bytes, c.tx_dropped), (1, 60, 0));
    assert_eq!((c.rx_packets, c.rx_bytes, c.rx_dropped), (2, 160, 0));
    // A frame over the size limit is dropped and counted.
    r.net.push_rx(&vec![0xffu8; 3000]);
    r.dev.rx_ready();
    assert_eq!(stats.snapshot().rx_dropped, 1);
}
