// SPDX-License-Identifier: Apache-2.0
use block::MemDisk;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::stats::BlockStats;

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    mem.write_obj(0xaau8, GuestAddress(STATUS)).unwrap();
}

/// Runs one request made of `descs` (chained in order) on `disk`.
fn run(mem: &GuestMemoryMmap, descs: &[RawDescriptor], disk: &mut MemDisk, writethrough: bool) -> Completion {
    let q = MockSplitQueue::new(mem, 16);
    let chain = q.build_desc_chain(descs).unwrap();
    execute(mem, chain, disk, b"serial-123", writethrough, &BlockStats::default())
}

/// Runs one request made of `descs` on `disk`, counting it in `stats`.
fn run_counted(
    mem: &GuestMemoryMmap,
    descs: &[RawDescriptor],
    disk: &mut MemDisk,
    stats: &BlockStats,
) -> Completion {
    let q = MockSplitQueue::new(mem, 16);
    let chain = q.build_desc_chain(descs).unwrap();
    execute(mem, chain, disk, b"serial-123", false, stats)
}

fn status(mem: &GuestMemoryMmap) -> u8 {
    mem.read_obj(GuestAddress(STATUS)).unwrap()
}

fn disk(sectors: usize) -> MemDisk {
    MemDisk::new((0..sectors * 512).map(|i| (i / 512) as u8 ^ (i as u8)).collect(), false)
}

#[test]
fn read_fills_the_buffers_and_counts_the_status_byte() {
    let m = mem();
    let mut d = disk(8);
    header(&m, VIRTIO_BLK_T_IN, 2);
    let descs = [desc(HDR, 16, 0), desc(DATA, 512, W), desc(DATA + 0x1000, 512, W), desc(STATUS, 1, W)];
    let c = run(&m, &descs, &mut d, false);
    assert_eq!(c, Completion { status: Some(VIRTIO_BLK_S_OK as u8), used_len: 1025 });
    let mut got = vec![0u8; 512];
    m.read_slice(&mut got, GuestAddress(DATA + 0x1000)).unwrap();
    assert_eq!(got, d.data()[3 * 512..4 * 512]);
    assert_eq!(status(&m), 0);
}

#[test]
fn write_reaches_the_image_and_writethrough_flushes() {
    let m = mem();
    let mut d = disk(8);
    header(&m, VIRTIO_BLK_T_OUT, 1);
    m.write_slice(&[0x5a; 1024], GuestAddress(DATA)).unwrap();
    let descs = [desc(HDR, 16, 0), desc(DATA, 1024, 0), desc(STATUS, 1, W)];
    assert_eq!(run(&m, &descs, &mut d, false), Completion { status: Some(0), used_len: 1 });
    assert_eq!(&d.data()[512..1536], &[0x5a; 1024][..]);
    assert_eq!(d.flushes, 0);
    run(&m, &descs, &mut d, true);
    assert_eq!(d.flushes, 1);
}

#[test]
fn flush_and_get_id() {
    let m = mem();
    let mut d = disk(1);
    header(&m, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&m, &[desc(HDR, 16, 0), desc(STATUS, 1, W)], &mut d, false).status, Some(0));
    assert_eq!(d.flushes, 1);
    header(&m, VIRTIO_BLK_T_GET_ID, 0);
    let c = run(&m, &[desc(HDR, 16, 0), desc(DATA, 20, W), desc(STATUS, 1, W)], &mut d, false);
    assert_eq!(c, Completion { status: Some(0), used_len: 21 });
    let mut id = [0u8; 20];
    m.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..10], b"serial-123");
    assert_eq!(&id[10..], &[0; 10]);
}

#[test]
fn requests_move_the_counters_of_their_kind() {
    let m = mem();
    let mut d = disk(8);
    let stats = BlockStats::default();
    header(&m, VIRTIO_BLK_T_IN, 2);
    let read = [desc(HDR, 16, 0), desc(DATA, 512, W), desc(DATA + 0x1000, 1024, W), desc(STATUS, 1, W)];
    run_counted(&m, &read, &mut d, &stats);
    header(&m, VIRTIO_BLK_T_OUT, 1);
    run_counted(&m, &[desc(HDR, 16, 0), desc(DATA, 2048, 0), desc(STATUS, 1, W)], &mut d, &stats);
    header(&m, VIRTIO_BLK_T_FLUSH, 0);
    run_counted(&m, &[desc(HDR, 16, 0), desc(STATUS, 1, W)], &mut d, &stats);
    header(&m, VIRTIO_BLK_T_GET_ID, 0);
    run_counted(&m, &[desc(HDR, 16, 0), desc(DATA, 20, W), desc(STATUS, 1, W)], &mut d, &stats);
    let c = stats.snapshot();
    assert_eq!((c.rd_reqs, c.rd_bytes), (1, 1536));
    assert_eq!((c.wr_reqs, c.wr_bytes), (1, 2048));
    assert_eq!((c.fl_reqs, c.errors), (1, 0));
    // A read past the end, a write to a read-only disk, an unknown type and a chain without
    // room for the status byte are errors, and move no byte counter.
    header(&m, VIRTIO_BLK_T_IN, 8);
    let c = run_counted(&m, &[desc(HDR, 16, 0), desc(DATA, 512, W), desc(STATUS, 1, W)], &mut d, &stats);
    assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
    let mut ro = MemDisk::new(vec![0; 4096], true);
    header(&m, VIRTIO_BLK_T_OUT, 0);
    run_counted(&m, &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)], &mut ro, &stats);
    header(&m, 99, 0);
    run_counted(&m, &[desc(HDR, 16, 0), desc(STATUS, 1, W)], &mut d, &stats);
    run_counted(&m, &[desc(HDR, 16, 0)], &mut d, &stats);
    let c = stats.snapshot();
    assert_eq!(c.errors, 4);
    assert_eq!((c.rd_reqs, c.rd_bytes, c.wr_reqs, c.wr_bytes), (1, 1536, 1, 2048));
}

#[test]
fn bad_ranges_fail_the_request_only() {
    let m = mem();
    let mut d = disk(4);
    let ioerr = Some(VIRTIO_BLK_S_IOERR as u8);
    for (sector, len) in [(4u64, 512u32), (3, 1024), (u64::MAX, 512), (u64::MAX / 512, 512), (0, 100)] {
        header(&m, VIRTIO_BLK_T_IN, sector);
        let c = run(&m, &[desc(HDR, 16, 0), desc(DATA, len, W), desc(STATUS, 1, W)], &mut d, false);
        assert_eq!(c.status, ioerr, "sector {sector} len {len}");
        header(&m, VIRTIO_BLK_T_OUT, sector);
        let c = run(&m, &[desc(HDR, 16, 0), desc(DATA, len, 0), desc(STATUS, 1, W)], &mut d, false);
        assert_eq!(c.status, ioerr, "sector {sector} len {len}");
    }
    assert_eq!(d.data(), disk(4).data(), "nothing was written");
}

#[test]
fn read_only_disks_refuse_writes() {
    let m = mem();
    let mut d = MemDisk::new(vec![0; 4096], true);
    for kind in [VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_DISCARD] {
        header(&m, kind, 0);
        let c = run(&m, &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)], &mut d, false);
        assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
    }
}

#[test]
fn unknown_types_are_unsupported() {
    let m = mem();
    header(&m, 99, 0);
    let c = run(&m, &[desc(HDR, 16, 0), desc(STATUS, 1, W)], &mut disk(1), false);
    assert_eq!(c.status, Some(VIRTIO_BLK_S_UNSUPP as u8));
}

#[test]
fn malformed_chains_complete_without_touching_the_disk() {
    let m = mem();
    let mut d = disk(2);
    // No writable descriptor: no status byte.
    header(&m, VIRTIO_BLK_T_IN, 0);
    assert_eq!(run(&m, &[desc(HDR, 16, 0)], &mut d, false), Completion { status: None, used_len: 0 });
    // Short header.
    let c = run(&m, &[desc(HDR, 8, 0), desc(STATUS, 1, W)], &mut d, false);
    assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
    // A buffer outside guest memory.
    let c = run(&m, &[desc(HDR, 16, 0), desc(0x4000_0000, 512, W), desc(STATUS, 1, W)], &mut d, false);
    assert_eq!(c, Completion { status: None, used_len: 0 });
    // A buffer running past the end of guest memory.
    let c = run(&m, &[desc(HDR, 16, 0), desc(0x3f_ff00, 512, W), desc(STATUS, 1, W)], &mut d, false);
    assert_eq!(c.status, None);
    // Zero-length descriptors are fine.
    header(&m, VIRTIO_BLK_T_IN, 0);
    let c = run(&m, &[desc(HDR, 16, 0), desc(DATA, 0, W), desc(STATUS, 1, W)], &mut d, false);
    assert_eq!(c, Completion { status: Some(0), used_len: 1 });
    assert_eq!(d.data(), disk(2).data());
}

#[test]
fn a_looping_chain_ends() {
    let m = mem();
    let mut d = disk(2);
    header(&m, VIRTIO_BLK_T_IN, 0);
    let q = MockSplitQueue::new(&m, 16);
    let next = VRING_DESC_F_NEXT as u16;
    // 0 -> 1 -> 2 -> 1 -> ...
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(HDR, 16, next, 1)),
        RawDescriptor::from(SplitDescriptor::new(DATA, 512, next | W, 2)),
        RawDescriptor::from(SplitDescriptor::new(STATUS, 1, next | W, 1)),
    ];
    q.add_desc_chains(&descs, 0).unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let chain = queue.iter(&m).unwrap().next().unwrap();
    let c = execute(&m, chain, &mut d, b"", false, &BlockStats::default());
    // The chain is cut at the queue size; whatever the device made of it, it returned.
    assert!(c.used_len <= 16 * 512 + 1);
}

#[test]
fn indirect_tables_are_followed() {
    let m = mem();
    let mut d = disk(2);
    header(&m, VIRTIO_BLK_T_IN, 1);
    let table = 0x38_0000u64;
    let next = VRING_DESC_F_NEXT as u16;
    for (i, (addr, len, flags)) in
        [(HDR, 16, next), (DATA, 512, next | W), (STATUS, 1, W)].into_iter().enumerate()
    {
        let raw = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, i as u16 + 1));
        m.write_obj(raw, GuestAddress(table + 16 * i as u64)).unwrap();
    }
    let c = run(&m, &[desc(table, 48, VRING_DESC_F_INDIRECT as u16)], &mut d, false);
    assert_eq!(c, Completion { status: Some(0), used_len: 513 });
    let mut got = vec![0u8; 512];
    m.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(got, d.data()[512..1024]);
}

fn segment(sector: u64, sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    s
}

#[test]
fn write_zeroes_and_discard() {
    let m = mem();
    let mut d = disk(8);
    header(&m, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    m.write_slice(&[segment(1, 2, 0), segment(6, 1, 1)].concat(), GuestAddress(DATA)).unwrap();
    let descs = [desc(HDR, 16, 0), desc(DATA, 32, 0), desc(STATUS, 1, W)];
    assert_eq!(run(&m, &descs, &mut d, false).status, Some(0));
    let data = d.data();
    assert!(data[512..1536].iter().all(|&b| b == 0) && data[3072..3584].iter().all(|&b| b == 0));
    assert_eq!(&data[..512], &disk(8).data()[..512]);
    // Discard is accepted and leaves the data (a hint).
    let mut d = disk(8);
    header(&m, VIRTIO_BLK_T_DISCARD, 0);
    assert_eq!(run(&m, &descs, &mut d, false).status, Some(0));
    assert_eq!(d.data(), disk(8).data());
    // Undefined flags, a range past the end, a ragged list, or too many segments: nothing happens.
    let ioerr = Some(VIRTIO_BLK_S_IOERR as u8);
    header(&m, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    for bad in [
        [segment(0, 1, 2), segment(0, 1, 0)].concat(),
        [segment(0, 1, 0), segment(7, 2, 0)].concat(),
        [segment(u64::MAX, 1, 0), segment(0, 1, 0)].concat(),
    ] {
        m.write_slice(&bad, GuestAddress(DATA)).unwrap();
        assert_eq!(run(&m, &descs, &mut d, false).status, ioerr);
    }
    let ragged = [desc(HDR, 16, 0), desc(DATA, 20, 0), desc(STATUS, 1, W)];
    assert_eq!(run(&m, &ragged, &mut d, false).status, ioerr);
    let many = [desc(HDR, 16, 0), desc(DATA, 16 * (MAX_SEGMENTS + 1), 0), desc(STATUS, 1, W)];
    assert_eq!(run(&m, &many, &mut d, false).status, ioerr);
    assert_eq!(d.data(), disk(8).data());
}

/// A raw image file under the system's temporary directory, removed when dropped.
struct TmpRaw(std::path::PathBuf);

impl TmpRaw {
    fn new(name: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("vblk-{}-{name}.raw", std::process::id()));
        std::fs::write(&path, data).unwrap();
        TmpRaw(path)
    }
    /// Opened as the VMM opens images (with the qcow2-magic guard of raw images).
    fn open(&self, read_only: bool) -> Box<dyn DiskImage> {
        block::open_image(&self.0, Some(block::ImageFormat::Raw), read_only).unwrap()
    }
}

impl Drop for TmpRaw {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn raw_images_go_straight_between_file_and_guest_memory() {
    let m = mem();
    let pattern: Vec<u8> = (0..8 * 512).map(|i| (i % 253) as u8).collect();
    let tmp = TmpRaw::new("direct", &pattern);
    let mut raw = tmp.open(false);
    assert!(raw.raw_file().is_some());
    // A read scattered over two buffers, the second split across a 4 KiB page boundary.
    header(&m, VIRTIO_BLK_T_IN, 1);
    let descs = [desc(HDR, 16, 0), desc(DATA, 512, W), desc(DATA + 0x1f00, 1024, W), desc(STATUS, 1, W)];
    let q = MockSplitQueue::new(&m, 16);
    let c =
        execute(&m, q.build_desc_chain(&descs).unwrap(), raw.as_mut(), b"", false, &BlockStats::default());
    assert_eq!(c, Completion { status: Some(0), used_len: 1537 });
    let mut got = vec![0u8; 1024];
    m.read_slice(&mut got[..512], GuestAddress(DATA)).unwrap();
    assert_eq!(&got[..512], &pattern[512..1024]);
    m.read_slice(&mut got, GuestAddress(DATA + 0x1f00)).unwrap();
    assert_eq!(got, pattern[1024..2048]);
    // A write with the header and the data in one descriptor.
    m.write_slice(&[0xc3; 512], GuestAddress(HDR + 16)).unwrap();
    header(&m, VIRTIO_BLK_T_OUT, 4);
    let c = execute(
        &m,
        q.build_desc_chain(&[desc(HDR, 16 + 512, 0), desc(STATUS, 1, W)]).unwrap(),
        raw.as_mut(),
        b"",
        false,
        &BlockStats::default(),
    );
    assert_eq!(c, Completion { status: Some(0), used_len: 1 });
    let on_disk = std::fs::read(&tmp.0).unwrap();
    assert_eq!(&on_disk[4 * 512..5 * 512], &[0xc3; 512][..]);
    assert_eq!(&on_disk[..4 * 512], &pattern[..4 * 512]);
    // A write of the qcow2 magic to sector 0 still goes through write_at's guard.
    m.write_slice(&block::QCOW2_MAGIC, GuestAddress(DATA)).unwrap();
    header(&m, VIRTIO_BLK_T_OUT, 0);
    let c = execute(
        &m,
        q.build_desc_chain(&[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)]).unwrap(),
        raw.as_mut(),
        b"",
        false,
        &BlockStats::default(),
    );
    assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
    assert_eq!(&std::fs::read(&tmp.0).unwrap()[..4], &pattern[..4]);
    // Buffers outside guest memory fail the request; nothing is read past the image either.
    header(&m, VIRTIO_BLK_T_IN, 7);
    let c = execute(
        &m,
        q.build_desc_chain(&[desc(HDR, 16, 0), desc(DATA, 1024, W), desc(STATUS, 1, W)]).unwrap(),
        raw.as_mut(),
        b"",
        false,
        &BlockStats::default(),
    );
    assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
    // Read-only images refuse writes on this path too.
    drop(raw);
    let mut ro = tmp.open(true);
    header(&m, VIRTIO_BLK_T_OUT, 2);
    let c = execute(
        &m,
        q.build_desc_chain(&[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)]).unwrap(),
        ro.as_mut(),
        b"",
        false,
        &BlockStats::default(),
    );
    assert_eq!(c.status, Some(VIRTIO_BLK_S_IOERR as u8));
}
