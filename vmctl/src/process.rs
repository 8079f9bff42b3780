// SPDX-License-Identifier: Apache-2.0
//! VM processes: starting a detached `vmm`, recognising it again by pid and start time,
//! talking to its control socket, and reading its exit status.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use vmdef::store::proc_start_ticks;

pub use api::control::{Request, Response, Status as VmmStatus};
pub use api::{ExitStatus, VmmExit};

/// Exit status of `vmm` when the guest powered off.
pub const EXIT_POWEROFF: i32 = VmmExit::PowerOff.code() as i32;
/// Exit status of `vmm` for bad input (nothing was run).
pub const EXIT_BAD_INPUT: i32 = VmmExit::BadInput.code() as i32;
/// Exit status of `vmm` when the guest rebooted under `--no-reboot`.
pub const EXIT_REBOOT: i32 = VmmExit::Reboot.code() as i32;
/// Exit status of `vmm` when it was stopped (signal or `stop` request).
pub const EXIT_STOPPED: i32 = VmmExit::Stopped.code() as i32;

/// Starts `vmm` with `args`, detached: its own session and process group (so it outlives the
/// daemon and a terminal hang-up), stdin from /dev/null, stdout and stderr appended to
/// `log`; jailed if `jail` is given ([`crate::jail`]), with `fds` handed over as descriptors
/// 3, 4, ... . The caller reaps it through the returned process.
pub fn spawn_vmm(
    vmm: &Path,
    args: &[OsString],
    log: &Path,
    fds: Vec<std::os::fd::OwnedFd>,
    jail: Option<&crate::jail::Jail>,
) -> io::Result<crate::jail::VmProcess> {
    // The daemon writes as root: never through a symlink, never anything but a file.
    let log = crate::safefs::open_append_nofollow(log, 0o640)?;
    let env = jail.map(|_| crate::daemon::jailing::jailed_env());
    crate::jail::spawn(crate::jail::Spawn { program: vmm, args, env, log, fds, jail })
}

/// True if `pid` runs and, when `ticks` is given, started at that time (so it is not a later
/// process that reused the pid). A zombie counts as gone.
pub fn is_alive(pid: u32, ticks: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    match ticks {
        Some(t) => proc_start_ticks(pid).is_ok_and(|now| now == t),
        None => true,
    }
}

/// Sends `signal` to `pid` if it is still the process started at `ticks`.
pub fn signal(pid: u32, ticks: Option<u64>, signal: nix::sys::signal::Signal) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    is_alive(pid, ticks) && nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).is_ok()
}

/// Reads an exit-status file; `None` if it is absent or unreadable.
pub fn read_exit_status(path: &Path) -> Option<ExitStatus> {
    let f = File::open(path).ok()?;
    serde_json::from_reader(f).ok()
}

/// A failed control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be reached or the connection failed.
    #[error("cannot reach the VM's control socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The VMM did not answer in time.
    #[error("the VM's control socket did not answer within {0:?}")]
    Timeout(Duration),
    /// The VMM refused the request.
    #[error("the VM refused: {0}")]
    Refused(String),
    /// The answer was not JSON.
    #[error("the VM answered something that is not JSON: {0}")]
    BadAnswer(String),
}

/// Sends one line to a VMM's control socket and returns the line it answers.
async fn exchange(socket: &Path, request: String, timeout: Duration) -> Result<String, ControlError> {
    let io_err = |source| ControlError::Io { path: socket.display().to_string(), source };
    let exchange = async {
        let mut s = UnixStream::connect(socket).await.map_err(io_err)?;
        s.write_all(format!("{request}\n").as_bytes()).await.map_err(io_err)?;
        let mut line = String::new();
        let mut r = BufReader::new(s);
        if r.read_line(&mut line).await.map_err(io_err)? == 0 {
            return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")));
        }
        Ok(line)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ControlError::Timeout(timeout))?
}

/// Sends any JSON object (also requests [`Request`] does not have, like the test VMM's) and
/// returns the answer.
pub async fn control(
    socket: &Path,
    request: serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, ControlError> {
    let line = exchange(socket, request.to_string(), timeout).await?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|_| ControlError::BadAnswer(line.trim().to_string()))?;
    match v.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(ControlError::Refused(e.to_string())),
        None => Ok(v),
    }
}

/// Sends one request to a VMM's control socket and returns its answer (never
/// [`Response::Error`], which is [`ControlError::Refused`]).
pub async fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let line = exchange(socket, request.to_line(), timeout).await?;
    match serde_json::from_str(&line) {
        Ok(Response::Error { error }) => Err(ControlError::Refused(error)),
        Ok(r) => Ok(r),
        Err(_) => Err(ControlError::BadAnswer(line.trim().to_string())),
    }
}

/// Asks a VMM for its status.
pub async fn status(socket: &Path, timeout: Duration) -> Result<VmmStatus, ControlError> {
    match request(socket, &Request::Status, timeout).await? {
        Response::Status(s) => Ok(s),
        other => Err(ControlError::BadAnswer(other.to_line())),
    }
}

/// Sends a request that answers `{"ok":true}` (`stop`, `powerbutton`, `reset`, `pause`,
/// `resume`, ...).
pub async fn command(socket: &Path, cmd: Request, timeout: Duration) -> Result<(), ControlError> {
    request(socket, &cmd, timeout).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_ticks_only() {
        let pid = std::process::id();
        let ticks = proc_start_ticks(pid).unwrap();
        assert!(is_alive(pid, Some(ticks)));
        assert!(is_alive(pid, None));
        assert!(!is_alive(pid, Some(ticks + 1)));
        assert!(!is_alive(u32::MAX - 1, None));
    }

    #[tokio::test]
    async fn detached_child_has_its_own_session_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let args: Vec<OsString> = vec!["-c".into(), "ps -o sid= -p $$; echo err >&2".into()];
        let mut child = spawn_vmm(Path::new("/bin/sh"), &args, &log, Vec::new(), None).unwrap();
        let pid = child.id();
        assert!(child.wait().await.unwrap().success());
        let text = std::fs::read_to_string(&log).unwrap();
        let sid: u32 = text.lines().next().unwrap().trim().parse().unwrap();
        assert_eq!(sid, pid, "the child leads its own session");
        assert!(text.contains("err"));
        assert!(!is_alive(pid, None));
    }

    #[test]
    fn exit_status_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.json");
        assert_eq!(read_exit_status(&p), None);
        std::fs::write(&p, r#"{"code":4,"reason":"triple fault"}"#).unwrap();
        assert_eq!(read_exit_status(&p), Some(ExitStatus { code: 4, reason: "triple fault".into() }));
    }

    #[tokio::test]
    async fn control_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.sock");
        assert!(matches!(
            command(&p, Request::Stop, Duration::from_secs(1)).await,
            Err(ControlError::Io { .. })
        ));
        let listener = tokio::net::UnixListener::bind(&p).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut line = String::new();
            BufReader::new(r).read_line(&mut line).await.unwrap();
            assert_eq!(line, "{\"cmd\":\"pause\"}\n");
            w.write_all(b"{\"error\":\"pause is not supported\"}\n").await.unwrap();
        });
        let e = command(&p, Request::Pause, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.to_string(), "the VM refused: pause is not supported");
    }
}
