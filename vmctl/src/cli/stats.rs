// SPDX-License-Identifier: Apache-2.0
//! `vmctl domstats`: the counters of `GET /v1/vms/{name}/stats` as `virsh domstats` prints
//! them (`key=value` lines under `Domain: 'NAME'`), and the rows `vmctl dominfo` adds.
//!
//! Keys and units follow libvirt: `state.state` is libvirt's number (1 running, 3 paused,
//! 5 shut off, 6 crashed); times are nanoseconds; `balloon.current` and `balloon.rss` are
//! KiB. Keys libvirt has and the VMM cannot know (`*.times`, `net.N.rx.errs`) are left out;
//! `block.N.errs` and `rate.*` (the latest 10-second rates vmctld sampled) are our own.

use std::fmt::Write;

use vmdef::store::RunState;

use crate::api::VmStatsReport;

/// libvirt's `virDomainState` number.
fn libvirt_state(s: RunState) -> u8 {
    match s {
        RunState::Running => 1,
        RunState::Paused => 3,
        RunState::Shutoff => 5,
        RunState::Crashed => 6,
    }
}

/// The `virsh domstats` block of one VM.
pub fn domstats(r: &VmStatsReport) -> String {
    let mut out = format!("Domain: '{}'\n", r.name);
    let mut kv = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "  {k}={v}");
    };
    kv("state.state", &libvirt_state(r.state));
    if let Some(c) = &r.current {
        kv("cpu.time", &c.cpu_time_ns);
        kv("balloon.current", &(c.memory_bytes / 1024));
        if let Some(rss) = c.rss_bytes {
            kv("balloon.rss", &(rss / 1024));
        }
        kv("vcpu.current", &c.vcpu_time_ns.len());
        for (i, t) in c.vcpu_time_ns.iter().enumerate() {
            kv(&format!("vcpu.{i}.time"), t);
        }
        kv("net.count", &c.nics.len());
        for (i, n) in c.nics.iter().enumerate() {
            let p = format!("net.{i}");
            kv(&format!("{p}.name"), &n.id);
            kv(&format!("{p}.rx.bytes"), &n.rx_bytes);
            kv(&format!("{p}.rx.pkts"), &n.rx_packets);
            kv(&format!("{p}.rx.drop"), &n.rx_dropped);
            kv(&format!("{p}.tx.bytes"), &n.tx_bytes);
            kv(&format!("{p}.tx.pkts"), &n.tx_packets);
            kv(&format!("{p}.tx.drop"), &n.tx_dropped);
            if n.in_kernel {
                kv(&format!("{p}.vhost"), &"in-kernel (not counted)");
            }
        }
        kv("block.count", &c.disks.len());
        for (i, d) in c.disks.iter().enumerate() {
            let p = format!("block.{i}");
            kv(&format!("{p}.name"), &d.id);
            kv(&format!("{p}.rd.reqs"), &d.rd_reqs);
            kv(&format!("{p}.rd.bytes"), &d.rd_bytes);
            kv(&format!("{p}.wr.reqs"), &d.wr_reqs);
            kv(&format!("{p}.wr.bytes"), &d.wr_bytes);
            kv(&format!("{p}.fl.reqs"), &d.fl_reqs);
            kv(&format!("{p}.errs"), &d.errors);
        }
    }
    if let Some(s) = &r.rates {
        kv("rate.cpu.percent", &format!("{:.1}", s.cpu_percent));
        kv("rate.block.rd.bytes", &format!("{:.0}", s.rd_bytes_per_s));
        kv("rate.block.wr.bytes", &format!("{:.0}", s.wr_bytes_per_s));
        kv("rate.net.rx.bytes", &format!("{:.0}", s.rx_bytes_per_s));
        kv("rate.net.tx.bytes", &format!("{:.0}", s.tx_bytes_per_s));
    }
    if let Some(e) = &r.error {
        kv("error", e);
    }
    out
}

/// The rows `vmctl dominfo` adds for a running VM: CPU time (as virsh, in seconds) and
/// resident memory.
pub fn info_rows(r: &VmStatsReport) -> Vec<(&'static str, String)> {
    let Some(c) = &r.current else { return Vec::new() };
    let mut rows = vec![("CPU time", format!("{:.1}s", c.cpu_time_ns as f64 / 1e9))];
    if let Some(rss) = c.rss_bytes {
        rows.push(("Used memory", super::output::bytes(rss)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use ::api::control::{DiskStats, NicStats, VmStats};

    use super::*;

    fn report() -> VmStatsReport {
        VmStatsReport {
            name: "web".into(),
            state: RunState::Running,
            time: 1,
            current: Some(VmStats {
                uptime_ms: 5000,
                cpu_time_ns: 2_500_000_000,
                vcpu_time_ns: vec![1_000, 2_000],
                rss_bytes: Some(200 << 20),
                memory_bytes: 1 << 30,
                disks: vec![DiskStats {
                    id: "vda".into(),
                    kind: "virtio-blk".into(),
                    rd_reqs: 3,
                    rd_bytes: 1536,
                    wr_reqs: 1,
                    wr_bytes: 4096,
                    fl_reqs: 2,
                    errors: 0,
                }],
                nics: vec![NicStats {
                    id: "net0".into(),
                    kind: "e1000".into(),
                    rx_bytes: 60,
                    rx_packets: 1,
                    ..Default::default()
                }],
            }),
            error: None,
            rates: None,
            interval: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn domstats_prints_virsh_keys() {
        let text = domstats(&report());
        assert!(text.starts_with("Domain: 'web'\n  state.state=1\n  cpu.time=2500000000\n"), "{text}");
        for line in [
            "  balloon.current=1048576\n",
            "  balloon.rss=204800\n",
            "  vcpu.1.time=2000\n",
            "  net.0.name=net0\n",
            "  net.0.rx.bytes=60\n",
            "  net.0.rx.pkts=1\n",
            "  net.0.rx.drop=0\n",
            "  block.count=1\n",
            "  block.0.name=vda\n",
            "  block.0.rd.reqs=3\n",
            "  block.0.rd.bytes=1536\n",
            "  block.0.wr.bytes=4096\n",
            "  block.0.fl.reqs=2\n",
            "  block.0.errs=0\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(!text.contains("vhost") && !text.contains("rate."));
        let off = VmStatsReport { state: RunState::Shutoff, current: None, ..report() };
        assert_eq!(domstats(&off), "Domain: 'web'\n  state.state=5\n");
    }

    #[test]
    fn dominfo_rows_only_for_a_running_vm() {
        let rows = info_rows(&report());
        assert_eq!(rows, [("CPU time", "2.5s".to_string()), ("Used memory", "200 MiB".to_string())]);
        assert!(info_rows(&VmStatsReport { current: None, ..report() }).is_empty());
    }
}
