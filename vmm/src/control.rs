// SPDX-License-Identifier: Apache-2.0
//! The control socket (`--control PATH`) and the exit-status file (`--exit-status-file PATH`).
//!
//! The socket is a unix stream socket (mode 0600) the VMM listens on for its whole life,
//! across guest reboots. Any number of clients may connect; each sends requests as one JSON
//! object per line and gets one JSON object per line back. The requests and responses are
//! the types of `api::control` (its documentation has the table).
//!
//! Any failure is `{"error":"..."}`. `stop` and `reset` work through flags the run loop
//! checks; `powerbutton`, `pause`, `resume`, `screendump` and `sendkey` (`{"cmd":"sendkey",
//! "keys":"text"}`, typed on the PS/2 keyboard) call [`ControlHooks`] that the
//! machine installs when it is built ([`Control::set_hooks`]); a hook not installed answers
//! `{"error":"... is not supported by this machine"}`.
//!
//! `stats` answers from [`crate::stats::StatsSource`], which the machine fills when it is
//! built ([`Control::stats`]).
//!
//! The exit-status file is `{"code":N,"reason":"..."}`, written atomically
//! ([`write_exit_status`]) when the VMM exits, so a management daemon can tell why a VM
//! stopped even if it was not running at that moment.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use api::control::{Request, Response, RunState, Status};

use crate::stats::StatsSource;

/// Longest request line accepted; longer ones close the connection.
const MAX_REQUEST: usize = 64 * 1024;

/// An action on the current boot; `Err` is the message for the client.
pub type Hook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
/// Types the given text on the guest's keyboard.
pub type SendkeyHook = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
/// Writes the display to a PNG file.
pub type ScreendumpHook = Arc<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// Actions only the running machine can perform; installed by the machine when it is built.
#[derive(Clone, Default)]
pub struct ControlHooks {
    /// Press the ACPI power button (e.g. `AcpiPm::press_power_button`).
    pub power_button: Option<Hook>,
    /// Stop the vCPUs; the process stays.
    pub pause: Option<Hook>,
    /// Restart the vCPUs after `pause`.
    pub resume: Option<Hook>,
    /// Save the display as PNG.
    pub screendump: Option<ScreendumpHook>,
    /// Type text on the keyboard.
    pub sendkey: Option<SendkeyHook>,
}

/// State shared by the control socket and the run loop.
pub struct Control {
    /// Ends the current boot (the run loop's stop flag).
    stop: Arc<AtomicBool>,
    /// Set with `stop` when the process must exit rather than reboot (signal, `stop`).
    terminate: Arc<AtomicBool>,
    reset: AtomicBool,
    paused: AtomicBool,
    boots: AtomicU32,
    hooks: Mutex<ControlHooks>,
    devices: Mutex<Vec<api::control::DeviceInfo>>,
    stats: StatsSource,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    /// `stop` is the flag the run loop watches to end a boot; `terminate` says the end is
    /// final (both are set by signals too).
    pub fn new(stop: Arc<AtomicBool>, terminate: Arc<AtomicBool>) -> Arc<Control> {
        Arc::new(Control {
            stop,
            terminate,
            reset: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            boots: AtomicU32::new(0),
            hooks: Mutex::new(ControlHooks::default()),
            devices: Mutex::new(Vec::new()),
            stats: StatsSource::new(),
        })
    }

    /// Installs the machine's hooks (once, when it is built: they live across resets).
    pub fn set_hooks(&self, hooks: ControlHooks) {
        *lock(&self.hooks) = hooks;
    }

    /// Removes the hooks of a boot that ended (they hold its devices).
    pub fn clear_hooks(&self) {
        *lock(&self.hooks) = ControlHooks::default();
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Counts a boot (the first is 1); a new boot runs, so it is not paused.
    pub fn boot_started(&self) {
        self.boots.fetch_add(1, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// True once if a `reset` was requested (and no stop since): the run loop then clears
    /// the stop flag and boots again.
    pub fn take_reset(&self) -> bool {
        let reset = self.reset.swap(false, Ordering::SeqCst);
        if reset && !self.terminate.load(Ordering::SeqCst) {
            self.stop.store(false, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    /// Sets the machine's device list (the `devices` answer).
    pub fn set_devices(&self, devices: Vec<api::control::DeviceInfo>) {
        *lock(&self.devices) = devices;
    }

    /// What `stats` reads: the machine registers its vCPUs and devices' counters there.
    pub fn stats(&self) -> &StatsSource {
        &self.stats
    }

    /// Handles one request line; returns the response line (without newline).
    pub fn handle(&self, line: &str) -> String {
        match serde_json::from_str(line) {
            Ok(req) => self.answer(req).to_line(),
            Err(e) => Response::error(format!("bad request: {e}")).to_line(),
        }
    }

    /// Carries out one request.
    pub fn answer(&self, req: Request) -> Response {
        let ok = Response::ok;
        let err = Response::error;
        let missing = |what: &str| err(format!("{what} is not supported by this machine"));
        let hooks = lock(&self.hooks).clone();
        match req {
            Request::Status => {
                let state =
                    if self.paused.load(Ordering::SeqCst) { RunState::Paused } else { RunState::Running };
                let boots = self.boots.load(Ordering::SeqCst);
                Response::Status(Status { state, pid: std::process::id(), boots })
            }
            Request::Stop => {
                self.terminate.store(true, Ordering::SeqCst);
                self.stop.store(true, Ordering::SeqCst);
                ok()
            }
            Request::Reset => {
                self.reset.store(true, Ordering::SeqCst);
                self.stop.store(true, Ordering::SeqCst);
                ok()
            }
            Request::Powerbutton => match hooks.power_button {
                Some(h) => h().map_or_else(err, |_| ok()),
                None => missing("the power button"),
            },
            Request::Pause => match hooks.pause {
                Some(h) => h().map_or_else(err, |_| {
                    self.paused.store(true, Ordering::SeqCst);
                    ok()
                }),
                None => missing("pause"),
            },
            Request::Resume => match hooks.resume {
                Some(h) => h().map_or_else(err, |_| {
                    self.paused.store(false, Ordering::SeqCst);
                    ok()
                }),
                None => missing("resume"),
            },
            Request::Screendump { path } => match hooks.screendump {
                Some(h) => h(&path).map_or_else(err, |_| ok()),
                None => missing("screendump"),
            },
            Request::Sendkey { keys } => match hooks.sendkey {
                Some(h) => h(&keys).map_or_else(err, |_| ok()),
                None => missing("sendkey"),
            },
            Request::Devices => Response::Devices { devices: lock(&self.devices).clone() },
            Request::Stats => Response::Stats(self.stats.read()),
        }
    }
}

/// `vmm control PATH REQUEST`: sends one request line to a running vmm's control socket,
/// prints the response, and tells whether it was a success (no `"error"` key).
pub fn client(path: &Path, request: &str) -> io::Result<bool> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(request.trim_end().as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    println!("{}", line.trim_end());
    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
    Ok(value.get("error").is_none() && !value.is_null())
}

/// A listening control socket; the socket file is removed on drop.
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket, never another kind of file), makes it mode
    /// 0600 and serves clients on background threads for the life of the process.
    pub fn start(path: &Path, control: Arc<Control>) -> io::Result<ControlServer> {
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        std::thread::Builder::new().name("control".into()).spawn(move || {
            devices::sandbox::enter_or_warn(devices::sandbox::ThreadRole::Control);
            for stream in listener.incoming().flatten() {
                let control = control.clone();
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve_client(stream, &control));
            }
        })?;
        Ok(ControlServer { path: path.to_path_buf() })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, control: &Control) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded read: a client cannot make the VMM buffer an endless line.
        match (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST {
            let _ = writeln!(out, "{}", Response::error("request too long").to_line());
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if writeln!(out, "{}", control.handle(text)).is_err() {
            return;
        }
    }
}

/// Writes `{"code":code,"reason":reason}` to `path` atomically: a temporary file in the same
/// directory, fsynced, renamed over `path`.
pub fn write_exit_status(path: &Path, code: u8, reason: &str) -> io::Result<()> {
    let body = serde_json::to_string(&api::ExitStatus { code: code.into(), reason: reason.to_string() })
        .map_err(io::Error::other)?;
    crate::files::replace(path, format!("{body}\n").as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> (Arc<Control>, Arc<AtomicBool>, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        (Control::new(stop.clone(), term.clone()), stop, term)
    }

    fn value(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn status_reports_pid_boots_and_pause() {
        let (c, _, _) = control();
        c.boot_started();
        c.boot_started();
        let v = value(&c.handle(r#"{"cmd":"status"}"#));
        assert_eq!(v["state"], "running");
        assert_eq!(v["boots"], 2);
        assert_eq!(v["pid"], std::process::id());
        c.set_hooks(ControlHooks {
            pause: Some(Arc::new(|| Ok(()))),
            resume: Some(Arc::new(|| Ok(()))),
            ..Default::default()
        });
        assert_eq!(value(&c.handle(r#"{"cmd":"pause"}"#))["ok"], true);
        assert_eq!(value(&c.handle(r#"{"cmd":"status"}"#))["state"], "paused");
        assert_eq!(value(&c.handle(r#"{"cmd":"resume"}"#))["ok"], true);
        assert_eq!(value(&c.handle(r#"{"cmd":"status"}"#))["state"], "running");
    }

    #[test]
    fn stop_sets_both_flags_and_defeats_reset() {
        let (c, stop, term) = control();
        c.handle(r#"{"cmd":"reset"}"#);
        assert!(stop.load(Ordering::SeqCst));
        assert!(!term.load(Ordering::SeqCst));
        c.handle(r#"{"cmd":"stop"}"#);
        assert!(term.load(Ordering::SeqCst));
        assert!(!c.take_reset(), "a stop after a reset must win");
        assert!(stop.load(Ordering::SeqCst));
    }

    #[test]
    fn devices_lists_what_the_machine_registered() {
        let (c, _, _) = control();
        assert_eq!(c.handle(r#"{"cmd":"devices"}"#), r#"{"devices":[]}"#);
        c.set_devices(vec![api::control::DeviceInfo {
            id: "vda".into(),
            kind: "virtio-blk".into(),
            pci: Some("00:07.0".into()),
            detail: "/d.raw".into(),
        }]);
        let v = value(&c.handle(r#"{"cmd":"devices"}"#));
        assert_eq!(v["devices"][0]["id"], "vda");
        assert_eq!(v["devices"][0]["pci"], "00:07.0");
    }

    #[test]
    fn stats_answer_with_the_machine_counters() {
        let (c, _, _) = control();
        let v = value(&c.handle(r#"{"cmd":"stats"}"#));
        assert!(v["uptime_ms"].is_u64() && v["cpu_time_ns"].as_u64().unwrap() > 0, "{v}");
        assert!(v["rss_bytes"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["disks"], serde_json::json!([]));
        let mut counters = crate::stats::DeviceCounters::default();
        let disk = Arc::new(devices::stats::BlockStats::default());
        counters.add_disk("vda", "virtio-blk", disk.clone());
        counters.add_nic("net0", "virtio-net", true, Arc::default());
        c.stats().set_machine(1 << 30, Arc::default(), counters);
        disk.record(devices::stats::BlockOp::Write, 8192);
        disk.error();
        let v = value(&c.handle(r#"{"cmd":"stats"}"#));
        assert_eq!(v["memory_bytes"], 1u64 << 30);
        assert_eq!(v["disks"][0]["id"], "vda");
        assert_eq!(v["disks"][0]["wr_reqs"], 1);
        assert_eq!(v["disks"][0]["wr_bytes"], 8192);
        assert_eq!(v["disks"][0]["errors"], 1);
        assert_eq!(v["nics"][0]["in_kernel"], true);
        let parsed: Response = serde_json::from_value(v).unwrap();
        assert!(matches!(parsed, Response::Stats(s) if s.disks.len() == 1));
    }

    #[test]
    fn reset_is_taken_once_and_clears_stop() {
        let (c, stop, _) = control();
        assert!(!c.take_reset());
        c.handle(r#"{"cmd":"reset"}"#);
        assert!(c.take_reset());
        assert!(!stop.load(Ordering::SeqCst));
        assert!(!c.take_reset());
    }

    #[test]
    fn hooks_are_called_and_missing_ones_are_errors() {
        let (c, _, _) = control();
        let v = value(&c.handle(r#"{"cmd":"powerbutton"}"#));
        assert!(v["error"].as_str().unwrap().contains("power button"));
        let pressed = Arc::new(AtomicU32::new(0));
        let p = pressed.clone();
        c.set_hooks(ControlHooks {
            power_button: Some(Arc::new(move || {
                p.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })),
            screendump: Some(Arc::new(|p: &Path| Err(format!("cannot write {}", p.display())))),
            ..Default::default()
        });
        assert_eq!(value(&c.handle(r#"{"cmd":"powerbutton"}"#))["ok"], true);
        assert_eq!(pressed.load(Ordering::SeqCst), 1);
        let v = value(&c.handle(r#"{"cmd":"screendump","path":"/x.png"}"#));
        assert_eq!(v["error"], "cannot write /x.png");
        assert!(value(&c.handle(r#"{"cmd":"sendkey","keys":"c"}"#))["error"]
            .as_str()
            .unwrap()
            .contains("sendkey"));
        let typed = Arc::new(Mutex::new(String::new()));
        let t = typed.clone();
        c.set_hooks(ControlHooks {
            sendkey: Some(Arc::new(move |k: &str| {
                t.lock().unwrap().push_str(k);
                Ok(())
            })),
            ..Default::default()
        });
        assert_eq!(value(&c.handle(r#"{"cmd":"sendkey","keys":"root\n"}"#))["ok"], true);
        assert_eq!(*typed.lock().unwrap(), "root\n");
        assert!(value(&c.handle(r#"{"cmd":"sendkey"}"#))["error"].is_string(), "keys is required");
        c.clear_hooks();
        assert!(value(&c.handle(r#"{"cmd":"powerbutton"}"#))["error"].is_string());
    }

    #[test]
    fn client_sends_a_request_and_reports_errors() {
        let (c, _, _) = control();
        let dir = std::env::temp_dir().join(format!("vmm-control-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl");
        let _server = ControlServer::start(&path, c).unwrap();
        assert!(client(&path, r#"{"cmd":"status"}"#).unwrap());
        assert!(!client(&path, r#"{"cmd":"powerbutton"}"#).unwrap(), "no hook: an error response");
        assert!(client(&dir.join("absent"), r#"{"cmd":"status"}"#).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_requests_are_errors() {
        let (c, stop, _) = control();
        for bad in
            ["nonsense", r#"{"cmd":"fly"}"#, r#"{"cmd":"screendump"}"#, r#"{"cmd":"screendump","path":1}"#]
        {
            assert!(value(&c.handle(bad))["error"].is_string(), "{bad}");
        }
        assert!(!stop.load(Ordering::SeqCst));
    }

    #[test]
    fn socket_serves_several_clients_and_is_private() {
        let dir = std::env::temp_dir().join(format!("vmm-control-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let (c, stop, _) = control();
        let server = ControlServer::start(&path, c).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut a = BufReader::new(UnixStream::connect(&path).unwrap());
        let mut b = BufReader::new(UnixStream::connect(&path).unwrap());
        let mut line = String::new();
        a.get_mut().write_all(b"{\"cmd\":\"status\"}\n\n{\"cmd\":\"status\"}\n").unwrap();
        a.read_line(&mut line).unwrap();
        assert_eq!(value(&line)["state"], "running");
        line.clear();
        b.get_mut().write_all(b"{\"cmd\":\"stop\"}\n").unwrap();
        b.read_line(&mut line).unwrap();
        assert_eq!(value(&line)["ok"], true);
        assert!(stop.load(Ordering::SeqCst));
        line.clear();
        a.read_line(&mut line).unwrap();
        assert_eq!(value(&line)["state"], "running");
        // A request longer than the limit closes the connection.
        let big = vec![b'x'; MAX_REQUEST + 10];
        b.get_mut().write_all(&big).unwrap();
        line.clear();
        b.read_line(&mut line).unwrap();
        assert!(value(&line)["error"].is_string());
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).unwrap_or(0), 0);
        drop(server);
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_status_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vmm-exit-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exit.json");
        write_exit_status(&path, 4, "old").unwrap();
        write_exit_status(&path, 0, "guest powered off \"ok\"").unwrap();
        let v = value(&fs::read_to_string(&path).unwrap());
        assert_eq!(v["code"], 0);
        assert_eq!(v["reason"], "guest powered off \"ok\"");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        let _ = fs::remove_dir_all(&dir);
    }
}
