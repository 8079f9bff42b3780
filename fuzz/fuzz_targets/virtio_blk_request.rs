// SPDX-License-Identifier: Apache-2.0
//! Fuzzes virtio-blk request parsing and execution on a split virtqueue whose descriptor
//! table, rings and buffers all come from the fuzzer: chains with loops, indirect tables,
//! zero lengths, addresses outside guest memory and hostile headers and segment lists.
#![no_main]

use block::MemDisk;
use devices::virtio::block::request;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x1_0000;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&data[..data.len().min(MEM)], GuestAddress(0)).unwrap();
    let mut queue = Queue::new(16).unwrap();
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_event_idx(flags & 1 != 0);
    queue.set_ready(true);
    let mut disk = MemDisk::new(vec![0x5a; 16 * 1024], flags & 2 != 0);
    let mut rounds = 0;
    while rounds < 4 {
        rounds += 1;
        let chains: Vec<_> = match queue.iter(&mem) {
            Ok(iter) => iter.take(32).collect(),
            Err(_) => return,
        };
        if chains.is_empty() {
            break;
        }
        for chain in chains {
            let head = chain.head_index();
            let done = request::execute(&mem, chain, &mut disk, b"fuzz", flags & 4 != 0, &devices::stats::BlockStats::default());
            if queue.add_used(&mem, head, done.used_len).is_err() {
                return;
            }
        }
        let _ = queue.needs_notification(&mem);
    }
});
