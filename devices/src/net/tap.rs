// SPDX-License-Identifier: Apache-2.0
//! A Linux tap interface as a [`NetBackend`]: `/dev/net/tun` with `TUNSETIFF`
//! (`IFF_TAP | IFF_NO_PI`), non-blocking. Attaching to an existing (persistent) tap or
//! creating a new one is the same call; creating needs `CAP_NET_ADMIN`, and a tap created
//! here disappears when it is dropped. Bringing the interface up and bridging it is the host
//! administrator's business.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::NetBackend;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name does not fit an interface name (1 to 15 bytes, no NUL or '/').
    #[error("invalid tap interface name '{0}'")]
    InvalidName(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun for tap '{name}'")]
    OpenTun {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETIFF` failed (missing CAP_NET_ADMIN, or the name belongs to another kind of device).
    #[error("cannot create or attach tap interface '{name}'")]
    SetIff {
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

/// An open tap interface.
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates the tap `name`, or attaches to it if it exists.
    pub fn open(name: &str) -> Result<Tap, Error> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
            return Err(Error::InvalidName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| Error::OpenTun { name: name.to_string(), source })?;
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes on Linux), which
        // `req` is; the descriptor is valid for the call.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if ret < 0 {
            return Err(Error::SetIff { name: name.to_string(), source: io::Error::last_os_error() });
        }
        // The kernel may return the name it chose (for patterns such as "tap%d").
        let len = req.name.iter().position(|b| *b == 0).unwrap_or(req.name.len());
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Ok(Tap { file, name })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
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
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(Tap::open(""), Err(Error::InvalidName(_))));
        assert!(matches!(Tap::open("a-very-long-interface"), Err(Error::InvalidName(_))));
        assert!(matches!(Tap::open("a/b"), Err(Error::InvalidName(_))));
    }

    fn stat(name: &str, what: &str) -> u64 {
        let path = format!("/sys/class/net/{name}/statistics/{what}");
        std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
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
        let up = Command::new("ip").args(["link", "set", "dev", &name, "up"]).status();
        if !matches!(up, Ok(s) if s.success()) {
            eprintln!("skipping tap test: cannot bring {name} up with ip(8)");
            return;
        }
        // Guest to host: a frame written to the tap is received by the interface.
        let before = stat(&name, "rx_packets");
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.resize(60, 0xab);
        tap.send(&frame).unwrap();
        assert_eq!(stat(&name, "rx_packets"), before + 1);

        // Host to guest: a frame sent on the interface through a packet socket.
        // SAFETY: plain socket creation; the result is checked.
        let sock = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(sock >= 0);
        let ifname = std::ffi::CString::new(name.clone()).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        assert_ne!(ifindex, 0);
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make it a target.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        let mut out = vec![0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 3, 0x88, 0xb5];
        out.resize(64, 0x5a);
        // SAFETY: `out` and `addr` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock,
                out.as_ptr().cast(),
                out.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(sock) };
        assert_eq!(sent, out.len() as isize);
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
    }
}
