// SPDX-License-Identifier: Apache-2.0
//! A Linux tap interface: `/dev/net/tun` with `TUNSETIFF` (`IFF_TAP | IFF_NO_PI`),
//! non-blocking. Attaching to an existing (persistent) tap or creating a new one is the same
//! call; creating needs `CAP_NET_ADMIN`, and a tap created here disappears when it is
//! dropped. Bringing the interface up and bridging it is the host administrator's business.
//!
//! Two flavours:
//! - [`Tap::open`]: plain Ethernet frames, the [`NetBackend`] the e1000 uses.
//! - [`Tap::open_queues`] with `vnet_hdr` (or [`Tap::from_fd`] on a descriptor someone else
//!   opened): every frame carries a 12-byte `virtio_net_hdr_v1` first (`IFF_VNET_HDR`,
//!   `TUNSETVNETHDRSZ`), so checksum and segmentation offloads cross the tap, and with
//!   several queues (`IFF_MULTI_QUEUE`) there is one descriptor per queue pair. This is what
//!   virtio-net uses ([`crate::virtio::net`]); such a tap is not a [`NetBackend`] user.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::NetBackend;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;
const IFF_MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;
/// Size of the header a vnet-header tap puts before each frame: `struct virtio_net_hdr_v1`
/// (the virtio 1.x header, with `num_buffers`).
pub const VNET_HDR_LEN: usize = 12;
/// Most queues of a multiqueue tap (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_TAP_QUEUES: u16 = 256;

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `TUNGETIFF` failed on a descriptor handed over: not a tun/tap descriptor, or detached.
    #[error("the descriptor given is not an attached tun/tap queue")]
    GetIff(#[source] io::Error),
    /// The name does not fit an interface name (1 to 15 bytes, no NUL or '/').
    #[error("invalid tap interface name '{0}'")]
    InvalidName(String),
    /// A descriptor handed over is a tun (not tap) device, has packet information on, or was
    /// opened without `IFF_VNET_HDR` (which only `TUNSETIFF` can set).
    #[error("'{0}' is not a tap opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR")]
    NotVnetTap(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun for tap '{name}'")]
    OpenTun {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The queue count is out of range.
    #[error("a tap has 1 to {MAX_TAP_QUEUES} queues, not {0}")]
    Queues(u16),
    /// `TUNSETIFF` failed (missing CAP_NET_ADMIN, the name belongs to another kind of device,
    /// or an existing tap was made with other flags, such as without `multi_queue`).
    #[error("cannot create or attach tap interface '{name}'")]
    SetIff {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETVNETHDRSZ` failed.
    #[error("cannot set the vnet header size of tap '{name}'")]
    VnetHdrSize {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &str, flags: libc::c_short) -> IfReq {
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags, _pad: [0; 22] };
        let len = name.len().min(libc::IFNAMSIZ - 1);
        req.name[..len].copy_from_slice(&name.as_bytes()[..len]);
        req
    }

    fn name(&self) -> String {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }
}

/// `ioctl(fd, request, &mut req)` for the tun requests taking a `struct ifreq`.
fn ioctl_ifreq(fd: RawFd, request: libc::Ioctl, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: the tun ioctls given here read and write at most a `struct ifreq` (40 bytes on
    // Linux), which `req` is; a bad descriptor only makes the call fail.
    let ret = unsafe { libc::ioctl(fd, request, req as *mut IfReq) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, request, &value)` for the tun requests taking a pointer to an int.
fn ioctl_int_ptr(fd: RawFd, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the request reads one int through the pointer, which points to `value`.
    let ret = unsafe { libc::ioctl(fd, request, &value as *const libc::c_int) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An open tap interface (one queue of it, for a multiqueue tap).
pub struct Tap {
    file: File,
    name: String,
    vnet_hdr: bool,
    multi_queue: bool,
    attached: bool,
    ufo: bool,
}

impl Tap {
    /// Creates the tap `name`, or attaches to it if it exists: plain frames, one queue (the
    /// e1000's backend).
    pub fn open(name: &str) -> Result<Tap, Error> {
        let mut taps = Tap::open_queues(name, false, 1)?;
        taps.pop().ok_or(Error::Queues(0))
    }

    /// Creates the tap `name`, or attaches to it if it exists, with `queues` queues (one
    /// descriptor each; `IFF_MULTI_QUEUE` when more than one). With `vnet_hdr`, every frame
    /// carries a [`VNET_HDR_LEN`]-byte virtio-net header first and no offload is on until
    /// [`Tap::set_offload`].
    pub fn open_queues(name: &str, vnet_hdr: bool, queues: u16) -> Result<Vec<Tap>, Error> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
            return Err(Error::InvalidName(name.to_string()));
        }
        if queues == 0 || queues > MAX_TAP_QUEUES {
            return Err(Error::Queues(queues));
        }
        let mut flags = IFF_TAP | IFF_NO_PI;
        if vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        if queues > 1 {
            flags |= IFF_MULTI_QUEUE;
        }
        let mut taps = Vec::with_capacity(usize::from(queues));
        let mut name = name.to_string();
        for _ in 0..queues {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/dev/net/tun")
                .map_err(|source| Error::OpenTun { name: name.clone(), source })?;
            let mut req = IfReq::new(&name, flags);
            ioctl_ifreq(file.as_raw_fd(), libc::TUNSETIFF, &mut req)
                .map_err(|source| Error::SetIff { name: name.clone(), source })?;
            // The kernel may return the name it chose (for patterns such as "tap%d"); the
            // next queues attach to that one.
            name = req.name();
            let mut tap = Tap {
                file,
                name: name.clone(),
                vnet_hdr,
                multi_queue: queues > 1,
                attached: true,
                ufo: false,
            };
            if vnet_hdr {
                tap.init_vnet_hdr()?;
            }
            taps.push(tap);
        }
        Ok(taps)
    }

    /// Adopts a tap queue descriptor opened by someone else (a privileged parent or a
    /// management daemon passing descriptors): it must have been set up with
    /// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` (plus `IFF_MULTI_QUEUE` for one of several
    /// queues) and be attached. It is made non-blocking and its vnet header size set to
    /// [`VNET_HDR_LEN`].
    pub fn from_fd(fd: OwnedFd) -> Result<Tap, Error> {
        let file = File::from(fd);
        let mut req = IfReq::new("", 0);
        ioctl_ifreq(file.as_raw_fd(), libc::TUNGETIFF, &mut req).map_err(Error::GetIff)?;
        let name = req.name();
        let wanted = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if req.flags & wanted != wanted {
            return Err(Error::NotVnetTap(name));
        }
        // SAFETY: F_GETFL and F_SETFL take and return plain ints; the descriptor is owned.
        let nonblock = unsafe {
            let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            fl >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) >= 0
        };
        if !nonblock {
            return Err(Error::GetIff(io::Error::last_os_error()));
        }
        let multi_queue = req.flags & IFF_MULTI_QUEUE != 0;
        let mut tap = Tap { file, name, vnet_hdr: true, multi_queue, attached: true, ufo: false };
        tap.init_vnet_hdr()?;
        Ok(tap)
    }

    /// Sets the header size and finds out whether the kernel takes UFO (QEMU's probe: a
    /// kernel that dropped UFO refuses `TUN_F_UFO`); leaves every offload off.
    fn init_vnet_hdr(&mut self) -> Result<(), Error> {
        let fd = self.file.as_raw_fd();
        ioctl_int_ptr(fd, libc::TUNSETVNETHDRSZ, VNET_HDR_LEN as libc::c_int)
            .map_err(|source| Error::VnetHdrSize { name: self.name.clone(), source })?;
        self.ufo = self.set_offload(libc::TUN_F_CSUM | libc::TUN_F_UFO).is_ok();
        if let Err(e) = self.set_offload(0) {
            crate::warn_limited!("tap {}: cannot turn offloads off: {e}", self.name);
        }
        Ok(())
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames carry a virtio-net header.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Whether the kernel accepts UDP fragmentation offload on this tap.
    pub fn supports_ufo(&self) -> bool {
        self.ufo
    }

    /// Sets which offloads the reader accepts (`TUN_F_CSUM`, `TUN_F_TSO4`, `TUN_F_TSO6`,
    /// `TUN_F_UFO`, ...): frames it reads may then carry partial checksums and be larger
    /// than the MTU. The setting belongs to the interface, not to the queue.
    pub fn set_offload(&self, flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; the descriptor is valid.
        let ret =
            unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Attaches (`true`) or detaches this queue of a multiqueue tap: the kernel steers
    /// received frames only to attached queues. A no-op for a single-queue tap, and when the
    /// queue is already in that state.
    pub fn set_queue_enabled(&mut self, enabled: bool) -> io::Result<()> {
        if !self.multi_queue || self.attached == enabled {
            return Ok(());
        }
        let flag = if enabled { libc::IFF_ATTACH_QUEUE } else { libc::IFF_DETACH_QUEUE };
        let mut req = IfReq::new("", flag as libc::c_short);
        ioctl_ifreq(self.file.as_raw_fd(), libc::TUNSETQUEUE, &mut req)?;
        self.attached = enabled;
        Ok(())
    }
}

impl NetBackend for Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let n = self.file.write(frame)?;
        if n != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to tap"));
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::Command;

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(Tap::open(""), Err(Error::InvalidName(_))));
        assert!(matches!(Tap::open("a-very-long-interface"), Err(Error::InvalidName(_))));
        assert!(matches!(Tap::open("a/b"), Err(Error::InvalidName(_))));
        assert!(matches!(Tap::open_queues("tap0", true, 0), Err(Error::Queues(0))));
        assert!(matches!(Tap::open_queues("tap0", true, MAX_TAP_QUEUES + 1), Err(Error::Queues(_))));
    }

    #[test]
    fn a_descriptor_that_is_not_a_tap_is_refused() {
        let file = File::open("/dev/null").unwrap();
        assert!(matches!(Tap::from_fd(file.into()), Err(Error::GetIff(_))));
    }

    /// An interface statistic from sysfs.
    pub(crate) fn stat(name: &str, what: &str) -> u64 {
        let path = format!("/sys/class/net/{name}/statistics/{what}");
        std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
    }

    /// Brings `name` up with ip(8) (IPv6 off first, so the kernel sends no neighbour
    /// discovery of its own); false with a message if it cannot.
    pub(crate) fn bring_up(name: &str) -> bool {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let up = Command::new("ip").args(["link", "set", "dev", name, "up"]).status();
        if !matches!(up, Ok(s) if s.success()) {
            eprintln!("skipping tap test: cannot bring {name} up with ip(8)");
            return false;
        }
        true
    }

    /// Sends `frame` out of interface `name` through a packet socket (so the tap reads it).
    pub(crate) fn send_on(name: &str, frame: &[u8]) {
        // SAFETY: plain socket creation; the result is checked.
        let sock = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(sock >= 0);
        let ifname = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        assert_ne!(ifindex, 0);
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make it a target.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(sock) };
        assert_eq!(sent, frame.len() as isize);
    }

    /// A test frame: broadcast, local experimental ethertype 0x88b5, `len` bytes.
    pub(crate) fn test_frame(len: usize, fill: u8) -> Vec<u8> {
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.resize(len, fill);
        frame
    }

    /// Needs CAP_NET_ADMIN and the `ip` tool; skips with a message otherwise.
    #[test]
    fn frames_cross_a_real_tap() {
        let name = format!("rvt{}", std::process::id() % 1_000_000);
        let mut tap = match Tap::open(&name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping tap test: {e} ({:?})", std::error::Error::source(&e));
                return;
            }
        };
        assert_eq!(tap.name(), name);
        assert!(!tap.vnet_hdr());
        if !bring_up(&name) {
            return;
        }
        // Guest to host: a frame written to the tap is received by the interface.
        let before = stat(&name, "rx_packets");
        tap.send(&test_frame(60, 0xab)).unwrap();
        assert_eq!(stat(&name, "rx_packets"), before + 1);

        // Host to guest: a frame sent on the interface through a packet socket.
        let mut out = vec![0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 3, 0x88, 0xb5];
        out.resize(64, 0x5a);
        send_on(&name, &out);
        let mut buf = vec![0u8; 2048];
        let mut got = None;
        for _ in 0..200 {
            match tap.recv(&mut buf).unwrap() {
                // The kernel may also send IPv6 neighbour discovery frames: skip those.
                Some(n) if buf[..n] == out[..] => {
                    got = Some(n);
                    break;
                }
                Some(_) => {}
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!(got, Some(out.len()));
        // Reattaching to a tap in use fails and names it.
        let err = Tap::open(&name).err().map(|e| e.to_string());
        assert_eq!(err, Some(format!("cannot create or attach tap interface '{name}'")));
        // A plain tap's descriptor cannot be adopted for virtio-net.
        let fd = tap.file.as_fd().try_clone_to_owned().unwrap();
        assert!(matches!(Tap::from_fd(fd), Err(Error::NotVnetTap(n)) if n == name));
    }

    /// Needs CAP_NET_ADMIN and the `ip` tool; skips with a message otherwise.
    #[test]
    fn vnet_header_queues_of_a_real_tap() {
        let name = format!("rvq{}", std::process::id() % 1_000_000);
        let mut taps = match Tap::open_queues(&name, true, 2) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping tap test: {e} ({:?})", std::error::Error::source(&e));
                return;
            }
        };
        assert_eq!(taps.len(), 2);
        assert!(taps.iter().all(|t| t.vnet_hdr() && t.name() == name));
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        taps[0].set_offload(offloads).unwrap();
        assert!(taps[0].set_offload(0x8000_0000).is_err(), "unknown offloads are refused");
        taps[0].set_offload(0).unwrap();
        // Detach and reattach the second queue (twice each: the second is a no-op).
        for enabled in [false, false, true, true] {
            taps[1].set_queue_enabled(enabled).unwrap();
        }
        // A copy of the descriptor is adopted as is.
        let fd = taps[0].file.as_fd().try_clone_to_owned().unwrap();
        let adopted = Tap::from_fd(fd).unwrap();
        assert_eq!(adopted.name(), name);
        assert!(adopted.vnet_hdr());
        assert_eq!(adopted.supports_ufo(), taps[0].supports_ufo());
        if !bring_up(&name) {
            return;
        }
        // Guest to host: the header is consumed by the tap.
        let before = stat(&name, "rx_packets");
        let before_bytes = stat(&name, "rx_bytes");
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(&test_frame(100, 1));
        taps[0].send(&frame).unwrap();
        assert_eq!(stat(&name, "rx_packets"), before + 1);
        assert_eq!(stat(&name, "rx_bytes"), before_bytes + 100);
        // Host to guest: a header comes first (on whichever queue the kernel picked).
        let out = test_frame(80, 2);
        send_on(&name, &out);
        let mut buf = vec![0u8; 2048];
        let mut got = None;
        'wait: for _ in 0..200 {
            for tap in taps.iter_mut() {
                if let Some(n) = tap.recv(&mut buf).unwrap() {
                    if buf[VNET_HDR_LEN..n] == out[..] {
                        got = Some(n);
                        break 'wait;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, Some(VNET_HDR_LEN + out.len()));
        assert_eq!(buf[1], 0, "no GSO");
    }
}
