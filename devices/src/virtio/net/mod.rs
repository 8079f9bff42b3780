// SPDX-License-Identifier: Apache-2.0
//! virtio-net (virtio 1.2, 5.1) on a Linux tap with a virtio-net header: checksum and
//! segmentation offloads both ways, mergeable receive buffers, several queue pairs on a
//! multiqueue tap (one tap descriptor per pair), a control queue for the pair count and
//! receive modes, and the link always up. The queues run on a worker thread
//! ([`worker::NetWorker`]); [`tx`], [`rx`] and [`ctrl`] hold the per-chain code, which is
//! tested and fuzzed without threads.
//!
//! Queue layout: receive queue `2k` and transmit queue `2k + 1` for pair `k`, then the
//! control queue, at index 2 when the driver did not negotiate `VIRTIO_NET_F_MQ` and at
//! `2 * max_virtqueue_pairs` when it did.
//!
//! The host side: open the tap with [`Tap::open_queues`]`(name, true, pairs)` (or adopt
//! descriptors with [`Tap::from_fd`]) and pass one [`backend::VnetTap`] per pair to
//! [`VirtioNet::new`]; [`VirtioNet::with_tap`] does both. The offloads the tap hands the
//! guest follow what the driver acknowledged (`TUNSETOFFLOAD` at each activation).
//!
//! With vhost-net ([`VirtioNet::set_vhost`], [`vhost`]) the host kernel moves the frames of
//! every queue pair instead of the worker, and a smaller thread ([`vhost_worker`]) keeps the
//! control queue; the choice is made at each activation, and a vhost-net that cannot take
//! the driver's configuration leaves that activation to the worker.
//!
//! Not done: per-pair threads,
//! MAC/VLAN filtering (the device is promiscuous), `VIRTIO_NET_F_CTRL_GUEST_OFFLOADS`,
//! RSS, notification coalescing and snapshots.

pub mod backend;
pub mod ctrl;
pub mod events;
pub mod rx;
pub mod tx;
pub mod vhost;
pub mod vhost_worker;
pub mod worker;

#[cfg(test)]
mod test_util;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::{
    device_type, read_config_bytes, ActivateContext, ActivateError, ActiveQueue, VirtioDevice,
    VirtioInterrupt, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use crate::bus::lock;
use crate::net::tap::{self, Tap};
use crate::stats::NetStats;
use backend::VnetTap;
use vhost::{VhostNetFd, VhostPairs};
use vhost_worker::{VhostWorker, VhostWorkerContext};
use worker::{NetWorker, WorkerContext};

pub use crate::net::tap::VNET_HDR_LEN;

/// Size of each receive and transmit queue.
pub const QUEUE_SIZE: u16 = 256;
/// Size of the control queue.
pub const CTRL_QUEUE_SIZE: u16 = 64;
/// Most queue pairs a device may have (2 queues each plus the control queue, each with
/// its MSI-X vector).
pub const MAX_QUEUE_PAIRS: u16 = 64;
/// Smallest MTU offered (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// Largest MTU offered: a full frame with Ethernet and VLAN headers still fits the 64 KiB a
/// transmitted chain may carry ([`tx::MAX_TX_LEN`]).
pub const MAX_MTU: u16 = (tx::MAX_TX_LEN - VNET_HDR_LEN - 18) as u16;
/// Length of the configuration space: mac, status, max_virtqueue_pairs, mtu.
const CONFIG_LEN: usize = 12;

/// How the card appears to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// The MAC address (`VIRTIO_NET_F_MAC`).
    pub mac: [u8; 6],
    /// The MTU the driver should use (`VIRTIO_NET_F_MTU`, [`MIN_MTU`] to [`MAX_MTU`]);
    /// `None` leaves it to the guest (1500).
    pub mtu: Option<u16>,
}

/// Errors building the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MTU is out of range.
    #[error("a virtio-net MTU is {MIN_MTU} to {MAX_MTU}, not {0}")]
    Mtu(u16),
    /// The number of taps (queue pairs) is out of range.
    #[error("a virtio-net card has 1 to {MAX_QUEUE_PAIRS} queue pairs, not {0}")]
    Pairs(usize),
    /// The tap could not be opened.
    #[error(transparent)]
    Tap(#[from] tap::Error),
    /// Not one vhost-net instance per queue pair.
    #[error("{0} vhost-net instances for {1} queue pairs")]
    VhostCount(usize, u16),
}

/// The taps and queues an activation hands to the path that serves it.
struct Parts {
    taps: Vec<Box<dyn VnetTap>>,
    pairs: Vec<(ActiveQueue, ActiveQueue)>,
    ctrl: Option<ActiveQueue>,
}

/// What serves the queues while the driver runs the card.
enum Running {
    /// The worker thread moves the frames.
    User(NetWorker),
    /// vhost-net moves the frames; the thread keeps the control queue.
    Vhost(VhostPairs, VhostWorker),
    /// The machine's event loop serves the queues (they are in the events handle's slot).
    Loop,
}

/// A virtio-net device.
pub struct VirtioNet {
    label: String,
    /// The taps, one per queue pair; lent to the worker while it runs.
    taps: Option<Vec<Box<dyn VnetTap>>>,
    pairs: u16,
    features: u64,
    config: [u8; CONFIG_LEN],
    queue_sizes: Vec<u16>,
    /// One vhost-net instance per queue pair when frames go through vhost-net; lent to the
    /// running pairs.
    vhost: Option<Vec<VhostNetFd>>,
    running: Option<Running>,
    /// Set once the machine's event loop serves the queues (see [`VirtioNet::event_subscriber`]).
    events: Option<events::NetEventsHandle>,
    /// Frame counters of the event-loop data path (vhost-net moves frames in the kernel,
    /// out of their sight).
    stats: Arc<NetStats>,
}

fn bit(n: u32) -> u64 {
    1 << n
}

/// The `TUN_F_*` offloads matching the `GUEST_*` features the driver acknowledged.
fn tun_offloads(acked: u64) -> u32 {
    if acked & bit(VIRTIO_NET_F_GUEST_CSUM) == 0 {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    for (feature, tun) in [
        (VIRTIO_NET_F_GUEST_TSO4, libc::TUN_F_TSO4),
        (VIRTIO_NET_F_GUEST_TSO6, libc::TUN_F_TSO6),
        (VIRTIO_NET_F_GUEST_UFO, libc::TUN_F_UFO),
    ] {
        if acked & bit(feature) != 0 {
            flags |= tun;
        }
    }
    flags
}

impl VirtioNet {
    /// A card on `taps`, one per queue pair (so `VIRTIO_NET_F_MQ` with more than one). Each
    /// must carry [`VNET_HDR_LEN`]-byte virtio-net headers.
    pub fn new(label: &str, taps: Vec<Box<dyn VnetTap>>, options: &NetOptions) -> Result<Self, Error> {
        if taps.is_empty() || taps.len() > usize::from(MAX_QUEUE_PAIRS) {
            return Err(Error::Pairs(taps.len()));
        }
        let pairs = taps.len() as u16;
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_STATUS)
            | bit(VIRTIO_NET_F_MRG_RXBUF)
            | bit(VIRTIO_NET_F_CTRL_VQ)
            | bit(VIRTIO_NET_F_CSUM)
            | bit(VIRTIO_NET_F_GUEST_CSUM)
            | bit(VIRTIO_NET_F_HOST_TSO4)
            | bit(VIRTIO_NET_F_HOST_TSO6)
            | bit(VIRTIO_NET_F_GUEST_TSO4)
            | bit(VIRTIO_NET_F_GUEST_TSO6);
        if taps.iter().all(|t| t.supports_ufo()) {
            features |= bit(VIRTIO_NET_F_HOST_UFO) | bit(VIRTIO_NET_F_GUEST_UFO);
        }
        if pairs > 1 {
            features |= bit(VIRTIO_NET_F_MQ);
        }
        let mut config = [0u8; CONFIG_LEN];
        config[0..6].copy_from_slice(&options.mac);
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        config[8..10].copy_from_slice(&pairs.to_le_bytes());
        if let Some(mtu) = options.mtu {
            if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                return Err(Error::Mtu(mtu));
            }
            features |= bit(VIRTIO_NET_F_MTU);
            config[10..12].copy_from_slice(&mtu.to_le_bytes());
        }
        let mut queue_sizes = vec![QUEUE_SIZE; 2 * usize::from(pairs)];
        queue_sizes.push(CTRL_QUEUE_SIZE);
        Ok(VirtioNet {
            label: label.to_string(),
            taps: Some(taps),
            pairs,
            features,
            config,
            queue_sizes,
            vhost: None,
            running: None,
            events: None,
            stats: Arc::default(),
        })
    }

    /// The card's frame counters (shared: they keep counting after this call). They see
    /// the frames of the event-loop data path only: with vhost-net the host kernel moves
    /// the frames and the vmm never sees them, so they stay at zero.
    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// A card on the tap `name` (created if missing, which needs CAP_NET_ADMIN) with
    /// `pairs` queue pairs: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, plus `IFF_MULTI_QUEUE`
    /// with more than one pair.
    pub fn with_tap(label: &str, name: &str, pairs: u16, options: &NetOptions) -> Result<Self, Error> {
        if pairs == 0 || pairs > MAX_QUEUE_PAIRS {
            return Err(Error::Pairs(usize::from(pairs)));
        }
        let taps = Tap::open_queues(name, true, pairs)?;
        let taps = taps.into_iter().map(|t| Box::new(t) as Box<dyn VnetTap>).collect();
        VirtioNet::new(label, taps, options)
    }

    /// Has the machine's event loop serve the queues of every later activation that does
    /// not go to vhost-net, instead of a worker thread of the device's own: returns the
    /// subscriber to add to the loop (once, before the machine starts).
    pub fn event_subscriber(&mut self) -> std::io::Result<events::NetEvents> {
        let (subscriber, handle) = events::new(&self.label)?;
        self.events = Some(handle);
        Ok(subscriber)
    }

    /// Number of queue pairs.
    pub fn queue_pairs(&self) -> u16 {
        self.pairs
    }

    /// Moves frames through vhost-net from the next activation on, one instance per queue
    /// pair ([`vhost::choose`] opens them).
    pub fn set_vhost(&mut self, fds: Vec<VhostNetFd>) -> Result<(), Error> {
        if fds.len() != usize::from(self.pairs) {
            return Err(Error::VhostCount(fds.len(), self.pairs));
        }
        self.vhost = Some(fds);
        Ok(())
    }

    /// Whether vhost-net is set up (it serves the pairs of each activation it can take).
    pub fn has_vhost(&self) -> bool {
        self.vhost.is_some() || matches!(self.running, Some(Running::Vhost(..)))
    }

    /// Whether vhost-net serves the queue pairs now.
    pub fn vhost_running(&self) -> bool {
        matches!(self.running, Some(Running::Vhost(..)))
    }

    /// Starts vhost-net on the pairs of `parts` and the control thread; a vhost-net that
    /// cannot take them gives the parts back for the worker.
    fn start_vhost(
        &mut self,
        fds: Vec<VhostNetFd>,
        mem: &GuestMemoryMmap,
        acked: u64,
        interrupt: &Arc<dyn VirtioInterrupt>,
        parts: Parts,
    ) -> Result<Result<(), ActivateError>, Parts> {
        let Parts { taps, pairs, ctrl } = parts;
        let tap_fds: Vec<_> = taps.iter().map(|t| t.as_raw_fd()).collect();
        let count = pairs.len();
        let vhost = match VhostPairs::start(&self.label, mem, acked, fds, pairs, &tap_fds, interrupt.as_ref())
        {
            Ok(v) => v,
            Err(f) => {
                crate::warn_limited!(
                    "{}: vhost-net cannot serve this driver ({}); the vmm's worker moves the frames",
                    self.label,
                    vhost::error_chain(&f.error)
                );
                self.vhost = Some(f.fds);
                return Err(Parts { taps, pairs: f.pairs, ctrl });
            }
        };
        let relays = vhost.relays();
        log::info!(
            "{}: vhost-net serves {count} queue pair(s); {} queue(s) signal the guest through irqfds, {} through the vmm",
            self.label,
            vhost.direct_calls(),
            relays.len()
        );
        let worker = VhostWorker::start(VhostWorkerContext {
            label: self.label.clone(),
            mem: mem.clone(),
            taps,
            pairs: count,
            ctrl,
            mq: acked & bit(VIRTIO_NET_F_MQ) != 0,
            relays,
            interrupt: interrupt.clone(),
        });
        Ok(match worker {
            Ok(w) => {
                self.running = Some(Running::Vhost(vhost, w));
                Ok(())
            }
            Err(e) => {
                self.vhost = Some(vhost.stop());
                self.taps = e.taps;
                Err(ActivateError::Host(format!("vhost control thread: {}", e.error)))
            }
        })
    }

    /// Sorts the queues the driver enabled into pairs (receive `2k`, transmit `2k + 1`) and
    /// the control queue; pairs stop at the first one missing a queue.
    fn sort_queues(
        &self,
        acked: u64,
        queues: Vec<ActiveQueue>,
    ) -> (Vec<(ActiveQueue, ActiveQueue)>, Option<ActiveQueue>) {
        let usable = if acked & bit(VIRTIO_NET_F_MQ) != 0 { usize::from(self.pairs) } else { 1 };
        let mut slots: Vec<Option<ActiveQueue>> = (0..2 * usable + 1).map(|_| None).collect();
        for q in queues {
            let i = usize::from(q.index);
            match slots.get_mut(i) {
                Some(slot) => *slot = Some(q),
                None => log::debug!("{}: queue {i} enabled but not used", self.label),
            }
        }
        let ctrl = if acked & bit(VIRTIO_NET_F_CTRL_VQ) != 0 { slots[2 * usable].take() } else { None };
        let mut pairs = Vec::new();
        for k in 0..usable {
            match (slots[2 * k].take(), slots[2 * k + 1].take()) {
                (Some(rx), Some(tx)) => pairs.push((rx, tx)),
                _ => break,
            }
        }
        (pairs, ctrl)
    }
}

impl VirtioDevice for VirtioNet {
    fn debug_label(&self) -> &str {
        &self.label
    }

    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let acked = ctx.acked_features;
        let enabled = ctx.queues.len();
        let (pairs, ctrl) = self.sort_queues(acked, ctx.queues);
        if pairs.is_empty() {
            return Err(ActivateError::BadQueues(enabled));
        }
        let mut taps = self
            .taps
            .take()
            .ok_or_else(|| ActivateError::Host("the tap was lost when a worker failed".into()))?;
        let offloads = tun_offloads(acked);
        for (i, tap) in taps.iter_mut().enumerate() {
            if let Err(e) = tap.set_offload(offloads) {
                crate::warn_limited!("{}: tap queue {i}: cannot set offloads {offloads:#x}: {e}", self.label);
            }
        }
        let parts = Parts { taps, pairs, ctrl };
        let Parts { taps, pairs, ctrl } = match self.vhost.take() {
            Some(fds) => match self.start_vhost(fds, &ctx.mem, acked, &ctx.interrupt, parts) {
                Ok(result) => return result,
                Err(back) => back,
            },
            None => parts,
        };
        let guest_gso = [VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO]
            .iter()
            .any(|f| acked & bit(*f) != 0);
        let ctx = WorkerContext {
            label: self.label.clone(),
            mem: ctx.mem,
            taps,
            pairs,
            ctrl,
            mergeable: acked & bit(VIRTIO_NET_F_MRG_RXBUF) != 0,
            guest_csum: acked & bit(VIRTIO_NET_F_GUEST_CSUM) != 0,
            guest_gso,
            mq: acked & bit(VIRTIO_NET_F_MQ) != 0,
            interrupt: ctx.interrupt,
            stats: self.stats.clone(),
        };
        if let Some(events) = &self.events {
            *lock(&events.slot) = Some(worker::NetQueues::new(ctx));
            events.notify();
            self.running = Some(Running::Loop);
            return Ok(());
        }
        match NetWorker::start(ctx) {
            Ok(worker) => {
                self.running = Some(Running::User(worker));
                Ok(())
            }
            Err(e) => {
                self.taps = e.taps;
                Err(ActivateError::Host(format!("worker thread: {}", e.error)))
            }
        }
    }

    fn reset(&mut self) {
        match self.running.take() {
            Some(Running::User(worker)) => self.taps = worker.stop(),
            Some(Running::Loop) => {
                if let Some(events) = &self.events {
                    // Under the slot's lock: the loop is not in these queues now, and finds
                    // the slot empty from here on.
                    self.taps = lock(&events.slot).take().map(worker::NetQueues::into_taps);
                    events.notify();
                }
            }
            Some(Running::Vhost(vhost, worker)) => {
                // The backends go first, so no frame moves while the taps come back.
                self.vhost = Some(vhost.stop());
                self.taps = worker.stop();
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
