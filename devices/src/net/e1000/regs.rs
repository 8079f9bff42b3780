// SPDX-License-Identifier: Apache-2.0
//! Register offsets and bits of the 8254x MAC (SDM chapter 13), as byte offsets into BAR 0.

/// Device control.
pub const CTRL: u32 = 0x0000;
/// Device status (read-only).
pub const STATUS: u32 = 0x0008;
/// EEPROM/flash control and data (Microwire bit-banging).
pub const EECD: u32 = 0x0010;
/// EEPROM read.
pub const EERD: u32 = 0x0014;
/// Extended device control.
pub const CTRL_EXT: u32 = 0x0018;
/// MDI control (PHY access).
pub const MDIC: u32 = 0x0020;
/// VLAN ether type.
pub const VET: u32 = 0x0038;
/// Interrupt cause read (clear on read).
pub const ICR: u32 = 0x00c0;
/// Interrupt throttling.
pub const ITR: u32 = 0x00c4;
/// Interrupt cause set.
pub const ICS: u32 = 0x00c8;
/// Interrupt mask set/read.
pub const IMS: u32 = 0x00d0;
/// Interrupt mask clear.
pub const IMC: u32 = 0x00d8;
/// Receive control.
pub const RCTL: u32 = 0x0100;
/// Transmit control.
pub const TCTL: u32 = 0x0400;
/// Transmit inter-packet gap.
pub const TIPG: u32 = 0x0410;
/// LED control.
pub const LEDCTL: u32 = 0x0e00;
/// Packet buffer allocation.
pub const PBA: u32 = 0x1000;
/// RX descriptor base low.
pub const RDBAL: u32 = 0x2800;
/// RX descriptor base high.
pub const RDBAH: u32 = 0x2804;
/// RX descriptor ring length in bytes.
pub const RDLEN: u32 = 0x2808;
/// RX descriptor head.
pub const RDH: u32 = 0x2810;
/// RX descriptor tail.
pub const RDT: u32 = 0x2818;
/// RX delay timer.
pub const RDTR: u32 = 0x2820;
/// RX absolute delay timer.
pub const RADV: u32 = 0x282c;
/// TX descriptor base low.
pub const TDBAL: u32 = 0x3800;
/// TX descriptor base high.
pub const TDBAH: u32 = 0x3804;
/// TX descriptor ring length in bytes.
pub const TDLEN: u32 = 0x3808;
/// TX descriptor head.
pub const TDH: u32 = 0x3810;
/// TX descriptor tail.
pub const TDT: u32 = 0x3818;
/// TX interrupt delay.
pub const TIDV: u32 = 0x3820;
/// TX absolute interrupt delay.
pub const TADV: u32 = 0x382c;
/// First statistics register.
pub const STATS_START: u32 = 0x4000;
/// One past the last statistics register.
pub const STATS_END: u32 = 0x4100;
/// RX checksum control.
pub const RXCSUM: u32 = 0x5000;
/// Multicast table array (128 dwords).
pub const MTA: u32 = 0x5200;
/// Receive address low, entry 0 (16 entries of RAL/RAH).
pub const RAL0: u32 = 0x5400;
/// Receive address high, entry 0.
pub const RAH0: u32 = 0x5404;
/// VLAN filter table array (128 dwords).
pub const VFTA: u32 = 0x5600;
/// Management control.
pub const MANC: u32 = 0x5820;
/// Size of the register space (BAR 0).
pub const MMIO_SIZE: u64 = 0x2_0000;
/// Size of the I/O space (BAR 1).
pub const IO_SIZE: u64 = 0x40;

// Statistics (SDM 13.7), each 32 bits unless paired low/high.
/// Missed packets.
pub const MPC: u32 = 0x4010;
/// Packets received of 64 bytes (then 65-127, 128-255, 256-511, 512-1023, 1024-1522).
pub const PRC64: u32 = 0x405c;
/// Good packets received.
pub const GPRC: u32 = 0x4074;
/// Broadcast packets received.
pub const BPRC: u32 = 0x4078;
/// Multicast packets received.
pub const MPRC: u32 = 0x407c;
/// Good packets transmitted.
pub const GPTC: u32 = 0x4080;
/// Good octets received, low (high at +4).
pub const GORCL: u32 = 0x4088;
/// Good octets received, high.
pub const GORCH: u32 = 0x408c;
/// Good octets transmitted, low.
pub const GOTCL: u32 = 0x4090;
/// Good octets transmitted, high.
pub const GOTCH: u32 = 0x4094;
/// Receive no buffers.
pub const RNBC: u32 = 0x40a0;
/// Receive oversize.
pub const ROC: u32 = 0x40ac;
/// Total octets received, low.
pub const TORL: u32 = 0x40c0;
/// Total octets received, high.
pub const TORH: u32 = 0x40c4;
/// Total octets transmitted, low.
pub const TOTL: u32 = 0x40c8;
/// Total octets transmitted, high.
pub const TOTH: u32 = 0x40cc;
/// Total packets received.
pub const TPR: u32 = 0x40d0;
/// Total packets transmitted.
pub const TPT: u32 = 0x40d4;
/// Packets transmitted of 64 bytes (then up to 1522 as for PRC64).
pub const PTC64: u32 = 0x40d8;
/// Multicast packets transmitted.
pub const MPTC: u32 = 0x40f0;
/// Broadcast packets transmitted.
pub const BPTC: u32 = 0x40f4;
/// TCP segmentation contexts transmitted.
pub const TSCTC: u32 = 0x40f8;

// CTRL bits.
/// CTRL: full duplex.
pub const CTRL_FD: u32 = 1 << 0;
/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: speed 1000.
pub const CTRL_SPEED_1000: u32 = 2 << 8;
/// CTRL: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL: VLAN mode enable.
pub const CTRL_VME: u32 = 1 << 30;
/// CTRL: PHY reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;

// STATUS bits.
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed 1000.
pub const STATUS_SPEED_1000: u32 = 2 << 6;
/// STATUS: auto-detected speed 1000.
pub const STATUS_ASDV_1000: u32 = 2 << 8;

// Interrupt causes.
/// TX descriptor written back.
pub const ICR_TXDW: u32 = 1 << 0;
/// TX queue empty.
pub const ICR_TXQE: u32 = 1 << 1;
/// Link status change.
pub const ICR_LSC: u32 = 1 << 2;
/// RX descriptor minimum threshold reached.
pub const ICR_RXDMT0: u32 = 1 << 4;
/// RX overrun.
pub const ICR_RXO: u32 = 1 << 6;
/// RX timer (a frame was received).
pub const ICR_RXT0: u32 = 1 << 7;
/// MDI access complete.
pub const ICR_MDAC: u32 = 1 << 9;
/// Cause bits the 82540EM implements.
pub const ICR_VALID: u32 = 0x0001_f6df;

// RCTL bits.
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: store bad packets.
pub const RCTL_SBP: u32 = 1 << 2;
/// RCTL: unicast promiscuous.
pub const RCTL_UPE: u32 = 1 << 3;
/// RCTL: multicast promiscuous.
pub const RCTL_MPE: u32 = 1 << 4;
/// RCTL: long packet enable.
pub const RCTL_LPE: u32 = 1 << 5;
/// RCTL: loopback mode (bits 7:6, 01 = MAC loopback).
pub const RCTL_LBM_MASK: u32 = 3 << 6;
/// RCTL: MAC loopback.
pub const RCTL_LBM_MAC: u32 = 1 << 6;
/// RCTL: RX descriptor minimum threshold size (bits 9:8).
pub const RCTL_RDMTS_SHIFT: u32 = 8;
/// RCTL: multicast offset (bits 13:12).
pub const RCTL_MO_SHIFT: u32 = 12;
/// RCTL: broadcast accept mode.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL: buffer size (bits 17:16).
pub const RCTL_BSIZE_SHIFT: u32 = 16;
/// RCTL: VLAN filter enable.
pub const RCTL_VFE: u32 = 1 << 18;
/// RCTL: buffer size extension.
pub const RCTL_BSEX: u32 = 1 << 25;
/// RCTL: strip Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;

// TCTL bits.
/// TCTL: transmit enable.
pub const TCTL_EN: u32 = 1 << 1;

// MDIC fields.
/// MDIC: data (bits 15:0).
pub const MDIC_DATA_MASK: u32 = 0xffff;
/// MDIC: PHY register (bits 20:16).
pub const MDIC_REG_SHIFT: u32 = 16;
/// MDIC: PHY address (bits 25:21).
pub const MDIC_PHY_SHIFT: u32 = 21;
/// MDIC: write opcode.
pub const MDIC_OP_WRITE: u32 = 1 << 26;
/// MDIC: read opcode.
pub const MDIC_OP_READ: u32 = 2 << 26;
/// MDIC: ready.
pub const MDIC_READY: u32 = 1 << 28;
/// MDIC: interrupt on completion.
pub const MDIC_INT_EN: u32 = 1 << 29;
/// MDIC: error.
pub const MDIC_ERROR: u32 = 1 << 30;

// RAH bits.
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;

/// Receive buffer size from RCTL.BSIZE/BSEX (SDM 13.4.22); `None` for the reserved
/// combination (BSEX with size 00).
pub fn rx_buffer_size(rctl: u32) -> Option<usize> {
    let bsize = (rctl >> RCTL_BSIZE_SHIFT) & 3;
    match (rctl & RCTL_BSEX != 0, bsize) {
        (false, 0) => Some(2048),
        (false, 1) => Some(1024),
        (false, 2) => Some(512),
        (false, _) => Some(256),
        (true, 0) => None,
        (true, 1) => Some(16384),
        (true, 2) => Some(8192),
        (true, _) => Some(4096),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sizes() {
        assert_eq!(rx_buffer_size(0), Some(2048));
        assert_eq!(rx_buffer_size(1 << RCTL_BSIZE_SHIFT), Some(1024));
        assert_eq!(rx_buffer_size(2 << RCTL_BSIZE_SHIFT), Some(512));
        assert_eq!(rx_buffer_size(3 << RCTL_BSIZE_SHIFT), Some(256));
        assert_eq!(rx_buffer_size(RCTL_BSEX), None);
        assert_eq!(rx_buffer_size(RCTL_BSEX | (1 << RCTL_BSIZE_SHIFT)), Some(16384));
        assert_eq!(rx_buffer_size(RCTL_BSEX | (2 << RCTL_BSIZE_SHIFT)), Some(8192));
        assert_eq!(rx_buffer_size(RCTL_BSEX | (3 << RCTL_BSIZE_SHIFT)), Some(4096));
    }
}
