// SPDX-License-Identifier: Apache-2.0
//! The control socket's `stats` answer ([`api::control::VmStats`]): CPU time of the process
//! and of each vCPU thread, resident memory, and the devices' I/O counters.
//!
//! Everything is read with syscalls every thread role already has, so the control thread's
//! seccomp filter needs nothing new:
//! - CPU time: `clock_gettime` on `CLOCK_PROCESS_CPUTIME_ID` and on each vCPU thread's CPU
//!   clock (`pthread_getcpuclockid`, which glibc computes from the thread's id without a
//!   syscall);
//! - resident memory: `/proc/self/statm`, the process's own, opened once when the VMM starts
//!   (under the jailer too: the jail mounts a `/proc` of the VMM's pid namespace) and read
//!   again with `lseek` + `read` at each request;
//! - device counters: relaxed atomic loads ([`devices::stats`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::control::{DiskStats, NicStats, VmStats};
use devices::stats::{BlockStats, NetStats};

/// pthread ids of the vCPU threads (in vCPU order), shared with the machine.
pub type VcpuThreads = Arc<Mutex<Vec<libc::pthread_t>>>;

/// A disk's counters and its name.
struct Disk {
    id: String,
    kind: String,
    stats: Arc<BlockStats>,
}

/// A NIC's counters and its name.
struct Nic {
    id: String,
    kind: String,
    in_kernel: bool,
    stats: Arc<NetStats>,
}

/// The devices' counters of one machine, filled while it is built.
#[derive(Default)]
pub struct DeviceCounters {
    disks: Vec<Disk>,
    nics: Vec<Nic>,
}

impl DeviceCounters {
    /// Adds disk `id` of model `kind`.
    pub fn add_disk(&mut self, id: &str, kind: &str, stats: Arc<BlockStats>) {
        self.disks.push(Disk { id: id.into(), kind: kind.into(), stats });
        self.disks.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Adds NIC `id` of model `kind`; `in_kernel` when vhost-net moves its frames (its
    /// counters then stay at zero).
    pub fn add_nic(&mut self, id: &str, kind: &str, in_kernel: bool, stats: Arc<NetStats>) {
        self.nics.push(Nic { id: id.into(), kind: kind.into(), in_kernel, stats });
        self.nics.sort_by(|a, b| a.id.cmp(&b.id));
    }

    fn disks(&self) -> Vec<DiskStats> {
        self.disks
            .iter()
            .map(|d| {
                let c = d.stats.snapshot();
                DiskStats {
                    id: d.id.clone(),
                    kind: d.kind.clone(),
                    rd_reqs: c.rd_reqs,
                    rd_bytes: c.rd_bytes,
                    wr_reqs: c.wr_reqs,
                    wr_bytes: c.wr_bytes,
                    fl_reqs: c.fl_reqs,
                    errors: c.errors,
                }
            })
            .collect()
    }

    fn nics(&self) -> Vec<NicStats> {
        self.nics
            .iter()
            .map(|n| {
                let c = n.stats.snapshot();
                NicStats {
                    id: n.id.clone(),
                    kind: n.kind.clone(),
                    in_kernel: n.in_kernel,
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    rx_dropped: c.rx_dropped,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    tx_dropped: c.tx_dropped,
                }
            })
            .collect()
    }
}

/// What the `stats` answer is read from; one per VMM process, kept by the control state.
pub struct StatsSource {
    started: Instant,
    statm: Mutex<Option<File>>,
    page_size: u64,
    machine: Mutex<Option<Machine>>,
}

/// The parts of the current machine.
struct Machine {
    memory_bytes: u64,
    vcpus: VcpuThreads,
    devices: DeviceCounters,
}

impl Default for StatsSource {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsSource {
    /// Starts the uptime clock and opens `/proc/self/statm` (call before the seccomp filters;
    /// without it the answer has no `rss_bytes`).
    pub fn new() -> Self {
        let statm = File::open("/proc/self/statm")
            .map_err(|e| log::debug!("stats: no resident memory: /proc/self/statm: {e}"))
            .ok();
        // SAFETY: sysconf reads a constant of the process; no memory is touched.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        StatsSource {
            started: Instant::now(),
            statm: Mutex::new(statm),
            page_size: u64::try_from(page_size).unwrap_or(4096),
            machine: Mutex::new(None),
        }
    }

    /// The machine that runs: its RAM, its vCPU threads and its devices' counters.
    pub fn set_machine(&self, memory_bytes: u64, vcpus: VcpuThreads, devices: DeviceCounters) {
        *devices::bus::lock(&self.machine) = Some(Machine { memory_bytes, vcpus, devices });
    }

    /// Forgets the machine (it is being taken apart).
    pub fn clear_machine(&self) {
        *devices::bus::lock(&self.machine) = None;
    }

    /// The counters now.
    pub fn read(&self) -> VmStats {
        let mut stats = VmStats {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            cpu_time_ns: clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or(0),
            rss_bytes: self.rss_bytes(),
            ..VmStats::default()
        };
        if let Some(m) = devices::bus::lock(&self.machine).as_ref() {
            stats.memory_bytes = m.memory_bytes;
            // Under the lock the machine empties before it joins the threads, so every id
            // read here belongs to a thread that has not been joined.
            let threads = devices::bus::lock(&m.vcpus);
            stats.vcpu_time_ns = threads.iter().map(|&t| thread_cpu_ns(t).unwrap_or(0)).collect();
            drop(threads);
            stats.disks = m.devices.disks();
            stats.nics = m.devices.nics();
        }
        stats
    }

    /// Resident pages (`statm`'s second field) times the page size.
    fn rss_bytes(&self) -> Option<u64> {
        let mut statm = devices::bus::lock(&self.statm);
        let file = statm.as_mut()?;
        let mut text = String::new();
        file.seek(SeekFrom::Start(0)).ok()?;
        file.read_to_string(&mut text).ok()?;
        parse_statm_rss(&text).map(|pages| pages.saturating_mul(self.page_size))
    }
}

/// The resident pages of a `/proc/PID/statm` line (`size resident shared text lib data dt`).
fn parse_statm_rss(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// CPU time of a thread of this process that has not been joined.
fn thread_cpu_ns(thread: libc::pthread_t) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is a live or finished-but-unjoined thread of this process (see
    // `StatsSource::read`); the call writes one clockid_t, which `clock` is.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return None;
    }
    clock_ns(clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_the_resident_pages() {
        assert_eq!(parse_statm_rss("1234 567 89 1 0 300 0\n"), Some(567));
        assert_eq!(parse_statm_rss("1234"), None);
        assert_eq!(parse_statm_rss(""), None);
        assert_eq!(parse_statm_rss("1 x"), None);
    }

    #[test]
    fn own_process_and_threads_have_cpu_time_and_memory() {
        let source = StatsSource::new();
        let s = source.read();
        assert!(s.rss_bytes.unwrap() > 0);
        assert!(s.vcpu_time_ns.is_empty() && s.disks.is_empty(), "no machine yet");
        // A "vCPU" that burns 20 ms of CPU (by its own clock: the host may be busy), then
        // waits to be joined.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (ready, burnt) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let mut x = 0u64;
            while clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap() < 20_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            ready.send(()).unwrap();
            let _ = wait.recv();
            x
        });
        burnt.recv().unwrap();
        use std::os::unix::thread::JoinHandleExt;
        let vcpus: VcpuThreads = Arc::new(Mutex::new(vec![worker.as_pthread_t()]));
        let mut devices = DeviceCounters::default();
        let disk = Arc::new(BlockStats::default());
        disk.record(devices::stats::BlockOp::Read, 4096);
        devices.add_disk("vdb", "virtio-blk", Arc::new(BlockStats::default()));
        devices.add_disk("vda", "virtio-blk", disk);
        let nic = Arc::new(NetStats::default());
        nic.tx(60);
        devices.add_nic("net0", "e1000", false, nic);
        source.set_machine(64 << 20, vcpus.clone(), devices);
        let s = source.read();
        assert_eq!(s.memory_bytes, 64 << 20);
        assert_eq!(s.vcpu_time_ns.len(), 1);
        assert!(s.vcpu_time_ns[0] >= 20_000_000, "{:?}", s.vcpu_time_ns);
        assert!(s.cpu_time_ns >= s.vcpu_time_ns[0]);
        assert_eq!(s.disks.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["vda", "vdb"]);
        assert_eq!((s.disks[0].rd_reqs, s.disks[0].rd_bytes), (1, 4096));
        assert_eq!((s.nics[0].tx_packets, s.nics[0].tx_bytes), (1, 60));
        assert!(s.uptime_ms >= 20, "{}", s.uptime_ms);
        vcpus.lock().unwrap().clear();
        go.send(()).unwrap();
        worker.join().unwrap();
        source.clear_machine();
        assert!(source.read().vcpu_time_ns.is_empty());
    }
}
