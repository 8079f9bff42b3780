// SPDX-License-Identifier: Apache-2.0
//! The jailer: starts a `vmm` unprivileged, in namespaces of its own, in an empty root.
//!
//! [`spawn`] starts a program with `clone3(2)` (so the new process can be the first of a new
//! pid namespace and start inside its cgroup), and, with a [`Jail`], before `execve`:
//!
//! 1. new mount, pid, ipc and uts namespaces (the vmm is pid 1 of its pid namespace, and its
//!    host name is the VM's);
//! 2. a private tmpfs as its root, holding only: the device nodes it needs (made with
//!    `mknod`, owned by its uid: `/dev/kvm`, `/dev/net/tun`, `/dev/vhost-net`, a VFIO group),
//!    `/dev/null`, `/dev/zero` and `/dev/urandom`, read-only `/usr` (with the merged-`/usr`
//!    links `/bin`, `/lib`...) for a dynamically linked vmm, `/etc/localtime`, a `/proc` of its
//!    own pid namespace (read-only), the VM's run directory (control and serial sockets, exit
//!    status) read-write, and the vmm binary; then `pivot_root` into it (or, on an initramfs
//!    root where `pivot_root` is refused, a move mount and `chroot`) and the root made
//!    read-only;
//! 3. resource limits (open files, file size, core dumps, locked memory);
//! 4. every capability dropped from the bounding set, no supplementary groups, the VM's own
//!    uid and gid, `PR_SET_NO_NEW_PRIVS`;
//! 5. every descriptor closed except stdin (`/dev/null`), stdout and stderr (the VM's log) and
//!    the descriptors handed over, which are numbered from 3 in the order given.
//!
//! Disk images, ISOs, kernels and the like are not in the jail: the daemon opens them beneath
//! their pools and hands them over as descriptors (`vmm --preopened PATH=FD`).
//!
//! Written here rather than taken from a crate: the jailers that exist (Firecracker's,
//! minijail) are programs or C libraries, not Rust libraries; this is the same sequence of
//! system calls, done between `clone3` and `execve` in the child, where nothing may allocate
//! (the daemon is multithreaded), so every string and path is prepared beforehand.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

/// Where the program is bound inside the jail.
const JAIL_EXE: &str = "/exe";

/// How to confine a process. Paths are host paths.
#[derive(Debug, Clone)]
pub struct Jail {
    /// The uid and gid the program runs as (not 0).
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// An existing empty host directory the jail's root tmpfs is mounted on (in the child's
    /// mount namespace only, so every jail may use the same one).
    pub root: PathBuf,
    /// Host name in the jail's uts namespace.
    pub hostname: String,
    /// Character devices made in the jail at the same path and owned by `uid` (those missing
    /// on the host are left out).
    pub devices: Vec<PathBuf>,
    /// Host directories bound read-write at the same path.
    pub writable_dirs: Vec<PathBuf>,
    /// Host files or directories bound read-only at the same path (e.g. `/sys` for VFIO).
    pub readonly_paths: Vec<PathBuf>,
    /// Resource limits set before the uid changes: (RLIMIT_*, soft and hard value).
    pub rlimits: Vec<(libc::c_int, u64)>,
    /// A cgroup v2 directory the process starts in (`CLONE_INTO_CGROUP`).
    pub cgroup: Option<PathBuf>,
}

/// A program to start.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// The program (a host path).
    pub program: &'a Path,
    /// Its arguments (after argv\[0\], which is the program's file name).
    pub args: &'a [OsString],
    /// Its environment; `None` inherits the daemon's.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// Its stdout and stderr.
    pub log: File,
    /// Descriptors handed over, numbered 3, 4, ... in this order.
    pub fds: Vec<OwnedFd>,
    /// The confinement, or `None` for a plain child in a session of its own.
    pub jail: Option<&'a Jail>,
}

/// A started process: waited for through its pidfd.
#[derive(Debug)]
pub struct VmProcess {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl VmProcess {
    /// Its pid (in the daemon's pid namespace).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for it to end and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Its exit status if it has ended (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut status = 0;
        let pid = libc::pid_t::try_from(self.pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: waitpid writes only to `status`; `pid` is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            r if r == pid => {
                let s = ExitStatus::from_raw(status);
                self.status = Some(s);
                Ok(Some(s))
            }
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Sends SIGKILL (through the pidfd, so never to a later process with the same pid).
    pub fn start_kill(&self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.get_ref().as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Steps of the child, reported to the parent with the errno when one fails.
const STEPS: &[&str] = &[
    "setsid",
    "resetting the signal mask",
    "rearranging descriptors",
    "making mounts private",
    "mounting the root tmpfs",
    "making a directory",
    "making a device node",
    "giving a device node to the VM's uid",
    "making a symbolic link",
    "making a bind-mount target",
    "bind-mounting",
    "making a bind mount read-only",
    "mounting /proc",
    "entering the root (pivot_root)",
    "entering the root (move mount and chroot)",
    "making the root read-only",
    "setting the host name",
    "setting a resource limit",
    "dropping capabilities",
    "dropping supplementary groups",
    "changing gid",
    "changing uid",
    "setting no_new_privs",
    "closing descriptors",
    "executing the program",
];

fn step(name: &str) -> u8 {
    STEPS.iter().position(|s| *s == name).map_or(u8::MAX, |i| i as u8)
}

/// A bind mount prepared for the child.
struct Bind {
    source: CString,
    target: CString,
    /// Remount flags (MS_RDONLY...).
    flags: libc::c_ulong,
    /// The target is a file (created empty) rather than a directory.
    file: bool,
}

/// Everything the child needs, prepared before `clone3` (the child may not allocate).
struct Prepared {
    exe: CString,
    /// Owns the strings `argv_ptrs` points to.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp: Option<(Vec<CString>, Vec<*const libc::c_char>)>,
    log: RawFd,
    null: RawFd,
    fds: Vec<RawFd>,
    tmp: Vec<RawFd>,
    high: RawFd,
    jail: Option<PreparedJail>,
}

struct PreparedJail {
    uid: u32,
    gid: u32,
    root: CString,
    dirs: Vec<CString>,
    devices: Vec<(CString, libc::dev_t)>,
    symlinks: Vec<(CString, CString)>,
    binds: Vec<Bind>,
    proc_dir: CString,
    hostname: CString,
    rlimits: Vec<(libc::c_int, u64)>,
    cap_last: libc::c_ulong,
}

fn cstring(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// `path` (absolute, without `..`) inside `root`.
fn inside(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut out = root.to_path_buf();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not an absolute path without `..`", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

/// Adds `dir` inside the jail and its parents to `dirs` (parents first, once each).
fn add_dirs(dirs: &mut Vec<PathBuf>, root: &Path, dir: &Path) {
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|a| *a != root && a.starts_with(root)).collect();
    chain.reverse();
    for d in chain {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_path_buf());
        }
    }
}

const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

fn prepare_jail(j: &Jail) -> io::Result<PreparedJail> {
    if j.uid == 0 || j.gid == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a jail's uid and gid must not be 0"));
    }
    let root = &j.root;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut devices = Vec::new();
    let mut symlinks = Vec::new();
    let mut binds = Vec::new();
    let standard = ["/dev/null", "/dev/zero", "/dev/urandom"].map(PathBuf::from);
    for dev in standard.iter().chain(&j.devices) {
        let Ok(meta) = std::fs::metadata(dev) else { continue };
        if !meta.file_type().is_char_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a character device", dev.display()),
            ));
        }
        let target = inside(root, dev)?;
        if let Some(parent) = target.parent() {
            add_dirs(&mut dirs, root, parent);
        }
        devices.push((cstring(target.as_os_str())?, meta.rdev()));
    }
    // /usr read-only, and the top-level links of a merged /usr (or the directories of an
    // unmerged one): what a dynamically linked vmm and its loader need.
    let mut ro: Vec<PathBuf> = vec![PathBuf::from("/usr")];
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let top = Path::new(top);
        match std::fs::symlink_metadata(top) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(top)?;
                symlinks.push((cstring(to.as_os_str())?, cstring(inside(root, top)?.as_os_str())?));
            }
            Ok(m) if m.is_dir() => ro.push(top.to_path_buf()),
            _ => {}
        }
    }
    // The zone the RTC's `localtime` base reads.
    let localtime = Path::new("/etc/localtime");
    match std::fs::symlink_metadata(localtime) {
        Ok(m) if m.file_type().is_symlink() => {
            add_dirs(&mut dirs, root, &inside(root, Path::new("/etc"))?);
            let to = std::fs::read_link(localtime)?;
            symlinks.push((cstring(to.as_os_str())?, cstring(inside(root, localtime)?.as_os_str())?));
        }
        Ok(m) if m.is_file() => ro.push(localtime.to_path_buf()),
        _ => {}
    }
    ro.extend(j.readonly_paths.iter().cloned());
    for p in &ro {
        let Ok(meta) = std::fs::metadata(p) else { continue };
        let target = inside(root, p)?;
        if meta.is_dir() {
            add_dirs(&mut dirs, root, &target);
        } else if let Some(parent) = target.parent() {
            add_dirs(&mut dirs, root, parent);
        }
        binds.push(Bind {
            source: cstring(p.as_os_str())?,
            target: cstring(target.as_os_str())?,
            flags: RO,
            file: !meta.is_dir(),
        });
    }
    for d in &j.writable_dirs {
        let target = inside(root, d)?;
        add_dirs(&mut dirs, root, &target);
        binds.push(Bind {
            source: cstring(d.as_os_str())?,
            target: cstring(target.as_os_str())?,
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            file: false,
        });
    }
    let proc_dir = root.join("proc");
    add_dirs(&mut dirs, root, &proc_dir);
    let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    let dirs = dirs.iter().map(|d| cstring(d.as_os_str())).collect::<io::Result<Vec<_>>>()?;
    Ok(PreparedJail {
        uid: j.uid,
        gid: j.gid,
        root: cstring(root.as_os_str())?,
        dirs,
        devices,
        symlinks,
        binds,
        proc_dir: cstring(proc_dir.as_os_str())?,
        hostname: CString::new(j.hostname.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a host name with a NUL byte"))?,
        rlimits: j.rlimits.clone(),
        cap_last,
    })
}

fn prepare(s: &Spawn<'_>, null: RawFd, err_w: RawFd) -> io::Result<Prepared> {
    let name = s.program.file_name().unwrap_or(s.program.as_os_str());
    let mut argv = vec![cstring(name)?];
    for a in s.args {
        argv.push(cstring(a)?);
    }
    let argv_ptrs: Vec<*const libc::c_char> =
        argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp = match &s.env {
        None => None,
        Some(vars) => {
            let mut v = Vec::new();
            for (k, val) in vars {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(val.as_bytes());
                v.push(
                    CString::new(kv)
                        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in env"))?,
                );
            }
            let ptrs = v.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
            Some((v, ptrs))
        }
    };
    let mut jail = match s.jail {
        Some(j) => Some(prepare_jail(j)?),
        None => None,
    };
    let exe = match &mut jail {
        Some(pj) => {
            let root = Path::new(OsStr::from_bytes(pj.root.as_bytes()));
            pj.binds.push(Bind {
                source: cstring(s.program.as_os_str())?,
                target: cstring(root.join(&JAIL_EXE[1..]).as_os_str())?,
                flags: RO,
                file: true,
            });
            CString::new(JAIL_EXE).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?
        }
        None => cstring(s.program.as_os_str())?,
    };
    let fds: Vec<RawFd> = s.fds.iter().map(|f| f.as_raw_fd()).collect();
    let n = RawFd::try_from(fds.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Above every descriptor involved, so the temporary copies never land on a target.
    let high = fds.iter().copied().chain([s.log.as_raw_fd(), null, err_w, 3 + n + 1]).max().unwrap_or(0) + 1;
    Ok(Prepared {
        exe,
        _argv: argv,
        argv_ptrs,
        envp,
        log: s.log.as_raw_fd(),
        null,
        tmp: vec![-1; fds.len()],
        fds,
        high,
        jail,
    })
}

/// clone3's argument (linux/sched.h), defined here: the libc crate's is not on every target.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts `s.program` as described in the module documentation and returns once it runs the
/// program (or fails, naming the step that failed).
pub fn spawn(s: Spawn<'_>) -> io::Result<VmProcess> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut p = prepare(&s, null.as_raw_fd(), err_w.as_raw_fd())?;
    let cgroup = match s.jail.and_then(|j| j.cgroup.as_ref()) {
        Some(dir) => {
            Some(File::options().read(true).custom_flags(libc::O_DIRECTORY).open(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open the cgroup {}: {e}", dir.display()))
            })?)
        }
        None => None,
    };
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if s.jail.is_some() {
        args.flags |=
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    }
    if let Some(cg) = &cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
    }
    // SAFETY: clone3 with a valid, fully initialised argument of the size passed, and no
    // stack: the child continues on a copy of this stack, like fork(2). In the child only
    // `child_main` runs, which makes system calls on prepared data and never returns.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    if pid == 0 {
        // SAFETY: we are the child of clone3; see child_main.
        unsafe { child_main(&mut p, err_w.as_raw_fd()) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(err_w);
    // SAFETY: clone3 with CLONE_PIDFD stored a new descriptor we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = u32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the OwnedFd is a pidfd owned by the AsyncFd from here on; it stays open and
    // the same until the AsyncFd drops it.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut process = VmProcess { pid, pidfd, status: None };
    // The pipe closes on a successful execve; otherwise it carries the failed step and errno.
    let mut report = [0u8; 5];
    let mut got = 0;
    let mut err_r = File::from(err_r);
    while got < report.len() {
        match err_r.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Ok(process);
    }
    // The child failed before execve and exits at once.
    while process.try_wait()?.is_none() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let what = STEPS.get(usize::from(report[0])).copied().unwrap_or("starting");
    let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
    let os = io::Error::from_raw_os_error(errno);
    Err(io::Error::new(os.kind(), format!("{what}: {os}")))
}

/// `CLONE_INTO_CGROUP` (linux/sched.h; not in every libc crate version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

type StepResult = Result<(), (u8, i32)>;

fn check(r: libc::c_int, name: &str) -> StepResult {
    if r < 0 {
        Err((step(name), errno()))
    } else {
        Ok(())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// The child between clone3 and execve.
///
/// # Safety
/// Call only in the child of clone3/fork of a possibly multithreaded process: it makes system
/// calls on `p`'s prepared data, allocates nothing, and ends in execve or `_exit`.
unsafe fn child_main(p: &mut Prepared, err_w: RawFd) -> ! {
    // SAFETY: see the function's contract; every call below is a system call on prepared data.
    unsafe {
        let (code, errno) = match child_steps(p, err_w) {
            Ok(()) => (step("executing the program"), errno()),
            Err(e) => e,
        };
        let e = errno.to_ne_bytes();
        let report = [code, e[0], e[1], e[2], e[3]];
        libc::write(err_w, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// The steps of [`child_main`]; returns only on failure (or after a failed execve).
unsafe fn child_steps(p: &mut Prepared, err_w: RawFd) -> StepResult {
    // SAFETY: see the function's contract; every call below is a system call on prepared data.
    unsafe {
        check(libc::setsid(), "setsid")?;
        // As std's Command does: no signal blocked, SIGPIPE back to its default (the daemon,
        // like every Rust program, ignores it, and an ignored signal survives execve).
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check(
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()),
            "resetting the signal mask",
        )?;
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Descriptors: copies above every target first, then onto 0, 1, 2 and 3.. .
        let fdstep = "rearranging descriptors";
        for i in 0..p.fds.len() {
            let t = libc::fcntl(p.fds[i], libc::F_DUPFD_CLOEXEC, p.high);
            check(t, fdstep)?;
            p.tmp[i] = t;
        }
        let log = libc::fcntl(p.log, libc::F_DUPFD_CLOEXEC, p.high);
        check(log, fdstep)?;
        let null = libc::fcntl(p.null, libc::F_DUPFD_CLOEXEC, p.high);
        check(null, fdstep)?;
        let err = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, p.high);
        check(err, fdstep)?;
        check(libc::dup2(null, 0), fdstep)?;
        check(libc::dup2(log, 1), fdstep)?;
        check(libc::dup2(log, 2), fdstep)?;
        let mut next: RawFd = 3;
        for i in 0..p.tmp.len() {
            check(libc::dup2(p.tmp[i], next), fdstep)?;
            next += 1;
        }
        // Everything from `next` on is closed, except the report pipe (close-on-exec), which
        // moves to `next` first.
        let err_fd = libc::fcntl(err, libc::F_DUPFD_CLOEXEC, next);
        check(err_fd, fdstep)?;
        let closing = "closing descriptors";
        if err_fd > next {
            check(libc::syscall(libc::SYS_close_range, next, err_fd - 1, 0) as libc::c_int, closing)?;
        }
        check(libc::syscall(libc::SYS_close_range, err_fd + 1, u32::MAX, 0) as libc::c_int, closing)?;
        // From here on failures are reported on err_fd.
        let result = match &p.jail {
            Some(j) => enter_jail(j),
            None => Ok(()),
        };
        if let Err((code, e)) = result {
            let b = e.to_ne_bytes();
            let report = [code, b[0], b[1], b[2], b[3]];
            libc::write(err_fd, report.as_ptr().cast(), report.len());
            libc::_exit(127);
        }
        match &p.envp {
            Some((_, envp)) => libc::execve(p.exe.as_ptr(), p.argv_ptrs.as_ptr(), envp.as_ptr()),
            None => libc::execv(p.exe.as_ptr(), p.argv_ptrs.as_ptr()),
        };
        let b = errno().to_ne_bytes();
        let report = [step("executing the program"), b[0], b[1], b[2], b[3]];
        libc::write(err_fd, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// Builds the jail's root, enters it and drops privileges (see the module documentation).
unsafe fn enter_jail(j: &PreparedJail) -> StepResult {
    // SAFETY: see the function's contract; every call below is a system call on prepared data.
    unsafe {
        let null = std::ptr::null::<libc::c_char>();
        check(
            libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()),
            "making mounts private",
        )?;
        // Small: the root holds directories, device nodes and links only.
        let opts = c"mode=0755,size=1m,nr_inodes=4096";
        check(
            libc::mount(
                c"tmpfs".as_ptr(),
                j.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID,
                opts.as_ptr().cast(),
            ),
            "mounting the root tmpfs",
        )?;
        for d in &j.dirs {
            if libc::mkdir(d.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                return Err((step("making a directory"), errno()));
            }
        }
        for (path, rdev) in &j.devices {
            check(libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, *rdev), "making a device node")?;
            check(libc::chown(path.as_ptr(), j.uid, j.gid), "giving a device node to the VM's uid")?;
        }
        for (to, link) in &j.symlinks {
            check(libc::symlink(to.as_ptr(), link.as_ptr()), "making a symbolic link")?;
        }
        for b in &j.binds {
            if b.file {
                let fd =
                    libc::open(b.target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o444);
                check(fd, "making a bind-mount target")?;
                libc::close(fd);
            }
            check(
                libc::mount(b.source.as_ptr(), b.target.as_ptr(), null, libc::MS_BIND, std::ptr::null()),
                "bind-mounting",
            )?;
            check(
                libc::mount(
                    null,
                    b.target.as_ptr(),
                    null,
                    libc::MS_REMOUNT | libc::MS_BIND | b.flags,
                    std::ptr::null(),
                ),
                "making a bind mount read-only",
            )?;
        }
        // The vmm is pid 1 of the new pid namespace: this /proc shows it alone.
        check(
            libc::mount(
                c"proc".as_ptr(),
                j.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                std::ptr::null(),
            ),
            "mounting /proc",
        )?;
        check(libc::chdir(j.root.as_ptr()), "entering the root (pivot_root)")?;
        let pivot = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int;
        if pivot == 0 {
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH), "entering the root (pivot_root)")?;
        } else if errno() == libc::EINVAL {
            // The host's root is the initramfs, which cannot be pivoted away: move the jail's
            // root over it and chroot (the process has no CAP_SYS_CHROOT to climb back out).
            let step_name = "entering the root (move mount and chroot)";
            check(
                libc::mount(c".".as_ptr(), c"/".as_ptr(), null, libc::MS_MOVE, std::ptr::null()),
                step_name,
            )?;
            check(libc::chroot(c".".as_ptr()), step_name)?;
        } else {
            return Err((step("entering the root (pivot_root)"), errno()));
        }
        check(libc::chdir(c"/".as_ptr()), "entering the root (pivot_root)")?;
        check(
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                std::ptr::null(),
            ),
            "making the root read-only",
        )?;
        check(libc::sethostname(j.hostname.as_ptr(), j.hostname.as_bytes().len()), "setting the host name")?;
        for &(resource, value) in &j.rlimits {
            let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
            if libc::setrlimit(resource as _, &lim) < 0 {
                // Without CAP_SYS_RESOURCE (some container hosts) a hard limit cannot be
                // raised: the current one is kept, which only makes the VM's limit lower.
                let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                let e = errno();
                if e != libc::EPERM || libc::getrlimit(resource as _, &mut now) < 0 || now.rlim_max >= value {
                    return Err((step("setting a resource limit"), e));
                }
                let lower = libc::rlimit { rlim_cur: now.rlim_max, rlim_max: now.rlim_max };
                check(libc::setrlimit(resource as _, &lower), "setting a resource limit")?;
            }
        }
        for cap in 0..=j.cap_last {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno() != libc::EINVAL {
                return Err((step("dropping capabilities"), errno()));
            }
        }
        // Raw system calls, not the libc wrappers: glibc's broadcast the change to every thread
        // it knows of, and this child has only the one thread of the daemon's that cloned it.
        let sys = |r: libc::c_long| r as libc::c_int;
        check(
            sys(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>())),
            "dropping supplementary groups",
        )?;
        check(sys(libc::syscall(libc::SYS_setresgid, j.gid, j.gid, j.gid)), "changing gid")?;
        // From uid 0 to another: the permitted, effective and ambient capabilities are cleared.
        check(sys(libc::syscall(libc::SYS_setresuid, j.uid, j.uid, j.uid)), "changing uid")?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")?;
        Ok(())
    }
}
