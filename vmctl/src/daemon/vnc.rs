// SPDX-License-Identifier: Apache-2.0
//! Reaching a running VM's VNC server for `GET /v1/vms/{name}/vnc` (`vmctl vnc NAME`).
//!
//! A VM without a VNC password has its server on the unix socket `vnc.sock` in its run
//! directory. That directory belongs to the VM's jail uid, so a compromised vmm could put a
//! symlink there to some other socket of the host: the socket is opened beneath the
//! directory without following a symlink, checked to be a socket, and connected through its
//! descriptor (`/proc/self/fd/N`), never by its path.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use vmdef::VmName;

use super::{Daemon, DaemonError, Result};
use crate::safefs;

/// Where a running VM's VNC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncTarget {
    /// The unix socket of a VM without a password.
    Unix(PathBuf),
    /// The TCP address of a VM with a password.
    Tcp(SocketAddr),
}

impl std::fmt::Display for VncTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VncTarget::Unix(p) => write!(f, "unix socket {}", p.display()),
            VncTarget::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// A byte stream to a VNC server.
pub trait VncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> VncStream for T {}

impl Daemon {
    /// Where the VNC server of the running VM `name` listens.
    pub fn vnc_target(&self, name: &VmName) -> Result<VncTarget> {
        let t = self.table();
        let s = t.get(name).ok_or_else(|| DaemonError::NotFound(name.to_string()))?;
        if s.def.graphics.vnc.is_none() {
            return Err(DaemonError::BadInput(format!(
                "{name} has no VNC server; add graphics.vnc (XML: <graphics type='vnc'/>) and restart it"
            )));
        }
        if !s.is_active() {
            return Err(DaemonError::Conflict(format!("{name} is not running; start it first")));
        }
        match (&s.rt.vnc_socket, s.rt.vnc) {
            (Some(p), _) => Ok(VncTarget::Unix(p.clone())),
            (None, Some(a)) => Ok(VncTarget::Tcp(a)),
            (None, None) => Err(DaemonError::Conflict(format!(
                "{name} runs without a VNC server (it was started before graphics.vnc was added); \
                 restart it"
            ))),
        }
    }
}

/// Connects to `target`; a TCP server listening on every address is reached on loopback.
pub async fn connect(target: &VncTarget) -> io::Result<Box<dyn VncStream>> {
    match target {
        VncTarget::Unix(path) => Ok(Box::new(connect_unix(path).await?)),
        VncTarget::Tcp(addr) => {
            let ip = match addr.ip() {
                IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let s = tokio::net::TcpStream::connect(SocketAddr::new(ip, addr.port())).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
    }
}

/// Connects to the socket `path` without following a symlink at any point the VM owns.
async fn connect_unix(path: &Path) -> io::Result<tokio::net::UnixStream> {
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket path"));
    };
    let dir = safefs::open_dir(dir)?;
    let sock = safefs::open_beneath(&dir, Path::new(file), libc::O_PATH | libc::O_NOFOLLOW)?;
    if !sock.metadata()?.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a socket", path.display()),
        ));
    }
    use std::os::fd::AsRawFd;
    tokio::net::UnixStream::connect(format!("/proc/self/fd/{}", sock.as_raw_fd())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connects_to_a_socket_and_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vnc.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"RFB 003.008\n").await.unwrap();
        });
        let mut c = connect(&VncTarget::Unix(path.clone())).await.unwrap();
        let mut v = [0u8; 12];
        c.read_exact(&mut v).await.unwrap();
        assert_eq!(&v, b"RFB 003.008\n");
        server.await.unwrap();
        // A symlink in its place (to another socket of the host) is not followed.
        let other = dir.path().join("other.sock");
        let _l2 = std::os::unix::net::UnixListener::bind(&other).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&other, &path).unwrap();
        assert!(connect(&VncTarget::Unix(path.clone())).await.is_err());
        // Nor is a plain file taken for a socket.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert!(connect(&VncTarget::Unix(path)).await.is_err());
    }
}
