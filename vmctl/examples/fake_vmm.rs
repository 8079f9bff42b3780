// SPDX-License-Identifier: Apache-2.0
//! A stand-in for `vmm` in the `vmctl` tests: it boots nothing, but reads `--config FILE` as
//! `vmm` does (an `api::VmConfigFile`, which `vmctld` writes), speaks the control socket
//! protocol (`control`), serves a serial console (`serial: unix:PATH`: a banner, then echoes
//! input), serves VNC on `vnc` (`HOST:PORT` or `unix:PATH`, with `vnc_password`: the real
//! server of the `vmm` crate in front of a console without a screen) and writes
//! `exit_status_file` as `vmm` does. The same fields as flags override the file; other flags
//! are accepted and ignored.
//!
//! Test-only behaviour: memory 77M fails at start (exit 1); 79M exits 5 as on a host without
//! fast KVM unless `--accept-slow-kvm` is given; 78M writes about 21 KiB to
//! stderr at start (a chatty log); `{"cmd":"crash"}` exits with
//! status 4 (as a guest triple fault does); `{"cmd":"powerbutton"}` powers off (exit 0) unless
//! memory is 55M, which ignores the button (a guest without ACPI support); `{"cmd":"stats"}`
//! answers counters that grow with the uptime (1 MiB read and 512 KiB written per second on
//! `vda`, 1000 frames of 100 bytes each way on `net0`, 0.5 s of CPU per second on one vCPU).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

#[derive(Default)]
struct Args {
    control: Option<PathBuf>,
    serial: Option<PathBuf>,
    exit_file: Option<PathBuf>,
    memory: String,
    vnc: Option<api::vnc::VncListen>,
    vnc_password: Option<api::vnc::VncPassword>,
    accept_slow: bool,
}

fn parse() -> Args {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--accept-slow-kvm" {
            a.accept_slow = true;
            continue;
        }
        if flag == "--no-reboot" {
            continue;
        }
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--config" => {
                let c = api::VmConfigFile::load(std::path::Path::new(&v)).unwrap_or_else(|e| {
                    eprintln!("fake-vmm: {e}");
                    std::process::exit(2)
                });
                a.control = c.control.or(a.control);
                if let Some(api::SerialConfig::Unix(p)) = c.serial {
                    a.serial = Some(p);
                }
                a.exit_file = c.exit_status_file.or(a.exit_file);
                if let Some(m) = c.memory {
                    a.memory = api::config::format_size(m);
                }
                a.vnc = c.vnc.or(a.vnc);
                a.vnc_password = c.vnc_password.or(a.vnc_password);
            }
            "--control" => a.control = Some(v.into()),
            "--serial" => a.serial = v.strip_prefix("unix:").map(PathBuf::from),
            "--exit-status-file" => a.exit_file = Some(v.into()),
            "--memory" => a.memory = v,
            "--vnc" => a.vnc = v.parse().ok(),
            _ => {}
        }
    }
    a
}

fn write_exit(a: &Args, code: i32, reason: &str) {
    if let Some(p) = &a.exit_file {
        let tmp = p.with_extension("tmp");
        let body = serde_json::json!({ "code": code, "reason": reason }).to_string();
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
}

type Console = Arc<Mutex<Option<UnixStream>>>;

/// A VNC console with nothing on the screen yet (no boot), keys and mouse dropped.
struct NoScreen;

impl vmm::vnc::Console for NoScreen {
    fn frame(&self) -> Option<Arc<devices::display::vga::Frame>> {
        None
    }
    fn key(&self, _: devices::legacy::i8042::Key, _: bool) {}
    fn pointer(&self, _: i32, _: i32, _: i32, _: u8) {}
}

fn say(console: &Console, text: &str) {
    if let Some(s) = console.lock().unwrap().as_mut() {
        let _ = s.write_all(text.as_bytes());
    }
}

fn serve_serial(path: PathBuf, console: Console) {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("serial socket");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = stream.try_clone().expect("clone");
            *console.lock().unwrap() = Some(stream);
            say(&console, "fake-vmm console\r\nlogin: ");
            let echo = console.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    say(&echo, &String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
    });
}

fn main() {
    let a = parse();
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    if a.memory == "77M" {
        eprintln!("fake-vmm: simulated start failure");
        write_exit(&a, 1, "vmm: error: simulated start failure");
        std::process::exit(1);
    }
    if a.memory == "79M" && !a.accept_slow {
        // As vmm on a kvm_pvm host: status 5, naming its own flag.
        eprintln!("vmm: this host cannot run guests at useful speed; pass --accept-slow-kvm");
        write_exit(&a, 5, "vmm: this host cannot run guests at useful speed; pass --accept-slow-kvm");
        std::process::exit(5);
    }
    if a.memory == "78M" {
        // A chatty VMM: about 21 KiB of log at once (the daemon caps the log).
        eprint!("{}", "fake-vmm: a line of output to fill the log\n".repeat(500));
    }
    // Like vmm: refuses an address it cannot listen on; the server lives as long as the
    // process.
    let _vnc = match &a.vnc {
        Some(listen) => {
            match vmm::vnc::VncServer::start(listen, a.vnc_password.clone(), Arc::new(NoScreen), "fake-vmm") {
                Ok(s) => Some(s),
                Err(e) => {
                    let why = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
                    let addr = listen.to_string();
                    let addr = addr.strip_suffix(",allow-remote").unwrap_or(&addr);
                    write_exit(
                        &a,
                        2,
                        &format!("vmm: invalid configuration: vnc: cannot listen on {addr}{why}"),
                    );
                    std::process::exit(2);
                }
            }
        }
        None => None,
    };
    let console: Console = Arc::new(Mutex::new(None));
    if let Some(p) = &a.serial {
        serve_serial(p.clone(), console.clone());
    }
    let exit = Arc::new(AtomicI32::new(-1));
    let boots = Arc::new(AtomicU32::new(1));
    let paused = Arc::new(AtomicBool::new(false));
    let control = a.control.clone().expect("--control is required by the fake vmm");
    let _ = std::fs::remove_file(&control);
    let listener = UnixListener::bind(&control).expect("control socket");
    let ignores_button = a.memory == "55M";
    {
        let (exit, boots, paused, console) = (exit.clone(), boots.clone(), paused.clone(), console.clone());
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (exit, boots, paused, console) =
                    (exit.clone(), boots.clone(), paused.clone(), console.clone());
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().expect("clone");
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                        let ok = serde_json::json!({ "ok": true });
                        let reply = match v["cmd"].as_str().unwrap_or("") {
                            "status" => serde_json::json!({
                                "state": if paused.load(Ordering::SeqCst) { "paused" } else { "running" },
                                "pid": std::process::id(),
                                "boots": boots.load(Ordering::SeqCst),
                            }),
                            "stop" => {
                                exit.store(130, Ordering::SeqCst);
                                ok
                            }
                            "powerbutton" => {
                                if !ignores_button {
                                    say(&console, "\r\npower button: powering off\r\n");
                                    exit.store(0, Ordering::SeqCst);
                                }
                                ok
                            }
                            "crash" => {
                                exit.store(4, Ordering::SeqCst);
                                ok
                            }
                            "reset" => {
                                boots.fetch_add(1, Ordering::SeqCst);
                                say(&console, "\r\nreset\r\n");
                                ok
                            }
                            "pause" => {
                                paused.store(true, Ordering::SeqCst);
                                ok
                            }
                            "resume" => {
                                paused.store(false, Ordering::SeqCst);
                                ok
                            }
                            "stats" => fake_stats(started.elapsed()),
                            other => serde_json::json!({ "error": format!("{other} is not supported") }),
                        };
                        if writeln!(out, "{reply}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if TERM.load(Ordering::SeqCst) {
            exit.store(130, Ordering::SeqCst);
        }
        let code = exit.load(Ordering::SeqCst);
        if code >= 0 {
            let reason = match code {
                0 => "guest powered off",
                4 => "vmm: guest triple fault on vCPU 0 (the CPU shut down); stopping",
                _ => "stopped by a signal or a stop request",
            };
            write_exit(&a, code, reason);
            let _ = std::fs::remove_file(&control);
            std::process::exit(code);
        }
    }
}

/// The answer to `stats` after `up` of uptime.
fn fake_stats(up: Duration) -> serde_json::Value {
    let ms = up.as_millis() as u64;
    serde_json::json!({
        "uptime_ms": ms,
        "cpu_time_ns": ms * 600_000,
        "vcpu_time_ns": [ms * 500_000],
        "rss_bytes": 64u64 << 20,
        "memory_bytes": 128u64 << 20,
        "disks": [{ "id": "vda", "kind": "virtio-blk", "rd_reqs": ms / 4, "rd_bytes": ms * 1024 * 1024 / 1000,
                    "wr_reqs": ms / 8, "wr_bytes": ms * 512 * 1024 / 1000, "fl_reqs": ms / 1000, "errors": 0 }],
        "nics": [{ "id": "net0", "kind": "virtio-net", "rx_packets": ms, "rx_bytes": ms * 100, "rx_dropped": 0,
                   "tx_packets": ms, "tx_bytes": ms * 100, "tx_dropped": 0 }],
    })
}
