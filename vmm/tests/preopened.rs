// SPDX-License-Identifier: Apache-2.0
//! `--preopened PATH=FD`: the `vmm` binary runs guests whose files it was handed as
//! descriptors, their directory renamed away before it starts, so any open by path would
//! fail: a direct-boot kernel read again at every reset (under the main thread's seccomp
//! filter) with its serial log; the PC machine's firmware, CD-ROM and a qcow2 disk over a raw
//! backing file. Bad values exit with status 2 naming the field (no KVM needed).

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{have_kvm, temp_path, tiny_kernel};

const VMM: &str = env!("CARGO_BIN_EXE_vmm");
const EXIT_BAD_INPUT: i32 = 2;
const EXIT_STOPPED: i32 = 130;

/// `mov dx, 0x3f8; mov al, 'X'; out dx, al`, then the i8042 reset line: every boot prints one
/// X and resets.
const PRINT_AND_RESET: &[u8] = &[0x66, 0xba, 0xf8, 0x03, 0xb0, b'X', 0xee, 0xb0, 0xfe, 0xe6, 0x64];

/// A directory of files for a guest, moved away (see [`Files::hide`]).
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = temp_path("files");
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Renames the directory away: its paths no longer exist, open files stay open.
    fn hide(&self) -> PathBuf {
        let moved = self.dir.with_extension("moved");
        std::fs::rename(&self.dir, &moved).unwrap();
        assert!(!self.dir.exists());
        moved
    }
}

/// `vmm` with `files` open on the given descriptor numbers (no close-on-exec), as a parent
/// hands them over.
fn vmm_with(files: Vec<(File, i32)>) -> Command {
    let mut c = Command::new(VMM);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let fds: Vec<(i32, i32)> = files.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();
    // SAFETY: the closure only calls fcntl and dup2, which are async-signal-safe, and keeps
    // `files` (moved in) open until the exec.
    unsafe {
        c.pre_exec(move || {
            let _keep = &files;
            // Out of the way first, so that no target number overwrites a source.
            let mut high = Vec::new();
            for (fd, _) in &fds {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (h, (_, target)) in high.iter().zip(&fds) {
                if libc::dup2(*h, *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    c
}

fn preopened(path: &Path, fd: i32) -> [String; 2] {
    ["--preopened".to_string(), format!("{}={fd}", path.display())]
}

#[test]
fn a_guest_resets_on_a_handed_over_kernel_and_logs_to_a_handed_over_file() {
    if !have_kvm() {
        return;
    }
    let files = Files::new();
    let kernel = files.path("bzImage");
    std::fs::rename(tiny_kernel(PRINT_AND_RESET), &kernel).unwrap();
    let log = files.path("serial.log");
    File::create(&log).unwrap();
    let handed =
        vec![(File::open(&kernel).unwrap(), 5), (OpenOptions::new().append(true).open(&log).unwrap(), 6)];
    let moved = files.hide();
    let mut c = vmm_with(handed);
    c.arg("--kernel").arg(&kernel).args(["--accept-slow-kvm", "--memory", "64M"]);
    c.arg("--serial").arg(format!("file:{}", log.display()));
    c.args(preopened(&kernel, 5)).args(preopened(&log, 6));
    let child = c.spawn().unwrap();
    // Each reset loads the kernel again from its descriptor, in the filtered main thread.
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved_log = moved.join("serial.log");
    while Instant::now() < deadline && std::fs::read(&moved_log).unwrap_or_default().len() < 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_STOPPED), "{err}");
    assert!(!err.contains("forbidden syscall"), "{err}");
    let text = std::fs::read_to_string(&moved_log).unwrap();
    assert!(text.len() >= 3 && text.bytes().all(|b| b == b'X'), "three boots or more: {text:?}");
}

#[test]
fn without_the_descriptors_the_moved_kernel_is_not_found() {
    let files = Files::new();
    let kernel = files.path("bzImage");
    std::fs::rename(tiny_kernel(PRINT_AND_RESET), &kernel).unwrap();
    let _kept = File::open(&kernel).unwrap();
    files.hide();
    let out = vmm_with(Vec::new()).arg("--kernel").arg(&kernel).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{err}");
    assert!(err.contains("invalid configuration: kernel: cannot open"), "{err}");
}

#[test]
fn bad_values_exit_2_naming_the_field() {
    let files = Files::new();
    let kernel = files.path("bzImage");
    std::fs::rename(tiny_kernel(PRINT_AND_RESET), &kernel).unwrap();
    let k = kernel.display().to_string();
    let json = files.path("vm.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"kernel": "{k}", "preopened": [{{"path": "{k}", "fd": 5}}, {{"path": "{k}", "fd": 6}}]}}"#
        ),
    )
    .unwrap();
    let cases: [(Vec<String>, &str); 5] = [
        (vec!["--preopened".into(), "bzImage=5".into()], "must be absolute"),
        (vec!["--preopened".into(), format!("{k}=2")], "3 or above"),
        (vec!["--preopened".into(), format!("{k}=77")], "descriptor 77 is not open"),
        (vec!["--config".into(), json.display().to_string()], "given twice"),
        (vec!["--preopened".into(), k.clone()], "is not PATH=FD"),
    ];
    for (args, want) in cases {
        // Descriptors 5 and 6 are open (the kernel twice), so the JSON case gets to the paths.
        let handed = vec![(File::open(&kernel).unwrap(), 5), (File::open(&kernel).unwrap(), 6)];
        let out = vmm_with(handed).arg("--kernel").arg(&kernel).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{args:?}: {err}");
        assert!(err.contains("preopened") && err.contains(want), "{args:?}: {err}");
    }
}

/// SeaBIOS, an ISO in the CD-ROM drive and a virtio qcow2 disk over a raw backing file, all
/// handed over; the machine boots, serves control requests and stops.
#[test]
fn a_pc_machine_runs_on_handed_over_firmware_cdrom_and_qcow2_chain() {
    const BIOS: &str = "/usr/share/seabios/bios-256k.bin";
    if !have_kvm() || !Path::new(BIOS).exists() {
        eprintln!("skipped: no KVM or no {BIOS}");
        return;
    }
    let files = Files::new();
    let (bios, iso, base, disk) =
        (files.path("bios.bin"), files.path("x.iso"), files.path("base.raw"), files.path("disk.qcow2"));
    std::fs::copy(BIOS, &bios).unwrap();
    File::create(&iso).unwrap().set_len(1 << 20).unwrap();
    File::create(&base).unwrap().set_len(16 << 20).unwrap();
    block::create_qcow2(&disk, 16 << 20, Some((Path::new("base.raw"), block::ImageFormat::Raw))).unwrap();
    let read_only = |p: &Path| File::open(p).unwrap();
    let handed = vec![
        (read_only(&bios), 5),
        (read_only(&iso), 6),
        (read_only(&base), 7),
        (OpenOptions::new().read(true).write(true).open(&disk).unwrap(), 8),
    ];
    files.hide();
    let control = temp_path("control.sock");
    let mut c = vmm_with(handed);
    c.args(["--machine", "pc", "--accept-slow-kvm", "--memory", "128M", "--serial", "file:/dev/null"]);
    c.arg("--firmware").arg(&bios).arg("--cdrom").arg(&iso);
    c.arg("--disk").arg(format!("{},format=qcow2,bus=virtio", disk.display()));
    c.arg("--control").arg(&control);
    for (path, fd) in [(&bios, 5), (&iso, 6), (&base, 7), (&disk, 8)] {
        c.args(preopened(path, fd));
    }
    let mut child = c.spawn().unwrap();
    let ask = |req: &str| {
        let out = Command::new(VMM).arg("control").arg(&control).arg(req).output().expect("vmm control");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut running = false;
    while !running && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        running = ask(r#"{"cmd":"status"}"#).contains("running");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time for SeaBIOS to read the disk and the CD-ROM.
    std::thread::sleep(Duration::from_secs(3));
    let reset = ask(r#"{"cmd":"reset"}"#);
    std::thread::sleep(Duration::from_secs(1));
    ask(r#"{"cmd":"stop"}"#);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(running, "{err}");
    assert!(reset.contains(r#""ok":true"#), "{reset} {err}");
    assert_eq!(out.status.code(), Some(EXIT_STOPPED), "{err}");
    assert!(!err.contains("forbidden syscall"), "{err}");
}
