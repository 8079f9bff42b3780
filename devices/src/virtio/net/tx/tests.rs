// SPDX-License-Identifier: Apache-2.0
use std::io;
use std::os::fd::RawFd;

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::QueueOwnedT;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::net::test_util::{frame, mem, sock_tap, Chains};

const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

/// Runs the first chain of `chains` through `transmit` on a socket-pair tap; returns the
/// result and the datagram the host side got, if any.
fn run(m: &GuestMemoryMmap, chains: &mut Chains<'_>) -> (Result<usize, TxError>, Option<Vec<u8>>) {
    let (mut tap, host, _) = sock_tap(false);
    let mut q = chains.queue();
    let chain = q.iter(m).unwrap().next().unwrap();
    let result = transmit(m, chain, &mut tap);
    host.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 2 * MAX_TX_LEN];
    let got = host.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
    (result, got)
}

#[test]
fn a_frame_lands_on_the_tap_unchanged() {
    let m = mem();
    let f = frame(1514 + 12, 7);
    m.write_slice(&f, GuestAddress(BUF)).unwrap();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, f.len() as u32, 0)]);
    let (r, got) = run(&m, &mut c);
    assert_eq!(r.unwrap(), f.len());
    assert_eq!(got.unwrap(), f);
}

#[test]
fn header_and_frame_in_separate_buffers_are_gathered() {
    let m = mem();
    let f = frame(60 + 12, 3);
    m.write_slice(&f[..12], GuestAddress(BUF)).unwrap();
    m.write_slice(&f[12..40], GuestAddress(BUF + 0x1000)).unwrap();
    m.write_slice(&f[40..], GuestAddress(BUF + 0x2000)).unwrap();
    let mut c = Chains::new(&m, 0, 16);
    // Zero-length and device-writable descriptors are skipped.
    c.add(&[
        (BUF, 12, 0),
        (BUF + 0x5000, 0, 0),
        (BUF + 0x1000, 28, 0),
        (BUF + 0x2000, (f.len() - 40) as u32, 0),
        (BUF + 0x6000, 100, W),
    ]);
    let (r, got) = run(&m, &mut c);
    assert_eq!(r.unwrap(), f.len());
    assert_eq!(got.unwrap(), f);
}

#[test]
fn a_64k_frame_is_sent_and_a_longer_one_dropped() {
    let m = mem();
    let f = frame(MAX_TX_LEN, 1);
    m.write_slice(&f, GuestAddress(BUF)).unwrap();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, MAX_TX_LEN as u32, 0)]);
    let (r, got) = run(&m, &mut c);
    assert_eq!(r.unwrap(), MAX_TX_LEN);
    assert_eq!(got.unwrap().len(), MAX_TX_LEN);

    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, MAX_TX_LEN as u32, 0), (BUF, 1, 0)]);
    let (r, got) = run(&m, &mut c);
    assert!(matches!(r, Err(TxError::TooLong)));
    assert_eq!(got, None);
    // A chain claiming 4 GiB is refused before any of it is mapped.
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, u32::MAX, 0), (BUF, u32::MAX, 0)]);
    assert!(matches!(run(&m, &mut c).0, Err(TxError::TooLong)));
}

#[test]
fn malformed_chains_are_dropped() {
    let m = mem();
    m.write_slice(&frame(100, 0), GuestAddress(BUF)).unwrap();
    // Too short: a header alone, nothing, or only writable buffers.
    for descs in [vec![(BUF, 12, 0)], vec![(BUF, 0, 0)], vec![(BUF, 100, W)]] {
        let mut c = Chains::new(&m, 0, 16);
        c.add(&descs);
        let (r, got) = run(&m, &mut c);
        assert!(matches!(r, Err(TxError::TooShort(_))), "{descs:?}: {r:?}");
        assert_eq!(got, None);
    }
    // Outside guest memory, or running past its end.
    for descs in [vec![(0x4000_0000, 100, 0)], vec![(BUF, 12, 0), (MEM_END - 50, 100, 0)]] {
        let mut c = Chains::new(&m, 0, 16);
        c.add(&descs);
        let (r, got) = run(&m, &mut c);
        assert!(matches!(r, Err(TxError::Memory)), "{descs:?}: {r:?}");
        assert_eq!(got, None);
    }
}

const MEM_END: u64 = crate::virtio::net::test_util::MEM_SIZE as u64;

#[test]
fn a_looping_chain_ends() {
    let m = mem();
    m.write_slice(&frame(100, 0), GuestAddress(BUF)).unwrap();
    let c = Chains::new(&m, 0, 16);
    let next = VRING_DESC_F_NEXT as u16;
    // 0 -> 1 -> 0 -> ...: cut at the queue size, 16 descriptors of 100 bytes.
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(BUF, 100, next, 1)),
        RawDescriptor::from(SplitDescriptor::new(BUF, 100, next, 0)),
    ];
    c.mq.add_desc_chains(&descs, 0).unwrap();
    let mut q = c.queue();
    let chain = q.iter(&m).unwrap().next().unwrap();
    let slices = gather(&m, chain).unwrap();
    assert_eq!(slices.iter().map(|s| s.len()).sum::<usize>(), 1600);
}

#[test]
fn indirect_tables_are_followed_and_bounded() {
    let m = mem();
    let f = frame(80, 9);
    m.write_slice(&f, GuestAddress(BUF)).unwrap();
    let table = 0x30_0000u64;
    let next = VRING_DESC_F_NEXT as u16;
    for (i, (addr, len, flags)) in [(BUF, 30, next), (BUF + 30, 50, 0)].into_iter().enumerate() {
        let raw = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, i as u16 + 1));
        m.write_obj(raw, GuestAddress(table + 16 * i as u64)).unwrap();
    }
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(table, 32, VRING_DESC_F_INDIRECT as u16)]);
    let (r, got) = run(&m, &mut c);
    assert_eq!(r.unwrap(), 80);
    assert_eq!(got.unwrap(), f);

    // 1100 one-byte segments: more than writev takes.
    for i in 0..1100u64 {
        let flags = if i == 1099 { 0 } else { next };
        let raw = RawDescriptor::from(SplitDescriptor::new(BUF + i, 1, flags, i as u16 + 1));
        m.write_obj(raw, GuestAddress(table + 16 * i)).unwrap();
    }
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(table, 1100 * 16, VRING_DESC_F_INDIRECT as u16)]);
    assert!(matches!(run(&m, &mut c).0, Err(TxError::TooManySegments)));
}

/// A tap that refuses every frame.
struct Refusing;

impl VnetTap for Refusing {
    fn read_frame(&mut self, _: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    fn write_frame(&mut self, _: &[VolatileSlice<'_>]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
    fn set_offload(&mut self, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn supports_ufo(&self) -> bool {
        false
    }
    fn set_queue_enabled(&mut self, _: bool) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn tap_errors_are_reported() {
    let m = mem();
    m.write_slice(&frame(100, 0), GuestAddress(BUF)).unwrap();
    let mut c = Chains::new(&m, 0, 16);
    c.add(&[(BUF, 100, 0)]);
    let mut q = c.queue();
    let chain = q.iter(&m).unwrap().next().unwrap();
    assert!(matches!(transmit(&m, chain, &mut Refusing), Err(TxError::Tap(_))));
}
