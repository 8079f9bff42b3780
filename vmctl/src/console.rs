// SPDX-License-Identifier: Apache-2.0
//! The console multiplexer: one per running VM.
//!
//! It is the single client of the VM's serial socket (`vmm --serial unix:PATH`). Guest output
//! is appended to the VM's log file (rotated to `<log>.1` past [`LOG_LIMIT`]), kept in a
//! replay buffer of the last [`REPLAY_LIMIT`] bytes, and sent to every attached viewer;
//! input from any viewer goes to the guest. A viewer that falls more than [`VIEWER_BACKLOG`]
//! chunks behind loses the chunks it missed rather than slowing the others.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

/// Bytes of recent output replayed to a viewer on attach.
pub const REPLAY_LIMIT: usize = 64 * 1024;
/// Size at which the log file is rotated.
pub const LOG_LIMIT: u64 = 1024 * 1024;
/// Output chunks a viewer may fall behind before it loses some.
pub const VIEWER_BACKLOG: usize = 1024;

struct Inner {
    replay: VecDeque<u8>,
    log: Option<LogFile>,
    /// `None` once the serial connection has ended.
    out: Option<broadcast::Sender<Bytes>>,
}

/// A bounded, rotated log file.
struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    limit: u64,
}

impl LogFile {
    fn open(path: &Path, limit: u64) -> io::Result<LogFile> {
        // Never through a symlink, never a FIFO or device: the daemon runs as root.
        let file = crate::safefs::open_append_nofollow(path, 0o640)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path: path.to_path_buf(), file, size, limit })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.limit {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            fs::rename(&self.path, &old)?;
            self.file = crate::safefs::create_truncate_nofollow(&self.path, 0o640)?;
            self.size = 0;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

/// A viewer's end: the replay, then live output until the VM's console ends.
pub struct Viewer {
    /// Recent output, to show first.
    pub replay: Vec<u8>,
    /// Live output after the replay.
    pub output: broadcast::Receiver<Bytes>,
    /// Input to the guest.
    pub input: mpsc::Sender<Bytes>,
}

/// The multiplexer of one VM's console.
pub struct ConsoleMux {
    inner: Mutex<Inner>,
    input: mpsc::Sender<Bytes>,
    replay_limit: usize,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsoleMux {
    /// A multiplexer logging to `log` (if given; an unopenable log is reported and skipped)
    /// and the receiver of viewer input, for [`ConsoleMux::run`].
    pub fn new(
        log: Option<&Path>,
        replay_limit: usize,
        log_limit: u64,
    ) -> (ConsoleMux, mpsc::Receiver<Bytes>) {
        let log = log.and_then(|p| {
            LogFile::open(p, log_limit)
                .inspect_err(|e| tracing::warn!("console log {}: {e}", p.display()))
                .ok()
        });
        let (out, _) = broadcast::channel(VIEWER_BACKLOG);
        let (input, input_rx) = mpsc::channel(64);
        let inner = Inner { replay: VecDeque::new(), log, out: Some(out) };
        (ConsoleMux { inner: Mutex::new(inner), input, replay_limit }, input_rx)
    }

    /// Starts the replay buffer with the end of `log` (after a daemon restart, the output the
    /// previous daemon logged).
    pub fn seed_from_log(&self, log: &Path) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = File::open(log) else { return };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let limit = self.replay_limit as u64;
        if f.seek(SeekFrom::Start(len.saturating_sub(limit))).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(limit).read_to_end(&mut buf).is_ok() {
            let mut inner = lock(&self.inner);
            inner.replay.extend(buf);
            let excess = inner.replay.len().saturating_sub(self.replay_limit);
            inner.replay.drain(..excess);
        }
    }

    /// Records guest output: log, replay buffer, viewers.
    pub fn feed(&self, data: &[u8]) {
        let mut inner = lock(&self.inner);
        if let Some(log) = inner.log.as_mut() {
            if let Err(e) = log.write(data) {
                tracing::warn!("console log {}: {e}; logging stops", log.path.display());
                inner.log = None;
            }
        }
        let keep = data.len().min(self.replay_limit);
        inner.replay.extend(&data[data.len() - keep..]);
        let excess = inner.replay.len().saturating_sub(self.replay_limit);
        inner.replay.drain(..excess);
        if let Some(out) = &inner.out {
            // No receivers is fine: output is still logged and replayed.
            let _ = out.send(Bytes::copy_from_slice(data));
        }
    }

    /// Attaches a viewer; `None` once the console has ended. The replay and the live stream
    /// join without a gap or a repeat.
    pub fn attach(&self) -> Option<Viewer> {
        let inner = lock(&self.inner);
        let output = inner.out.as_ref()?.subscribe();
        Some(Viewer { replay: inner.replay.iter().copied().collect(), output, input: self.input.clone() })
    }

    /// Ends every viewer's stream.
    pub fn close(&self) {
        lock(&self.inner).out = None;
    }

    /// True once the serial connection has ended.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).out.is_none()
    }

    /// Pumps the serial connection: output to [`ConsoleMux::feed`], viewer input to the
    /// guest, until the VM closes the socket; then closes the multiplexer.
    pub async fn run(&self, stream: UnixStream, mut input: mpsc::Receiver<Bytes>) {
        let (mut rd, mut wr) = stream.into_split();
        let writer = async move {
            while let Some(b) = input.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        };
        let reader = async {
            let mut buf = vec![0u8; 4096];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.feed(&buf[..n]),
                }
            }
        };
        // The reader ends when the VM goes; the writer only when every sender is gone.
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        self.close();
    }
}

/// Connects to a serial socket, retrying until `timeout` (the VMM creates it shortly after
/// it starts).
pub async fn connect_serial(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_last_bytes() {
        let (mux, _rx) = ConsoleMux::new(None, 8, LOG_LIMIT);
        mux.feed(b"0123");
        mux.feed(b"456789ab");
        assert_eq!(mux.attach().unwrap().replay, b"456789ab");
        mux.feed(b"0123456789ABCDEFGH");
        assert_eq!(mux.attach().unwrap().replay, b"ABCDEFGH");
    }

    #[test]
    fn replay_can_start_from_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vm.log");
        fs::write(&log, b"0123456789").unwrap();
        let (mux, _rx) = ConsoleMux::new(None, 4, LOG_LIMIT);
        mux.seed_from_log(&log);
        mux.feed(b"ab");
        assert_eq!(mux.attach().unwrap().replay, b"89ab");
    }

    #[tokio::test]
    async fn viewers_get_replay_then_live_output_and_end() {
        let (mux, _rx) = ConsoleMux::new(None, 1024, LOG_LIMIT);
        mux.feed(b"boot\n");
        let mut a = mux.attach().unwrap();
        mux.feed(b"login: ");
        let mut b = mux.attach().unwrap();
        mux.feed(b"x");
        assert_eq!(a.replay, b"boot\n");
        assert_eq!(&a.output.recv().await.unwrap()[..], b"login: ");
        assert_eq!(&a.output.recv().await.unwrap()[..], b"x");
        assert_eq!(b.replay, b"boot\nlogin: ");
        assert_eq!(&b.output.recv().await.unwrap()[..], b"x");
        mux.close();
        assert!(a.output.recv().await.is_err());
        assert!(mux.attach().is_none());
    }

    #[test]
    fn log_is_appended_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vm.log");
        fs::write(&log, b"old\n").unwrap();
        let (mux, _rx) = ConsoleMux::new(Some(&log), 16, 10);
        mux.feed(b"abcd");
        assert_eq!(fs::read(&log).unwrap(), b"old\nabcd");
        mux.feed(b"efg");
        assert_eq!(fs::read(&log).unwrap(), b"efg");
        assert_eq!(fs::read(dir.path().join("vm.log.1")).unwrap(), b"old\nabcd");
    }

    #[tokio::test]
    async fn pumps_output_to_viewers_and_input_to_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (mux, rx) = ConsoleMux::new(Some(&dir.path().join("log")), 1024, LOG_LIMIT);
        let mux = std::sync::Arc::new(mux);
        let stream = connect_serial(&path, Duration::from_secs(5)).await.unwrap();
        let (mut guest, _) = listener.accept().await.unwrap();
        let m = mux.clone();
        let pump = tokio::spawn(async move { m.run(stream, rx).await });
        let mut v1 = mux.attach().unwrap();
        let v2 = mux.attach().unwrap();
        guest.write_all(b"hello").await.unwrap();
        assert_eq!(&v1.output.recv().await.unwrap()[..], b"hello");
        v2.input.send(Bytes::from_static(b"ls\r")).await.unwrap();
        let mut got = [0u8; 3];
        guest.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ls\r");
        drop(guest);
        pump.await.unwrap();
        assert!(mux.is_closed());
        assert_eq!(fs::read(dir.path().join("log")).unwrap(), b"hello");
    }
}
