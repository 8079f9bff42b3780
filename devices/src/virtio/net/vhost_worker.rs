// SPDX-License-Identifier: Apache-2.0
//! The thread of a card whose queue pairs run in vhost-net: it answers the control queue
//! (attaching the tap queues of the pairs in use, as [`super::worker`] does), and relays the
//! completions of queues that have no irqfd (INTx, or no MSI-X vector) to the transport.
//! It owns the taps while it runs; vhost-net holds its own references to them.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::backend::VnetTap;
use super::ctrl::{self, CtrlState};
use super::worker::StartError;
use crate::virtio::queue;
use crate::virtio::{ActiveQueue, VirtioInterrupt, VirtioInterruptKind};

const KILL_TOKEN: u64 = u64::MAX;
const CTRL_TOKEN: u64 = u64::MAX - 1;

/// What the thread works with.
pub struct VhostWorkerContext {
    /// Name for logs.
    pub label: String,
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// One tap queue per queue pair of the device.
    pub taps: Vec<Box<dyn VnetTap>>,
    /// Queue pairs the driver set up (vhost-net serves them).
    pub pairs: usize,
    /// The control queue, if the driver set it up.
    pub ctrl: Option<ActiveQueue>,
    /// The driver negotiated `VIRTIO_NET_F_MQ`.
    pub mq: bool,
    /// Relay eventfds and the queue each one signals.
    pub relays: Vec<(u16, EventFd)>,
    /// Completion notifications.
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

/// The control queue and the taps, without the thread.
pub struct VhostCtrl {
    label: String,
    mem: GuestMemoryMmap,
    taps: Vec<Box<dyn VnetTap>>,
    ctrl: Option<ActiveQueue>,
    broken: bool,
    state: CtrlState,
    interrupt: Arc<dyn VirtioInterrupt>,
}

impl VhostCtrl {
    /// Takes the taps and the control queue; one pair in use until the driver sets more.
    pub fn new(
        label: String,
        mem: GuestMemoryMmap,
        taps: Vec<Box<dyn VnetTap>>,
        pairs: usize,
        ctrl: Option<ActiveQueue>,
        mq: bool,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Self {
        let max_pairs = pairs.min(taps.len()) as u16;
        let mut this = VhostCtrl {
            label,
            mem,
            taps,
            ctrl,
            broken: false,
            state: CtrlState { mq, max_pairs, pairs: 1 },
            interrupt,
        };
        this.apply_pairs();
        this
    }

    /// Queue pairs in use.
    pub fn active_pairs(&self) -> u16 {
        self.state.pairs
    }

    /// Attaches the tap queues of the pairs in use and detaches the others.
    fn apply_pairs(&mut self) {
        let active = usize::from(self.state.pairs);
        for (i, tap) in self.taps.iter_mut().enumerate() {
            if let Err(e) = tap.set_queue_enabled(i < active) {
                crate::warn_limited!(
                    "{}: tap queue {i}: cannot {}: {e}",
                    self.label,
                    if i < active { "attach" } else { "detach" }
                );
            }
        }
    }

    /// Executes the control queue's commands.
    pub fn process(&mut self) {
        let before = self.state.pairs;
        let VhostCtrl { label, mem, ctrl, broken, state, interrupt, .. } = self;
        let Some(q) = ctrl.as_mut() else { return };
        if *broken {
            return;
        }
        let served =
            queue::drain_queue(label, mem, q, interrupt.as_ref(), |chain| ctrl::execute(mem, chain, state));
        *broken = served.is_none();
        if self.state.pairs != before {
            log::debug!("{}: {} queue pairs in use", self.label, self.state.pairs);
            self.apply_pairs();
        }
    }

    /// Gives the taps back.
    pub fn into_taps(self) -> Vec<Box<dyn VnetTap>> {
        self.taps
    }
}

/// A running thread; dropping it stops it.
pub struct VhostWorker {
    kill: EventFd,
    handle: Option<JoinHandle<Vec<Box<dyn VnetTap>>>>,
}

impl VhostWorker {
    /// Starts the thread. On failure the taps come back unless the thread could not be
    /// created.
    pub fn start(ctx: VhostWorkerContext) -> Result<Self, StartError> {
        let (kill, epoll) = match setup(&ctx) {
            Ok(v) => v,
            Err(error) => return Err(StartError { error, taps: Some(ctx.taps) }),
        };
        let name = ctx.label.clone();
        let relays = ctx.relays;
        let interrupt = ctx.interrupt.clone();
        let ctrl = VhostCtrl::new(ctx.label, ctx.mem, ctx.taps, ctx.pairs, ctx.ctrl, ctx.mq, ctx.interrupt);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                crate::sandbox::enter_or_warn(crate::sandbox::ThreadRole::NetWorker);
                run(epoll, ctrl, relays, interrupt)
            })
            .map_err(|error| StartError { error, taps: None })?;
        Ok(VhostWorker { kill, handle: Some(handle) })
    }

    /// Stops the thread and waits for it; returns the taps (none if it panicked).
    pub fn stop(mut self) -> Option<Vec<Box<dyn VnetTap>>> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Option<Vec<Box<dyn VnetTap>>> {
        let handle = self.handle.take()?;
        if let Err(e) = self.kill.write(1) {
            crate::error_limited!("virtio-net: cannot stop the vhost control thread: {e}");
            return None;
        }
        handle.join().map_err(|_| crate::error_limited!("virtio-net: the vhost control thread panicked")).ok()
    }
}

impl Drop for VhostWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn setup(ctx: &VhostWorkerContext) -> std::io::Result<(EventFd, Epoll)> {
    let kill = EventFd::new(libc::EFD_NONBLOCK)?;
    let epoll = Epoll::new()?;
    epoll.ctl(ControlOperation::Add, kill.as_raw_fd(), EpollEvent::new(EventSet::IN, KILL_TOKEN))?;
    if let Some(q) = &ctx.ctrl {
        epoll.ctl(ControlOperation::Add, q.kick.as_raw_fd(), EpollEvent::new(EventSet::IN, CTRL_TOKEN))?;
    }
    for (i, (_, fd)) in ctx.relays.iter().enumerate() {
        epoll.ctl(ControlOperation::Add, fd.as_raw_fd(), EpollEvent::new(EventSet::IN, i as u64))?;
    }
    Ok((kill, epoll))
}

fn run(
    epoll: Epoll,
    mut ctrl: VhostCtrl,
    relays: Vec<(u16, EventFd)>,
    interrupt: Arc<dyn VirtioInterrupt>,
) -> Vec<Box<dyn VnetTap>> {
    let mut events = vec![EpollEvent::default(); relays.len() + 2];
    // Commands made available before activation were announced by kicks the thread missed.
    ctrl.process();
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::error_limited!("{}: epoll: {e}", ctrl.label);
                return ctrl.into_taps();
            }
        };
        for ev in &events[..n] {
            match ev.data() {
                KILL_TOKEN => return ctrl.into_taps(),
                CTRL_TOKEN => {
                    if let Some(q) = &ctrl.ctrl {
                        // Drain the counter; a failure only means it was already zero.
                        let _ = q.kick.read();
                    }
                    ctrl.process();
                }
                i => {
                    let Some((queue, fd)) = relays.get(i as usize) else { continue };
                    let _ = fd.read();
                    interrupt.signal(VirtioInterruptKind::Queue(*queue));
                }
            }
        }
    }
}
