// SPDX-License-Identifier: Apache-2.0
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_MQ, VIRTIO_NET_OK,
};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress};

use super::super::test_util::{mem, sock_tap, Chains};
use super::super::vhost_worker::VhostCtrl;
use super::super::{NetOptions, VirtioNet};
use super::*;
use crate::virtio::net::backend::VnetTap;
use crate::virtio::{ActivateContext, VirtioDevice, VirtioInterruptKind};

const W: u16 = VRING_DESC_F_WRITE as u16;
const BASE: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX;

fn bit(n: u32) -> u64 {
    1 << n
}

/// Signals down a channel; `irqfds` says whether queues have an irqfd.
struct Signals {
    tx: Mutex<mpsc::Sender<VirtioInterruptKind>>,
    irqfds: bool,
}

impl VirtioInterrupt for Signals {
    fn signal(&self, kind: VirtioInterruptKind) {
        let _ = self.tx.lock().unwrap().send(kind);
    }
    fn needs_reset(&self) {
        let _ = self.tx.lock().unwrap().send(VirtioInterruptKind::Config);
    }
    fn queue_irqfd(&self, _queue: u16) -> Option<EventFd> {
        self.irqfds.then(|| EventFd::new(libc::EFD_NONBLOCK).unwrap())
    }
}

fn signals(irqfds: bool) -> (Arc<Signals>, mpsc::Receiver<VirtioInterruptKind>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(Signals { tx: Mutex::new(tx), irqfds }), rx)
}

#[test]
fn the_vhost_option_maps_to_a_policy() {
    assert_eq!(VhostPolicy::from(None), VhostPolicy::Auto);
    assert_eq!(VhostPolicy::from(Some(true)), VhostPolicy::On);
    assert_eq!(VhostPolicy::from(Some(false)), VhostPolicy::Off);
}

fn missing() -> io::Result<File> {
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

#[test]
fn vhost_off_never_opens_the_device() {
    let mut opened = 0;
    let (fds, why) = choose(VhostPolicy::Off, 2, || {
        opened += 1;
        missing()
    })
    .unwrap();
    assert!(fds.is_none());
    assert_eq!(why, "vhost=off");
    assert_eq!(opened, 0);
}

#[test]
fn without_vhost_net_the_default_is_the_user_space_path() {
    let (fds, why) = choose(VhostPolicy::Auto, 1, missing).unwrap();
    assert!(fds.is_none());
    assert!(why.contains("/dev/vhost-net unavailable") && why.contains("No such file"), "{why}");
}

#[test]
fn vhost_on_without_vhost_net_names_the_field() {
    let Err(e) = choose(VhostPolicy::On, 1, missing) else { panic!("vhost=on without vhost-net worked") };
    let msg = error_chain(&e);
    assert!(msg.starts_with("vhost=on: cannot open /dev/vhost-net"), "{msg}");
    assert!(msg.contains("vhost=off") && msg.contains("No such file"), "{msg}");
}

#[test]
fn a_descriptor_that_is_not_vhost_net_is_refused() {
    // /dev/null opens but takes no vhost ioctl: VHOST_SET_OWNER fails.
    let null = || OpenOptions::new().read(true).write(true).open("/dev/null");
    let Err(e) = choose(VhostPolicy::On, 1, null) else { panic!("/dev/null taken for vhost-net") };
    assert!(error_chain(&e).contains("set owner"), "{}", error_chain(&e));
    let (fds, why) = choose(VhostPolicy::Auto, 1, null).unwrap();
    assert!(fds.is_none());
    assert!(why.contains("set owner"), "{why}");
}

#[test]
fn vhost_gets_the_ring_features_only() {
    let offloads = bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    let acked =
        BASE | VIRTIO_F_RING_INDIRECT_DESC | bit(VIRTIO_NET_F_MRG_RXBUF) | offloads | bit(VIRTIO_NET_F_MQ);
    // What a 6.1 vhost-net offers: the ring features, VHOST_NET_F_VIRTIO_NET_HDR, log, ...
    let offered = RING_FEATURES | (1 << 27) | (1 << 26) | (1 << 24);
    assert_eq!(
        vhost_features(acked, offered).unwrap(),
        BASE | VIRTIO_F_RING_INDIRECT_DESC | bit(VIRTIO_NET_F_MRG_RXBUF)
    );
    // Never VHOST_NET_F_VIRTIO_NET_HDR: the tap carries the header.
    assert_eq!(vhost_features(acked, offered).unwrap() & (1 << 27), 0);
    match vhost_features(acked, offered & !VIRTIO_F_RING_EVENT_IDX) {
        Err(VhostError::Features(f)) => assert_eq!(f, VIRTIO_F_RING_EVENT_IDX),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_header_size_follows_the_negotiation() {
    assert_eq!(vnet_hdr_len(VIRTIO_F_VERSION_1), VNET_HDR_LEN);
    assert_eq!(vnet_hdr_len(bit(VIRTIO_NET_F_MRG_RXBUF)), 12);
    assert_eq!(vnet_hdr_len(0), 10);
}

#[test]
fn completions_use_the_irqfd_when_there_is_one() {
    let (with, _rx) = signals(true);
    assert!(matches!(Call::for_queue(with.as_ref(), 0).unwrap(), Call::Irqfd(_)));
    let (without, _rx) = signals(false);
    assert!(matches!(Call::for_queue(without.as_ref(), 0).unwrap(), Call::Relay(_)));
}

#[test]
fn the_memory_table_covers_every_region() {
    let m = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x10_0000),
        (GuestAddress(0x1_0000_0000), 0x20_0000),
    ])
    .unwrap();
    let t = memory_table(&m);
    let got: Vec<_> = t.iter().map(|r| (r.guest_phys_addr, r.memory_size)).collect();
    assert_eq!(got, vec![(0, 0x10_0000), (0x1_0000_0000, 0x20_0000)]);
    assert!(t.iter().all(|r| r.userspace_addr != 0));
}

#[test]
fn a_card_takes_one_instance_per_pair() {
    let (t, _h, _l) = sock_tap(false);
    let opts = NetOptions { mac: [0x52, 0x54, 0, 1, 2, 3], mtu: None };
    let mut dev = VirtioNet::new("net0", vec![Box::new(t) as Box<dyn VnetTap>], &opts).unwrap();
    assert!(matches!(dev.set_vhost(Vec::new()), Err(super::super::Error::VhostCount(0, 1))));
    assert!(!dev.has_vhost());
}

#[test]
fn the_control_queue_attaches_tap_queues_with_vhost() {
    let m = mem();
    let (a, _ha, la) = sock_tap(false);
    let (b, _hb, lb) = sock_tap(false);
    let taps: Vec<Box<dyn VnetTap>> = vec![Box::new(a), Box::new(b)];
    let mut ctrlq = Chains::new(&m, 0, 16);
    let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let q = ActiveQueue { index: 4, queue: ctrlq.queue(), kick };
    let (sig, rx) = signals(false);
    let mut ctrl = VhostCtrl::new("net0".into(), m.clone(), taps, 2, Some(q), true, sig);
    assert_eq!(
        (la.lock().unwrap().enabled.clone(), lb.lock().unwrap().enabled.clone()),
        (vec![true], vec![false])
    );
    // VQ_PAIRS_SET 2.
    m.write_slice(&[4, 0, 2, 0], GuestAddress(0x10_0000)).unwrap();
    ctrlq.add(&[(0x10_0000, 4, 0), (0x10_0100, 1, W)]);
    ctrl.process();
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_0100)).unwrap(), VIRTIO_NET_OK as u8);
    assert_eq!(ctrl.active_pairs(), 2);
    assert_eq!(lb.lock().unwrap().enabled, vec![false, true]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(VirtioInterruptKind::Queue(4)));
    assert_eq!(ctrl.into_taps().len(), 2);
}

/// Needs /dev/vhost-net, CAP_NET_ADMIN and the `ip` tool; skips with a message otherwise.
/// A guest-free round trip: a frame put in the transmit queue leaves on the tap, a frame sent
/// to the tap lands in the receive queue, both moved by the kernel; completions come back
/// through the relay (no irqfd here); reset reads the positions back.
#[test]
fn vhost_net_moves_frames_on_a_real_tap() {
    use crate::net::tap::tests::{bring_up, send_on, stat, test_frame};
    let fds = match choose(VhostPolicy::On, 1, open_vhost_net) {
        Ok((Some(fds), _)) => fds,
        Ok((None, why)) => panic!("vhost=on gave no vhost-net: {why}"),
        Err(e) => {
            eprintln!("skipping vhost-net test: {}", error_chain(&e));
            return;
        }
    };
    let name = format!("rvh{}", std::process::id() % 1_000_000);
    let opts = NetOptions { mac: [0x52, 0x54, 0, 1, 2, 3], mtu: None };
    let mut dev = match VirtioNet::with_tap("net0", &name, 1, &opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping vhost-net test: {e}");
            return;
        }
    };
    if !bring_up(&name) {
        return;
    }
    dev.set_vhost(fds).unwrap();
    let m = mem();
    let mut rxq = Chains::new(&m, 0, 16);
    let mut txq = Chains::new(&m, 0x1_0000, 16);
    let kicks: Vec<_> = (0..2).map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap()).collect();
    let queues = vec![
        ActiveQueue { index: 0, queue: rxq.queue(), kick: kicks[0].try_clone().unwrap() },
        ActiveQueue { index: 1, queue: txq.queue(), kick: kicks[1].try_clone().unwrap() },
    ];
    let (sig, signals) = signals(false);
    let acked = BASE | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_CTRL_VQ);
    dev.activate(ActivateContext { mem: m.clone(), acked_features: acked, queues, interrupt: sig }).unwrap();
    assert!(dev.vhost_running());

    let before = stat(&name, "rx_packets");
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&test_frame(100, 1));
    m.write_slice(&f, GuestAddress(0x20_0000)).unwrap();
    txq.add(&[(0x20_0000, f.len() as u32, 0)]);
    kicks[1].write(1).unwrap();
    assert_eq!(signals.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Queue(1)));
    assert_eq!(stat(&name, "rx_packets"), before + 1);

    for i in 0..4 {
        rxq.add(&[(0x30_0000 + i * 0x1000, 2048, W)]);
    }
    kicks[0].write(1).unwrap();
    let out = test_frame(90, 2);
    send_on(&name, &out);
    let mut found = false;
    while !found {
        assert_eq!(signals.recv_timeout(Duration::from_secs(10)), Ok(VirtioInterruptKind::Queue(0)));
        found = rxq.used().iter().any(|&(head, len)| {
            let at = 0x30_0000 + u64::from(head) * 0x1000 + VNET_HDR_LEN as u64;
            let mut got = vec![0u8; out.len()];
            m.read_slice(&mut got, GuestAddress(at)).unwrap();
            len as usize == VNET_HDR_LEN + out.len() && got == out
        });
    }
    dev.reset();
    assert!(!dev.vhost_running() && dev.has_vhost());
}
