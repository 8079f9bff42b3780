// SPDX-License-Identifier: Apache-2.0
//! The statistics history of one VM: rates from the deltas of successive `stats` answers,
//! kept in two bounded rings (360 samples at 10 s = one hour, 1440 at 1 min = one day).
//!
//! Rates never go negative. The counters of a VMM only grow while it runs; a new VMM (the VM
//! was restarted, or vmctld found a different process after its own restart) starts them at
//! zero, which shows as a shorter uptime or a counter below the last one. Such an interval
//! counts from zero over the new VMM's uptime. After vmctld starts, the first answer is only
//! a baseline (the rings are in memory and start empty).

use std::collections::VecDeque;

use api::control::VmStats;

use crate::api::StatsSample;

/// Samples of the 10-second ring (one hour).
pub const HOUR_SAMPLES: usize = 360;
/// Samples of the 1-minute ring (one day).
pub const DAY_SAMPLES: usize = 1440;
/// Seconds per day-ring sample.
const ROLLUP_SECS: u64 = 60;

/// A ring of at most `cap` samples, oldest first.
#[derive(Debug, Clone)]
pub struct Ring {
    samples: VecDeque<StatsSample>,
    cap: usize,
}

impl Ring {
    /// An empty ring of `cap` samples.
    pub fn new(cap: usize) -> Ring {
        Ring { samples: VecDeque::with_capacity(cap), cap }
    }

    /// Adds a sample, dropping the oldest when full.
    pub fn push(&mut self, s: StatsSample) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The samples, oldest first.
    pub fn to_vec(&self) -> Vec<StatsSample> {
        self.samples.iter().copied().collect()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&StatsSample> {
        self.samples.back()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// One VM's history.
#[derive(Debug, Clone)]
pub struct History {
    /// The last answer and its unix time in milliseconds.
    last: Option<(u64, VmStats)>,
    hour: Ring,
    day: Ring,
    /// The minute being rolled up and its 10-second samples so far.
    minute: Option<(u64, Vec<StatsSample>)>,
}

impl Default for History {
    fn default() -> Self {
        History { last: None, hour: Ring::new(HOUR_SAMPLES), day: Ring::new(DAY_SAMPLES), minute: None }
    }
}

impl History {
    /// Records the answer `cur` taken at `now_ms` (unix time in milliseconds); returns the
    /// sample it made, if there was a baseline.
    pub fn record(&mut self, now_ms: u64, cur: VmStats) -> Option<StatsSample> {
        let prev = self.last.replace((now_ms, cur.clone()));
        let (prev_ms, prev) = prev?;
        let sample = rates(prev_ms, &prev, now_ms, &cur)?;
        self.hour.push(sample);
        self.roll_up(sample);
        Some(sample)
    }

    /// Takes `cur` (read at `now_ms`) as the baseline if there is none yet: an answer read
    /// for the API between two rounds shortens the wait for the first rates, never adds a
    /// sample.
    pub fn seed(&mut self, now_ms: u64, cur: &VmStats) {
        if self.last.is_none() {
            self.last = Some((now_ms, cur.clone()));
        }
    }

    /// The 10-second samples (one hour at most).
    pub fn hour(&self) -> &Ring {
        &self.hour
    }

    /// The 1-minute samples (one day at most).
    pub fn day(&self) -> &Ring {
        &self.day
    }

    /// Adds `s` to its minute; a sample of a later minute closes the one before into the
    /// day ring.
    fn roll_up(&mut self, s: StatsSample) {
        let minute = s.time / ROLLUP_SECS;
        match &mut self.minute {
            Some((m, samples)) if *m == minute => samples.push(s),
            open => {
                if let Some((m, samples)) = open.take() {
                    self.day.push(average(m * ROLLUP_SECS + ROLLUP_SECS, &samples));
                }
                self.minute = Some((minute, vec![s]));
            }
        }
    }
}

/// The mean of `samples` (rates), stamped `time`, with the last resident size.
fn average(time: u64, samples: &[StatsSample]) -> StatsSample {
    let n = samples.len().max(1) as f64;
    let mean = |f: fn(&StatsSample) -> f64| samples.iter().map(f).sum::<f64>() / n;
    StatsSample {
        time,
        cpu_percent: mean(|s| s.cpu_percent),
        vcpu_percent: mean(|s| s.vcpu_percent),
        rss_bytes: samples.last().map_or(0, |s| s.rss_bytes),
        rd_bytes_per_s: mean(|s| s.rd_bytes_per_s),
        wr_bytes_per_s: mean(|s| s.wr_bytes_per_s),
        disk_reqs_per_s: mean(|s| s.disk_reqs_per_s),
        rx_bytes_per_s: mean(|s| s.rx_bytes_per_s),
        tx_bytes_per_s: mean(|s| s.tx_bytes_per_s),
        pkts_per_s: mean(|s| s.pkts_per_s),
    }
}

/// Totals of the counters the rates are made of.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    cpu_ns: u64,
    vcpu_ns: u64,
    rd_bytes: u64,
    wr_bytes: u64,
    disk_reqs: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    pkts: u64,
}

impl Totals {
    fn of(s: &VmStats) -> Totals {
        let mut t = Totals {
            cpu_ns: s.cpu_time_ns,
            vcpu_ns: s.vcpu_time_ns.iter().fold(0u64, |a, v| a.saturating_add(*v)),
            ..Totals::default()
        };
        for d in &s.disks {
            t.rd_bytes = t.rd_bytes.saturating_add(d.rd_bytes);
            t.wr_bytes = t.wr_bytes.saturating_add(d.wr_bytes);
            t.disk_reqs =
                t.disk_reqs.saturating_add(d.rd_reqs).saturating_add(d.wr_reqs).saturating_add(d.fl_reqs);
        }
        for n in &s.nics {
            t.rx_bytes = t.rx_bytes.saturating_add(n.rx_bytes);
            t.tx_bytes = t.tx_bytes.saturating_add(n.tx_bytes);
            t.pkts = t.pkts.saturating_add(n.rx_packets).saturating_add(n.tx_packets);
        }
        t
    }

    fn fields(&self) -> [u64; 8] {
        [
            self.cpu_ns,
            self.vcpu_ns,
            self.rd_bytes,
            self.wr_bytes,
            self.disk_reqs,
            self.rx_bytes,
            self.tx_bytes,
            self.pkts,
        ]
    }
}

/// The rates between two answers, or `None` if no time passed.
fn rates(prev_ms: u64, prev: &VmStats, now_ms: u64, cur: &VmStats) -> Option<StatsSample> {
    let (p, c) = (Totals::of(prev), Totals::of(cur));
    // A new VMM: a shorter uptime, or a counter that went back.
    let elapsed_ms = now_ms.saturating_sub(prev_ms);
    let restarted = cur.uptime_ms < prev.uptime_ms || p.fields().iter().zip(c.fields()).any(|(a, b)| b < *a);
    let (base, span_ms) = if restarted { (Totals::default(), cur.uptime_ms) } else { (p, elapsed_ms) };
    if span_ms == 0 {
        return None;
    }
    let secs = span_ms as f64 / 1000.0;
    let d = |cur: u64, base: u64| cur.saturating_sub(base) as f64 / secs;
    Some(StatsSample {
        time: now_ms / 1000,
        cpu_percent: d(c.cpu_ns, base.cpu_ns) / 1e7,
        vcpu_percent: d(c.vcpu_ns, base.vcpu_ns) / 1e7,
        rss_bytes: cur.rss_bytes.unwrap_or(0),
        rd_bytes_per_s: d(c.rd_bytes, base.rd_bytes),
        wr_bytes_per_s: d(c.wr_bytes, base.wr_bytes),
        disk_reqs_per_s: d(c.disk_reqs, base.disk_reqs),
        rx_bytes_per_s: d(c.rx_bytes, base.rx_bytes),
        tx_bytes_per_s: d(c.tx_bytes, base.tx_bytes),
        pkts_per_s: d(c.pkts, base.pkts),
    })
}

#[cfg(test)]
mod tests;
