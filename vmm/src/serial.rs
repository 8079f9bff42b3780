// SPDX-License-Identifier: Apache-2.0
//! Serial console backends: where COM1's output goes and where its input comes from.
//!
//! The backend outlives the machine; the machine [`SerialBackend::attach`]es its UART (which a
//! guest reset resets in place), so the input thread feeds it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::legacy::uart16550::{SerialOut, Uart16550};

use crate::config::SerialConfig;

/// Ctrl-A, the escape prefix on a terminal console (as in QEMU): Ctrl-A x quits.
pub const ESCAPE: u8 = 0x01;

type UartSlot = Arc<Mutex<Option<Arc<Mutex<Uart16550>>>>>;
type Client = Arc<Mutex<Option<UnixStream>>>;

/// Called when the user types the quit sequence on the terminal.
pub type QuitHook = Arc<dyn Fn() + Send + Sync>;

/// An opened serial backend.
pub struct SerialBackend {
    kind: Kind,
    uart: UartSlot,
    terminal: Option<RawTerminal>,
}

enum Kind {
    Stdio,
    File(File),
    Unix(Client),
}

impl SerialBackend {
    /// Opens the backend and starts its input thread.
    pub fn open(config: &SerialConfig, quit: QuitHook) -> io::Result<Self> {
        let uart: UartSlot = Arc::new(Mutex::new(None));
        let (kind, terminal) = match config {
            SerialConfig::Stdio => {
                let terminal = RawTerminal::enter(0);
                let slot = uart.clone();
                let escape = terminal.is_some();
                std::thread::Builder::new().name("serial-stdin".into()).spawn(move || {
                    devices::sandbox::enter_or_warn(devices::sandbox::ThreadRole::Serial);
                    pump(io::stdin().lock(), &slot, escape.then_some(quit))
                })?;
                (Kind::Stdio, terminal)
            }
            SerialConfig::File(path) => {
                let f = crate::files::open_log(path)?;
                (Kind::File(f), None)
            }
            SerialConfig::Unix(path) => (Kind::Unix(listen(path, uart.clone())?), None),
        };
        Ok(SerialBackend { kind, uart, terminal })
    }

    /// A writer for a new UART's output.
    pub fn writer(&self) -> io::Result<SerialOut> {
        Ok(match &self.kind {
            // A raw fd write per byte: the UART already sends one byte at a time, and
            // std's line-buffered stdout would hold back prompts that end without a newline.
            Kind::Stdio => Box::new(StdoutRaw),
            Kind::File(f) => Box::new(f.try_clone()?),
            Kind::Unix(client) => Box::new(ClientOut(client.clone())),
        })
    }

    /// Makes `uart` the receiver of input.
    pub fn attach(&self, uart: Arc<Mutex<Uart16550>>) {
        *lock(&self.uart) = Some(uart);
    }

    /// Stops delivering input to the current UART (the boot that owned it has ended).
    pub fn detach(&self) {
        lock(&self.uart).take();
    }

    /// Puts the terminal back the way it was (also done on drop).
    pub fn restore_terminal(&mut self) {
        self.terminal.take();
    }
}

struct StdoutRaw;

impl Write for StdoutRaw {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop keeps it open.
        let mut out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ClientOut(Client);

impl Write for ClientOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut client = lock(&self.0);
        if let Some(s) = client.as_mut() {
            if s.write_all(buf).is_err() {
                *client = None;
            }
        }
        // With no client connected, output is dropped, as on an unplugged serial line.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies input from `src` into the attached UART until EOF. With a quit hook, Ctrl-A x
/// calls it and Ctrl-A Ctrl-A sends one Ctrl-A.
fn pump(mut src: impl Read, slot: &UartSlot, quit: Option<QuitHook>) {
    let mut buf = [0u8; 256];
    let mut escaped = false;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut out = Vec::with_capacity(n);
        let mut quit_now = false;
        for &b in &buf[..n] {
            match (&quit, escaped, b) {
                (Some(_), false, ESCAPE) => escaped = true,
                (Some(_), true, b'x' | b'X') => {
                    quit_now = true;
                    break;
                }
                (Some(_), true, other) => {
                    escaped = false;
                    out.push(other);
                }
                _ => out.push(b),
            }
        }
        let uart = lock(slot).clone();
        if let Some(u) = uart {
            lock(&u).queue_input(&out);
        }
        if let (true, Some(q)) = (quit_now, &quit) {
            q();
            return;
        }
    }
}

fn listen(path: &Path, slot: UartSlot) -> io::Result<Client> {
    if path.exists() {
        // A stale socket from an earlier run; anything else is left alone and fails below.
        if std::fs::symlink_metadata(path)?.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    let client: Client = Arc::new(Mutex::new(None));
    let current = client.clone();
    std::thread::Builder::new().name("serial-unix".into()).spawn(move || {
        devices::sandbox::enter_or_warn(devices::sandbox::ThreadRole::Serial);
        for stream in listener.incoming().flatten() {
            // A client that stops reading must not stall the vCPU writing to the UART: after
            // this long its output write fails and the client is dropped.
            let _ = stream.set_write_timeout(Some(std::time::Duration::from_millis(500)));
            let Ok(reader) = stream.try_clone() else { continue };
            *lock(&current) = Some(stream);
            let slot = slot.clone();
            let _ = std::thread::Builder::new()
                .name("serial-client".into())
                .spawn(move || pump(reader, &slot, None));
        }
    })?;
    Ok(client)
}

/// A terminal in raw mode, restored on drop.
struct RawTerminal {
    fd: i32,
    saved: libc::termios,
}

impl RawTerminal {
    /// Puts `fd` in raw mode if it is a terminal.
    fn enter(fd: i32) -> Option<RawTerminal> {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; tcgetattr fills it and we check the result.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and pointer to a termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only modifies the struct we pass.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: valid fd and termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved from the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::irq::IrqLine;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct NoIrq;
    impl IrqLine for NoIrq {
        fn pulse(&self) {}
        fn set_level(&self, _: bool) {}
    }

    fn uart_slot() -> (UartSlot, Arc<Mutex<Uart16550>>) {
        let u = Arc::new(Mutex::new(Uart16550::new(Arc::new(NoIrq), Box::new(io::sink()))));
        (Arc::new(Mutex::new(Some(u.clone()))), u)
    }

    fn drain(u: &Arc<Mutex<Uart16550>>) -> Vec<u8> {
        use devices::bus::BusDevice;
        let mut out = vec![];
        let mut b = [0u8];
        loop {
            lock(u).read(5, &mut b);
            if b[0] & 1 == 0 {
                return out;
            }
            lock(u).read(0, &mut b);
            out.push(b[0]);
        }
    }

    #[test]
    fn pump_delivers_input_and_handles_the_escape() {
        let (slot, u) = uart_slot();
        let quit = Arc::new(AtomicBool::new(false));
        let q = quit.clone();
        let hook: QuitHook = Arc::new(move || q.store(true, Ordering::SeqCst));
        pump(&b"ab\x01\x01c\x01x-never"[..], &slot, Some(hook));
        assert_eq!(drain(&u), b"ab\x01c");
        assert!(quit.load(Ordering::SeqCst));
    }

    #[test]
    fn pump_without_terminal_passes_everything() {
        let (slot, u) = uart_slot();
        pump(&b"a\x01xb"[..], &slot, None);
        assert_eq!(drain(&u), b"a\x01xb");
    }

    #[test]
    fn unix_socket_backend_carries_both_directions() {
        let dir = std::env::temp_dir().join(format!("vmm-serial-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let backend = SerialBackend::open(&SerialConfig::Unix(path.clone()), Arc::new(|| {})).unwrap();
        let (_, u) = uart_slot();
        backend.attach(u.clone());
        let mut writer = backend.writer().unwrap();
        writer.write_all(b"dropped: nobody listens").unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while let SerialBackend { kind: Kind::Unix(c), .. } = &backend {
            if lock(c).is_some() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        writer.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        client.write_all(b"in").unwrap();
        let mut received = vec![];
        while received.len() < 2 && std::time::Instant::now() < deadline {
            received.extend(drain(&u));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(received, b"in");
    }
}
