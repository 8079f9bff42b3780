// SPDX-License-Identifier: Apache-2.0
//! The seccomp filters of the `vmm` process on tiny guests (see tiny_guests.rs): guests run
//! under them, every thread shows `Seccomp: 2` in /proc, and a forbidden syscall in a thread
//! of a role (made through the `VMM_TEST_FORBIDDEN_SYSCALL` test hook) ends the vmm with
//! status 159 and the syscall's name on stderr, unless `--seccomp off`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{have_kvm, temp_path, tiny_kernel};

const VMM: &str = env!("CARGO_BIN_EXE_vmm");
const EXIT_SECCOMP: i32 = 159;
const TRIGGER: &str = "VMM_TEST_FORBIDDEN_SYSCALL";

// mov dx, 0x604; mov ax, 0x2000 (SLP_TYP = S5, SLP_EN); out dx, ax
const POWER_OFF: &[u8] = &[0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef];

fn vmm(kernel: &PathBuf, extra: &[&str]) -> Command {
    let mut c = Command::new(VMM);
    c.arg("--kernel").arg(kernel).args(["--accept-slow-kvm", "--memory", "64M"]).args(extra);
    c.stdin(Stdio::null()).env_remove(TRIGGER);
    c
}

fn run(kernel: &PathBuf, extra: &[&str], trigger: Option<&str>) -> Output {
    let mut c = vmm(kernel, extra);
    if let Some(role) = trigger {
        c.env(TRIGGER, role);
    }
    c.output().expect("run vmm")
}

#[test]
fn a_guest_powers_off_under_the_filters() {
    if !have_kvm() {
        return;
    }
    // The exit-status file is written by the filtered main thread (open, fsync, rename).
    let status = temp_path("exit.json");
    let status_arg = status.display().to_string();
    let out = run(
        &tiny_kernel(POWER_OFF),
        &["--serial", "file:/dev/null", "--exit-status-file", &status_arg],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("seccomp"), "{err}");
    let text = std::fs::read_to_string(&status).unwrap();
    assert!(text.contains(r#""code":0"#), "{text}");
}

// mov al, 0xfe; out 0x64, al: the i8042 reset line
const RESET: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64];

#[test]
fn guest_resets_run_under_the_filters() {
    if !have_kvm() {
        return;
    }
    // The guest resets at once, again and again: each reset is the filtered main thread
    // resetting devices and loading the kernel again, and the vCPU threads restoring state.
    let child =
        vmm(&tiny_kernel(RESET), &["--serial", "file:/dev/null"]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("forbidden syscall"), "{err}");
}

/// A halting guest with a control socket and a serial socket, so every frontend thread runs.
fn frontends() -> (PathBuf, Vec<String>) {
    let control = temp_path("control.sock");
    let serial = temp_path("serial.sock");
    let args = vec![
        "--control".to_string(),
        control.display().to_string(),
        "--serial".to_string(),
        format!("unix:{}", serial.display()),
    ];
    (control, args)
}

#[test]
fn a_forbidden_syscall_ends_the_vmm_naming_it() {
    if !have_kvm() {
        return;
    }
    let kernel = tiny_kernel(&[]);
    for role in ["vcpu", "main", "control", "serial"] {
        let (_, args) = frontends();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&kernel, &args, Some(role));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_SECCOMP), "{role}: {err}");
        let line = format!("vmm: seccomp: forbidden syscall personality (135) in a {role} thread; exiting");
        assert!(err.contains(&line), "{role}: {err}");
    }
}

#[test]
fn log_and_off_let_the_forbidden_syscall_run() {
    if !have_kvm() {
        return;
    }
    let kernel = tiny_kernel(POWER_OFF);
    for mode in ["off", "log"] {
        let out = run(&kernel, &["--serial", "file:/dev/null", "--seccomp", mode], Some("vcpu"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: {err}");
        assert!(!err.contains("forbidden syscall"), "{mode}: {err}");
    }
}

/// `Seccomp:` and `Seccomp_filters:` of every thread of `pid` (name, mode, filters).
fn thread_modes(pid: u32) -> Vec<(String, String, Option<u32>)> {
    let mut threads = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return threads };
    for task in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        threads.push((field("Name:"), field("Seccomp:"), field("Seccomp_filters:").parse().ok()));
    }
    threads
}

#[test]
fn every_thread_of_a_running_vmm_is_filtered() {
    if !have_kvm() {
        return;
    }
    let kernel = tiny_kernel(&[]);
    let (control, args) = frontends();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = vmm(&kernel, &args).stderr(Stdio::piped()).spawn().expect("start vmm");
    // The main thread takes its role once the vCPUs run; the control socket comes first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut threads = Vec::new();
    while Instant::now() < deadline {
        threads = thread_modes(child.id());
        let names: Vec<&str> = threads.iter().map(|t| t.0.as_str()).collect();
        let all_in = control.exists() && names.contains(&"vcpu0") && threads.iter().all(|t| t.1 == "2");
        if all_in {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A control client: the filtered listener starts a thread for it (clone under a filter),
    // which answers, pauses the vCPUs (signals) and resumes them.
    let ask = |req: &str| {
        let out = Command::new(VMM).arg("control").arg(&control).arg(req).output().expect("vmm control");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let requests = [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"pause"}"#,
        r#"{"cmd":"resume"}"#,
        r#"{"cmd":"devices"}"#,
        r#"{"cmd":"stats"}"#,
    ];
    let answers: Vec<_> = requests.iter().map(|req| ask(req)).collect();
    let after = thread_modes(child.id());
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for (req, (ok, text)) in requests.iter().zip(&answers) {
        assert!(*ok && !text.contains("error"), "{req}: {text}; {err}");
    }
    assert!(after.iter().all(|t| t.1 == "2"), "{after:?}");
    // The stats request reads CPU clocks and /proc/self/statm under the control filter.
    let stats: serde_json::Value = serde_json::from_str(&answers[4].1).unwrap();
    assert!(stats["rss_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["vcpu_time_ns"].as_array().unwrap().len(), 1, "{stats}");
    assert!(stats["cpu_time_ns"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["memory_bytes"], 64u64 << 20);
    assert!(threads.len() >= 4, "{threads:?}");
    for (name, mode, filters) in &threads {
        assert_eq!(mode, "2", "thread {name} is not filtered: {threads:?}");
        if let Some(n) = filters {
            assert!(*n >= 2, "thread {name}: {n} filters");
        }
    }
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("forbidden syscall"), "{err}");
}

/// SeaBIOS on the PC machine activates both virtio-blk disks (the io_uring engine on the raw
/// image, the thread pool on the qcow2 one: worker threads started by a filtered vCPU that
/// install their own filters on top), reads them and the IDE disk, draws on the VGA; then
/// control requests (screen dump, pause, resume, reset) and a stop, all under the filters.
#[test]
fn a_firmware_boot_with_virtio_and_ide_disks_runs_under_the_filters() {
    const BIOS: &str = "/usr/share/seabios/bios-256k.bin";
    if !have_kvm() || !std::path::Path::new(BIOS).exists() {
        eprintln!("skipped: no KVM or no {BIOS}");
        return;
    }
    let raw = temp_path("raw.img");
    let ide = temp_path("ide.img");
    std::fs::File::create(&raw).unwrap().set_len(32 << 20).unwrap();
    std::fs::File::create(&ide).unwrap().set_len(16 << 20).unwrap();
    let qcow2 = temp_path("q.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow2)
        .arg("32M")
        .status()
        .is_ok_and(|s| s.success());
    let control = temp_path("control.sock");
    let shot = temp_path("shot");
    let mut args = vec![
        "--machine".to_string(),
        "pc".into(),
        "--accept-slow-kvm".into(),
        "--memory".into(),
        "128M".into(),
        "--serial".into(),
        "file:/dev/null".into(),
        "--disk".into(),
        format!("{},format=raw,bus=virtio", raw.display()),
        "--disk".into(),
        format!("{},format=raw,bus=ide", ide.display()),
        "--control".into(),
        control.display().to_string(),
    ];
    if made {
        args.extend(["--disk".into(), format!("{},format=qcow2,bus=virtio,queues=2", qcow2.display())]);
    }
    let mut child = Command::new(VMM)
        .args(&args)
        .env("RUST_LOG", "info")
        .env_remove(TRIGGER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm");
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // "Booting from Hard Disk" comes after SeaBIOS has read every disk.
    let ask = |req: &str| {
        let out = Command::new(VMM).arg("control").arg(&control).arg(req).output().expect("vmm control");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && !ask(r#"{"cmd":"status"}"#).contains("running") {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(8));
    // SeaBIOS has read the boot sector of the first disk: the counters show it.
    let stats: serde_json::Value = serde_json::from_str(&ask(r#"{"cmd":"stats"}"#)).unwrap_or_default();
    let disks = stats["disks"].as_array().cloned().unwrap_or_default();
    let read = |id: &str| disks.iter().find(|d| d["id"] == id).and_then(|d| d["rd_bytes"].as_u64());
    let dump = format!(r#"{{"cmd":"screendump","path":"{}.png"}}"#, shot.display());
    let answers: Vec<String> =
        [dump.as_str(), r#"{"cmd":"pause"}"#, r#"{"cmd":"resume"}"#, r#"{"cmd":"reset"}"#]
            .iter()
            .map(|r| ask(r))
            .collect();
    std::thread::sleep(Duration::from_secs(5));
    ask(r#"{"cmd":"stop"}"#);
    let status = child.wait().unwrap();
    let err = log.join().unwrap();
    assert!(!err.contains("forbidden syscall"), "{err}");
    assert_eq!(status.code(), Some(130), "{answers:?} {err}");
    assert!(err.contains("I/O engine io_uring") || err.contains("I/O engine thread pool"), "{err}");
    assert!(answers.iter().all(|a| a.contains(r#""ok":true"#)), "{answers:?}");
    // SeaBIOS reads the first boot disk's MBR within seconds; the others (tried only if it
    // does not boot) are listed with their counters.
    assert!(read("vda").unwrap_or(0) >= 512, "{stats}");
    assert!(read("ide0-0").is_some(), "{stats}");
    assert!(stats["vcpu_time_ns"][0].as_u64().unwrap_or(0) > 0, "{stats}");
}

/// VNC Authentication under the filters: the challenge's getrandom runs in a filtered VNC
/// client thread; a wrong password is refused with the reason, the right one gets ServerInit.
#[test]
fn a_vnc_password_is_checked_under_the_filters() {
    use std::io::{Read, Write};
    const BIOS: &str = "/usr/share/seabios/bios-256k.bin";
    if !have_kvm() || !std::path::Path::new(BIOS).exists() {
        eprintln!("skipped: no KVM or no {BIOS}");
        return;
    }
    let disk = temp_path("vnc-disk.img");
    std::fs::File::create(&disk).unwrap().set_len(1 << 20).unwrap();
    let (control, sock, pw) = (temp_path("vnc-control.sock"), temp_path("vnc.sock"), temp_path("vnc-pw"));
    std::fs::write(&pw, "s3cret\n").unwrap();
    let mut child = Command::new(VMM)
        .args(["--machine", "pc", "--accept-slow-kvm", "--memory", "64M", "--serial", "file:/dev/null"])
        .arg("--disk")
        .arg(format!("{},format=raw,bus=ide", disk.display()))
        .arg("--control")
        .arg(&control)
        .arg("--vnc")
        .arg(format!("unix:{}", sock.display()))
        .arg("--vnc-password-file")
        .arg(&pw)
        .env_remove(TRIGGER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !(sock.exists() && control.exists()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The main thread takes its role once the vCPUs run.
    std::thread::sleep(Duration::from_secs(1));
    let attempt = |password: &[u8]| -> Vec<u8> {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("VNC socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut types = [0u8; 2];
        s.read_exact(&mut types).unwrap();
        assert_eq!(types, [1, 2], "VNC Authentication alone");
        s.write_all(&[2]).unwrap();
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).unwrap();
        s.write_all(&vmm::vnc::auth::response(password, &challenge)).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).unwrap();
        if result == [0; 4] {
            s.write_all(&[1]).unwrap();
            let mut init = [0u8; 24];
            s.read_exact(&mut init).unwrap();
            return Vec::new();
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    };
    let refused = attempt(b"guess");
    let accepted = attempt(b"s3cret");
    let ask = Command::new(VMM).arg("control").arg(&control).arg(r#"{"cmd":"stop"}"#).output();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(ask.is_ok());
    assert!(!err.contains("forbidden syscall"), "{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(String::from_utf8_lossy(&refused).contains("wrong password"), "{refused:?}");
    assert!(accepted.is_empty(), "{accepted:?}");
}
