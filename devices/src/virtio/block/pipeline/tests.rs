// SPDX-License-Identifier: Apache-2.0
//! The io_uring and thread-pool engines on real temporary files, without a guest: chains
//! built in a mock queue, served by a pipeline driven from the test thread or by the worker.
//! Every pipeline test runs once per engine (`both!`).
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use block::{DiskImage, MemDisk, RawFile};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_GET_ID};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::virtio::block::pool::Target;
use crate::virtio::block::{BlockOptions, EngineKind, IoEngine, VirtioBlk};
use crate::virtio::{
    ActivateContext, ActiveQueue, VirtioDevice, VirtioInterrupt, VirtioInterruptKind, VIRTIO_F_VERSION_1,
};

const S: usize = 512;

/// Counts queue signals and reset requests.
#[derive(Default)]
struct Count {
    signals: AtomicUsize,
    resets: AtomicUsize,
}

impl VirtioInterrupt for Count {
    fn signal(&self, _: VirtioInterruptKind) {
        self.signals.fetch_add(1, Ordering::SeqCst);
    }
    fn needs_reset(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / S) as u8 ^ (i as u8).wrapping_mul(7)).collect()
}

/// A raw image of `sectors` sectors of [`pattern`] in a temporary file.
fn image(sectors: usize) -> (TempFile, Box<dyn DiskImage>) {
    let tmp = TempFile::new().unwrap();
    tmp.as_file().write_all(&pattern(sectors * S)).unwrap();
    let raw = RawFile::open(tmp.as_path(), false).unwrap();
    (tmp, Box::new(raw))
}

fn file_bytes(tmp: &TempFile) -> Vec<u8> {
    std::fs::read(tmp.as_path()).unwrap()
}

fn header(mem: &GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(at)).unwrap();
}

/// Makes `chains` available, their descriptors from index `first` on; each descriptor is
/// (address, length, device-writable).
fn add_chains(mq: &MockSplitQueue<'_, GuestMemoryMmap>, first: u16, chains: &[Vec<(u64, u32, bool)>]) {
    let mut descs = Vec::new();
    let mut i = first;
    for chain in chains {
        for (k, &(addr, len, w)) in chain.iter().enumerate() {
            let last = k + 1 == chain.len();
            let mut flags = if w { VRING_DESC_F_WRITE as u16 } else { 0 };
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = if last { 0 } else { i + 1 };
            descs.push(RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next)));
            i += 1;
        }
    }
    mq.add_desc_chains(&descs, first).unwrap();
}

/// A read of `sectors` sectors at `sector` into `data`, status at `status`; header at `hdr`.
fn read_chain(
    mem: &GuestMemoryMmap,
    hdr: u64,
    sector: u64,
    data: u64,
    sectors: u32,
    status: u64,
) -> Vec<(u64, u32, bool)> {
    header(mem, hdr, VIRTIO_BLK_T_IN, sector);
    vec![(hdr, 16, false), (data, sectors * S as u32, true), (status, 1, true)]
}

fn write_chain(
    mem: &GuestMemoryMmap,
    hdr: u64,
    sector: u64,
    data: u64,
    len: u32,
    status: u64,
) -> Vec<(u64, u32, bool)> {
    header(mem, hdr, VIRTIO_BLK_T_OUT, sector);
    vec![(hdr, 16, false), (data, len, false), (status, 1, true)]
}

/// The used ring's entries `0..n` as (head, length).
fn used(mq: &MockSplitQueue<'_, GuestMemoryMmap>, n: u16) -> Vec<(u32, u32)> {
    (0..n)
        .map(|i| {
            let e = mq.used().ring().ref_at(usize::from(i)).unwrap().load();
            (e.id(), e.len())
        })
        .collect()
}

fn status(mem: &GuestMemoryMmap, at: u64) -> u8 {
    mem.read_obj(GuestAddress(at)).unwrap()
}

/// Which engine a pipeline test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uring,
    Pool,
}

/// Runs the pipeline test `$name(kind)` once per engine, as `$name::uring` and `$name::pool`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                super::$name(super::Kind::Uring);
            }
            #[test]
            fn pool() {
                super::$name(super::Kind::Pool);
            }
        }
    )*};
}

both!(
    reads_writes_and_a_flush_go_through_the_engine,
    a_flush_completes_after_every_write_submitted_before_it,
    writethrough_writes_complete_through_the_engine,
    bad_requests_fail_alone_through_the_synchronous_checks,
    a_full_engine_takes_the_rest_after_completions,
    a_short_transfer_is_resubmitted_and_a_vanished_range_fails,
);

/// The engine of `kind` for `disk` with `entries` entries (at most 4 pool threads); `None`
/// (the test is skipped) for io_uring where the kernel offers none.
fn backend(
    kind: Kind,
    mem: &GuestMemoryMmap,
    disk: &dyn DiskImage,
    entries: u32,
    writethrough: bool,
) -> Option<Backend> {
    let file = disk.raw_file().unwrap().try_clone().unwrap();
    if kind == Kind::Pool {
        let threads = (entries as usize).min(4);
        let pool = Pool::new("vdt", Target::Raw(file), threads, entries as usize, writethrough, mem);
        return Some(Backend::Pool(pool.unwrap()));
    }
    match Ring::new(file, entries, writethrough) {
        Ok(r) => Some(Backend::Uring(r)),
        Err(e) => {
            eprintln!("skipped: io_uring unavailable here: {e}");
            None
        }
    }
}

/// A worker context over queue 0 of `mq` and the pipeline of an engine of `entries` entries;
/// `None` (the test is skipped) where the kernel offers no io_uring.
fn rig(
    kind: Kind,
    mem: &GuestMemoryMmap,
    mq: &MockSplitQueue<'_, GuestMemoryMmap>,
    disk: Box<dyn DiskImage>,
    entries: u32,
    writethrough: bool,
) -> Option<(WorkerContext, Pipeline, Arc<Count>)> {
    let queue: Queue = mq.create_queue().unwrap();
    let media = Media { size: disk.size(), read_only: disk.read_only() };
    let ring = backend(kind, mem, disk.as_ref(), entries, writethrough)?;
    let queues = vec![ActiveQueue { index: 0, queue, kick: EventFd::new(libc::EFD_NONBLOCK).unwrap() }];
    let count = Arc::new(Count::default());
    let ctx = WorkerContext {
        label: "vdt".into(),
        mem: mem.clone(),
        positions: Arc::new(Mutex::new(positions_of(&queues))),
        queues,
        disk: Arc::new(Mutex::new(disk)),
        id: b"serial-uring".to_vec(),
        interrupt: count.clone(),
        writethrough,
        engine: IoEngine::Auto,
        stats: Arc::default(),
    };
    Some((ctx, Pipeline::new(ring, media, 1), count))
}

/// Serves the queue until `n` chains are used (or fails after 10 s).
fn serve_until(ctx: &mut WorkerContext, p: &mut Pipeline, mq: &MockSplitQueue<'_, GuestMemoryMmap>, n: u16) {
    p.kick(ctx, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while mq.used().idx().load() < n {
        assert!(Instant::now() < deadline, "only {} of {n} requests completed", mq.used().idx().load());
        std::thread::sleep(Duration::from_millis(1));
        p.completions(ctx);
    }
}

fn reads_writes_and_a_flush_go_through_the_engine(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 64);
    let (tmp, disk) = image(64);
    let Some((mut ctx, mut p, count)) = rig(kind, &m, &mq, disk, 64, false) else { return };
    // A read of sectors 3..5 into two buffers, a 4 KiB write at sector 16, a flush.
    header(&m, 0x10_0000, VIRTIO_BLK_T_IN, 3);
    let read =
        vec![(0x10_0000, 16, false), (0x20_0000, 512, true), (0x21_0000, 512, true), (0x30_0000, 1, true)];
    m.write_slice(&[0x5a; 4096], GuestAddress(0x40_0000)).unwrap();
    let write = write_chain(&m, 0x11_0000, 16, 0x40_0000, 4096, 0x30_0010);
    header(&m, 0x12_0000, VIRTIO_BLK_T_FLUSH, 0);
    let flush = vec![(0x12_0000, 16, false), (0x30_0020, 1, true)];
    add_chains(&mq, 0, &[read, write, flush]);
    serve_until(&mut ctx, &mut p, &mq, 3);
    assert_eq!(p.backend.in_flight(), 0);
    let img = pattern(64 * S);
    let mut got = vec![0u8; 512];
    m.read_slice(&mut got, GuestAddress(0x21_0000)).unwrap();
    assert_eq!(got, img[4 * S..5 * S]);
    assert_eq!([status(&m, 0x30_0000), status(&m, 0x30_0010), status(&m, 0x30_0020)], [0, 0, 0]);
    let mut lens = used(&mq, 3);
    lens.sort();
    assert_eq!(lens, [(0, 1025), (4, 1), (7, 1)], "read: data and status; write, flush: status");
    let after = file_bytes(&tmp);
    assert_eq!(&after[16 * S..16 * S + 4096], &[0x5a; 4096][..]);
    assert_eq!(&after[..16 * S], &img[..16 * S]);
    assert!(count.signals.load(Ordering::SeqCst) >= 1);
    assert_eq!(count.resets.load(Ordering::SeqCst), 0);
    assert_eq!(lock(&ctx.positions)[0].next_used, 3);
}

fn a_flush_completes_after_every_write_submitted_before_it(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 64);
    let (tmp, disk) = image(4096);
    let Some((mut ctx, mut p, _)) = rig(kind, &m, &mq, disk, 64, false) else { return };
    let mut chains = Vec::new();
    for k in 0..4u64 {
        m.write_slice(&vec![k as u8 + 1; 256 << 10], GuestAddress(0x40_0000 + (k << 20))).unwrap();
        chains.push(write_chain(
            &m,
            0x10_0000 + k * 0x100,
            8 + k * 512,
            0x40_0000 + (k << 20),
            256 << 10,
            0x30_0000 + k,
        ));
    }
    header(&m, 0x11_0000, VIRTIO_BLK_T_FLUSH, 0);
    chains.push(vec![(0x11_0000, 16, false), (0x30_0010, 1, true)]);
    add_chains(&mq, 0, &chains);
    serve_until(&mut ctx, &mut p, &mq, 5);
    let order = used(&mq, 5);
    assert_eq!(order[4], (12, 1), "the flush (head 12) is the last completion: {order:?}");
    let after = file_bytes(&tmp);
    for k in 0..4usize {
        let at = (8 + k * 512) * S;
        assert!(after[at..at + (256 << 10)].iter().all(|&b| b == k as u8 + 1));
        assert_eq!(status(&m, 0x30_0000 + k as u64), 0);
    }
    assert_eq!(status(&m, 0x30_0010), 0);
}

fn writethrough_writes_complete_through_the_engine(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    let (tmp, disk) = image(16);
    let Some((mut ctx, mut p, _)) = rig(kind, &m, &mq, disk, 16, true) else { return };
    m.write_slice(&[0xc3; 1024], GuestAddress(0x40_0000)).unwrap();
    add_chains(&mq, 0, &[write_chain(&m, 0x10_0000, 2, 0x40_0000, 1024, 0x30_0000)]);
    serve_until(&mut ctx, &mut p, &mq, 1);
    assert_eq!(status(&m, 0x30_0000), 0);
    assert_eq!(&file_bytes(&tmp)[2 * S..4 * S], &[0xc3; 1024][..]);
}

fn bad_requests_fail_alone_through_the_synchronous_checks(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 64);
    let (tmp, disk) = image(8);
    let Some((mut ctx, mut p, count)) = rig(kind, &m, &mq, disk, 16, false) else { return };
    header(&m, 0x13_0000, 99, 0);
    header(&m, 0x14_0000, VIRTIO_BLK_T_GET_ID, 0);
    header(&m, 0x15_0000, VIRTIO_BLK_T_IN, 0);
    m.write_slice(&[0xee; 512], GuestAddress(0x41_0000)).unwrap();
    let chains = [
        // Beyond the end of the 8-sector medium.
        read_chain(&m, 0x10_0000, 7, 0x20_0000, 2, 0x30_0000),
        // Sector count overflowing u64 bytes.
        read_chain(&m, 0x11_0000, u64::MAX / 4, 0x20_0000, 1, 0x30_0001),
        // No device-writable status byte: nothing done, length 0.
        vec![(0x15_0000, 16, false), (0x20_0000, 512, false)],
        // Unknown type.
        vec![(0x13_0000, 16, false), (0x30_0002, 1, true)],
        // GET_ID (the synchronous path).
        vec![(0x14_0000, 16, false), (0x22_0000, 20, true), (0x30_0003, 1, true)],
        // A write over the image's first bytes (the synchronous, checked path).
        write_chain(&m, 0x16_0000, 0, 0x41_0000, 512, 0x30_0004),
        // A good read after all that.
        read_chain(&m, 0x17_0000, 1, 0x23_0000, 1, 0x30_0005),
        // A buffer outside guest memory.
        read_chain(&m, 0x18_0000, 1, 0x2000_0000, 1, 0x30_0006),
    ];
    m.write_slice(&[0xaa; 7], GuestAddress(0x30_0000)).unwrap();
    add_chains(&mq, 0, &chains);
    serve_until(&mut ctx, &mut p, &mq, chains.len() as u16);
    let ioerr = VIRTIO_BLK_S_IOERR as u8;
    let got: Vec<u8> = (0..7).map(|k| status(&m, 0x30_0000 + k)).collect();
    // The chain outside guest memory is malformed: nothing written, not even its status.
    assert_eq!(got, [ioerr, ioerr, VIRTIO_BLK_S_UNSUPP as u8, 0, 0, 0, 0xaa]);
    let mut id = [0u8; 12];
    m.read_slice(&mut id, GuestAddress(0x22_0000)).unwrap();
    assert_eq!(&id, b"serial-uring");
    let mut lens = used(&mq, chains.len() as u16);
    lens.sort();
    assert!(lens.contains(&(6, 0)), "the chain without a status byte: {lens:?}");
    assert!(lens.contains(&(19, 0)), "the chain outside guest memory: {lens:?}");
    let mut got = vec![0u8; 512];
    m.read_slice(&mut got, GuestAddress(0x23_0000)).unwrap();
    assert_eq!(got, pattern(8 * S)[S..2 * S]);
    assert_eq!(&file_bytes(&tmp)[..S], &[0xee; 512][..]);
    assert_eq!(count.resets.load(Ordering::SeqCst), 0, "bad requests do not break the queue");
}

fn a_full_engine_takes_the_rest_after_completions(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 64);
    let (_tmp, disk) = image(64);
    let Some((mut ctx, mut p, _)) = rig(kind, &m, &mq, disk, 2, false) else { return };
    let chains: Vec<_> = (0..9u64)
        .map(|k| read_chain(&m, 0x10_0000 + k * 0x100, k * 3, 0x20_0000 + k * 0x1000, 2, 0x30_0000 + k))
        .collect();
    add_chains(&mq, 0, &chains);
    p.kick(&mut ctx, 0);
    assert!(p.backend.in_flight() <= 2, "never more in flight than the engine has entries");
    serve_until(&mut ctx, &mut p, &mq, 9);
    let img = pattern(64 * S);
    for k in 0..9usize {
        let mut got = vec![0u8; 2 * S];
        m.read_slice(&mut got, GuestAddress(0x20_0000 + k as u64 * 0x1000)).unwrap();
        assert_eq!(got, img[k * 3 * S..(k * 3 + 2) * S], "read {k}");
        assert_eq!(status(&m, 0x30_0000 + k as u64), 0);
    }
}

fn a_short_transfer_is_resubmitted_and_a_vanished_range_fails(kind: Kind) {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    let (tmp, disk) = image(8);
    let Some((mut ctx, mut p, _)) = rig(kind, &m, &mq, disk, 16, false) else { return };
    // The file shrinks under the disk (its size was taken at open): sectors 2..6 now end
    // 100 bytes into sector 4.
    tmp.as_file().set_len(4 * S as u64 + 100).unwrap();
    add_chains(
        &mq,
        0,
        &[
            read_chain(&m, 0x10_0000, 2, 0x20_0000, 4, 0x30_0000),
            read_chain(&m, 0x11_0000, 0, 0x21_0000, 2, 0x30_0001),
        ],
    );
    serve_until(&mut ctx, &mut p, &mq, 2);
    assert_eq!(status(&m, 0x30_0000), VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(status(&m, 0x30_0001), 0);
}

/// Activates `dev` on queue 0 of `mq` with `features`; returns the kick eventfd and signals.
fn activate(
    dev: &mut VirtioBlk,
    mem: &GuestMemoryMmap,
    mq: &MockSplitQueue<'_, GuestMemoryMmap>,
    features: u64,
) -> (EventFd, mpsc::Receiver<VirtioInterruptKind>) {
    struct Signals(Mutex<mpsc::Sender<VirtioInterruptKind>>);
    impl VirtioInterrupt for Signals {
        fn signal(&self, kind: VirtioInterruptKind) {
            let _ = self.0.lock().unwrap().send(kind);
        }
        fn needs_reset(&self) {
            let _ = self.0.lock().unwrap().send(VirtioInterruptKind::Config);
        }
    }
    let queue: Queue = mq.create_queue().unwrap();
    let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let (tx, rx) = mpsc::channel();
    dev.activate(ActivateContext {
        mem: mem.clone(),
        acked_features: features,
        queues: vec![ActiveQueue { index: 0, queue, kick: kick.try_clone().unwrap() }],
        interrupt: Arc::new(Signals(Mutex::new(tx))),
    })
    .unwrap();
    (kick, rx)
}

/// One read through a worker of `dev`; returns the engine it used.
fn read_through_worker(dev: &mut VirtioBlk) -> Option<EngineKind> {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    let (kick, rx) = activate(dev, &m, &mq, VIRTIO_F_VERSION_1 | (1 << VIRTIO_BLK_F_FLUSH));
    add_chains(&mq, 0, &[read_chain(&m, 0x10_0000, 5, 0x20_0000, 1, 0x30_0000)]);
    kick.write(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Queue(0)));
    assert_eq!(mq.used().idx().load(), 1);
    assert_eq!(status(&m, 0x30_0000), 0);
    let mut got = vec![0u8; S];
    m.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(got, pattern(8 * S)[5 * S..6 * S]);
    let engine = dev.active_engine();
    dev.reset();
    engine
}

fn opts() -> BlockOptions {
    BlockOptions { serial: "s".into(), queues: 1 }
}

#[test]
fn the_worker_picks_io_uring_for_raw_images() {
    let (_tmp, disk) = image(8);
    let mut dev = VirtioBlk::new("vdu", disk, &opts()).unwrap();
    let engine = read_through_worker(&mut dev);
    if io_uring::IoUring::new(2).is_ok() {
        assert_eq!(engine, Some(EngineKind::Uring));
    }
    assert_eq!(dev.active_engine(), None, "reset stopped the worker");
}

#[test]
fn the_other_engines_serve_when_asked_for_and_for_other_formats() {
    let (_tmp, disk) = image(8);
    let mut dev = VirtioBlk::new("vds", disk, &opts()).unwrap();
    dev.set_io_engine(IoEngine::Sync);
    assert_eq!(read_through_worker(&mut dev), Some(EngineKind::Sync));
    dev.set_io_engine(IoEngine::ThreadPool);
    assert_eq!(read_through_worker(&mut dev), Some(EngineKind::ThreadPool));
    // An image without a raw file (qcow2 is the same case): the pool, unless the synchronous
    // path is asked for.
    let mem_disk = MemDisk::new(pattern(8 * S), false);
    let mut dev = VirtioBlk::new("vdm", Box::new(mem_disk), &opts()).unwrap();
    assert_eq!(read_through_worker(&mut dev), Some(EngineKind::ThreadPool));
    dev.set_io_engine(IoEngine::Sync);
    assert_eq!(read_through_worker(&mut dev), Some(EngineKind::Sync));
}

mod pool_engine;
