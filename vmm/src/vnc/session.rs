// SPDX-License-Identifier: Apache-2.0
//! One VNC client: the handshake, then its messages, on the client's own thread.
//!
//! The session never holds a device lock while it talks to the socket: [`Console::frame`]
//! renders (under the VGA lock) into a private frame, and the conversion and the write happen
//! afterwards. A client that stops reading blocks only its own thread, and is dropped after
//! [`WRITE_TIMEOUT`].

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use devices::legacy::i8042::{Key, MOUSE_LEFT, MOUSE_MIDDLE, MOUSE_RIGHT};

use super::auth::{Auth, AuthError};
use super::keysym::{keysym_to_key, needs_shift};
use super::rfb::{self, ClientMessage, PixelConverter, PixelFormat, ProtocolError, Rect, Version};
use super::tiles;
use super::Console;

/// Shortest time between two looks at the screen for one client (about 30 Hz).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// How long the whole handshake may take, from connection to ClientInit.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not take an update within this time is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle session checks whether the server is stopping.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Keys remembered as held (released when the client goes).
const MAX_HELD_KEYS: usize = 32;
/// Left and right Shift.
const SHIFTS: [Key; 2] = [Key::Plain(0x12), Key::Plain(0x59)];
/// Size shown before the guest has drawn anything.
const DEFAULT_SIZE: (u16, u16) = (720, 400);

/// A connected socket of either kind.
pub trait Conn: Read + Write + Send {
    /// `set_read_timeout` of the socket.
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()>;
    /// `set_write_timeout` of the socket.
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()>;
    /// A way to end the connection from another thread (shutdown(2) of a duplicate): the
    /// session's blocked read then returns.
    fn closer(&self) -> io::Result<Closer>;
}

/// Ends a connection from another thread.
pub struct Closer(Box<dyn Fn() + Send>);

impl Closer {
    /// Shuts the connection down both ways.
    pub fn close(&self) {
        (self.0)()
    }
}

impl Conn for std::net::TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, d)
    }
    fn closer(&self) -> io::Result<Closer> {
        let dup = self.try_clone()?;
        Ok(Closer(Box::new(move || {
            let _ = dup.shutdown(std::net::Shutdown::Both);
        })))
    }
}

impl Conn for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_write_timeout(self, d)
    }
    fn closer(&self) -> io::Result<Closer> {
        let dup = self.try_clone()?;
        Ok(Closer(Box::new(move || {
            let _ = dup.shutdown(std::net::Shutdown::Both);
        })))
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The client did not authenticate.
    #[error("{0}")]
    Auth(#[from] AuthError),
}

/// A client's state after the handshake.
struct Session<'a, C: Conn> {
    conn: C,
    console: &'a dyn Console,
    conv: PixelConverter,
    desktop_size: bool,
    /// The framebuffer size the client knows.
    width: u16,
    height: u16,
    /// What the client shows (RGB, `width` x `height`), when it has been sent everything.
    shadow: Option<Vec<u8>>,
    /// The update the client asked for and has not got yet.
    pending: Option<(bool, Rect)>,
    last_look: Option<Instant>,
    pointer: Option<(u16, u16)>,
    buttons: u8,
    held: Vec<Key>,
    inbuf: Vec<u8>,
    /// Bytes of cut text still to discard.
    skip: u64,
}

/// Serves one client until it leaves, breaks the protocol, or `stop` is set.
#[cfg(test)]
pub fn serve<C: Conn>(
    mut conn: C,
    console: &dyn Console,
    name: &str,
    auth: &Auth,
    stop: &AtomicBool,
) -> Result<(), SessionError> {
    greet(&mut conn, console, name, auth)?;
    run_session(conn, console, stop)
}

/// The handshake, within [`HANDSHAKE_TIMEOUT`] in all however slowly the client sends.
pub fn greet<C: Conn>(
    conn: &mut C,
    console: &dyn Console,
    name: &str,
    auth: &Auth,
) -> Result<Version, SessionError> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    handshake(&mut Deadline { conn, deadline }, name, console, auth)
}

/// The session after [`greet`]: updates and input until the client or the server stops.
pub fn run_session<C: Conn>(conn: C, console: &dyn Console, stop: &AtomicBool) -> Result<(), SessionError> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (width, height) = console.frame().map(|f| frame_size(f.width, f.height)).unwrap_or(DEFAULT_SIZE);
    let mut s = Session {
        conn,
        console,
        conv: PixelConverter::new(PixelFormat::NATIVE),
        desktop_size: false,
        width,
        height,
        shadow: None,
        pending: None,
        last_look: None,
        pointer: None,
        buttons: 0,
        held: Vec::new(),
        inbuf: Vec::with_capacity(8192),
        skip: 0,
    };
    let result = s.run(stop);
    for key in std::mem::take(&mut s.held) {
        console.key(key, false);
    }
    result
}

/// A frame size as the protocol carries it (16 bits per side).
fn frame_size(w: u32, h: u32) -> (u16, u16) {
    (w.min(u32::from(u16::MAX)) as u16, h.min(u32::from(u16::MAX)) as u16)
}

/// A connection whose reads all end by one deadline (a client sending a byte at a time
/// cannot stretch the handshake).
struct Deadline<'a, C: Conn> {
    conn: &'a mut C,
    deadline: Instant,
}

impl<C: Conn> Read for Deadline<'_, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the VNC handshake took too long"));
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

impl<C: Conn> Write for Deadline<'_, C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

/// Version, security (the one type `auth` offers: None or VNC Authentication) and init
/// messages; sends ServerInit with the current size.
fn handshake<C: Read + Write>(
    conn: &mut C,
    name: &str,
    console: &dyn Console,
    auth: &Auth,
) -> Result<Version, SessionError> {
    conn.write_all(rfb::SERVER_VERSION)?;
    let mut v = [0u8; 12];
    conn.read_exact(&mut v)?;
    let version = rfb::parse_version(&v)?;
    let kind = auth.security_type();
    conn.write_all(&rfb::security_offer(version, kind))?;
    if version != Version::V3_3 {
        let mut choice = [0u8; 1];
        conn.read_exact(&mut choice)?;
        if let Err(e) = rfb::check_security_choice(choice[0], kind) {
            if version == Version::V3_8 {
                let only = if kind == rfb::SECURITY_NONE {
                    "only security type None is offered"
                } else {
                    "only security type 2 (VNC Authentication) is offered"
                };
                let _ = conn.write_all(&rfb::security_failed(only));
            }
            return Err(e.into());
        }
    }
    if kind == rfb::SECURITY_VNC_AUTH {
        auth.challenge(conn, version)??;
    }
    conn.write_all(rfb::security_ok(version, kind))?;
    let mut shared = [0u8; 1];
    conn.read_exact(&mut shared)?;
    let (w, h) = console.frame().map(|f| frame_size(f.width, f.height)).unwrap_or(DEFAULT_SIZE);
    conn.write_all(&rfb::server_init(w, h, name))?;
    Ok(version)
}

impl<C: Conn> Session<'_, C> {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), SessionError> {
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let wait = match (self.pending, self.last_look) {
                (None, _) => IDLE_POLL,
                (Some(_), Some(t)) => {
                    FRAME_INTERVAL.saturating_sub(t.elapsed()).max(Duration::from_millis(1))
                }
                (Some(_), None) => Duration::from_millis(1),
            };
            self.conn.set_read_timeout(Some(wait))?;
            match self.conn.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.input(&buf[..n])?,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            if self.pending.is_some() && self.last_look.is_none_or(|t| t.elapsed() >= FRAME_INTERVAL) {
                self.update()?;
            }
        }
        Ok(())
    }

    /// Bytes from the client: discards cut text, handles every complete message, keeps the
    /// rest (at most one message, bounded by the parser's limits).
    fn input(&mut self, mut data: &[u8]) -> Result<(), SessionError> {
        if self.skip > 0 {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        self.inbuf.extend_from_slice(data);
        let mut used = 0;
        while self.skip == 0 {
            let Some((msg, n)) = rfb::parse_client_message(&self.inbuf[used..])? else { break };
            used += n;
            if let ClientMessage::CutText { len } = msg {
                // The text is dropped, as it arrives, without being stored.
                let here = (self.inbuf.len() - used).min(len as usize);
                used += here;
                self.skip = u64::from(len) - here as u64;
            } else {
                self.message(msg)?;
            }
        }
        self.inbuf.drain(..used);
        Ok(())
    }

    fn message(&mut self, msg: ClientMessage) -> Result<(), SessionError> {
        match msg {
            ClientMessage::SetPixelFormat(pf) => {
                if let Err(e) = pf.check() {
                    log::error!("vnc: client asked for pixel format {pf:?}: {e}; disconnecting it");
                    return Err(e.into());
                }
                self.conv = PixelConverter::new(pf);
                // Everything must be sent again in the new format.
                self.shadow = None;
            }
            ClientMessage::SetEncodings(list) => {
                self.desktop_size = list.contains(&rfb::ENCODING_DESKTOP_SIZE);
            }
            ClientMessage::UpdateRequest { incremental, rect } => {
                self.pending = Some(match self.pending {
                    // A full request wins over an incremental one still waiting.
                    Some((false, r)) if incremental => (false, r),
                    _ => (incremental, rect),
                });
                // Full requests too wait for the next look: a client asking in a loop gets
                // no more than ~30 frames a second.
            }
            ClientMessage::Key { down, keysym } => self.key(down, keysym),
            ClientMessage::Pointer { buttons, x, y } => self.pointer_event(buttons, x, y),
            ClientMessage::CutText { .. } => {}
        }
        Ok(())
    }

    fn key(&mut self, down: bool, keysym: u32) {
        let Some(key) = keysym_to_key(keysym) else {
            log::debug!("vnc: keysym {keysym:#x} has no key on a US keyboard");
            return;
        };
        if down {
            if !self.held.contains(&key) && self.held.len() < MAX_HELD_KEYS {
                self.held.push(key);
            }
        } else {
            self.held.retain(|k| *k != key);
        }
        // A client that sends `_` without pressing Shift (a script typing text) gets Shift
        // held around the key, so the guest sees `_` rather than `-`.
        let fake_shift = down && needs_shift(keysym) && !self.held.iter().any(|k| SHIFTS.contains(k));
        if fake_shift {
            self.console.key(SHIFTS[0], true);
        }
        self.console.key(key, down);
        if fake_shift {
            self.console.key(SHIFTS[0], false);
        }
    }

    /// Absolute client positions become relative PS/2 movement (y up is positive there);
    /// wheel "buttons" 3 and 4 become one wheel step each time they are pressed.
    fn pointer_event(&mut self, buttons: u8, x: u16, y: u16) {
        let (dx, dy) = match self.pointer {
            Some((px, py)) => (i32::from(x) - i32::from(px), i32::from(py) - i32::from(y)),
            None => (0, 0),
        };
        self.pointer = Some((x, y));
        let wheel_down = buttons & !self.buttons;
        let dz = if wheel_down & 0x08 != 0 {
            -1
        } else if wheel_down & 0x10 != 0 {
            1
        } else {
            0
        };
        let ps2 = |b: u8| {
            (if b & 1 != 0 { MOUSE_LEFT } else { 0 })
                | (if b & 2 != 0 { MOUSE_MIDDLE } else { 0 })
                | (if b & 4 != 0 { MOUSE_RIGHT } else { 0 })
        };
        let changed = ps2(buttons) != ps2(self.buttons);
        self.buttons = buttons;
        if dx != 0 || dy != 0 || dz != 0 || changed {
            self.console.pointer(dx, dy, dz, ps2(buttons));
        }
    }

    /// Answers the pending request if there is something to send.
    fn update(&mut self) -> Result<(), SessionError> {
        let Some((incremental, region)) = self.pending else { return Ok(()) };
        self.last_look = Some(Instant::now());
        let Some(frame) = self.console.frame() else { return Ok(()) };
        let size = frame_size(frame.width, frame.height);
        let mut out = Vec::new();
        if size != (self.width, self.height) {
            if self.desktop_size {
                // The size change alone; the client asks for the new contents.
                (self.width, self.height) = size;
                self.shadow = None;
                self.pending = None;
                rfb::update_header(1, &mut out);
                rfb::desktop_size_rect(size.0, size.1, &mut out);
                self.conn.write_all(&out)?;
                return Ok(());
            }
            log::debug!("vnc: client cannot resize; the {}x{} screen is cropped or padded", size.0, size.1);
        }
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        let fitted;
        let rgb: &[u8] = if size == (self.width, self.height) && frame.width == w && frame.height == h {
            &frame.rgb
        } else {
            fitted = tiles::fit(&frame.rgb, frame.width, frame.height, w, h);
            &fitted
        };
        let full = Rect { x: 0, y: 0, w: self.width, h: self.height };
        let rects = match &self.shadow {
            // What the client shows is unknown: all of it, whatever the region.
            None => vec![full],
            Some(_) if !incremental => tiles::clip(region, w, h).into_iter().collect(),
            Some(old) => match tiles::clip(region, w, h) {
                Some(r) => tiles::changed_rects(old, rgb, w, r),
                None => Vec::new(),
            },
        };
        if rects.is_empty() && incremental {
            return Ok(());
        }
        rfb::update_header(rects.len() as u16, &mut out);
        for r in &rects {
            rfb::raw_rect(rgb, w, *r, &self.conv, &mut out);
        }
        let shadow = self.shadow.get_or_insert_with(|| vec![0; rgb.len()]);
        for r in &rects {
            tiles::copy_rect(shadow, rgb, w, *r);
        }
        self.pending = None;
        self.conn.write_all(&out)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
