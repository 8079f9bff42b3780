// SPDX-License-Identifier: Apache-2.0
//! The thread that serves a virtio-net device: it waits (epoll) on the queues' kick
//! eventfds, on each queue pair's tap descriptor and on a kill eventfd; it transmits what
//! the transmit queues hold, moves frames from the taps into the receive queues, answers
//! the control queue, and signals completions through the transport's interrupt.
//!
//! Receive flow control: a tap is polled only while its pair is in use and its receive
//! queue took the last frame. When the queue has no room, the frame read stays in the pair's
//! buffer, the tap leaves the epoll set, and the next kick of the receive queue brings it
//! back (with `VIRTIO_F_RING_EVENT_IDX` the worker first asks to be kicked). Frames wait in
//! the tap meanwhile (the kernel drops beyond its queue length, as for any slow reader);
//! nothing spins.
//!
//! The queue logic lives in [`NetQueues`], which tests drive without the thread.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::backend::VnetTap;
use super::ctrl::{self, CtrlState};
use super::rx::{self, RxOutcome, RX_BUF_LEN};
use super::tx;
use crate::net::tap::VNET_HDR_LEN;
use crate::stats::NetStats;
use crate::virtio::queue;
use crate::virtio::{ActiveQueue, VirtioInterrupt};

const KILL_TOKEN: u64 = u64::MAX;
/// The control queue's token; pair `i` has `3i` (receive kick), `3i + 1` (transmit kick)
/// and `3i + 2` (its tap readable).
pub const CTRL_TOKEN: u64 = u64::MAX - 1;
/// Frames moved from a tap per wake-up before the other queues get a turn.
const RX_BUDGET: usize = 64;

/// What the thread works with.
pub struct WorkerContext {
    /// Name for logs.
    pub label: String,
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// One tap queue per queue pair the device has (also those the driver does not use).
    pub taps: Vec<Box<dyn VnetTap>>,
    /// The (receive, transmit) queues of the pairs the driver set up, in order.
    pub pairs: Vec<(ActiveQueue, ActiveQueue)>,
    /// The control queue, if the driver set it up.
    pub ctrl: Option<ActiveQueue>,
    /// The driver negotiated `VIRTIO_NET_F_MRG_RXBUF`.
    pub mergeable: bool,
    /// The driver negotiated `VIRTIO_NET_F_GUEST_CSUM`.
    pub guest_csum: bool,
    /// The driver negotiated a `VIRTIO_NET_F_GUEST_TSO*` or `GUEST_UFO` feature.
    pub guest_gso: bool,
    /// The driver negotiated `VIRTIO_NET_F_MQ`.
    pub mq: bool,
    /// Completion notifications.
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The interface's counters (guest-caused drops included; bytes without the
    /// virtio-net header).
    pub stats: Arc<NetStats>,
}

/// What a pair's tap should do after [`NetQueues::process_rx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPoll {
    /// Keep polling the tap (it is drained, or the budget ran out with frames left).
    Poll,
    /// Stop polling the tap until the receive queue is kicked (no room, pair not in use,
    /// queue broken, or the tap failed).
    Wait,
}

struct Pair {
    rx: ActiveQueue,
    tx: ActiveQueue,
    rx_broken: bool,
    tx_broken: bool,
    /// The length of the frame in `frame` still to be delivered (it did not fit yet).
    pending: Option<usize>,
    /// The last tap read failed (logged once).
    tap_failed: bool,
    frame: Vec<u8>,
}

/// The queues of a running device and what they need, without the thread.
pub struct NetQueues {
    label: String,
    mem: GuestMemoryMmap,
    taps: Vec<Box<dyn VnetTap>>,
    pairs: Vec<Pair>,
    ctrl: Option<ActiveQueue>,
    ctrl_broken: bool,
    ctrl_state: CtrlState,
    mergeable: bool,
    guest_csum: bool,
    guest_gso: bool,
    interrupt: Arc<dyn VirtioInterrupt>,
    /// Frame counters.
    pub stats: Arc<NetStats>,
}

impl NetQueues {
    /// Takes over `ctx`; only the first pair is in use, as the specification asks until the
    /// driver sets more, so the other taps' queues are detached.
    pub fn new(ctx: WorkerContext) -> Self {
        let max_pairs = ctx.pairs.len().min(ctx.taps.len()) as u16;
        let pairs = ctx
            .pairs
            .into_iter()
            .take(usize::from(max_pairs))
            .map(|(rx, tx)| Pair {
                rx,
                tx,
                rx_broken: false,
                tx_broken: false,
                pending: None,
                tap_failed: false,
                frame: vec![0; RX_BUF_LEN],
            })
            .collect();
        let mut queues = NetQueues {
            label: ctx.label,
            mem: ctx.mem,
            taps: ctx.taps,
            pairs,
            ctrl: ctx.ctrl,
            ctrl_broken: false,
            ctrl_state: CtrlState { mq: ctx.mq, max_pairs, pairs: 1 },
            mergeable: ctx.mergeable,
            guest_csum: ctx.guest_csum,
            guest_gso: ctx.guest_gso,
            interrupt: ctx.interrupt,
            stats: ctx.stats,
        };
        queues.apply_pairs();
        queues
    }

    /// Number of queue pairs the driver can use.
    pub fn pair_count(&self) -> usize {
        self.pairs.len()
    }

    /// Number of queue pairs in use (set by the control queue).
    pub fn active_pairs(&self) -> usize {
        usize::from(self.ctrl_state.pairs).min(self.pairs.len())
    }

    /// Gives the taps back.
    pub fn into_taps(self) -> Vec<Box<dyn VnetTap>> {
        self.taps
    }

    /// The queues' kick eventfds with the token of each (see [`NetQueues::handle`]).
    pub fn kicks(&self) -> Vec<(u64, &EventFd)> {
        let mut kicks: Vec<(u64, &EventFd)> = self.ctrl.iter().map(|c| (CTRL_TOKEN, &c.kick)).collect();
        for (i, p) in self.pairs.iter().enumerate() {
            kicks.push((3 * i as u64, &p.rx.kick));
            kicks.push((3 * i as u64 + 1, &p.tx.kick));
        }
        kicks
    }

    /// The tap of pair `i` and the token of its readiness.
    pub fn tap(&self, i: usize) -> Option<(u64, std::os::fd::RawFd)> {
        self.taps.get(i).map(|t| (3 * i as u64 + 2, t.as_raw_fd()))
    }

    /// Serves what was made available before the queues were watched (the kicks of that
    /// time went unseen); says for each pair whether to watch its tap.
    pub fn start(&mut self) -> Vec<(usize, RxPoll)> {
        self.process_ctrl();
        (0..self.pair_count())
            .map(|i| {
                self.process_tx(i);
                (i, self.process_rx(i))
            })
            .collect()
    }

    /// Handles the event of `token` (a kick, drained here, or a readable tap); returns the
    /// pairs whose tap must now be watched or not.
    pub fn handle(&mut self, token: u64) -> Vec<(usize, RxPoll)> {
        if token == CTRL_TOKEN {
            if let Some(c) = &self.ctrl {
                // Drain the counter; a failure only means it was already zero.
                let _ = c.kick.read();
            }
            if self.process_ctrl() {
                return (0..self.pair_count()).map(|i| (i, self.process_rx(i))).collect();
            }
            return Vec::new();
        }
        let i = (token / 3) as usize;
        let Some(pair) = self.pairs.get(i) else { return Vec::new() };
        match token % 3 {
            0 => {
                let _ = pair.rx.kick.read();
                vec![(i, self.process_rx(i))]
            }
            1 => {
                let _ = pair.tx.kick.read();
                self.process_tx(i);
                Vec::new()
            }
            _ => vec![(i, self.process_rx(i))],
        }
    }

    /// Attaches the taps of the pairs in use and detaches the others; frames held for a pair
    /// no longer in use are dropped.
    fn apply_pairs(&mut self) {
        let active = self.active_pairs();
        for (i, tap) in self.taps.iter_mut().enumerate() {
            if let Err(e) = tap.set_queue_enabled(i < active) {
                crate::warn_limited!(
                    "{}: tap queue {i}: cannot {}: {e}",
                    self.label,
                    if i < active { "attach" } else { "detach" }
                );
            }
        }
        for pair in self.pairs.iter_mut().skip(active) {
            if pair.pending.take().is_some() {
                self.stats.rx_drop();
            }
        }
    }

    /// Transmits every available chain of pair `i`'s transmit queue. A pair not in use
    /// (the driver still draining it after lowering the pair count) sends through the first
    /// pair's tap, since its own is detached.
    pub fn process_tx(&mut self, i: usize) {
        let tap_index = if i < self.active_pairs() { i } else { 0 };
        let NetQueues { label, mem, taps, pairs, interrupt, stats, .. } = self;
        let (Some(pair), Some(tap)) = (pairs.get_mut(i), taps.get_mut(tap_index)) else { return };
        if pair.tx_broken {
            return;
        }
        let served = queue::drain_queue(label, mem, &mut pair.tx, interrupt.as_ref(), |chain| {
            let head = chain.head_index();
            match tx::transmit(mem, chain, tap.as_mut()) {
                Ok(n) => stats.tx(n.saturating_sub(VNET_HDR_LEN) as u64),
                Err(e) => {
                    log::debug!("{label}: transmit chain {head}: {e}");
                    stats.tx_drop();
                }
            }
            0
        });
        pair.tx_broken = served.is_none();
    }

    /// Moves frames from pair `i`'s tap (the frame it holds first) into its receive queue,
    /// at most [`RX_BUDGET`] new frames per call.
    pub fn process_rx(&mut self, i: usize) -> RxPoll {
        if i >= self.active_pairs() {
            return RxPoll::Wait;
        }
        let NetQueues { label, mem, taps, pairs, interrupt, stats, mergeable, guest_csum, guest_gso, .. } =
            self;
        let (Some(pair), Some(tap)) = (pairs.get_mut(i), taps.get_mut(i)) else { return RxPoll::Wait };
        if pair.rx_broken {
            return RxPoll::Wait;
        }
        let mut used = 0usize;
        let mut frames = 0;
        let poll = loop {
            let len = match pair.pending {
                Some(len) => len,
                None if frames == RX_BUDGET => break RxPoll::Poll,
                None => match tap.read_frame(&mut pair.frame) {
                    Ok(Some(len)) => {
                        pair.tap_failed = false;
                        frames += 1;
                        if !rx::sanitize_header(&mut pair.frame[..len], *guest_csum, *guest_gso) {
                            log::debug!(
                                "{label}: dropped a received frame of {len} bytes the driver cannot take"
                            );
                            stats.rx_drop();
                            continue;
                        }
                        pair.pending = Some(len);
                        len
                    }
                    Ok(None) => break RxPoll::Poll,
                    Err(e) => {
                        // Wait for the next kick rather than spin on a descriptor in error.
                        if !std::mem::replace(&mut pair.tap_failed, true) {
                            crate::warn_limited!("{label}: tap queue {i}: {e}");
                        }
                        break RxPoll::Wait;
                    }
                },
            };
            let outcome = match rx::deliver(mem, &mut pair.rx.queue, &mut pair.frame[..len], *mergeable) {
                Ok(d) => {
                    used += d.used;
                    d.outcome
                }
                Err(e) => {
                    queue::queue_broken(label, interrupt.as_ref(), pair.rx.index, &e);
                    pair.rx_broken = true;
                    break RxPoll::Wait;
                }
            };
            match outcome {
                RxOutcome::Delivered(_) => stats.rx(len.saturating_sub(VNET_HDR_LEN) as u64),
                RxOutcome::Dropped => {
                    log::debug!(
                        "{label}: dropped a received frame of {len} bytes: receive buffers too small"
                    );
                    stats.rx_drop();
                }
                RxOutcome::NoBuffers => {
                    if !pair.rx.queue.event_idx_enabled() {
                        // The driver kicks at every buffer it adds.
                        break RxPoll::Wait;
                    }
                    match ask_for_kick(&mut pair.rx, mem) {
                        // Buffers arrived meanwhile: try again (bounded: the frame either
                        // fits or is dropped once the driver's whole ring is available).
                        Ok(true) => continue,
                        Ok(false) => break RxPoll::Wait,
                        Err(e) => {
                            queue::queue_broken(label, interrupt.as_ref(), pair.rx.index, &e);
                            pair.rx_broken = true;
                            break RxPoll::Wait;
                        }
                    }
                }
            }
            pair.pending = None;
        };
        if used > 0 {
            queue::notify(label, interrupt.as_ref(), &mut pair.rx, mem);
        }
        poll
    }

    /// Executes the control queue's commands; true if the number of pairs in use changed.
    pub fn process_ctrl(&mut self) -> bool {
        let before = self.ctrl_state.pairs;
        let NetQueues { label, mem, ctrl, ctrl_broken, ctrl_state, interrupt, .. } = self;
        let Some(q) = ctrl.as_mut() else { return false };
        if *ctrl_broken {
            return false;
        }
        let served = queue::drain_queue(label, mem, q, interrupt.as_ref(), |chain| {
            ctrl::execute(mem, chain, ctrl_state)
        });
        *ctrl_broken = served.is_none();
        let changed = self.ctrl_state.pairs != before;
        if changed {
            log::debug!("{}: {} queue pairs in use", self.label, self.ctrl_state.pairs);
            self.apply_pairs();
        }
        changed
    }
}

/// With event indexes, asks the driver to kick `q` at the next buffer it adds beyond those
/// already available (which, with mergeable buffers, may be too few for the frame held):
/// `avail_event` is set to the available index rather than to the device's position.
/// Returns whether buffers were added meanwhile.
fn ask_for_kick(q: &mut ActiveQueue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
    let avail = q.queue.avail_idx(mem, Ordering::Acquire)?;
    let position = q.queue.next_avail();
    q.queue.set_next_avail(avail.0);
    let more = q.queue.enable_notification(mem);
    q.queue.set_next_avail(position);
    more
}

/// Why [`NetWorker::start`] failed, with the taps it was given when they survived.
pub struct StartError {
    /// The cause.
    pub error: std::io::Error,
    /// The taps, unless they went down with a thread that could not be created.
    pub taps: Option<Vec<Box<dyn VnetTap>>>,
}

/// A running worker; dropping it without [`NetWorker::stop`] stops it too (and closes the
/// taps).
pub struct NetWorker {
    kill: EventFd,
    handle: Option<JoinHandle<Vec<Box<dyn VnetTap>>>>,
}

impl NetWorker {
    /// Starts serving `ctx`'s queues. On failure the taps come back when they can (not
    /// when the thread itself could not be created).
    pub fn start(ctx: WorkerContext) -> Result<Self, StartError> {
        let (kill, epoll) = match Self::setup(&ctx) {
            Ok(v) => v,
            Err(error) => return Err(StartError { error, taps: Some(ctx.taps) }),
        };
        let name = ctx.label.clone();
        let queues = NetQueues::new(ctx);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                crate::sandbox::enter_or_warn(crate::sandbox::ThreadRole::NetWorker);
                run(epoll, queues)
            })
            .map_err(|error| StartError { error, taps: None })?;
        Ok(NetWorker { kill, handle: Some(handle) })
    }

    fn setup(ctx: &WorkerContext) -> std::io::Result<(EventFd, Epoll)> {
        let kill = EventFd::new(libc::EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(ControlOperation::Add, kill.as_raw_fd(), EpollEvent::new(EventSet::IN, KILL_TOKEN))?;
        if let Some(q) = &ctx.ctrl {
            epoll.ctl(
                ControlOperation::Add,
                q.kick.as_raw_fd(),
                EpollEvent::new(EventSet::IN, CTRL_TOKEN),
            )?;
        }
        for (i, (rx, tx)) in ctx.pairs.iter().enumerate() {
            let base = 3 * i as u64;
            epoll.ctl(ControlOperation::Add, rx.kick.as_raw_fd(), EpollEvent::new(EventSet::IN, base))?;
            epoll.ctl(ControlOperation::Add, tx.kick.as_raw_fd(), EpollEvent::new(EventSet::IN, base + 1))?;
        }
        Ok((kill, epoll))
    }

    /// Stops the thread and waits for it; returns the taps (none if the thread panicked).
    pub fn stop(mut self) -> Option<Vec<Box<dyn VnetTap>>> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Option<Vec<Box<dyn VnetTap>>> {
        let handle = self.handle.take()?;
        if let Err(e) = self.kill.write(1) {
            crate::error_limited!("virtio-net: cannot stop the worker: {e}");
            return None;
        }
        match handle.join() {
            Ok(taps) => Some(taps),
            Err(_) => {
                crate::error_limited!("virtio-net: the worker panicked");
                None
            }
        }
    }
}

impl Drop for NetWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Which taps are in the epoll set.
struct TapPolling {
    polled: Vec<bool>,
}

impl TapPolling {
    fn set(&mut self, epoll: &Epoll, queues: &NetQueues, i: usize, want: bool) {
        let Some(polled) = self.polled.get_mut(i) else { return };
        if *polled == want {
            return;
        }
        let fd = queues.taps[i].as_raw_fd();
        let result = if want {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, 3 * i as u64 + 2))
        } else {
            // Removed rather than masked: epoll reports errors even on an empty mask.
            epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default())
        };
        match result {
            Ok(()) => *polled = want,
            Err(e) => crate::error_limited!("{}: tap queue {i}: epoll: {e}", queues.label),
        }
    }
}

fn run(epoll: Epoll, mut q: NetQueues) -> Vec<Box<dyn VnetTap>> {
    let pairs = q.pair_count();
    let mut taps = TapPolling { polled: vec![false; pairs] };
    let mut events = vec![EpollEvent::default(); 3 * pairs + 2];
    for (i, poll) in q.start() {
        taps.set(&epoll, &q, i, poll == RxPoll::Poll);
    }
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::error_limited!("{}: epoll: {e}", q.label);
                return q.into_taps();
            }
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == KILL_TOKEN {
                return q.into_taps();
            }
            for (i, poll) in q.handle(token) {
                taps.set(&epoll, &q, i, poll == RxPoll::Poll);
            }
        }
    }
}
