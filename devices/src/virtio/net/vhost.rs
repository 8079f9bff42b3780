// SPDX-License-Identifier: Apache-2.0
//! vhost-net: the host kernel moves frames between a tap and the guest's receive and
//! transmit queues, so neither the vmm's worker thread nor a vCPU touches the data path.
//! The ioctls come from rust-vmm's `vhost` crate (`vhost-kern`).
//!
//! One vhost-net instance serves one queue pair (vring 0 receive, vring 1 transmit) on one
//! tap queue. At activation ([`VhostSession::start`]) each pair the driver set up gets:
//! features (the ring features the driver acked), the memory table (every guest RAM
//! region), per vring its size, addresses, position, kick (the queue's doorbell eventfd) and
//! call eventfd, then the tap queue as backend. The call eventfd is the irqfd of the queue's
//! MSI-X vector when there is one ([`crate::virtio::VirtioInterrupt::queue_irqfd`]), so a
//! completion reaches the guest without leaving the kernel; otherwise (INTx, no vector) an
//! eventfd of our own that the session's thread relays through the transport. The control
//! queue stays in the vmm ([`super::vhost_worker`]). On reset the backends are removed and
//! each vring's position is read back into its queue ([`VhostSession::stop`]).
//!
//! The tap keeps doing what it does for the user-space path: the 12-byte virtio-net header
//! (`TUNSETVNETHDRSZ`, the header of a virtio 1.x driver, with or without mergeable buffers)
//! and the offloads the driver acknowledged (`TUNSETOFFLOAD`); vhost-net is not asked to add
//! or strip headers (`VHOST_NET_F_VIRTIO_NET_HDR` is not set).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vhost::vhost_kern::vhost_binding::{vhost_vring_file, VHOST_NET_SET_BACKEND};
use vhost::vhost_kern::VhostKernBackend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::QueueT;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::ioctl::ioctl_with_ref;

use super::VNET_HDR_LEN;
use crate::virtio::{
    ActiveQueue, VirtioInterrupt, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};

/// The device node of the kernel's vhost-net.
pub const VHOST_NET_PATH: &str = "/dev/vhost-net";

/// The feature bits vhost-net itself implements and must be told the driver acknowledged:
/// the ring layout and the header size. Offloads are the tap's business.
pub const RING_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_RING_INDIRECT_DESC
    | VIRTIO_F_RING_EVENT_IDX
    | (1 << VIRTIO_NET_F_MRG_RXBUF);

/// Errors of vhost-net.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// `vhost=on` and /dev/vhost-net could not be opened.
    #[error("vhost=on: cannot open {VHOST_NET_PATH} (load the vhost_net module, or use vhost=off)")]
    Open(#[source] io::Error),
    /// An ioctl on a vhost-net descriptor failed.
    #[error("vhost-net {0}")]
    Ioctl(&'static str, #[source] vhost::Error),
    /// `VHOST_NET_SET_BACKEND` failed.
    #[error("vhost-net set backend of vring {0}")]
    Backend(usize, #[source] io::Error),
    /// The driver acknowledged ring features this vhost-net lacks.
    #[error("the driver acknowledged features {0:#x} that vhost-net does not implement")]
    Features(u64),
    /// The negotiated header is not the one the tap carries.
    #[error("the driver's virtio-net header is {0} bytes; the tap carries {VNET_HDR_LEN}")]
    HeaderLen(usize),
    /// The number of vhost-net instances does not match the queue pairs.
    #[error("{got} vhost-net instances for {pairs} queue pairs")]
    Count {
        /// Instances given.
        got: usize,
        /// Queue pairs of the device.
        pairs: usize,
    },
    /// An eventfd could not be made.
    #[error("eventfd")]
    EventFd(#[source] io::Error),
}

/// What the user asked for with `vhost=` on a virtio NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhostPolicy {
    /// Unset: vhost-net when /dev/vhost-net opens, the user-space path otherwise.
    Auto,
    /// `vhost=on`: vhost-net or an error.
    On,
    /// `vhost=off`: the user-space path.
    Off,
}

impl From<Option<bool>> for VhostPolicy {
    fn from(v: Option<bool>) -> Self {
        match v {
            None => VhostPolicy::Auto,
            Some(true) => VhostPolicy::On,
            Some(false) => VhostPolicy::Off,
        }
    }
}

/// Opens one vhost-net instance (each serves one queue pair).
///
/// This is the only place the vmm opens /dev/vhost-net. When the vmm runs unprivileged,
/// vmctld will open the instances and pass the descriptors; [`VhostNetFd::new`] already
/// takes any such descriptor, so only the caller of this function changes.
pub fn open_vhost_net() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(VHOST_NET_PATH)
}

/// Which data path a card takes under `policy`: `Ok(Some(..))` with one vhost-net instance
/// per queue pair from `open`, `Ok(None)` for the user-space path (with the reason, when vhost
/// was wanted but is not there), or the error of `vhost=on` without vhost-net.
pub fn choose(
    policy: VhostPolicy,
    pairs: u16,
    mut open: impl FnMut() -> io::Result<File>,
) -> Result<(Option<Vec<VhostNetFd>>, String), VhostError> {
    if policy == VhostPolicy::Off {
        return Ok((None, "vhost=off".into()));
    }
    let mut fds = Vec::new();
    for _ in 0..pairs {
        let opened = open().map_err(VhostError::Open).and_then(VhostNetFd::new);
        match opened {
            Ok(fd) => fds.push(fd),
            Err(e) if policy == VhostPolicy::On => return Err(e),
            Err(e) => return Ok((None, format!("{VHOST_NET_PATH} unavailable: {}", error_chain(&e)))),
        }
    }
    Ok((Some(fds), format!("{VHOST_NET_PATH}, {pairs} instance(s)")))
}

/// `e` and its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// The features to set on vhost-net for a driver that acknowledged `acked`, given what the
/// instance offers (`VHOST_GET_FEATURES`).
pub fn vhost_features(acked: u64, offered: u64) -> Result<u64, VhostError> {
    let wanted = acked & RING_FEATURES;
    let missing = wanted & !offered;
    if missing != 0 {
        return Err(VhostError::Features(missing));
    }
    Ok(wanted)
}

/// The size of the virtio-net header a driver with `acked` features uses (virtio 1.2,
/// 5.1.6: 12 bytes with `VERSION_1` or `MRG_RXBUF`, the legacy 10 otherwise).
pub fn vnet_hdr_len(acked: u64) -> usize {
    if acked & (VIRTIO_F_VERSION_1 | (1 << VIRTIO_NET_F_MRG_RXBUF)) != 0 {
        12
    } else {
        10
    }
}

/// A vhost-net descriptor with the guest memory its vrings are translated against.
struct KernNet {
    file: File,
    mem: Arc<GuestMemoryMmap>,
}

impl AsRawFd for KernNet {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl VhostKernBackend for KernNet {
    type AS = Arc<GuestMemoryMmap>;

    fn mem(&self) -> &Self::AS {
        &self.mem
    }
}

/// One vhost-net instance, owned by this process (`VHOST_SET_OWNER` done).
pub struct VhostNetFd {
    kern: KernNet,
    features: u64,
}

impl VhostNetFd {
    /// Takes over an open vhost-net descriptor: sets this process as its owner and reads the
    /// features it offers.
    pub fn new(file: File) -> Result<Self, VhostError> {
        let kern = KernNet { file, mem: Arc::new(GuestMemoryMmap::default()) };
        kern.set_owner().map_err(|e| VhostError::Ioctl("set owner", e))?;
        let features = kern.get_features().map_err(|e| VhostError::Ioctl("get features", e))?;
        Ok(VhostNetFd { kern, features })
    }

    /// The features the instance offers.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// `VHOST_NET_SET_BACKEND`: vring `vring` moves frames through `tap` (`None`: stops).
    fn set_backend(&self, vring: usize, tap: Option<RawFd>) -> Result<(), VhostError> {
        let file = vhost_vring_file { index: vring as u32, fd: tap.unwrap_or(-1) };
        // SAFETY: the descriptor is an open vhost-net instance, the argument is a valid
        // vhost_vring_file the kernel only reads, and the result is checked.
        let ret = unsafe { ioctl_with_ref(&self.kern, VHOST_NET_SET_BACKEND(), &file) };
        if ret < 0 {
            return Err(VhostError::Backend(vring, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Sets features and memory table, then each vring of the pair, then the backend.
    fn start_pair(
        &mut self,
        mem: &GuestMemoryMmap,
        features: u64,
        queues: [&ActiveQueue; 2],
        calls: [&EventFd; 2],
        tap: RawFd,
    ) -> Result<(), VhostError> {
        let ioctl = |op| move |e| VhostError::Ioctl(op, e);
        self.kern.mem = Arc::new(mem.clone());
        self.kern.set_features(features).map_err(ioctl("set features"))?;
        self.kern.set_mem_table(&memory_table(mem)).map_err(ioctl("set memory table"))?;
        for (vring, (q, call)) in queues.iter().zip(calls).enumerate() {
            let config = VringConfigData {
                queue_max_size: q.queue.max_size(),
                queue_size: q.queue.size(),
                flags: 0,
                desc_table_addr: q.queue.desc_table(),
                used_ring_addr: q.queue.used_ring(),
                avail_ring_addr: q.queue.avail_ring(),
                log_addr: None,
            };
            self.kern.set_vring_num(vring, q.queue.size()).map_err(ioctl("set vring size"))?;
            self.kern.set_vring_addr(vring, &config).map_err(ioctl("set vring addresses"))?;
            self.kern.set_vring_base(vring, q.queue.next_avail()).map_err(ioctl("set vring base"))?;
            self.kern.set_vring_call(vring, call).map_err(ioctl("set vring call"))?;
            self.kern.set_vring_kick(vring, &q.kick).map_err(ioctl("set vring kick"))?;
        }
        for vring in 0..2 {
            self.set_backend(vring, Some(tap))?;
        }
        Ok(())
    }

    /// Removes the backend of both vrings and reads their positions back into `queues`:
    /// the next available entry from vhost-net, the next used one from the used ring.
    fn stop_pair(&self, mem: &GuestMemoryMmap, queues: [&mut ActiveQueue; 2], label: &str) {
        for (vring, q) in queues.into_iter().enumerate() {
            if let Err(e) = self.set_backend(vring, None) {
                crate::warn_limited!("{label}: {}", error_chain(&e));
            }
            match self.kern.get_vring_base(vring) {
                Ok(base) => q.queue.set_next_avail(base as u16),
                Err(e) => crate::warn_limited!("{label}: vhost-net get vring base {vring}: {e}"),
            }
            match q.queue.used_idx(mem, Ordering::Acquire) {
                Ok(used) => q.queue.set_next_used(used.0),
                Err(e) => log::debug!("{label}: queue {}: used index: {e}", q.index),
            }
        }
    }
}

/// Every guest RAM region as vhost sees it.
fn memory_table(mem: &GuestMemoryMmap) -> Vec<VhostUserMemoryRegionInfo> {
    mem.iter()
        .filter_map(|r| {
            let host = r.get_host_address(MemoryRegionAddress(0)).ok()?;
            Some(VhostUserMemoryRegionInfo {
                guest_phys_addr: r.start_addr().0,
                memory_size: r.len(),
                userspace_addr: host as u64,
                mmap_offset: 0,
                mmap_handle: -1,
            })
        })
        .collect()
}

/// How completions of one queue reach the driver.
pub enum Call {
    /// The irqfd of the queue's MSI-X vector, written by the kernel.
    Irqfd(EventFd),
    /// An eventfd of our own that the session's thread relays to the transport.
    Relay(EventFd),
}

impl Call {
    /// The irqfd of queue `index` when the transport has one, else a new relay eventfd.
    pub fn for_queue(interrupt: &dyn VirtioInterrupt, index: u16) -> Result<Call, VhostError> {
        match interrupt.queue_irqfd(index) {
            Some(fd) => Ok(Call::Irqfd(fd)),
            None => EventFd::new(libc::EFD_NONBLOCK).map(Call::Relay).map_err(VhostError::EventFd),
        }
    }

    /// The eventfd vhost-net writes.
    pub fn fd(&self) -> &EventFd {
        match self {
            Call::Irqfd(fd) | Call::Relay(fd) => fd,
        }
    }
}

/// The vhost-net side of a running card: the pairs it serves, their instances and call
/// eventfds.
pub struct VhostPairs {
    label: String,
    mem: GuestMemoryMmap,
    fds: Vec<VhostNetFd>,
    pairs: Vec<(ActiveQueue, ActiveQueue)>,
    calls: Vec<[Call; 2]>,
    /// How many pairs have their backend set (the first `started`).
    started: usize,
}

/// Why vhost-net did not start, with everything needed to start the user-space path.
pub struct StartFailure {
    /// The cause.
    pub error: VhostError,
    /// The instances, for the next activation.
    pub fds: Vec<VhostNetFd>,
    /// The queue pairs, at the positions vhost-net left them.
    pub pairs: Vec<(ActiveQueue, ActiveQueue)>,
}

impl VhostPairs {
    /// Starts vhost-net on each pair in `pairs` (its tap in `taps` at the same index), with
    /// the features of a driver that acknowledged `acked`.
    pub fn start(
        label: &str,
        mem: &GuestMemoryMmap,
        acked: u64,
        fds: Vec<VhostNetFd>,
        pairs: Vec<(ActiveQueue, ActiveQueue)>,
        taps: &[RawFd],
        interrupt: &dyn VirtioInterrupt,
    ) -> Result<Self, StartFailure> {
        let mut this = VhostPairs {
            label: label.to_string(),
            mem: mem.clone(),
            fds,
            pairs,
            calls: Vec::new(),
            started: 0,
        };
        match this.start_all(acked, taps, interrupt) {
            Ok(()) => Ok(this),
            Err(error) => {
                this.stop_started();
                let fds = std::mem::take(&mut this.fds);
                let pairs = std::mem::take(&mut this.pairs);
                Err(StartFailure { error, fds, pairs })
            }
        }
    }

    fn start_all(
        &mut self,
        acked: u64,
        taps: &[RawFd],
        interrupt: &dyn VirtioInterrupt,
    ) -> Result<(), VhostError> {
        let hdr = vnet_hdr_len(acked);
        if hdr != VNET_HDR_LEN {
            return Err(VhostError::HeaderLen(hdr));
        }
        if self.fds.len() < self.pairs.len() || taps.len() < self.pairs.len() {
            return Err(VhostError::Count { got: self.fds.len().min(taps.len()), pairs: self.pairs.len() });
        }
        for (k, (rx, tx)) in self.pairs.iter().enumerate() {
            let features = vhost_features(acked, self.fds[k].features())?;
            let calls = [Call::for_queue(interrupt, rx.index)?, Call::for_queue(interrupt, tx.index)?];
            self.fds[k].start_pair(&self.mem, features, [rx, tx], [calls[0].fd(), calls[1].fd()], taps[k])?;
            self.calls.push(calls);
            self.started = k + 1;
        }
        Ok(())
    }

    fn stop_started(&mut self) {
        for (fd, (rx, tx)) in self.fds.iter().zip(self.pairs.iter_mut()).take(self.started) {
            fd.stop_pair(&self.mem, [rx, tx], &self.label);
        }
        self.started = 0;
        self.calls.clear();
    }

    /// The relay eventfds with the queue each signals, for the session's thread.
    pub fn relays(&self) -> Vec<(u16, EventFd)> {
        let mut out = Vec::new();
        for (calls, (rx, tx)) in self.calls.iter().zip(&self.pairs) {
            for (call, q) in calls.iter().zip([rx, tx]) {
                if let Call::Relay(fd) = call {
                    match fd.try_clone() {
                        Ok(fd) => out.push((q.index, fd)),
                        Err(e) => {
                            crate::error_limited!("{}: queue {}: relay eventfd: {e}", self.label, q.index)
                        }
                    }
                }
            }
        }
        out
    }

    /// How many queues signal the guest through an irqfd directly (the others are relayed).
    pub fn direct_calls(&self) -> usize {
        self.calls.iter().flatten().filter(|c| matches!(c, Call::Irqfd(_))).count()
    }

    /// Stops every pair and gives back the instances.
    pub fn stop(mut self) -> Vec<VhostNetFd> {
        self.stop_started();
        std::mem::take(&mut self.fds)
    }
}

impl Drop for VhostPairs {
    fn drop(&mut self) {
        self.stop_started();
    }
}

#[cfg(test)]
mod tests;
