// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the process tests (each test binary uses some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits up to 20 s until something accepts connections on the unix socket `sock`.
pub fn wait_for_socket(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {} (vmctld did not start)", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fake `vmm` of `examples/fake_vmm.rs`, built beside the test binaries.
pub fn fake_vmm() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("fake_vmm")
}

/// A child process killed and reaped on drop.
pub struct KilledOnDrop(pub Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vmctld` with the fake vmm on the state directory `dir/state` (its log in
/// `dir/daemon.log`) and waits for its socket; returns it and the state directory.
pub fn start_vmctld(dir: &Path) -> (KilledOnDrop, PathBuf) {
    let state = dir.join("state");
    let child = Command::new(env!("CARGO_BIN_EXE_vmctld"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--vmm")
        .arg(fake_vmm())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let daemon = KilledOnDrop(child);
    wait_for_socket(&state.join("vmctld.sock"));
    (daemon, state)
}

/// Runs `vmctl --state-dir STATE ARGS...` with no stdin: exit code, stdout, stderr.
pub fn vmctl(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}
