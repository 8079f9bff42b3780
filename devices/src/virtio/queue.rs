// SPDX-License-Identifier: Apache-2.0
//! What every device worker does with a split queue: take the available chains, complete
//! them, suppress or send notifications as the driver asked (EVENT_IDX), and treat a queue
//! the driver corrupted as broken (the device asks for a reset and ignores the queue until
//! it gets one).

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{ActiveQueue, VirtioInterrupt, VirtioInterruptKind};

/// The driver corrupted queue `index`: logged (rate limited) and a reset requested.
pub fn queue_broken(label: &str, interrupt: &dyn VirtioInterrupt, index: u16, e: &dyn std::fmt::Display) {
    crate::warn_limited!("{label}: queue {index}: {e}; the device needs a reset");
    interrupt.needs_reset();
}

/// Signals the driver that `q` has used buffers, unless it asked not to be.
pub fn notify(label: &str, interrupt: &dyn VirtioInterrupt, q: &mut ActiveQueue, mem: &GuestMemoryMmap) {
    match q.queue.needs_notification(mem) {
        Ok(true) => interrupt.signal(VirtioInterruptKind::Queue(q.index)),
        Ok(false) => {}
        Err(e) => {
            crate::warn_limited!("{label}: queue {}: {e}", q.index);
            interrupt.signal(VirtioInterruptKind::Queue(q.index));
        }
    }
}

/// Completes every available chain of `q` with `serve` (which returns the used length), then
/// notifies the driver if it wants to be. Returns the number of chains, or `None` if the
/// queue is broken (the driver was asked to reset the device; the queue is ignored until it
/// does).
pub fn drain_queue(
    label: &str,
    mem: &GuestMemoryMmap,
    q: &mut ActiveQueue,
    interrupt: &dyn VirtioInterrupt,
    mut serve: impl FnMut(DescriptorChain<&GuestMemoryMmap>) -> u32,
) -> Option<usize> {
    let index = q.index;
    let broken = |e: &dyn std::fmt::Display| queue_broken(label, interrupt, index, e);
    let mut used = 0usize;
    loop {
        let chains: Vec<_> = match q.queue.iter(mem) {
            Ok(iter) => iter.collect(),
            Err(e) => {
                broken(&e);
                return None;
            }
        };
        if chains.is_empty() && !q.queue.event_idx_enabled() {
            break;
        }
        used += chains.len();
        for chain in chains {
            let head = chain.head_index();
            let len = serve(chain);
            if let Err(e) = q.queue.add_used(mem, head, len) {
                broken(&e);
                return None;
            }
        }
        if !q.queue.event_idx_enabled() {
            continue;
        }
        // With event indexes: ask to be kicked for the next chain, then look once more, so a
        // chain made available in between is not left waiting for a kick that never comes.
        match q.queue.enable_notification(mem) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                broken(&e);
                return None;
            }
        }
    }
    if used > 0 {
        notify(label, interrupt, q, mem);
    }
    Some(used)
}
