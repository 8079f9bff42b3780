// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the step from a guest's virtio-blk chain to an engine request (io_uring and thread
//! pool) and the thread pool's code carrying it out on a raw file or through an image's lock,
//! on a split virtqueue whose descriptor table, rings and buffers all come from the fuzzer.
//!
//! Every request the engines take must name only guest memory, whole sectors within the
//! medium and a status byte in guest memory, must succeed on the file, and must be one that
//! the synchronous checks (`request::execute`) accept too.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use block::{DiskImage, MemDisk};
use devices::virtio::block::{fuzzing, request};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

const MEM: usize = 0x1_0000;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const SIZE: u64 = 16 * 1024;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;

/// The raw image, one per process.
fn raw() -> &'static TempFile {
    static RAW: OnceLock<TempFile> = OnceLock::new();
    RAW.get_or_init(|| {
        let tmp = TempFile::new().expect("temporary file");
        tmp.as_file().set_len(SIZE).expect("image size");
        tmp
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    let read_only = flags & 2 != 0;
    let writethrough = flags & 4 != 0;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&data[..data.len().min(MEM)], GuestAddress(0)).unwrap();
    let base = mem.get_host_address(GuestAddress(0)).unwrap() as usize;
    let mut queue = Queue::new(16).unwrap();
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_event_idx(flags & 1 != 0);
    queue.set_ready(true);
    let image: Arc<Mutex<Box<dyn DiskImage>>> =
        Arc::new(Mutex::new(Box::new(MemDisk::new(vec![0x5a; SIZE as usize], read_only))));
    let through_image = (flags & 8 != 0).then_some(&image);
    let mut checks = MemDisk::new(vec![0x5a; SIZE as usize], read_only);
    let file = raw().as_file();
    for _ in 0..4 {
        let chains: Vec<_> = match queue.iter(&mem) {
            Ok(iter) => iter.take(32).collect(),
            Err(_) => return,
        };
        if chains.is_empty() {
            break;
        }
        for chain in chains {
            let head = chain.head_index();
            // A read may overwrite the chain's own header (overlapping buffers): the
            // synchronous check below starts again from the memory as it was.
            let mut before = vec![0u8; MEM];
            mem.read_slice(&mut before, GuestAddress(0)).unwrap();
            let used_len = match fuzzing::prepare_and_execute(
                &mem,
                &chain,
                file,
                through_image,
                SIZE,
                read_only,
                writethrough,
            ) {
                Some(p) => {
                    assert!(p.offset % 512 == 0 && p.len % 512 == 0, "{p:?}");
                    assert!(p.offset + p.len as u64 <= SIZE, "{p:?}");
                    assert!(p.status < MEM as u64, "{p:?}");
                    assert_eq!(p.pieces.iter().map(|&(_, n)| n).sum::<usize>(), p.len, "{p:?}");
                    for &(at, n) in &p.pieces {
                        assert!(at >= base && at + n <= base + MEM, "piece outside guest memory: {p:?}");
                    }
                    match p.kind {
                        T_IN => assert!(p.len > 0, "{p:?}"),
                        T_OUT => assert!(!read_only && p.len > 0 && p.offset >= 4, "{p:?}"),
                        _ => assert!(!read_only && p.len == 0, "{p:?}"),
                    }
                    assert_eq!(p.result, Ok(p.len), "{p:?}");
                    // The synchronous checks accept what the engines took.
                    mem.write_slice(&before, GuestAddress(0)).unwrap();
                    let sync = request::execute(&mem, chain, &mut checks, b"fuzz", writethrough, &devices::stats::BlockStats::default());
                    assert_eq!(sync.status, Some(0), "{p:?}");
                    sync.used_len
                }
                None => request::execute(&mem, chain, &mut checks, b"fuzz", writethrough, &devices::stats::BlockStats::default()).used_len,
            };
            if queue.add_used(&mem, head, used_len).is_err() {
                return;
            }
        }
        let _ = queue.needs_notification(&mem);
    }
});
