// SPDX-License-Identifier: Apache-2.0
//! The control queue (virtio 1.2, 5.1.6.5): each chain holds a class byte, a command byte
//! and command data the driver wrote, then an ack byte the device writes.
//!
//! Answered with `VIRTIO_NET_OK`:
//! - `MQ_VQ_PAIRS_SET` with 1 to `max_virtqueue_pairs` pairs (when the driver negotiated
//!   `VIRTIO_NET_F_MQ`): receive traffic then goes to the first pairs only.
//! - Receive-mode commands (promiscuous, all-multicast, ...) and `MAC_TABLE_SET`: the device
//!   filters nothing (it behaves as promiscuous), which these commands allow.
//!
//! Everything else gets `VIRTIO_NET_ERR`.

use std::io::{Read, Write};

use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
    VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_NOBCAST, VIRTIO_NET_ERR, VIRTIO_NET_OK,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::GuestMemoryMmap;

/// What control commands change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlState {
    /// Whether the driver negotiated `VIRTIO_NET_F_MQ`.
    pub mq: bool,
    /// The most queue pairs the driver may ask for.
    pub max_pairs: u16,
    /// The queue pairs in use (1 until the driver sets more).
    pub pairs: u16,
}

/// Executes the command in `chain`; returns the used length (1 when the ack was written, 0
/// for a chain with no room for it).
pub fn execute(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    state: &mut CtrlState,
) -> u32 {
    let head = chain.head_index();
    let (mut reader, mut writer) = match (Reader::new(mem, chain.clone()), Writer::new(mem, chain)) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => {
            log::debug!("virtio-net: control command {head}: {e}");
            return 0;
        }
    };
    // The ack is the last device-writable byte.
    let Some(before_ack) = writer.available_bytes().checked_sub(1) else {
        log::debug!("virtio-net: control command {head}: no room for the ack");
        return 0;
    };
    let mut ack_writer = match writer.split_at(before_ack) {
        Ok(w) => w,
        Err(e) => {
            log::debug!("virtio-net: control command {head}: {e}");
            return 0;
        }
    };
    let mut header = [0u8; 2];
    let ack = match reader.read_exact(&mut header) {
        Ok(()) => command(header[0], header[1], &mut reader, state),
        Err(_) => VIRTIO_NET_ERR as u8,
    };
    if ack != VIRTIO_NET_OK as u8 {
        log::debug!("virtio-net: control command {head}: class {} command {} refused", header[0], header[1]);
    }
    match ack_writer.write_all(&[ack]) {
        Ok(()) => 1,
        Err(e) => {
            log::debug!("virtio-net: control command {head}: ack: {e}");
            0
        }
    }
}

fn command(class: u8, cmd: u8, data: &mut Reader<'_>, state: &mut CtrlState) -> u8 {
    let ok = match (u32::from(class), u32::from(cmd)) {
        (VIRTIO_NET_CTRL_RX, c) if c <= VIRTIO_NET_CTRL_RX_NOBCAST => {
            let mut on = [0u8; 1];
            data.read_exact(&mut on).is_ok()
        }
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET) => true,
        (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) if state.mq => {
            let mut pairs = [0u8; 2];
            match data.read_exact(&mut pairs).map(|()| u16::from_le_bytes(pairs)) {
                Ok(n) if (1..=state.max_pairs).contains(&n) => {
                    state.pairs = n;
                    true
                }
                _ => false,
            }
        }
        _ => false,
    };
    if ok {
        VIRTIO_NET_OK as u8
    } else {
        VIRTIO_NET_ERR as u8
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::split::Descriptor as SplitDescriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    const CMD: u64 = 0x1_0000;
    const ACK: u64 = 0x2_0000;
    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn run(mem: &GuestMemoryMmap, cmd: &[u8], descs: &[(u64, u32, u16)], state: &mut CtrlState) -> (u32, u8) {
        mem.write_slice(cmd, GuestAddress(CMD)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(ACK)).unwrap();
        let q = MockSplitQueue::new(mem, 16);
        let descs: Vec<_> =
            descs.iter().map(|&(a, l, f)| RawDescriptor::from(SplitDescriptor::new(a, l, f, 0))).collect();
        let chain = q.build_desc_chain(&descs).unwrap();
        let used = execute(mem, chain, state);
        (used, mem.read_obj(GuestAddress(ACK)).unwrap())
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    const OK: u8 = VIRTIO_NET_OK as u8;
    const ERR: u8 = VIRTIO_NET_ERR as u8;

    #[test]
    fn pairs_set_within_range() {
        let m = mem();
        let mut st = CtrlState { mq: true, max_pairs: 4, pairs: 1 };
        let descs = [(CMD, 4, 0), (ACK, 1, W)];
        assert_eq!(run(&m, &[4, 0, 3, 0], &descs, &mut st), (1, OK));
        assert_eq!(st.pairs, 3);
        for bad in [[4u8, 0, 0, 0], [4, 0, 5, 0], [4, 0, 0, 1]] {
            assert_eq!(run(&m, &bad, &descs, &mut st), (1, ERR));
        }
        assert_eq!(st.pairs, 3);
        // Short data, or MQ not negotiated.
        assert_eq!(run(&m, &[4, 0, 2], &[(CMD, 3, 0), (ACK, 1, W)], &mut st), (1, ERR));
        let mut no_mq = CtrlState { mq: false, max_pairs: 4, pairs: 1 };
        assert_eq!(run(&m, &[4, 0, 2, 0], &descs, &mut no_mq), (1, ERR));
        assert_eq!(no_mq.pairs, 1);
    }

    #[test]
    fn rx_mode_and_mac_table_are_accepted_others_refused() {
        let m = mem();
        let mut st = CtrlState { mq: false, max_pairs: 1, pairs: 1 };
        for cmd in 0..=5u8 {
            assert_eq!(run(&m, &[0, cmd, 1], &[(CMD, 3, 0), (ACK, 1, W)], &mut st), (1, OK), "rx {cmd}");
        }
        assert_eq!(run(&m, &[0, 6, 1], &[(CMD, 3, 0), (ACK, 1, W)], &mut st), (1, ERR));
        assert_eq!(run(&m, &[0, 0], &[(CMD, 2, 0), (ACK, 1, W)], &mut st), (1, ERR), "no data");
        let table = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(run(&m, &table, &[(CMD, 10, 0), (ACK, 1, W)], &mut st), (1, OK));
        // MAC_ADDR_SET, VLAN, ANNOUNCE, GUEST_OFFLOADS, unknown classes.
        for cmd in [[1u8, 1], [2, 0], [3, 0], [5, 0], [200, 0]] {
            assert_eq!(run(&m, &cmd, &[(CMD, 8, 0), (ACK, 1, W)], &mut st), (1, ERR));
        }
    }

    #[test]
    fn malformed_chains_complete() {
        let m = mem();
        let mut st = CtrlState { mq: true, max_pairs: 2, pairs: 1 };
        // No ack byte.
        assert_eq!(run(&m, &[4, 0, 2, 0], &[(CMD, 4, 0)], &mut st).0, 0);
        // Empty command.
        assert_eq!(run(&m, &[], &[(ACK, 1, W)], &mut st), (1, ERR));
        // Outside memory.
        assert_eq!(run(&m, &[4, 0, 2, 0], &[(0x4000_0000, 4, 0), (ACK, 1, W)], &mut st).0, 0);
        // The ack is the last writable byte.
        let (used, _) = run(&m, &[4, 0, 2, 0], &[(CMD, 4, 0), (ACK - 8, 9, W)], &mut st);
        assert_eq!(used, 1);
        assert_eq!(m.read_obj::<u8>(GuestAddress(ACK)).unwrap(), OK);
        assert_eq!(st.pairs, 2);
    }
}
