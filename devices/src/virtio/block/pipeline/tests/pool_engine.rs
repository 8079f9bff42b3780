// SPDX-License-Identifier: Apache-2.0
//! What only the thread pool has to show: the order flushes impose on threads that would
//! otherwise finish in any order, many requests in flight, a reset while threads work, and
//! qcow2 images behind their lock.
use super::*;

fn flush_chain(mem: &GuestMemoryMmap, hdr: u64, status: u64) -> Vec<(u64, u32, bool)> {
    header(mem, hdr, VIRTIO_BLK_T_FLUSH, 0);
    vec![(hdr, 16, false), (status, 1, true)]
}

/// The used ring's heads in completion order.
fn heads(mq: &MockSplitQueue<'_, GuestMemoryMmap>, n: u16) -> Vec<u32> {
    used(mq, n).into_iter().map(|(head, _)| head).collect()
}

/// The position of `head` in `order`.
fn at(order: &[u32], head: u32) -> usize {
    order.iter().position(|&h| h == head).unwrap()
}

#[test]
fn a_flush_waits_for_the_writes_before_it_and_holds_back_what_follows() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 64);
    let (tmp, disk) = image(8192);
    let (mut ctx, mut p, _) = rig(Kind::Pool, &m, &mq, disk, 64, false).unwrap();
    // Eight 256 KiB writes (heads 0, 3, .. 21), a flush (24), four reads (26, 29, 32, 35) of
    // what the first writes wrote, a flush (38), a last write (40).
    let mut chains = Vec::new();
    for k in 0..8u64 {
        m.write_slice(&vec![k as u8 + 1; 256 << 10], GuestAddress(0x40_0000 + (k << 20))).unwrap();
        chains.push(write_chain(
            &m,
            0x10_0000 + k * 0x100,
            k * 512,
            0x40_0000 + (k << 20),
            256 << 10,
            0x30_0000 + k,
        ));
    }
    chains.push(flush_chain(&m, 0x11_0000, 0x30_0010));
    for k in 0..4u64 {
        chains.push(read_chain(&m, 0x12_0000 + k * 0x100, k * 512, 0x20_0000 + k * 0x1000, 1, 0x30_0020 + k));
    }
    chains.push(flush_chain(&m, 0x13_0000, 0x30_0030));
    chains.push(write_chain(&m, 0x14_0000, 4096, 0x40_0000, 4096, 0x30_0031));
    add_chains(&mq, 0, &chains);
    serve_until(&mut ctx, &mut p, &mq, chains.len() as u16);
    let order = heads(&mq, chains.len() as u16);
    let first_flush = at(&order, 24);
    for w in (0..8).map(|k| k * 3) {
        assert!(at(&order, w) < first_flush, "write {w} before the flush: {order:?}");
    }
    for r in [26, 29, 32, 35] {
        assert!(at(&order, r) > first_flush, "read {r} after the first flush: {order:?}");
        assert!(at(&order, r) < at(&order, 38), "read {r} before the second flush: {order:?}");
    }
    assert_eq!(order.last(), Some(&40), "the last write after the second flush: {order:?}");
    for k in 0..4u64 {
        let mut got = [0u8; S];
        m.read_slice(&mut got, GuestAddress(0x20_0000 + k * 0x1000)).unwrap();
        assert!(got.iter().all(|&b| b == k as u8 + 1), "read {k} sees write {k}");
    }
    let statuses: Vec<u8> = (0..0x32).map(|k| status(&m, 0x30_0000 + k)).collect();
    assert!(statuses.iter().all(|&s| s == 0));
    let after = file_bytes(&tmp);
    assert!(after[4096 * S..4096 * S + 4096].iter().all(|&b| b == 1));
}

#[test]
fn many_requests_are_in_flight_at_once() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 256);
    let (tmp, disk) = image(2048);
    let (mut ctx, mut p, count) = rig(Kind::Pool, &m, &mq, disk, 256, false).unwrap();
    // 42 reads of sectors 0..336 and 42 writes of sectors 1024..1360, interleaved (252 of the
    // queue's 256 descriptors).
    let mut chains = Vec::new();
    for k in 0..42u64 {
        chains.push(read_chain(&m, 0x10_0000 + k * 0x20, k * 8, 0x20_0000 + k * 0x1000, 8, 0x30_0000 + k));
        m.write_slice(&[k as u8; 4096], GuestAddress(0x40_0000 + k * 0x1000)).unwrap();
        chains.push(write_chain(
            &m,
            0x11_0000 + k * 0x20,
            1024 + k * 8,
            0x40_0000 + k * 0x1000,
            4096,
            0x30_0100 + k,
        ));
    }
    add_chains(&mq, 0, &chains);
    p.kick(&mut ctx, 0);
    assert_eq!(p.backend.in_flight(), 84, "every chain taken before any completion is reaped");
    serve_until(&mut ctx, &mut p, &mq, 84);
    assert_eq!(p.backend.in_flight(), 0);
    let img = pattern(2048 * S);
    let after = file_bytes(&tmp);
    for k in 0..42usize {
        let mut got = vec![0u8; 4096];
        m.read_slice(&mut got, GuestAddress(0x20_0000 + k as u64 * 0x1000)).unwrap();
        assert_eq!(got, img[k * 4096..(k + 1) * 4096], "read {k}");
        let w = (1024 + k * 8) * S;
        assert!(after[w..w + 4096].iter().all(|&b| b == k as u8), "write {k}");
        assert_eq!([status(&m, 0x30_0000 + k as u64), status(&m, 0x30_0100 + k as u64)], [0, 0]);
    }
    assert_eq!(lock(&ctx.positions)[0].next_used, 84);
    assert!(count.signals.load(Ordering::SeqCst) >= 1);
}

/// Waits (up to 10 s) until `n` I/O threads of the disk `label` are alive in this process (a
/// thread names itself once it runs).
fn wait_io_threads(label: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while io_threads(label) != n {
        assert!(Instant::now() < deadline, "{} I/O threads, not {n}", io_threads(label));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The I/O threads of the disk `label` alive in this process.
fn io_threads(label: &str) -> usize {
    let prefix = format!("{label}-io");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with(&prefix))
        .count()
}

#[test]
fn a_reset_completes_every_request_in_flight_and_stops_the_threads() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 256);
    let (tmp, disk) = image(16384);
    let mut dev = VirtioBlk::new("vdr", disk, &opts()).unwrap();
    dev.set_io_engine(IoEngine::ThreadPool);
    // Without a negotiated flush every write is made durable before it completes: slower.
    let (kick, rx) = activate(&mut dev, &m, &mq, VIRTIO_F_VERSION_1);
    assert_eq!(dev.active_engine(), Some(EngineKind::ThreadPool));
    wait_io_threads("vdr", 4);
    let chains: Vec<_> = (0..48u64)
        .map(|k| {
            m.write_slice(&vec![k as u8 ^ 0x80; 128 << 10], GuestAddress(0x80_0000 + (k << 17))).unwrap();
            write_chain(
                &m,
                0x10_0000 + k * 0x20,
                8 + k * 256,
                0x80_0000 + (k << 17),
                128 << 10,
                0x30_0000 + k,
            )
        })
        .collect();
    m.write_slice(&[0xaa; 48], GuestAddress(0x30_0000)).unwrap();
    add_chains(&mq, 0, &chains);
    kick.write(1).unwrap();
    // The first signal comes after the worker took every chain (it takes them all at once).
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Queue(0)));
    dev.reset();
    assert_eq!(mq.used().idx().load(), 48, "every request taken completed before the reset returned");
    assert_eq!(io_threads("vdr"), 0, "the threads are gone");
    let after = file_bytes(&tmp);
    for k in 0..48usize {
        assert_eq!(status(&m, 0x30_0000 + k as u64), 0, "write {k}");
        let at = (8 + k * 256) * S;
        assert!(after[at..at + (128 << 10)].iter().all(|&b| b == k as u8 ^ 0x80), "write {k}");
    }
}

#[test]
fn qcow2_images_are_served_by_several_threads_at_once() {
    let tmp = TempFile::new().unwrap();
    let path = tmp.as_path().with_extension("qcow2");
    block::create_qcow2(&path, 1 << 20, None).unwrap();
    let image = block::Qcow2Image::open(&path, false).unwrap();
    let mut dev = VirtioBlk::new("vdq", Box::new(image), &opts()).unwrap();
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    let (kick, rx) = activate(&mut dev, &m, &mq, VIRTIO_F_VERSION_1 | (1 << VIRTIO_BLK_F_FLUSH));
    assert_eq!(dev.active_engine(), Some(EngineKind::ThreadPool));
    // The image locks its own metadata: as many threads as for a raw image.
    wait_io_threads("vdq", 4);
    // A write across a cluster boundary, a flush, a read of it and of unwritten sectors.
    let data = pattern(256 << 10);
    m.write_slice(&data, GuestAddress(0x40_0000)).unwrap();
    let chains = [
        write_chain(&m, 0x10_0000, 64, 0x40_0000, 256 << 10, 0x30_0000),
        flush_chain(&m, 0x11_0000, 0x30_0001),
        read_chain(&m, 0x12_0000, 64, 0x80_0000, 512, 0x30_0002),
        read_chain(&m, 0x13_0000, 1024, 0xc0_0000, 8, 0x30_0003),
    ];
    add_chains(&mq, 0, &chains);
    kick.write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mq.used().idx().load() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert_eq!(rx.recv_timeout(left), Ok(VirtioInterruptKind::Queue(0)));
    }
    assert_eq!((0..4).map(|k| status(&m, 0x30_0000 + k)).collect::<Vec<_>>(), [0; 4]);
    let mut got = vec![0u8; 256 << 10];
    m.read_slice(&mut got, GuestAddress(0x80_0000)).unwrap();
    assert_eq!(got, data);
    let mut zeroes = vec![0xffu8; 4096];
    m.read_slice(&mut zeroes, GuestAddress(0xc0_0000)).unwrap();
    assert!(zeroes.iter().all(|&b| b == 0));
    dev.reset();
    assert_eq!(io_threads("vdq"), 0);
    drop(dev);
    let mut image = block::Qcow2Image::open(&path, true).unwrap();
    let mut back = vec![0u8; 256 << 10];
    image.read_at(64 * S as u64, &mut back).unwrap();
    assert_eq!(back, data, "the data is in the image once it is closed");
    std::fs::remove_file(&path).unwrap();
}
