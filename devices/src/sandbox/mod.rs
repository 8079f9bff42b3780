// SPDX-License-Identifier: Apache-2.0
//! Per-thread seccomp filters: each thread of the vmm calls [`enter`] with its [`ThreadRole`]
//! once its set-up is done, and from then on may make only the syscalls its role lists
//! (`rules.rs`). A forbidden syscall raises SIGSYS (`SECCOMP_RET_TRAP`); the handler writes
//! the syscall's name to stderr with write(2) and ends the process with [`EXIT_SECCOMP`].
//! Under [`Mode::Log`] the kernel logs the syscall (`SECCOMP_RET_LOG`, in the kernel log) and
//! lets it run; under [`Mode::Off`] [`enter`] does nothing.
//!
//! Test hook: with `VMM_TEST_FORBIDDEN_SYSCALL=ROLE` in the environment (a name of
//! [`ThreadRole::name`]), the first thread of that role makes a forbidden syscall
//! (personality(0xffffffff), a harmless query) right after its filter is installed.

mod rules;

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The process exit status after a forbidden syscall: 128 + SIGSYS, as a shell reports a
/// process killed by SIGSYS.
pub const EXIT_SECCOMP: u8 = 159;

/// The environment variable of the test hook (see the module documentation).
pub const TEST_TRIGGER_ENV: &str = "VMM_TEST_FORBIDDEN_SYSCALL";

/// Errors installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filter did not compile (a bug in the allowlists).
    #[error("cannot compile the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter")]
    Install(#[source] seccompiler::Error),
    /// The SIGSYS handler could not be installed.
    #[error("cannot install the SIGSYS handler")]
    Handler(#[source] std::io::Error),
}

/// What a filter does with a syscall its role does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (SIGSYS, then [`EXIT_SECCOMP`] with the syscall named on stderr).
    On,
    /// Let it run; the kernel logs it.
    Log,
    /// No filters.
    Off,
}

/// The kind of work a thread does, which decides its allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// The main thread: the event loop (e1000 and virtio-net traffic, timers), resets, screen
    /// dumps on SIGUSR1, tear-down.
    Main,
    /// A vCPU thread: KVM_RUN and the device emulation of its exits.
    Vcpu,
    /// A virtio-blk I/O thread: the io_uring or thread-pool engine, raw and qcow2 images.
    BlockIo,
    /// A virtio-net worker: the tap relay or the vhost-net interrupt relay.
    NetWorker,
    /// The CMOS RTC's timer thread.
    RtcTimer,
    /// The INTx relay of an assigned VFIO device.
    VfioIntx,
    /// The VNC listener and its client connections.
    Vnc,
    /// The serial console's input: stdin, or the unix socket and its client.
    Serial,
    /// The control socket's listener and connections.
    Control,
}

impl ThreadRole {
    /// Every role.
    pub const ALL: [ThreadRole; 9] = [
        ThreadRole::Main,
        ThreadRole::Vcpu,
        ThreadRole::BlockIo,
        ThreadRole::NetWorker,
        ThreadRole::RtcTimer,
        ThreadRole::VfioIntx,
        ThreadRole::Vnc,
        ThreadRole::Serial,
        ThreadRole::Control,
    ];

    /// The role's name in messages and in the test hook's variable.
    pub const fn name(self) -> &'static str {
        match self {
            ThreadRole::Main => "main",
            ThreadRole::Vcpu => "vcpu",
            ThreadRole::BlockIo => "block-io",
            ThreadRole::NetWorker => "net-worker",
            ThreadRole::RtcTimer => "rtc-timer",
            ThreadRole::VfioIntx => "vfio-intx",
            ThreadRole::Vnc => "vnc",
            ThreadRole::Serial => "serial",
            ThreadRole::Control => "control",
        }
    }

    fn index(self) -> u8 {
        self as u8
    }
}

const MODE_UNSET: u8 = 0;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNSET);
static TRIGGER: OnceLock<Option<String>> = OnceLock::new();

thread_local! {
    /// The role of this thread, for the SIGSYS message (u8::MAX: none yet).
    static ROLE: Cell<u8> = const { Cell::new(u8::MAX) };
}

/// Sets the mode for every later [`enter`] and, unless off, installs the SIGSYS handler.
/// Call once, before any thread that will call [`enter`] starts.
pub fn configure(mode: Mode) -> Result<(), Error> {
    let m = match mode {
        Mode::On => 1,
        Mode::Log => 2,
        Mode::Off => 3,
    };
    MODE.store(m, Ordering::SeqCst);
    let _ = TRIGGER.set(std::env::var(TEST_TRIGGER_ENV).ok());
    if mode == Mode::On {
        install_sigsys_handler()?;
    }
    Ok(())
}

/// Installs the SIGSYS handler once (for the test mode, where [`configure`] is not called).
fn ensure_sigsys_handler() -> Result<(), Error> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install_sigsys_handler().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::Handler(std::io::Error::other(e)))
}

/// The environment variable that sets the mode of a process that never calls [`configure`]
/// (`on` or `log`): `VMM_SECCOMP_TEST_MODE=on cargo test -p devices` runs the device tests
/// with each worker thread under its filter, so a syscall missing from a list fails them.
pub const TEST_MODE_ENV: &str = "VMM_SECCOMP_TEST_MODE";

/// The configured mode; until [`configure`] is called (library tests, tools) the one
/// [`TEST_MODE_ENV`] names, or off.
pub fn mode() -> Mode {
    match MODE.load(Ordering::SeqCst) {
        1 => Mode::On,
        2 => Mode::Log,
        3 => Mode::Off,
        _ => {
            static TEST_MODE: OnceLock<Mode> = OnceLock::new();
            *TEST_MODE.get_or_init(|| match std::env::var(TEST_MODE_ENV).as_deref() {
                Ok("on") => Mode::On,
                Ok("log") => Mode::Log,
                _ => Mode::Off,
            })
        }
    }
}

/// Installs the filters of `role` on the calling thread (nothing under [`Mode::Off`]).
/// Threads this one starts later inherit them.
pub fn enter(role: ThreadRole) -> Result<(), Error> {
    let mismatch = match mode() {
        Mode::Off => return Ok(()),
        Mode::On => {
            ensure_sigsys_handler()?;
            seccompiler::SeccompAction::Trap
        }
        Mode::Log => seccompiler::SeccompAction::Log,
    };
    let trap = mismatch == seccompiler::SeccompAction::Trap;
    let clone3 = rules::clone3_filter()?;
    let deny_open = if trap && !rules::opens_files(role) { Some(rules::deny_open_filter()?) } else { None };
    let allow = rules::allowlist(role, mismatch)?;
    ROLE.with(|r| r.set(role.index()));
    // seccompiler sets PR_SET_NO_NEW_PRIVS itself; filters apply to this thread only.
    seccompiler::apply_filter(&clone3).map_err(Error::Install)?;
    if let Some(deny_open) = &deny_open {
        seccompiler::apply_filter(deny_open).map_err(Error::Install)?;
    }
    seccompiler::apply_filter(&allow).map_err(Error::Install)?;
    log::debug!("seccomp: {} filter installed", role.name());
    test_trigger(role);
    Ok(())
}

/// Like [`enter`], but a failure is logged and the thread goes on without its filter; for
/// threads that have no way to report an error.
pub fn enter_or_warn(role: ThreadRole) {
    if let Err(e) = enter(role) {
        let source = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        log::error!("{} thread: {e}{source}", role.name());
    }
}

fn test_trigger(role: ThreadRole) {
    static FIRED: AtomicU8 = AtomicU8::new(0);
    let wanted = TRIGGER.get().and_then(|t| t.as_deref()) == Some(role.name());
    if wanted && FIRED.swap(1, Ordering::SeqCst) == 0 {
        // SAFETY: personality(0xffffffff) only queries the execution domain.
        let r = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
        log::warn!("seccomp test hook: {} thread made personality(): {r}", role.name());
    }
}

fn install_sigsys_handler() -> Result<(), Error> {
    // SAFETY: a zeroed sigaction is valid; the fields are filled below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigsys;
    act.sa_sigaction = handler as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `act.sa_mask` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: `on_sigsys` is async-signal-safe (see there); `act` is initialised.
    if unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) } != 0 {
        return Err(Error::Handler(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Offset of `si_syscall` in the x86_64 siginfo_t: the union starts at 16, and SIGSYS's
/// member is `{ void *_call_addr; int _syscall; unsigned _arch; }`.
const SI_SYSCALL_OFFSET: usize = 24;

/// Appends `s` to `buf` at `*len`, truncating at the end of `buf`.
fn append(buf: &mut [u8], len: &mut usize, s: &[u8]) {
    for &b in s {
        if let Some(slot) = buf.get_mut(*len) {
            *slot = b;
            *len += 1;
        }
    }
}

/// Writes `n` in decimal without allocating.
fn append_number(buf: &mut [u8], len: &mut usize, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    append(buf, len, &digits[i..]);
}

/// The message for a forbidden syscall `nr` made by a thread of role index `role`.
fn message(buf: &mut [u8], nr: i32, role: u8) -> usize {
    let mut len = 0;
    let name = usize::try_from(nr).ok().and_then(syscalls::Sysno::new).map(|s| s.name()).unwrap_or("unknown");
    let role = ThreadRole::ALL.get(usize::from(role)).map(|r| r.name()).unwrap_or("child");
    append(buf, &mut len, b"vmm: seccomp: forbidden syscall ");
    append(buf, &mut len, name.as_bytes());
    append(buf, &mut len, b" (");
    append_number(buf, &mut len, u64::from(nr.unsigned_abs()));
    append(buf, &mut len, b") in a ");
    append(buf, &mut len, role.as_bytes());
    append(buf, &mut len, b" thread; exiting\n");
    len
}

/// The SIGSYS handler: async-signal-safe (no allocation, no locks; a const thread-local
/// `Cell`, write(2) and _exit(2)).
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let nr = if info.is_null() {
        -1
    } else {
        // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers; for SIGSYS
        // from seccomp, si_syscall is the i32 at SI_SYSCALL_OFFSET, inside the structure.
        unsafe { std::ptr::read_unaligned(info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<i32>()) }
    };
    let role = ROLE.with(|r| r.get());
    let mut buf = [0u8; 160];
    let len = message(&mut buf, nr, role);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `buf[..len]` is initialised.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(i32::from(EXIT_SECCOMP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_syscall_and_the_role() {
        let mut buf = [0u8; 160];
        let len = message(&mut buf, libc::SYS_personality as i32, ThreadRole::Vcpu.index());
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert_eq!(text, "vmm: seccomp: forbidden syscall personality (135) in a vcpu thread; exiting\n");
        let len = message(&mut buf, 100_000, u8::MAX);
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.contains("unknown (100000) in a child thread"), "{text}");
        let mut small = [0u8; 10];
        assert_eq!(message(&mut small, 1, 0), 10);
    }

    #[test]
    fn roles_have_distinct_names_and_indices() {
        for (i, r) in ThreadRole::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.index()), i);
            assert_eq!(ThreadRole::ALL.iter().filter(|o| o.name() == r.name()).count(), 1);
        }
    }

    #[test]
    fn a_filtered_thread_runs_and_reports_seccomp_mode_2() {
        // Log mode on a thread of its own: the test process is not killed by a miss.
        MODE.store(2, Ordering::SeqCst);
        let status = std::thread::spawn(|| {
            enter(ThreadRole::BlockIo).unwrap();
            let v: Vec<u8> = vec![1; 1 << 20];
            drop(v);
            std::fs::read_to_string("/proc/thread-self/status")
        })
        .join()
        .unwrap();
        MODE.store(3, Ordering::SeqCst);
        enter(ThreadRole::Main).unwrap();
        MODE.store(MODE_UNSET, Ordering::SeqCst);
        let status = status.unwrap();
        assert!(status.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('2')), "{status}");
    }
}
