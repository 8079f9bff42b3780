// SPDX-License-Identifier: Apache-2.0
//! A VNC (RFB 3.8, RFC 6143) server for the PC machine's standard VGA (`--vnc ADDR`).
//!
//! Any VNC viewer (TigerVNC, Remmina, virt-viewer) sees the screen and types on the guest's
//! PS/2 keyboard; its pointer drives the PS/2 mouse. The server lives as long as the
//! process, across guest reboots: each boot attaches its VGA and i8042 to the
//! [`ConsoleHub`], and clients stay connected while a reset swaps them.
//!
//! Protocol: versions 3.3, 3.7 and 3.8; one security type: VNC Authentication when a
//! password is configured ([`auth`]: weak, DES with an 8-character password, and no
//! encryption), else None (the address must then be loopback or a unix socket unless
//! `,allow-remote`); Raw encoding with the
//! DesktopSize pseudo-encoding (mode changes resize the viewer; a viewer without it gets the
//! screen cropped or padded to its first size); true-colour pixel formats at 8, 16 and 32
//! bits per pixel (colour-map formats are refused and the client disconnected); updates are
//! 64x64 tiles that changed since the client's last update, looked at no more than ~30 times
//! a second and only when the client asked. Keys are X11 keysyms on a US layout
//! ([`keysym`]); `ClientCutText` is discarded.
//!
//! The mouse is a relative PS/2 mouse: the server sends the difference between successive
//! absolute positions, and the guest applies its own acceleration, so the guest's pointer
//! drifts away from the viewer's (as with QEMU's PS/2 mouse). An absolute pointing device
//! (USB tablet, virtio-input) does not exist yet.
//!
//! Not implemented: VeNCrypt and TLS, encodings other than Raw
//! (CopyRect, ZRLE, Tight), QEMU's extended key events (raw scan codes), audio, clipboard.

pub mod auth;
mod keysym;
/// The RFB protocol codec lives in `devices` (pure functions, reachable by `fuzz/`).
pub use devices::display::rfb;
mod session;
#[cfg(test)]
mod test_client;
mod tiles;

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::bus::lock;
use devices::display::vga::{Frame, StdVga};
use devices::legacy::i8042::{Key, I8042};

pub use api::vnc::{VncListen, VncPassword};

/// Most clients served at once (past the handshake); more are closed at once.
pub const MAX_CLIENTS: usize = 16;
/// Most connections still in their handshake. A new one beyond this closes the oldest of them,
/// so connections that never finish (each ends after [`session::HANDSHAKE_TIMEOUT`] anyway)
/// cannot keep a real viewer out: its handshake takes milliseconds.
pub const MAX_PENDING: usize = 8;

/// What a VNC client sees and drives: the screen, the keyboard and the mouse.
pub trait Console: Send + Sync {
    /// The current screen, at most [`session::FRAME_INTERVAL`] old; None when there is no
    /// display (no boot running yet).
    fn frame(&self) -> Option<Arc<Frame>>;
    /// A key pressed or released.
    fn key(&self, key: Key, pressed: bool);
    /// Relative mouse movement (`dy` > 0 is up, `dz` > 0 towards the user) and the PS/2
    /// buttons held.
    fn pointer(&self, dx: i32, dy: i32, dz: i32, buttons: u8);
}

#[derive(Default)]
struct HubState {
    vga: Option<Arc<Mutex<StdVga>>>,
    keyboard: Option<Arc<Mutex<I8042>>>,
    cache: Option<(Instant, Arc<Frame>)>,
}

/// The [`Console`] of the running boot: its VGA and keyboard controller, swapped at each
/// boot. Renders are shared between clients (one per [`session::FRAME_INTERVAL`]).
#[derive(Default)]
pub struct ConsoleHub {
    state: Mutex<HubState>,
}

impl ConsoleHub {
    /// Gives clients the devices of the boot that starts now.
    pub fn attach(&self, vga: Arc<Mutex<StdVga>>, keyboard: Arc<Mutex<I8042>>) {
        let mut s = lock(&self.state);
        s.vga = Some(vga);
        s.keyboard = Some(keyboard);
        s.cache = None;
    }

    /// Lets go of a boot that ended; clients keep the last screen until the next boot.
    pub fn detach(&self) {
        let mut s = lock(&self.state);
        s.vga = None;
        s.keyboard = None;
    }
}

impl Console for ConsoleHub {
    fn frame(&self) -> Option<Arc<Frame>> {
        let mut s = lock(&self.state);
        if let Some((t, f)) = &s.cache {
            if s.vga.is_none() || t.elapsed() < session::FRAME_INTERVAL {
                return Some(f.clone());
            }
        }
        // The VGA lock is held only while rendering into the new frame.
        let frame = Arc::new(lock(s.vga.as_ref()?).render());
        s.cache = Some((Instant::now(), frame.clone()));
        Some(frame)
    }

    fn key(&self, key: Key, pressed: bool) {
        let kbd = lock(&self.state).keyboard.clone();
        if let Some(kbd) = kbd {
            lock(&kbd).key_event(key, pressed);
        }
    }

    fn pointer(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let kbd = lock(&self.state).keyboard.clone();
        if let Some(kbd) = kbd {
            lock(&kbd).mouse_wheel_event(dx, dy, dz, buttons);
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {0}")]
    Listen(String, #[source] io::Error),
    /// The listener thread could not start.
    #[error("cannot start the VNC thread")]
    Thread(#[source] io::Error),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listening VNC server; on drop it stops accepting, ends its sessions and removes its
/// unix socket.
pub struct VncServer {
    stop: Arc<AtomicBool>,
    listen: VncListen,
    /// The bound address (the real port when 0 was asked for).
    local: Option<std::net::SocketAddr>,
    /// A duplicate of the listening socket: shut down on drop to wake the accept loop
    /// (shutdown(2) is allowed under the main thread's seccomp filter; a connect to self,
    /// needing a new socket, is not).
    waker: Option<std::os::fd::OwnedFd>,
}

impl VncServer {
    /// Binds `listen` (a unix socket replaces a stale socket, never another kind of file, and
    /// is made mode 0600) and serves clients of `console` on background threads; with a
    /// `password`, clients must pass VNC Authentication.
    pub fn start(
        listen: &VncListen,
        password: Option<VncPassword>,
        console: Arc<dyn Console>,
        name: &str,
    ) -> Result<VncServer, Error> {
        Self::start_with(listen, auth::Auth::new(password), console, name)
    }

    /// As [`VncServer::start`], with the authentication given.
    fn start_with(
        listen: &VncListen,
        auth: auth::Auth,
        console: Arc<dyn Console>,
        name: &str,
    ) -> Result<VncServer, Error> {
        let err = |e| Error::Listen(listen.to_string(), e);
        let (listener, local) = match listen {
            VncListen::Tcp { addr, .. } => {
                let l = TcpListener::bind(addr).map_err(err)?;
                let local = l.local_addr().map_err(err)?;
                (Listener::Tcp(l), Some(local))
            }
            VncListen::Unix(path) => {
                if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    fs::remove_file(path).map_err(err)?;
                }
                let l = UnixListener::bind(path).map_err(err)?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
                (Listener::Unix(l), None)
            }
        };
        let waker = match &listener {
            Listener::Tcp(l) => l.try_clone().ok().map(std::os::fd::OwnedFd::from),
            Listener::Unix(l) => l.try_clone().ok().map(std::os::fd::OwnedFd::from),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), name.to_string());
        std::thread::Builder::new()
            .name("vnc".into())
            .spawn(move || {
                devices::sandbox::enter_or_warn(devices::sandbox::ThreadRole::Vnc);
                accept_loop(listener, console, &name, Arc::new(auth), stop2)
            })
            .map_err(Error::Thread)?;
        Ok(VncServer { stop, listen: listen.clone(), local, waker })
    }

    /// The TCP address bound (None for a unix socket).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local
    }
}

impl Drop for VncServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag: accept fails on a shut-down listener.
        if let Some(fd) = &self.waker {
            use std::os::fd::AsRawFd;
            // SAFETY: shutdown(2) on a socket descriptor this server owns.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
        if let VncListen::Unix(p) = &self.listen {
            let _ = fs::remove_file(p);
        }
    }
}

/// Connections in their handshake, oldest first: an id and the way to close each.
#[derive(Default)]
struct Pending {
    next_id: u64,
    queue: std::collections::VecDeque<(u64, session::Closer)>,
}

impl Pending {
    /// Adds a connection, closing the oldest if [`MAX_PENDING`] are waiting already.
    fn admit(&mut self, closer: session::Closer) -> u64 {
        if self.queue.len() >= MAX_PENDING {
            if let Some((_, oldest)) = self.queue.pop_front() {
                log::warn!("vnc: {MAX_PENDING} connections still in their handshake; closing the oldest");
                oldest.close();
            }
        }
        self.next_id += 1;
        self.queue.push_back((self.next_id, closer));
        self.next_id
    }

    fn done(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}

fn accept_loop(
    listener: Listener,
    console: Arc<dyn Console>,
    name: &str,
    auth: Arc<auth::Auth>,
    stop: Arc<AtomicBool>,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(Mutex::new(Pending::default()));
    loop {
        let conn: Box<dyn session::Conn> = match &listener {
            Listener::Tcp(l) => match l.accept() {
                Ok((s, peer)) => {
                    log::info!("vnc: client {peer} connected");
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    log::warn!("vnc: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            },
            Listener::Unix(l) => match l.accept() {
                Ok((s, _)) => Box::new(s),
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    log::warn!("vnc: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            },
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if clients.load(Ordering::SeqCst) >= MAX_CLIENTS {
            log::warn!("vnc: {MAX_CLIENTS} clients already connected; refusing another");
            continue;
        }
        let closer = match conn.closer() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("vnc: cannot keep a handle on a new connection: {e}");
                continue;
            }
        };
        let id = lock(&pending).admit(closer);
        let (console, stop, count, name) = (console.clone(), stop.clone(), clients.clone(), name.to_string());
        let (pend, auth) = (pending.clone(), auth.clone());
        let spawned = std::thread::Builder::new().name("vnc-client".into()).spawn(move || {
            let mut conn = conn;
            let greeted = session::greet(&mut conn, console.as_ref(), &name, &auth);
            lock(&pend).done(id);
            if let Err(e) = greeted {
                log::info!("vnc: handshake failed: {e}");
                return;
            }
            if count.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                count.fetch_sub(1, Ordering::SeqCst);
                log::warn!("vnc: {MAX_CLIENTS} clients already connected; closing another");
                return;
            }
            match session::run_session(conn, console.as_ref(), &stop) {
                Ok(()) => log::info!("vnc: client disconnected"),
                Err(e) => log::info!("vnc: client dropped: {e}"),
            }
            count.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            lock(&pending).done(id);
            log::warn!("vnc: cannot start a client thread: {e}");
        }
    }
}

impl<T: session::Conn + ?Sized> session::Conn for Box<T> {
    fn set_read_timeout(&self, d: Option<std::time::Duration>) -> io::Result<()> {
        (**self).set_read_timeout(d)
    }
    fn set_write_timeout(&self, d: Option<std::time::Duration>) -> io::Result<()> {
        (**self).set_write_timeout(d)
    }
    fn closer(&self) -> io::Result<session::Closer> {
        (**self).closer()
    }
}

#[cfg(test)]
mod tests;
