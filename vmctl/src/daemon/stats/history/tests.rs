// SPDX-License-Identifier: Apache-2.0
use api::control::{DiskStats, NicStats};

use super::*;

/// An answer `uptime_s` into a VMM's life with the given totals.
fn answer(uptime_s: u64, cpu_s: u64, rd_bytes: u64, rx_bytes: u64) -> VmStats {
    VmStats {
        uptime_ms: uptime_s * 1000,
        cpu_time_ns: cpu_s * 1_000_000_000,
        vcpu_time_ns: vec![cpu_s * 500_000_000, cpu_s * 250_000_000],
        rss_bytes: Some(uptime_s << 20),
        memory_bytes: 1 << 30,
        disks: vec![DiskStats { id: "vda".into(), rd_bytes, rd_reqs: rd_bytes / 512, ..Default::default() }],
        nics: vec![NicStats { id: "net0".into(), rx_bytes, rx_packets: 1, ..Default::default() }],
    }
}

const T0: u64 = 1_800_000_000_000;

#[test]
fn the_first_answer_is_a_baseline_and_the_next_gives_rates() {
    let mut h = History::default();
    assert_eq!(h.record(T0, answer(100, 10, 0, 0)), None);
    let s = h.record(T0 + 10_000, answer(110, 15, 10 * 4096, 1000)).unwrap();
    assert_eq!(s.time, T0 / 1000 + 10);
    assert!((s.cpu_percent - 50.0).abs() < 1e-9, "{}", s.cpu_percent);
    assert!((s.vcpu_percent - 37.5).abs() < 1e-9, "{}", s.vcpu_percent);
    assert_eq!(s.rd_bytes_per_s, 4096.0);
    assert_eq!(s.disk_reqs_per_s, 8.0);
    assert_eq!(s.rx_bytes_per_s, 100.0);
    assert_eq!(s.pkts_per_s, 0.0, "the packet count did not move");
    assert_eq!(s.rss_bytes, 110 << 20);
    assert_eq!(h.hour().len(), 1);
    // A seed only stands in for a missing baseline.
    let mut seeded = History::default();
    seeded.seed(T0, &answer(100, 10, 0, 0));
    seeded.seed(T0 + 5_000, &answer(105, 12, 0, 0));
    let s = seeded.record(T0 + 10_000, answer(110, 15, 0, 0)).unwrap();
    assert!((s.cpu_percent - 50.0).abs() < 1e-9, "{}", s.cpu_percent);
}

#[test]
fn a_restarted_vmm_counts_from_zero_and_never_goes_negative() {
    let mut h = History::default();
    h.record(T0, answer(1000, 500, 1 << 30, 1 << 20));
    // The VM was restarted 4 s before this answer: every counter is lower than before.
    let s = h.record(T0 + 10_000, answer(4, 2, 4 * 1024, 400)).unwrap();
    assert!((s.cpu_percent - 50.0).abs() < 1e-9, "{}", s.cpu_percent);
    assert_eq!(s.rd_bytes_per_s, 1024.0, "the new VMM's bytes over its 4 s");
    assert_eq!(s.rx_bytes_per_s, 100.0);
    // A counter that goes back with a longer uptime (a device replaced) is a reset too.
    let mut later = answer(14, 3, 0, 400);
    later.disks[0].rd_reqs = 0;
    let s = h.record(T0 + 20_000, later).unwrap();
    for v in [s.cpu_percent, s.rd_bytes_per_s, s.rx_bytes_per_s, s.disk_reqs_per_s, s.pkts_per_s] {
        assert!(v >= 0.0, "{s:?}");
    }
    // No time passed: no sample.
    assert_eq!(h.record(T0 + 20_000, answer(14, 3, 0, 400)), None);
}

#[test]
fn the_hour_ring_keeps_its_last_360_samples() {
    let mut h = History::default();
    let mut t = T0;
    h.record(t, answer(0, 0, 0, 0));
    for i in 1..=400u64 {
        t += 10_000;
        h.record(t, answer(i * 10, i, i * 10 * 512, 0));
    }
    let hour = h.hour().to_vec();
    assert_eq!(hour.len(), HOUR_SAMPLES);
    assert_eq!(hour[0].time, T0 / 1000 + 41 * 10, "the 40 oldest were dropped");
    assert_eq!(hour.last().unwrap().time, t / 1000);
    assert!(hour.windows(2).all(|w| w[0].time < w[1].time));
}

#[test]
fn minutes_roll_up_into_the_day_ring() {
    let mut h = History::default();
    // Start on a minute boundary: six samples per minute.
    let start = (T0 / 60_000) * 60_000;
    h.record(start, answer(0, 0, 0, 0));
    let mut t = start;
    let mut rd = 0;
    for i in 1..=18u64 {
        t += 10_000;
        // Faster and faster: 1 KiB/s, then 2, then 3.
        rd += 10 * 1024 * (i / 6 + 1);
        h.record(t, answer(i * 10, i, rd, 0));
    }
    let day = h.day().to_vec();
    // Minute 0 has the samples at :10 .. :50, minutes 1 and 2 six each; the sample at 3:00
    // opens minute 3, which is not closed yet.
    assert_eq!(day.len(), 3, "{day:?}");
    assert_eq!(day.iter().map(|s| s.time - start / 1000).collect::<Vec<_>>(), [60, 120, 180]);
    assert!(day[2].rd_bytes_per_s > day[1].rd_bytes_per_s, "{day:?}");
    assert!(day[0].rd_bytes_per_s > 0.0 && day[1].rd_bytes_per_s > day[0].rd_bytes_per_s, "{day:?}");
    assert!((day[0].cpu_percent - 10.0).abs() < 1e-9, "{}", day[0].cpu_percent);
    // A ring is bounded whatever runs into it.
    let mut ring = Ring::new(3);
    for i in 0..10 {
        ring.push(StatsSample { time: i, ..Default::default() });
    }
    assert_eq!(ring.to_vec().iter().map(|s| s.time).collect::<Vec<_>>(), [7, 8, 9]);
    assert_eq!(ring.last().unwrap().time, 9);
}

#[test]
fn a_day_of_minutes_stays_bounded() {
    let mut h = History::default();
    let mut t = T0;
    h.record(t, answer(0, 0, 0, 0));
    // 26 hours of 10-second samples.
    for i in 1..=(26 * 360u64) {
        t += 10_000;
        h.record(t, answer(i * 10, i, 0, 0));
    }
    assert_eq!(h.hour().len(), HOUR_SAMPLES);
    assert_eq!(h.day().len(), DAY_SAMPLES);
}
