// SPDX-License-Identifier: Apache-2.0
use std::os::unix::net::UnixDatagram;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use virtio_bindings::virtio_net::{VIRTIO_NET_OK, VIRTIO_NET_S_LINK_UP};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::test_util::{frame, mem, sock_tap, Chains, TapLog};
use super::worker::{NetQueues, RxPoll};
use super::*;
use crate::net::tap::VNET_HDR_LEN;
use crate::virtio::{VirtioInterrupt, VirtioInterruptKind};

const W: u16 = VRING_DESC_F_WRITE as u16;
/// Where the queues' rings go: queue `n` at `n * RING_STRIDE`.
const RING_STRIDE: u64 = 0x1_0000;
const RX_BUF: u64 = 0x10_0000;
const TX_BUF: u64 = 0x20_0000;
const CTRL_BUF: u64 = 0x30_0000;

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

fn opts() -> NetOptions {
    NetOptions { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mtu: None }
}

fn config_u16(d: &VirtioNet, offset: u64) -> u16 {
    let mut b = [0u8; 2];
    d.read_config(offset, &mut b);
    u16::from_le_bytes(b)
}

/// Taps for a device, the host ends of their socket pairs, and what was asked of them.
type TestTaps = (Vec<Box<dyn VnetTap>>, Vec<UnixDatagram>, Vec<Arc<Mutex<TapLog>>>);

fn taps(n: usize, ufo: bool) -> TestTaps {
    let mut taps: Vec<Box<dyn VnetTap>> = Vec::new();
    let (mut hosts, mut logs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (t, h, l) = sock_tap(ufo);
        taps.push(Box::new(t));
        hosts.push(h);
        logs.push(l);
    }
    (taps, hosts, logs)
}

#[test]
fn features_and_configuration() {
    let d = VirtioNet::new("net0", taps(1, false).0, &opts()).unwrap();
    let f = d.features();
    for feature in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
    ] {
        assert_ne!(f & bit(feature), 0, "feature {feature}");
    }
    for feature in [VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_GUEST_UFO] {
        assert_eq!(f & bit(feature), 0, "feature {feature}");
    }
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    assert_ne!(f & VIRTIO_F_RING_EVENT_IDX, 0);
    assert_ne!(f & VIRTIO_F_RING_INDIRECT_DESC, 0);
    assert_eq!(d.device_type(), device_type::NET);
    assert_eq!(d.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE, CTRL_QUEUE_SIZE]);
    let mut mac = [0u8; 6];
    d.read_config(0, &mut mac);
    assert_eq!(mac, opts().mac);
    assert_eq!(config_u16(&d, 6), VIRTIO_NET_S_LINK_UP as u16);
    assert_eq!(config_u16(&d, 8), 1);
    assert_eq!(config_u16(&d, 10), 0);
    let mut b = [0xffu8; 4];
    d.read_config(0x100, &mut b);
    assert_eq!(b, [0; 4]);

    let options = NetOptions { mtu: Some(9000), ..opts() };
    let d = VirtioNet::new("net1", taps(4, true).0, &options).unwrap();
    let f = d.features();
    for feature in [VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_GUEST_UFO] {
        assert_ne!(f & bit(feature), 0, "feature {feature}");
    }
    assert_eq!(d.queue_pairs(), 4);
    assert_eq!(d.queue_max_sizes().len(), 9);
    assert_eq!(config_u16(&d, 8), 4);
    assert_eq!(config_u16(&d, 10), 9000);

    assert!(matches!(VirtioNet::new("x", Vec::new(), &opts()), Err(Error::Pairs(0))));
    assert!(matches!(VirtioNet::new("x", taps(65, false).0, &opts()), Err(Error::Pairs(65))));
    let tiny = NetOptions { mtu: Some(67), ..opts() };
    assert!(matches!(VirtioNet::new("x", taps(1, false).0, &tiny), Err(Error::Mtu(67))));
    let huge = NetOptions { mtu: Some(MAX_MTU + 1), ..opts() };
    assert!(matches!(VirtioNet::new("x", taps(1, false).0, &huge), Err(Error::Mtu(_))));
    assert!(matches!(VirtioNet::with_tap("x", "tap0", 0, &opts()), Err(Error::Pairs(0))));
}

#[test]
fn tap_offloads_follow_the_acked_guest_features() {
    assert_eq!(tun_offloads(0), 0);
    // Segmentation offloads need the checksum offload.
    assert_eq!(tun_offloads(bit(VIRTIO_NET_F_GUEST_TSO4)), 0);
    assert_eq!(tun_offloads(bit(VIRTIO_NET_F_GUEST_CSUM)), libc::TUN_F_CSUM);
    let all =
        [VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO]
            .iter()
            .fold(0, |acc, f| acc | bit(*f));
    assert_eq!(tun_offloads(all), libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_UFO);
}

/// A device's queues in guest memory and their kicks.
struct Rig<'a> {
    queues: Vec<Chains<'a>>,
    kicks: Vec<EventFd>,
    signals: mpsc::Receiver<VirtioInterruptKind>,
}

impl<'a> Rig<'a> {
    /// Activates `dev` with `count` queues of 16 entries and the features `acked`.
    fn activate(dev: &mut VirtioNet, m: &'a GuestMemoryMmap, count: u16, acked: u64) -> Rig<'a> {
        let (queues, kicks, active) = Self::parts(m, count);
        let (tx, rx) = mpsc::channel();
        let interrupt: Arc<dyn VirtioInterrupt> = Arc::new(Signals(Mutex::new(tx)));
        dev.activate(ActivateContext { mem: m.clone(), acked_features: acked, queues: active, interrupt })
            .unwrap();
        Rig { queues, kicks, signals: rx }
    }

    /// `count` queues of 16 entries, queue `n` at `n * RING_STRIDE`, with their kicks.
    fn parts(m: &'a GuestMemoryMmap, count: u16) -> (Vec<Chains<'a>>, Vec<EventFd>, Vec<ActiveQueue>) {
        let queues: Vec<_> = (0..count).map(|i| Chains::new(m, u64::from(i) * RING_STRIDE, 16)).collect();
        let kicks: Vec<_> = (0..count).map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap()).collect();
        let active = queues
            .iter()
            .zip(&kicks)
            .enumerate()
            .map(|(i, (c, k))| ActiveQueue {
                index: i as u16,
                queue: c.queue(),
                kick: k.try_clone().unwrap(),
            })
            .collect();
        (queues, kicks, active)
    }

    fn kick(&self, q: usize) {
        self.kicks[q].write(1).unwrap();
    }

    fn wait(&self, kind: VirtioInterruptKind) {
        assert_eq!(self.signals.recv_timeout(Duration::from_secs(10)), Ok(kind));
    }

    fn quiet(&self) {
        assert_eq!(
            self.signals.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
    }
}

fn read(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn with_buffers(f: &[u8], n: u16) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10..12].copy_from_slice(&n.to_le_bytes());
    f
}

const BASE: u64 = VIRTIO_F_VERSION_1;

#[test]
fn the_worker_transmits_receives_and_waits_for_buffers() {
    let m = mem();
    let (t, hosts, logs) = taps(1, false);
    let mut dev = VirtioNet::new("net0", t, &opts()).unwrap();
    let acked =
        BASE | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    let mut rig = Rig::activate(&mut dev, &m, 2, acked);
    assert_eq!(logs[0].lock().unwrap().offloads, vec![libc::TUN_F_CSUM | libc::TUN_F_TSO4]);

    // Transmit: the chain lands on the tap unchanged and is completed with length 0.
    let f = frame(1000, 3);
    m.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    rig.queues[1].add(&[(TX_BUF, 12, 0), (TX_BUF + 12, 988, 0)]);
    rig.kick(1);
    rig.wait(VirtioInterruptKind::Queue(1));
    let mut got = vec![0u8; 70000];
    let n = hosts[0].recv(&mut got).unwrap();
    assert_eq!(got[..n], f[..]);
    assert_eq!(rig.queues[1].used(), vec![(0, 0)]);

    // Receive into two mergeable buffers.
    rig.queues[0].add(&[(RX_BUF, 1500, W)]);
    rig.queues[0].add(&[(RX_BUF + 0x1000, 1500, W)]);
    let f = frame(2000, 8);
    hosts[0].send(&f).unwrap();
    rig.wait(VirtioInterruptKind::Queue(0));
    assert_eq!(rig.queues[0].used(), vec![(0, 1500), (1, 500)]);
    let got = [read(&m, RX_BUF, 1500), read(&m, RX_BUF + 0x1000, 500)].concat();
    assert_eq!(got, with_buffers(&f, 2));

    // No buffer: the frame waits (no signal, nothing used) until the driver adds one.
    let f = frame(300, 1);
    hosts[0].send(&f).unwrap();
    rig.quiet();
    assert_eq!(rig.queues[0].used().len(), 2);
    rig.queues[0].add(&[(RX_BUF + 0x2000, 1500, W)]);
    rig.kick(0);
    rig.wait(VirtioInterruptKind::Queue(0));
    assert_eq!(rig.queues[0].used()[2], (2, 300));
    assert_eq!(read(&m, RX_BUF + 0x2000, 300), with_buffers(&f, 1));

    // Reset stops the worker and keeps the tap for the next activation.
    dev.reset();
    assert!(dev.running.is_none());
    assert!(dev.taps.as_ref().is_some_and(|t| t.len() == 1));
    rig = Rig::activate(&mut dev, &m, 2, BASE);
    assert_eq!(logs[0].lock().unwrap().offloads.last(), Some(&0));
    // Without MRG_RXBUF and GUEST_CSUM: one chain per frame, flags cleared.
    rig.queues[0].add(&[(RX_BUF, 1500, W)]);
    let mut f = frame(200, 2);
    f[0] = 2;
    hosts[0].send(&f).unwrap();
    rig.wait(VirtioInterruptKind::Queue(0));
    f[0] = 0;
    assert_eq!(read(&m, RX_BUF, 200), with_buffers(&f, 1));
    dev.reset();
}

#[test]
fn multiqueue_pairs_follow_the_control_queue() {
    let m = mem();
    let (t, hosts, logs) = taps(2, false);
    let mut dev = VirtioNet::new("net0", t, &opts()).unwrap();
    let acked = BASE | bit(VIRTIO_NET_F_MQ) | bit(VIRTIO_NET_F_CTRL_VQ) | bit(VIRTIO_NET_F_MRG_RXBUF);
    let mut rig = Rig::activate(&mut dev, &m, 5, acked);
    // Only the first pair is in use until the driver asks for more.
    assert_eq!(logs[0].lock().unwrap().enabled, vec![true]);
    assert_eq!(logs[1].lock().unwrap().enabled, vec![false]);
    rig.queues[2].add(&[(RX_BUF, 1500, W)]);
    let f = frame(100, 4);
    hosts[1].send(&f).unwrap();
    rig.kick(2);
    rig.quiet();

    // VQ_PAIRS_SET 2 on the control queue (index 4 = 2 * max pairs).
    m.write_slice(&[4, 0, 2, 0], GuestAddress(CTRL_BUF)).unwrap();
    rig.queues[4].add(&[(CTRL_BUF, 4, 0), (CTRL_BUF + 0x100, 1, W)]);
    rig.kick(4);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rig.signals.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    got.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(got, vec![VirtioInterruptKind::Queue(2), VirtioInterruptKind::Queue(4)]);
    assert_eq!(m.read_obj::<u8>(GuestAddress(CTRL_BUF + 0x100)).unwrap(), VIRTIO_NET_OK as u8);
    assert_eq!(rig.queues[4].used(), vec![(0, 1)]);
    assert_eq!(logs[1].lock().unwrap().enabled, vec![false, true]);
    // The frame that waited in the second tap went to the second pair.
    assert_eq!(rig.queues[2].used(), vec![(0, 100)]);
    assert_eq!(read(&m, RX_BUF, 100), with_buffers(&f, 1));
    dev.reset();
}

#[test]
fn queues_are_sorted_by_what_the_driver_negotiated() {
    let m = mem();
    let dev = VirtioNet::new("net0", taps(3, false).0, &opts()).unwrap();
    let (_, _, active) = Rig::parts(&m, 7);
    let indexes = |(pairs, ctrl): (Vec<(ActiveQueue, ActiveQueue)>, Option<ActiveQueue>)| {
        (pairs.iter().map(|(r, t)| (r.index, t.index)).collect::<Vec<_>>(), ctrl.map(|c| c.index))
    };
    let mq = bit(VIRTIO_NET_F_MQ) | bit(VIRTIO_NET_F_CTRL_VQ);
    assert_eq!(indexes(dev.sort_queues(mq, active)), (vec![(0, 1), (2, 3), (4, 5)], Some(6)));
    // Without MQ the control queue is queue 2.
    let (_, _, active) = Rig::parts(&m, 3);
    assert_eq!(indexes(dev.sort_queues(bit(VIRTIO_NET_F_CTRL_VQ), active)), (vec![(0, 1)], Some(2)));
    let (_, _, active) = Rig::parts(&m, 3);
    assert_eq!(indexes(dev.sort_queues(0, active)), (vec![(0, 1)], None));
    // A pair missing a queue ends the list.
    let (_, _, mut active) = Rig::parts(&m, 7);
    active.remove(3);
    assert_eq!(indexes(dev.sort_queues(mq, active)), (vec![(0, 1)], Some(6)));
}

#[test]
fn activation_without_the_first_pair_fails() {
    let m = mem();
    let mut dev = VirtioNet::new("net0", taps(1, false).0, &opts()).unwrap();
    let (_, _, mut active) = Rig::parts(&m, 2);
    active.remove(0);
    let (tx, _rx) = mpsc::channel();
    let ctx = ActivateContext {
        mem: m.clone(),
        acked_features: BASE,
        queues: active,
        interrupt: Arc::new(Signals(Mutex::new(tx))),
    };
    assert!(matches!(dev.activate(ctx), Err(ActivateError::BadQueues(1))));
    assert!(dev.taps.is_some(), "the tap stays");
}

/// The queues of one pair driven without the thread.
fn net_queues(m: &GuestMemoryMmap, event_idx: bool) -> (NetQueues, Vec<Chains<'_>>, UnixDatagram) {
    let (tap, host, _) = sock_tap(false);
    let (chains, _kicks, active) = Rig::parts(m, 2);
    let mut active = active.into_iter();
    let (mut rx, mut tx) = (active.next().unwrap(), active.next().unwrap());
    rx.queue.set_event_idx(event_idx);
    tx.queue.set_event_idx(event_idx);
    let (sender, _) = mpsc::channel();
    let q = NetQueues::new(worker::WorkerContext {
        label: "net0".into(),
        mem: m.clone(),
        taps: vec![Box::new(tap)],
        pairs: vec![(rx, tx)],
        ctrl: None,
        mergeable: true,
        guest_csum: true,
        guest_gso: true,
        mq: false,
        interrupt: Arc::new(Signals(Mutex::new(sender))),
        stats: Arc::default(),
    });
    (q, chains, host)
}

#[test]
fn with_event_idx_an_empty_receive_queue_asks_for_a_kick() {
    let m = mem();
    let (mut q, mut chains, host) = net_queues(&m, true);
    assert_eq!(q.process_rx(0), RxPoll::Poll, "nothing to read");
    host.send(&frame(100, 0)).unwrap();
    host.send(&frame(100, 1)).unwrap();
    // avail_event follows the used ring's 16 entries.
    let avail_event = GuestAddress(chains[0].mq.used_addr().0 + 4 + 8 * 16);
    m.write_obj(0xffffu16, avail_event).unwrap();
    assert_eq!(q.process_rx(0), RxPoll::Wait);
    // It now asks for a kick at the next buffer.
    assert_eq!(m.read_obj::<u16>(avail_event).unwrap(), 0);
    // A kicked buffer takes the held frame, then the next.
    chains[0].add(&[(RX_BUF, 1500, W)]);
    chains[0].add(&[(RX_BUF + 0x1000, 1500, W)]);
    assert_eq!(q.process_rx(0), RxPoll::Poll);
    assert_eq!(chains[0].used(), vec![(0, 100), (1, 100)]);
    let c = q.stats.snapshot();
    assert_eq!((c.rx_packets, c.rx_bytes), (2, 2 * (100 - VNET_HDR_LEN as u64)), "bytes without the header");
    assert_eq!(read(&m, RX_BUF + 20, 1), [20]);
    // The next frame has no buffer again: it waits, counted nowhere.
    host.send(&frame(100, 2)).unwrap();
    assert_eq!(q.process_rx(0), RxPoll::Wait);
    assert_eq!(q.stats.snapshot().rx_dropped, 0);
    assert_eq!(m.read_obj::<u16>(avail_event).unwrap(), 2, "kick at avail index 2");
}

#[test]
fn a_frame_waiting_for_more_mergeable_buffers_asks_for_the_next_one() {
    let m = mem();
    let (mut q, mut chains, host) = net_queues(&m, true);
    chains[0].add(&[(RX_BUF, 100, W)]);
    host.send(&frame(150, 0)).unwrap();
    let avail_event = GuestAddress(chains[0].mq.used_addr().0 + 4 + 8 * 16);
    m.write_obj(0xffffu16, avail_event).unwrap();
    assert_eq!(q.process_rx(0), RxPoll::Wait);
    // Kick when the driver adds beyond the one buffer it has given, not at that one.
    assert_eq!(m.read_obj::<u16>(avail_event).unwrap(), 1);
    assert!(chains[0].used().is_empty());
    chains[0].add(&[(RX_BUF + 0x1000, 100, W)]);
    assert_eq!(q.process_rx(0), RxPoll::Poll);
    assert_eq!(chains[0].used(), vec![(0, 100), (1, 50)]);
    let c = q.stats.snapshot();
    assert_eq!((c.rx_packets, c.rx_dropped), (1, 0));
}

#[test]
fn transmit_chains_are_all_completed_with_event_idx() {
    let m = mem();
    let (mut q, mut chains, host) = net_queues(&m, true);
    let f = frame(100, 0);
    m.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    chains[1].add(&[(TX_BUF, 100, 0)]);
    chains[1].add(&[(TX_BUF, 5, 0)]);
    chains[1].add(&[(0x4000_0000, 100, 0)]);
    chains[1].add(&[(TX_BUF, 100, W)]);
    chains[1].add(&[(TX_BUF, 100, 0)]);
    q.process_tx(0);
    assert_eq!(chains[1].used(), vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
    let c = q.stats.snapshot();
    assert_eq!((c.tx_packets, c.tx_bytes, c.tx_dropped), (2, 2 * (100 - VNET_HDR_LEN as u64), 3));
    let mut buf = [0u8; 200];
    assert_eq!(host.recv(&mut buf).unwrap(), 100);
    assert_eq!(host.recv(&mut buf).unwrap(), 100);
    // The driver is asked to kick at the next chain.
    let avail_event = chains[1].mq.used_addr().0 + 4 + 8 * 16;
    assert_eq!(m.read_obj::<u16>(GuestAddress(avail_event)).unwrap(), 5);
    // An out-of-range pair does nothing.
    q.process_tx(7);
    assert_eq!(q.process_rx(7), RxPoll::Wait);
}

#[test]
fn a_corrupt_receive_ring_asks_for_a_reset() {
    let m = mem();
    let (t, hosts, _) = taps(1, false);
    let mut dev = VirtioNet::new("net0", t, &opts()).unwrap();
    let mut rig = Rig::activate(&mut dev, &m, 2, BASE);
    rig.queues[0].mq.avail().idx().store(100);
    hosts[0].send(&frame(100, 0)).unwrap();
    rig.wait(VirtioInterruptKind::Config);
    // The tap is no longer read and the transmit side still works.
    hosts[0].send(&frame(100, 0)).unwrap();
    m.write_slice(&frame(100, 0), GuestAddress(TX_BUF)).unwrap();
    rig.queues[1].add(&[(TX_BUF, 100, 0)]);
    rig.kick(1);
    rig.wait(VirtioInterruptKind::Queue(1));
    dev.reset();
    assert!(dev.taps.is_some());
}

/// Needs CAP_NET_ADMIN and the `ip` tool; skips with a message otherwise.
#[test]
fn a_real_tap_carries_frames_both_ways() {
    use crate::net::tap::tests::{bring_up, send_on, stat, test_frame};
    let name = format!("rvn{}", std::process::id() % 1_000_000);
    let mut dev = match VirtioNet::with_tap("net0", &name, 1, &opts()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping tap test: {e} ({:?})", std::error::Error::source(&e));
            return;
        }
    };
    if !bring_up(&name) {
        return;
    }
    let m = mem();
    let acked = [
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
    ]
    .iter()
    .fold(BASE, |acc, f| acc | bit(*f));
    let mut rig = Rig::activate(&mut dev, &m, 2, acked);

    // Guest to host.
    let before = stat(&name, "rx_packets");
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&test_frame(100, 1));
    m.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    rig.queues[1].add(&[(TX_BUF, f.len() as u32, 0)]);
    rig.kick(1);
    rig.wait(VirtioInterruptKind::Queue(1));
    assert_eq!(stat(&name, "rx_packets"), before + 1);

    // Host to guest.
    for i in 0..4 {
        rig.queues[0].add(&[(RX_BUF + i * 0x1000, 2048, W)]);
    }
    let out = test_frame(90, 2);
    send_on(&name, &out);
    let mut found = false;
    while !found {
        rig.wait(VirtioInterruptKind::Queue(0));
        found = rig.queues[0].used().iter().any(|&(head, len)| {
            len as usize == VNET_HDR_LEN + out.len()
                && read(&m, RX_BUF + u64::from(head) * 0x1000 + VNET_HDR_LEN as u64, out.len()) == out
        });
    }
    dev.reset();
    assert!(dev.taps.is_some());
}

/// The machine's event loop, on a thread of its own for the test.
struct TestLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestLoop {
    fn start(subscriber: events::NetEvents) -> TestLoop {
        use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
        let mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> = EventManager::new().unwrap();
        em.add_subscriber(Arc::new(Mutex::new(subscriber)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                em.run_with_timeout(10).unwrap();
            }
        });
        TestLoop { stop, thread: Some(thread) }
    }
}

impl Drop for TestLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn the_event_loop_serves_the_queues_across_a_reset() {
    let m = mem();
    let (t, hosts, _logs) = taps(1, false);
    let mut dev = VirtioNet::new("net0", t, &opts()).unwrap();
    let _loop = TestLoop::start(dev.event_subscriber().unwrap());
    let acked = BASE | bit(VIRTIO_NET_F_MRG_RXBUF);
    let mut rig = Rig::activate(&mut dev, &m, 2, acked);
    assert!(matches!(dev.running, Some(Running::Loop)), "no worker thread of its own");

    // Transmit, kicked before the loop may even have watched the queue.
    let f = frame(700, 5);
    m.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    rig.queues[1].add(&[(TX_BUF, 12, 0), (TX_BUF + 12, 688, 0)]);
    rig.kick(1);
    rig.wait(VirtioInterruptKind::Queue(1));
    let mut got = vec![0u8; 70000];
    let n = hosts[0].recv(&mut got).unwrap();
    assert_eq!(got[..n], f[..]);

    // Receive, and a frame that waits for a buffer until the receive queue is kicked.
    rig.queues[0].add(&[(RX_BUF, 1500, W)]);
    let f = frame(400, 9);
    hosts[0].send(&f).unwrap();
    rig.wait(VirtioInterruptKind::Queue(0));
    assert_eq!(read(&m, RX_BUF, 400), with_buffers(&f, 1));
    let f = frame(300, 1);
    hosts[0].send(&f).unwrap();
    rig.quiet();
    rig.queues[0].add(&[(RX_BUF + 0x2000, 1500, W)]);
    rig.kick(0);
    rig.wait(VirtioInterruptKind::Queue(0));
    assert_eq!(read(&m, RX_BUF + 0x2000, 300), with_buffers(&f, 1));

    // Reset: the taps come back at once; a frame sent now is not put in the old queues.
    dev.reset();
    assert!(dev.running.is_none());
    assert!(dev.taps.as_ref().is_some_and(|t| t.len() == 1));
    let used_before = rig.queues[0].used().len();
    rig.queues[0].add(&[(RX_BUF + 0x4000, 1500, W)]);
    hosts[0].send(&frame(100, 4)).unwrap();
    rig.kick(0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rig.queues[0].used().len(), used_before, "the reset queues are left alone");

    // A new activation on fresh rings is served by the same subscriber (and gets that frame).
    rig = Rig::activate(&mut dev, &m, 2, acked);
    rig.queues[0].add(&[(RX_BUF, 1500, W)]);
    rig.kick(0);
    rig.wait(VirtioInterruptKind::Queue(0));
    assert_eq!(rig.queues[0].used(), vec![(0, 100)]);
    dev.reset();
}
