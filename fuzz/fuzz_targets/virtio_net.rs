// SPDX-License-Identifier: Apache-2.0
//! Fuzzes virtio-net's queue handling on split virtqueues whose descriptor tables, rings and
//! buffers all come from the fuzzer: transmit chains gathered into a sink tap (loops,
//! indirect tables, zero lengths, addresses outside memory, oversize chains), frames from the
//! fuzzer received with and without mergeable buffers (hostile headers, rings that run out
//! or cannot hold a frame), and control-queue commands changing the pair count.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use devices::virtio::net::backend::VnetTap;
use devices::virtio::net::rx::RX_BUF_LEN;
use devices::virtio::net::worker::{NetQueues, WorkerContext};
use devices::virtio::{ActiveQueue, VirtioInterrupt, VirtioInterruptKind};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM: usize = 0x2_0000;
/// Queue `n` (receive 0, transmit 1, control 2) has its descriptor table, available and used
/// rings at `n * 0x200` + 0, 0x100 and 0x140, so short inputs reach all three.
const QUEUE_STRIDE: u64 = 0x200;

/// A tap fed with the fuzzer's frames that swallows what is written to it.
struct FuzzTap {
    frames: VecDeque<Vec<u8>>,
    sent: usize,
}

impl VnetTap for FuzzTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(frame) = self.frames.pop_front() else { return Ok(None) };
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(Some(n))
    }

    fn write_frame(&mut self, bufs: &[VolatileSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        let mut scratch = [0u8; 256];
        for b in bufs {
            // Touch the memory the way writev would.
            let len = b.len().min(scratch.len());
            b.copy_to(&mut scratch[..len]);
            n += b.len();
        }
        self.sent += 1;
        Ok(n)
    }

    fn as_raw_fd(&self) -> RawFd {
        -1
    }

    fn set_offload(&mut self, _: u32) -> io::Result<()> {
        Ok(())
    }

    fn supports_ufo(&self) -> bool {
        true
    }

    fn set_queue_enabled(&mut self, _: bool) -> io::Result<()> {
        Ok(())
    }
}

struct NullInterrupt;

impl VirtioInterrupt for NullInterrupt {
    fn signal(&self, _: VirtioInterruptKind) {}
    fn needs_reset(&self) {}
}

fn queue(index: u16, event_idx: bool) -> ActiveQueue {
    let base = u64::from(index) * QUEUE_STRIDE;
    let mut queue = Queue::new(16).unwrap();
    queue.set_desc_table_address(Some(base as u32), Some(0));
    queue.set_avail_ring_address(Some((base + 0x100) as u32), Some(0));
    queue.set_used_ring_address(Some((base + 0x140) as u32), Some(0));
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    ActiveQueue { index, queue, kick: EventFd::new(EFD_NONBLOCK).unwrap() }
}

fuzz_target!(|data: &[u8]| {
    // flags, frame count, frame lengths (2 bytes each), frames, then guest memory.
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((&count, mut rest)) = rest.split_first() else { return };
    let mut frames = VecDeque::new();
    for _ in 0..count % 5 {
        let Some((len, tail)) = rest.split_at_checked(2) else { return };
        let len = usize::from(u16::from_le_bytes([len[0], len[1]])).min(RX_BUF_LEN).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        frames.push_back(frame.to_vec());
        rest = tail;
    }
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&rest[..rest.len().min(MEM)], GuestAddress(0)).unwrap();
    let event_idx = flags & 1 != 0;
    let tap = FuzzTap { frames, sent: 0 };
    let mut q = NetQueues::new(WorkerContext {
        label: "fuzz".into(),
        mem,
        taps: vec![Box::new(tap)],
        pairs: vec![(queue(0, event_idx), queue(1, event_idx))],
        ctrl: Some(queue(2, event_idx)),
        mergeable: flags & 2 != 0,
        guest_csum: flags & 4 != 0,
        guest_gso: flags & 8 != 0,
        mq: flags & 16 != 0,
        interrupt: Arc::new(NullInterrupt),
        stats: Arc::default(),
    });
    q.process_ctrl();
    q.process_tx(0);
    for _ in 0..3 {
        q.process_rx(0);
    }
    q.process_tx(1);
    q.process_rx(1);
});
