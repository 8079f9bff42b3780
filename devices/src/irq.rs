// SPDX-License-Identifier: Apache-2.0
//! Interrupt lines as devices see them.

use std::sync::Arc;

/// One interrupt input of the platform's interrupt controllers.
pub trait IrqLine: Send + Sync {
    /// Raises an edge (for edge-triggered sources such as the ISA UART).
    fn pulse(&self);
    /// Drives a level-triggered line high or low.
    fn set_level(&self, high: bool);
}

/// Adapts an [`IrqLine`] to vm-superio's `Trigger`, which signals edges.
#[derive(Clone)]
pub struct IrqTrigger(pub Arc<dyn IrqLine>);

impl vm_superio::Trigger for IrqTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.pulse();
        Ok(())
    }
}

/// Test helper: an interrupt line that records what happened to it.
#[cfg(test)]
pub mod test_util {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// Counts pulses and remembers the level.
    #[derive(Default)]
    pub struct FakeIrq {
        /// Number of edges raised.
        pub pulses: AtomicU32,
        /// The current level.
        pub level: AtomicBool,
    }

    impl super::IrqLine for FakeIrq {
        fn pulse(&self) {
            self.pulses.fetch_add(1, Ordering::SeqCst);
        }
        fn set_level(&self, high: bool) {
            self.level.store(high, Ordering::SeqCst);
        }
    }

    impl FakeIrq {
        /// Edges so far.
        pub fn pulses(&self) -> u32 {
            self.pulses.load(Ordering::SeqCst)
        }
        /// Current level.
        pub fn level(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }
    }
}
