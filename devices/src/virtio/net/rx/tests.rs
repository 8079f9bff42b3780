// SPDX-License-Identifier: Apache-2.0
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::net::test_util::{frame, mem, Chains, MEM_SIZE};

const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn read(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// The frame as the driver should see it: `num_buffers` set.
fn with_buffers(f: &[u8], n: u16) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10..12].copy_from_slice(&n.to_le_bytes());
    f
}

#[test]
fn a_frame_fills_one_buffer() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    let head = c.add(&[(BUF, 1526, W)]);
    let mut q = c.queue();
    let f = frame(1000, 5);
    let d = deliver(&m, &mut q, &mut f.clone(), false).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Delivered(1), used: 1 });
    assert_eq!(c.used(), vec![(u32::from(head), 1000)]);
    assert_eq!(read(&m, BUF, 1000), with_buffers(&f, 1));
}

#[test]
fn a_chain_of_several_buffers_holds_one_frame() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, 12, W), (BUF + 0x1000, 500, W), (BUF + 0x2000, 1500, W)]);
    let mut q = c.queue();
    let f = frame(1012, 1);
    assert_eq!(deliver(&m, &mut q, &mut f.clone(), false).unwrap().outcome, RxOutcome::Delivered(1));
    let want = with_buffers(&f, 1);
    assert_eq!(read(&m, BUF, 12), want[..12]);
    assert_eq!(read(&m, BUF + 0x1000, 500), want[12..512]);
    assert_eq!(read(&m, BUF + 0x2000, 500), want[512..]);
    assert_eq!(c.used(), vec![(0, 1012)]);
}

#[test]
fn mergeable_buffers_spread_a_frame_and_count_them() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    for i in 0..4u64 {
        c.add(&[(BUF + i * 0x1000, 1500, W)]);
    }
    let mut q = c.queue();
    let f = frame(4000, 9);
    let d = deliver(&m, &mut q, &mut f.clone(), true).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Delivered(3), used: 3 });
    assert_eq!(c.used(), vec![(0, 1500), (1, 1500), (2, 1000)]);
    let want = with_buffers(&f, 3);
    let got = [read(&m, BUF, 1500), read(&m, BUF + 0x1000, 1500), read(&m, BUF + 0x2000, 1000)].concat();
    assert_eq!(got, want);
    // A small frame takes one buffer and says so.
    let f = frame(100, 2);
    assert_eq!(deliver(&m, &mut q, &mut f.clone(), true).unwrap().outcome, RxOutcome::Delivered(1));
    assert_eq!(read(&m, BUF + 0x3000, 100), with_buffers(&f, 1));
}

#[test]
fn no_buffers_consumes_nothing() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    let mut q = c.queue();
    let f = frame(3000, 0);
    for mergeable in [false, true] {
        let d = deliver(&m, &mut q, &mut f.clone(), mergeable).unwrap();
        assert_eq!(d, Delivery { outcome: RxOutcome::NoBuffers, used: 0 });
    }
    // One buffer is not enough for a mergeable 3000-byte frame: it stays available.
    c.add(&[(BUF, 1500, W)]);
    let d = deliver(&m, &mut q, &mut f.clone(), true).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::NoBuffers, used: 0 });
    assert_eq!(q.next_avail(), 0);
    assert!(c.used().is_empty());
    // A second one is.
    c.add(&[(BUF + 0x1000, 1500, W)]);
    let d = deliver(&m, &mut q, &mut f.clone(), true).unwrap();
    assert_eq!(d.outcome, RxOutcome::Delivered(2));
    assert_eq!(c.used(), vec![(0, 1500), (1, 1500)]);
}

#[test]
fn a_frame_the_ring_cannot_hold_is_dropped() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 4);
    for i in 0..4u64 {
        c.add(&[(BUF + i * 0x1000, 100, W)]);
    }
    let mut q = c.queue();
    let d = deliver(&m, &mut q, &mut frame(1000, 0), true).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Dropped, used: 0 });
    // The buffers stay for the next frame.
    let d = deliver(&m, &mut q, &mut frame(150, 0), true).unwrap();
    assert_eq!(d.outcome, RxOutcome::Delivered(2));
}

#[test]
fn without_mergeable_buffers_a_small_chain_drops_the_frame() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, 1000, W)]);
    c.add(&[(BUF + 0x1000, 1500, W)]);
    let mut q = c.queue();
    let d = deliver(&m, &mut q, &mut frame(1200, 0), false).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Dropped, used: 1 });
    assert_eq!(c.used(), vec![(0, 0)]);
    // The next frame takes the next chain.
    assert_eq!(deliver(&m, &mut q, &mut frame(1200, 0), false).unwrap().outcome, RxOutcome::Delivered(1));
    assert_eq!(c.used(), vec![(0, 0), (1, 1200)]);
}

#[test]
fn malformed_chains_are_returned_empty() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    let read_only = c.add(&[(BUF, 1500, 0)]);
    let outside = c.add(&[(0x4000_0000, 1500, W)]);
    let past_end = c.add(&[(MEM_SIZE as u64 - 100, 1500, W)]);
    let empty = c.add(&[(BUF, 0, W)]);
    let tiny = c.add(&[(BUF, 11, W)]);
    let good = c.add(&[(BUF + 0x1000, 1500, W)]);
    let mut q = c.queue();
    let f = frame(700, 4);
    let d = deliver(&m, &mut q, &mut f.clone(), false).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Delivered(1), used: 6 });
    let zero = |h: u16| (u32::from(h), 0);
    assert_eq!(
        c.used(),
        vec![zero(read_only), zero(outside), zero(past_end), zero(empty), zero(tiny), (u32::from(good), 700)]
    );
    assert_eq!(read(&m, BUF + 0x1000, 700), with_buffers(&f, 1));
}

#[test]
fn malformed_chains_among_mergeable_ones_go_first() {
    let m = mem();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, 1000, W)]);
    c.add(&[(BUF + 0x1000, 1000, 0)]);
    let mut q = c.queue();
    // Not enough yet: the read-only chain after the first good one is not consumed.
    let f = frame(1500, 6);
    assert_eq!(deliver(&m, &mut q, &mut f.clone(), true).unwrap().outcome, RxOutcome::NoBuffers);
    assert!(c.used().is_empty());
    c.add(&[(BUF + 0x2000, 1000, W)]);
    let d = deliver(&m, &mut q, &mut f.clone(), true).unwrap();
    assert_eq!(d, Delivery { outcome: RxOutcome::Delivered(2), used: 3 });
    assert_eq!(c.used(), vec![(1, 0), (0, 1000), (2, 500)]);
    let got = [read(&m, BUF, 1000), read(&m, BUF + 0x2000, 500)].concat();
    assert_eq!(got, with_buffers(&f, 2));
}

#[test]
fn a_looping_chain_ends() {
    let m = mem();
    let c = Chains::new(&m, 0, 16);
    let next = VRING_DESC_F_NEXT as u16;
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(BUF, 100, next | W, 1)),
        RawDescriptor::from(SplitDescriptor::new(BUF + 0x1000, 100, next | W, 0)),
    ];
    c.mq.add_desc_chains(&descs, 0).unwrap();
    let mut q = c.queue();
    // The chain is cut at 16 descriptors: 1600 bytes of room.
    let d = deliver(&m, &mut q, &mut frame(1600, 0), false).unwrap();
    assert_eq!(d.outcome, RxOutcome::Delivered(1));
    assert_eq!(c.used(), vec![(0, 1600)]);
}

#[test]
fn a_corrupt_avail_index_is_an_error() {
    let m = mem();
    let c = Chains::new(&m, 0, 16);
    c.mq.avail().idx().store(100);
    let mut q = c.queue();
    assert!(deliver(&m, &mut q, &mut frame(100, 0), true).is_err());
}

#[test]
fn headers_follow_what_the_driver_negotiated() {
    let mut f = frame(100, 0);
    f[0] = (VIRTIO_NET_HDR_F_DATA_VALID | 0x80) as u8;
    assert!(sanitize_header(&mut f, true, false));
    assert_eq!(f[0], VIRTIO_NET_HDR_F_DATA_VALID as u8);
    assert!(sanitize_header(&mut f, false, false));
    assert_eq!(f[0], 0);
    // A partial checksum the driver cannot complete, or a GSO frame it cannot take.
    f[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    assert!(!sanitize_header(&mut f, false, true));
    f[0] = 0;
    f[1] = 1;
    assert!(!sanitize_header(&mut f, true, false));
    assert!(sanitize_header(&mut f, true, true));
    assert!(!sanitize_header(&mut [0u8; 11], true, true));
}
