// SPDX-License-Identifier: Apache-2.0
//! The syscall allowlists of each thread role, compiled to BPF with seccompiler.
//!
//! A thread inherits the filters of the thread that spawned it, and the kernel applies every
//! filter a thread has: so a role whose threads start threads of other roles (the main
//! thread, a vCPU activating a virtio device) allows what those roles need too. The lists
//! are generous where a path is rare but legitimate (resets, VFIO interrupts, screen dumps);
//! what they never allow is the way out of the process: execve, fork (clone without
//! CLONE_THREAD), ptrace, process_vm_*, new sockets, mount and the like.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::{Error, ThreadRole};

/// ioctl "type" bytes (bits 8..16 of the request) of whole driver families.
const KVM_IO: u64 = 0xae;
const VHOST_VIRTIO: u64 = 0xaf;
const VFIO_TYPE: u64 = b';' as u64;

/// Terminal ioctls: isatty (TCGETS), the window size, raw mode set and restored (TCSETS*),
/// and the two std uses (FIONBIO for set_nonblocking, FIOCLEX).
// libc::Ioctl is u64 on glibc and i32 on musl: the casts are for the latter.
#[allow(clippy::unnecessary_cast)]
const TTY_IOCTLS: &[u64] = &[
    libc::TCGETS as u64,
    libc::TCSETS as u64,
    libc::TCSETSW as u64,
    libc::TCSETSF as u64,
    libc::TIOCGWINSZ as u64,
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::FIONREAD as u64,
];

/// The tap ioctls of devices/src/net/tap.rs (queues attached and offloads set at activation).
#[allow(clippy::unnecessary_cast)]
const TAP_IOCTLS: &[u64] = &[
    libc::TUNSETIFF as u64,
    libc::TUNGETIFF as u64,
    libc::TUNSETVNETHDRSZ as u64,
    libc::TUNGETVNETHDRSZ as u64,
    libc::TUNSETOFFLOAD as u64,
    libc::TUNSETQUEUE as u64,
    libc::TUNGETFEATURES as u64,
];

/// Block-device ioctls a raw image on a host block device may use (sizes, discard).
const BLOCK_IOCTLS: &[u64] = &[
    0x8008_1272, /* BLKGETSIZE64 */
    0x1268,      /* BLKSSZGET */
    0x1277,      /* BLKDISCARD */
    0x127f,      /* BLKZEROOUT */
];

/// Syscalls every thread makes: memory, locks, time, signals, exit, logging, polling.
const BASE: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_ctl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_dup,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_membarrier,
    // A thread started by a filtered thread installs its own role's filters on top (filters
    // only ever narrow what a thread may do): seccomp(2), and prctl(PR_SET_NO_NEW_PRIVS)
    // below.
    libc::SYS_seccomp,
];

/// Disk images: positioned and vectored I/O, flushes, holes, io_uring.
const BLOCK_IO: &[i64] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_fstatfs,
    libc::SYS_fadvise64,
    libc::SYS_flock,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Frames on an already open socket backend (datagram or stream pairs; taps use read/write).
const NET_IO: &[i64] = &[
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_recvmmsg,
    libc::SYS_sendmmsg,
];

/// Connected stream sockets (VNC, serial and control clients).
const SOCKETS: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// Files by path: screen dumps, the exit-status file, the control socket's unlink, a
/// direct-boot kernel read again at a reset.
const FILES: &[i64] = &[
    libc::SYS_openat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_getdents64,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
];

/// A file handed over as a descriptor (`block::host_files`) opened again under a filter: the
/// direct machine loads its kernel and initramfs again at every reset, in the main thread. A
/// lookup is a dup (fcntl F_DUPFD_CLOEXEC) rewound to 0 (lseek); whole-file reads are pread64
/// after an fstat. (All of them are in [`BASE`] or [`BLOCK_IO`] too; listed here so that the
/// main role keeps them if those lists shrink.)
const HOST_FILES: &[i64] =
    &[libc::SYS_fcntl, libc::SYS_lseek, libc::SYS_pread64, libc::SYS_fstat, libc::SYS_statx];

/// What a role allows beyond [`BASE`].
#[derive(Default)]
struct Allow {
    /// The role opens files by path; without it, open and openat fail with EACCES (see
    /// [`deny_open_filter`]).
    files: bool,
    syscalls: Vec<i64>,
    /// Thread creation (clone with CLONE_THREAD only; clone3 returns ENOSYS, see
    /// [`clone3_filter`], so glibc falls back to clone).
    spawn: bool,
    /// ioctl driver families by type byte.
    ioctl_types: Vec<u64>,
    /// ioctls by exact request number.
    ioctls: Vec<u64>,
}

impl Allow {
    fn add(&mut self, syscalls: &[i64]) {
        self.syscalls.extend_from_slice(syscalls);
    }

    /// What worker threads spawned at virtio activation need (block, net, vhost, RTC timer).
    fn workers(&mut self) {
        self.spawn = true;
        self.add(BLOCK_IO);
        self.add(NET_IO);
        // KVM_IRQ_LINE: a device without MSI-X (virtio under SeaBIOS) raises its INTx line
        // from the worker that completes the request.
        self.ioctl_types.extend_from_slice(&[VHOST_VIRTIO, KVM_IO]);
        self.ioctls.extend_from_slice(TAP_IOCTLS);
        self.ioctls.extend_from_slice(BLOCK_IOCTLS);
    }

    /// What the vCPU threads do: KVM_RUN and the device work on their exits (VFIO BARs and
    /// interrupts, vhost-net and tap set-up at activation), plus the workers they start.
    fn vcpu(&mut self) {
        self.workers();
        self.ioctl_types.extend_from_slice(&[KVM_IO, VFIO_TYPE]);
    }
}

/// KVM_IRQ_LINE and KVM_IRQ_LINE_STATUS on the VM: any thread that drives a device may move
/// its interrupt line (a level-triggered line is held through the ioctl, not an irqfd): the
/// control socket's power button (the ACPI SCI), a serial client's input (COM1), a VNC
/// client's keys, the RTC timer. It only reaches this VM's own interrupt controller.
const IRQ_LINE_IOCTLS: &[u64] = &[
    0x4008_ae61, /* KVM_IRQ_LINE: _IOW(KVMIO, 0x61, struct kvm_irq_level) */
    0xc008_ae67, /* KVM_IRQ_LINE_STATUS: _IOWR(KVMIO, 0x67, struct kvm_irq_level) */
];

/// KVM_IRQFD (_IOW(KVMIO, 0x76, struct kvm_irqfd), 32 bytes): the VFIO INTx relay moves its
/// resample irqfd when the guest reroutes the slot's PIRQ (found by the vfio e2e `vfio-e1000`:
/// the relay was killed at the first interrupt).
const KVM_IRQFD: u64 = 0x4020_ae76;

fn allow(role: ThreadRole) -> Allow {
    let mut a = Allow { ioctls: [TTY_IOCTLS, IRQ_LINE_IOCTLS].concat(), ..Allow::default() };
    match role {
        // The event loop (e1000 and virtio-net traffic, timers) and what the main thread does
        // around it: resets, screen dumps on SIGUSR1, tearing the machine down, the exit
        // status file, the terminal restored.
        ThreadRole::Main => {
            a.vcpu();
            a.ioctls.push(KVM_IRQFD);
            a.add(FILES);
            a.add(HOST_FILES);
            a.files = true;
            a.add(SOCKETS);
        }
        ThreadRole::Vcpu => a.vcpu(),
        ThreadRole::BlockIo | ThreadRole::NetWorker => a.workers(),
        ThreadRole::RtcTimer => {}
        ThreadRole::VfioIntx => {
            a.ioctl_types.push(VFIO_TYPE);
            a.ioctls.push(KVM_IRQFD);
        }
        ThreadRole::Vnc | ThreadRole::Serial => {
            a.spawn = true;
            a.add(SOCKETS);
            a.add(&[libc::SYS_unlink, libc::SYS_unlinkat]);
        }
        // Connections run the hooks: screen dumps to a path, pause (kicks vCPUs), reset.
        ThreadRole::Control => {
            a.spawn = true;
            a.add(SOCKETS);
            a.add(FILES);
            a.files = true;
        }
    }
    a
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, Error> {
    SeccompRule::new(conditions).map_err(Error::Compile)
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(Error::Compile)
}

/// Whether `role` opens files by path (else [`deny_open_filter`] applies to it).
pub(super) fn opens_files(role: ThreadRole) -> bool {
    allow(role).files
}

/// The allowlist of `role`; what it does not list gets `mismatch` (trap or log).
pub(super) fn allowlist(role: ThreadRole, mismatch: SeccompAction) -> Result<BpfProgram, Error> {
    let a = allow(role);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in BASE.iter().chain(&a.syscalls) {
        rules.insert(nr, Vec::new());
    }
    // Under a trap, a role that opens no files still lets open/openat through this filter:
    // [`deny_open_filter`] answers them with EACCES, as glibc's own reads of /sys and /proc
    // (get_nprocs when malloc adds an arena) must fail softly, not kill the process.
    if !a.files && mismatch == SeccompAction::Trap {
        rules.insert(libc::SYS_open, Vec::new());
        rules.insert(libc::SYS_openat, Vec::new());
    }
    if a.spawn {
        let thread = libc::CLONE_THREAD as u64;
        rules.insert(libc::SYS_clone, vec![rule(vec![cond(0, SeccompCmpOp::MaskedEq(thread), thread)?])?]);
        // Seen through the clone3 filter as ENOSYS; allowed here so this filter does not trap it.
        rules.insert(libc::SYS_clone3, Vec::new());
    }
    // PR_SET_NAME (std's thread spawn), PR_GET_NAME, and PR_SET_NO_NEW_PRIVS, which
    // seccompiler sets before each filter it installs.
    let ops = [libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64, libc::PR_SET_NO_NEW_PRIVS as u64];
    let prctl = ops.iter().map(|&op| rule(vec![cond(0, SeccompCmpOp::Eq, op)?])).collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_prctl, prctl);
    // prlimit64 only to read a limit (new_limit NULL).
    rules.insert(
        libc::SYS_prlimit64,
        vec![rule(vec![
            SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0).map_err(Error::Compile)?
        ])?],
    );
    let mut ioctl = Vec::new();
    for &ty in &a.ioctl_types {
        ioctl.push(rule(vec![cond(1, SeccompCmpOp::MaskedEq(0xff00), ty << 8)?])?);
    }
    for &req in &a.ioctls {
        ioctl.push(rule(vec![cond(1, SeccompCmpOp::Eq, req)?])?);
    }
    rules.insert(libc::SYS_ioctl, ioctl);
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(Error::Compile)?;
    filter.try_into().map_err(Error::Compile)
}

/// A filter that answers clone3 with ENOSYS and allows everything else: clone3 passes its
/// flags in memory, out of seccomp's sight, so threads are made with clone, whose flags a
/// filter can check.
pub(super) fn clone3_filter() -> Result<BpfProgram, Error> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .map_err(Error::Compile)?;
    filter.try_into().map_err(Error::Compile)
}

/// A filter that fails open and openat with EACCES and allows everything else, for roles
/// that open no files.
pub(super) fn deny_open_filter() -> Result<BpfProgram, Error> {
    let rules = BTreeMap::from([(libc::SYS_open, Vec::new()), (libc::SYS_openat, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        TargetArch::x86_64,
    )
    .map_err(Error::Compile)?;
    filter.try_into().map_err(Error::Compile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_compiles_for_x86_64() {
        for role in ThreadRole::ALL {
            for mismatch in [SeccompAction::Trap, SeccompAction::Log] {
                let bpf = allowlist(role, mismatch).unwrap();
                assert!(!bpf.is_empty(), "{role:?}");
                // The kernel's limit on one program.
                assert!(bpf.len() < 4096, "{role:?}: {} instructions", bpf.len());
            }
        }
        assert!(!clone3_filter().unwrap().is_empty());
        assert!(!deny_open_filter().unwrap().is_empty());
    }

    #[test]
    fn no_role_allows_the_ways_out() {
        let forbidden = [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_mount,
            libc::SYS_personality,
            libc::SYS_kill,
        ];
        for role in ThreadRole::ALL {
            let a = allow(role);
            for nr in forbidden {
                assert!(!BASE.contains(&nr) && !a.syscalls.contains(&nr), "{role:?} allows {nr}");
            }
        }
    }

    /// Found in the vmctl e2e (debian-nat): `vmctl shutdown` presses the power button from a
    /// control connection, whose ACPI SCI is a level held with KVM_IRQ_LINE.
    #[test]
    fn every_role_may_move_an_interrupt_line() {
        assert_eq!(IRQ_LINE_IOCTLS[0], kvm_bindings_irq_line());
        for role in ThreadRole::ALL {
            assert!(allow(role).ioctls.contains(&IRQ_LINE_IOCTLS[0]), "{role:?}");
        }
    }

    #[test]
    fn the_intx_relay_may_move_its_irqfd() {
        // struct kvm_irqfd: fd, gsi, flags, resamplefd (u32 each) and 16 bytes of padding.
        let size = (4 * std::mem::size_of::<u32>() + 16) as u64;
        assert_eq!(KVM_IRQFD, (1 << 30) | (size << 16) | (KVM_IO << 8) | 0x76);
        assert!(allow(ThreadRole::VfioIntx).ioctls.contains(&KVM_IRQFD));
    }

    /// _IOW(KVMIO, 0x61, struct kvm_irq_level), from the ioctl encoding: write direction,
    /// the struct's 8 bytes (a u32 irq/status union and a u32 level), type 0xAE, number 0x61.
    fn kvm_bindings_irq_line() -> u64 {
        let size = (std::mem::size_of::<u32>() * 2) as u64;
        (1 << 30) | (size << 16) | (KVM_IO << 8) | 0x61
    }

    /// A direct-boot reset reads the kernel again in the main thread, from a handed-over
    /// descriptor in a jailed vmm (vmm/tests/preopened.rs runs it).
    #[test]
    fn the_main_role_may_reopen_handed_over_files() {
        let main = allow(ThreadRole::Main);
        for nr in HOST_FILES.iter().chain(&[libc::SYS_read]) {
            assert!(BASE.contains(nr) || main.syscalls.contains(nr), "{nr}");
        }
    }

    /// The control socket's `stats` (vmm/src/stats.rs) reads the vCPU threads' and the
    /// process's CPU clocks and rereads /proc/self/statm, opened at start: no new syscall.
    #[test]
    fn the_control_role_may_read_statistics() {
        for nr in [libc::SYS_clock_gettime, libc::SYS_lseek, libc::SYS_read, libc::SYS_fstat, libc::SYS_statx]
        {
            assert!(BASE.contains(&nr), "{nr}");
        }
    }

    #[test]
    fn spawners_allow_what_their_children_need() {
        let covers = |parent: ThreadRole, child: ThreadRole| {
            let (p, c) = (allow(parent), allow(child));
            assert!(c.syscalls.iter().all(|s| p.syscalls.contains(s)), "{parent:?} > {child:?}");
            assert!(c.ioctl_types.iter().all(|s| p.ioctl_types.contains(s)), "{parent:?} > {child:?}");
            assert!(c.ioctls.iter().all(|s| p.ioctls.contains(s)), "{parent:?} > {child:?}");
            assert!(!c.spawn || p.spawn);
        };
        for child in [ThreadRole::BlockIo, ThreadRole::NetWorker, ThreadRole::RtcTimer] {
            covers(ThreadRole::Vcpu, child);
        }
        for role in ThreadRole::ALL {
            covers(ThreadRole::Main, role);
        }
    }
}
