// SPDX-License-Identifier: Apache-2.0
//! I/O counters of the disk and network front-ends, read by the control socket's `stats`
//! request.
//!
//! Each device holds an `Arc` of its counters and bumps them where a request or frame
//! completes; the control thread reads them with [`BlockStats::snapshot`] /
//! [`NetStats::snapshot`]. Every counter is a relaxed [`AtomicU64`]: one uncontended atomic
//! add per request on the I/O path, no lock, and no ordering between counters (a snapshot
//! taken while I/O runs may see a request's bytes before its count; each counter on its own
//! only grows). Counters live as long as the device and are not cleared by a guest reset,
//! so a reader sees them grow for the life of the vmm process.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a disk request was, for [`BlockStats::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    /// Data from the medium to the guest.
    Read,
    /// Data from the guest to the medium (write-zeroes included).
    Write,
    /// A cache flush.
    Flush,
    /// Anything else (GET_ID, discard, ...): counted only when it fails.
    Other,
}

/// Counters of one disk.
#[derive(Debug, Default)]
pub struct BlockStats {
    rd_reqs: AtomicU64,
    rd_bytes: AtomicU64,
    wr_reqs: AtomicU64,
    wr_bytes: AtomicU64,
    fl_reqs: AtomicU64,
    errors: AtomicU64,
}

/// The values of a [`BlockStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounters {
    /// Read requests completed.
    pub rd_reqs: u64,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Write requests completed.
    pub wr_reqs: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Flushes completed.
    pub fl_reqs: u64,
    /// Requests that failed (I/O errors, malformed or out-of-range requests).
    pub errors: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl BlockStats {
    /// A request of kind `op` that moved `bytes` and completed successfully.
    pub fn record(&self, op: BlockOp, bytes: u64) {
        match op {
            BlockOp::Read => {
                add(&self.rd_reqs, 1);
                add(&self.rd_bytes, bytes);
            }
            BlockOp::Write => {
                add(&self.wr_reqs, 1);
                add(&self.wr_bytes, bytes);
            }
            BlockOp::Flush => add(&self.fl_reqs, 1),
            BlockOp::Other => {}
        }
    }

    /// Bytes read, for a front-end that counts the request and its data apart (IDE PIO).
    pub fn read_bytes(&self, bytes: u64) {
        add(&self.rd_bytes, bytes);
    }

    /// Bytes written, for a front-end that counts the request and its data apart.
    pub fn write_bytes(&self, bytes: u64) {
        add(&self.wr_bytes, bytes);
    }

    /// A request that failed.
    pub fn error(&self) {
        add(&self.errors, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> BlockCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BlockCounters {
            rd_reqs: get(&self.rd_reqs),
            rd_bytes: get(&self.rd_bytes),
            wr_reqs: get(&self.wr_reqs),
            wr_bytes: get(&self.wr_bytes),
            fl_reqs: get(&self.fl_reqs),
            errors: get(&self.errors),
        }
    }
}

/// Counters of one network interface, from the guest's side: `rx` is towards the guest.
#[derive(Debug, Default)]
pub struct NetStats {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
}

/// The values of a [`NetStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Bytes of those frames (without the virtio-net header).
    pub rx_bytes: u64,
    /// Frames for the guest dropped (no room, too big, missed).
    pub rx_dropped: u64,
    /// Frames the guest sent that reached the backend.
    pub tx_packets: u64,
    /// Bytes of those frames (without the virtio-net header).
    pub tx_bytes: u64,
    /// Frames the guest sent that were dropped (malformed, or refused by the backend).
    pub tx_dropped: u64,
}

impl NetStats {
    /// A frame of `bytes` delivered to the guest.
    pub fn rx(&self, bytes: u64) {
        add(&self.rx_packets, 1);
        add(&self.rx_bytes, bytes);
    }

    /// A frame for the guest dropped.
    pub fn rx_drop(&self) {
        add(&self.rx_dropped, 1);
    }

    /// A frame of `bytes` from the guest sent on.
    pub fn tx(&self, bytes: u64) {
        add(&self.tx_packets, 1);
        add(&self.tx_bytes, bytes);
    }

    /// A frame from the guest dropped.
    pub fn tx_drop(&self) {
        add(&self.tx_dropped, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> NetCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetCounters {
            rx_packets: get(&self.rx_packets),
            rx_bytes: get(&self.rx_bytes),
            rx_dropped: get(&self.rx_dropped),
            tx_packets: get(&self.tx_packets),
            tx_bytes: get(&self.tx_bytes),
            tx_dropped: get(&self.tx_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counters_add_up_by_kind() {
        let s = BlockStats::default();
        s.record(BlockOp::Read, 4096);
        s.record(BlockOp::Read, 512);
        s.record(BlockOp::Write, 1024);
        s.record(BlockOp::Flush, 0);
        s.record(BlockOp::Other, 20);
        s.error();
        s.read_bytes(1);
        s.write_bytes(2);
        let c = s.snapshot();
        assert_eq!(
            c,
            BlockCounters { rd_reqs: 2, rd_bytes: 4609, wr_reqs: 1, wr_bytes: 1026, fl_reqs: 1, errors: 1 }
        );
    }

    #[test]
    fn net_counters_add_up_by_direction() {
        let s = NetStats::default();
        s.rx(60);
        s.rx(1514);
        s.rx_drop();
        s.tx(42);
        s.tx_drop();
        s.tx_drop();
        let c = s.snapshot();
        assert_eq!((c.rx_packets, c.rx_bytes, c.rx_dropped), (2, 1574, 1));
        assert_eq!((c.tx_packets, c.tx_bytes, c.tx_dropped), (1, 42, 2));
    }

    #[test]
    fn counters_are_shared_across_threads() {
        let s = std::sync::Arc::new(NetStats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| s.tx(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(s.snapshot().tx_packets, 4000);
        assert_eq!(s.snapshot().tx_bytes, 4000);
    }
}
