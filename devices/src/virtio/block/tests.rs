// SPDX-License-Identifier: Apache-2.0
use std::sync::mpsc;
use std::time::Duration;

use block::MemDisk;
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::bus::lock;
use crate::virtio::{ActiveQueue, VirtioInterrupt, VirtioInterruptKind};

/// Sends every signal down a channel.
struct Signals(Mutex<mpsc::Sender<VirtioInterruptKind>>);

impl VirtioInterrupt for Signals {
    fn signal(&self, kind: VirtioInterruptKind) {
        let _ = self.0.lock().unwrap().send(kind);
    }
    fn needs_reset(&self) {
        let _ = self.0.lock().unwrap().send(VirtioInterruptKind::Config);
    }
}

fn opts(queues: u16) -> BlockOptions {
    BlockOptions { serial: "0123456789abcdefghijKLMN".into(), queues }
}

#[test]
fn features_and_configuration() {
    let d = VirtioBlk::new("vda", Box::new(MemDisk::new(vec![0; 8 << 20], false)), &opts(1)).unwrap();
    let f = d.features();
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    assert_ne!(f & bit(VIRTIO_BLK_F_FLUSH), 0);
    assert_ne!(f & bit(VIRTIO_BLK_F_WRITE_ZEROES), 0);
    assert_eq!(f & bit(VIRTIO_BLK_F_RO), 0);
    assert_eq!(f & bit(VIRTIO_BLK_F_MQ), 0);
    let mut cap = [0u8; 8];
    d.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), (8 << 20) / 512);
    let mut b = [0u8; 4];
    d.read_config(20, &mut b);
    assert_eq!(u32::from_le_bytes(b), 512, "blk_size");
    d.read_config(0x1000, &mut b);
    assert_eq!(b, [0; 4]);
    assert_eq!(d.id.len(), 20, "the serial is cut to 20 bytes");

    let ro = VirtioBlk::new("vdb", Box::new(MemDisk::new(vec![0; 4096], true)), &opts(4)).unwrap();
    assert_ne!(ro.features() & bit(VIRTIO_BLK_F_RO), 0);
    assert_eq!(ro.features() & bit(VIRTIO_BLK_F_DISCARD), 0);
    assert_ne!(ro.features() & bit(VIRTIO_BLK_F_MQ), 0);
    assert_eq!(ro.queue_max_sizes().len(), 4);
    let mut n = [0u8; 2];
    ro.read_config(34, &mut n);
    assert_eq!(u16::from_le_bytes(n), 4);
    assert!(VirtioBlk::new("x", Box::new(MemDisk::new(vec![], false)), &opts(0)).is_err());
    assert!(VirtioBlk::new("x", Box::new(MemDisk::new(vec![], false)), &opts(MAX_QUEUES + 1)).is_err());
}

/// Activates `dev` with one queue (queue 0 of `mq`); returns its kick eventfd and the
/// channel the device's signals arrive on.
fn activate_one(
    dev: &mut VirtioBlk,
    mem: &GuestMemoryMmap,
    mq: &MockSplitQueue<'_, GuestMemoryMmap>,
) -> (EventFd, mpsc::Receiver<VirtioInterruptKind>) {
    let queue: Queue = mq.create_queue().unwrap();
    let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let (tx, rx) = mpsc::channel();
    dev.activate(ActivateContext {
        mem: mem.clone(),
        acked_features: VIRTIO_F_VERSION_1,
        queues: vec![ActiveQueue { index: 0, queue, kick: kick.try_clone().unwrap() }],
        interrupt: Arc::new(Signals(Mutex::new(tx))),
    })
    .unwrap();
    (kick, rx)
}

#[test]
fn the_worker_serves_kicks_and_signals_completions() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let mut dev = VirtioBlk::new("vda", Box::new(MemDisk::new(data.clone(), false)), &opts(1)).unwrap();
    let mq = MockSplitQueue::new(&mem, 16);
    let (kick, rx) = activate_one(&mut dev, &mem, &mq);
    // A read of sector 3 into 0x20_0000.
    let mut h = [0u8; 16];
    h[8] = 3;
    mem.write_slice(&h, GuestAddress(0x10_0000)).unwrap();
    let w = VRING_DESC_F_WRITE as u16;
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(0x10_0000, 16, 0, 0)),
        RawDescriptor::from(SplitDescriptor::new(0x20_0000, 512, w, 0)),
        RawDescriptor::from(SplitDescriptor::new(0x30_0000, 1, w, 0)),
    ];
    mq.build_desc_chain(&descs).unwrap();
    kick.write(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Queue(0)));
    assert_eq!(mq.used().idx().load(), 1);
    let mut got = vec![0u8; 512];
    mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(got, data[1536..2048]);
    // The worker's place in the queue, for snapshots.
    let pos = dev.queue_positions().unwrap();
    assert_eq!(pos, [crate::virtio::QueuePosition { index: 0, next_avail: 1, next_used: 1 }]);
    // Reset stops the worker; the image stays for the next activation.
    dev.reset();
    assert!(dev.worker.is_none());
    assert_eq!(dev.queue_positions(), None);
    assert_eq!(lock(&dev.disk).size(), 4096);
}

#[test]
fn a_corrupt_avail_index_asks_for_a_reset() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let mut dev = VirtioBlk::new("vda", Box::new(MemDisk::new(vec![0; 4096], false)), &opts(1)).unwrap();
    let mq = MockSplitQueue::new(&mem, 16);
    // More buffers available than the queue has room for.
    mq.avail().idx().store(100);
    let (kick, rx) = activate_one(&mut dev, &mem, &mq);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Config));
    // Further kicks are ignored until the reset.
    kick.write(1).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    dev.reset();
}
