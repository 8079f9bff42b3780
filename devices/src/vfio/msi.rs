// SPDX-License-Identifier: Apache-2.0
//! The MSI capability of an assigned function (PCI Local Bus Specification 3.0, section
//! 6.8.1), emulated: the guest's message address, data and enables are read from the
//! virtualized configuration space, each enabled vector gets a route in the VMM's
//! [`MsiVectors`], and the host delivers the device's vector `i` to the irqfd of vector `i`.
//! With per-vector masking, the mask bits go to [`MsiVectors::set_masked`] (the host's signals
//! of a masked vector are held back) and the pending bits read what is held back.

use std::sync::Arc;

use super::config::{MsiCapInfo, VirtualConfig};
use crate::interrupt::{MsiMessage, MsiVectors};

/// The guest's MSI programming, as the capability holds it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiProgram {
    /// MSI enable.
    pub enabled: bool,
    /// Vectors enabled (multiple message enable, limited to what the device can do).
    pub vectors: u32,
    /// Message address.
    pub address: u64,
    /// Message data of vector 0; vector `i` replaces its low bits with `i`.
    pub data: u16,
}

impl MsiProgram {
    /// Reads the capability `cap` of `cfg`.
    pub fn read(cfg: &VirtualConfig, cap: &MsiCapInfo) -> Self {
        let control = cfg.shadow_bytes(cap.offset + 2, 2);
        let low = cfg.shadow_bytes(cap.offset + 4, 4);
        let high = if cap.is64 { cfg.shadow_bytes(cap.offset + 8, 4) } else { 0 };
        let mme = (control >> 4) & 0x7;
        MsiProgram {
            enabled: control & 1 != 0,
            vectors: (1u32 << mme.min(5)).min(cap.max_vectors),
            address: u64::from(low) | (u64::from(high) << 32),
            data: cfg.shadow_bytes(cap.data_offset(), 2) as u16,
        }
    }

    /// The message of vector `i` (below `vectors`, a power of two).
    pub fn message(&self, i: u32) -> MsiMessage {
        let low_bits = self.vectors.saturating_sub(1);
        MsiMessage { address: self.address, data: (u32::from(self.data) & !low_bits) | (i & low_bits) }
    }
}

/// The MSI state of one function: what is routed now.
pub struct MsiState {
    cap: MsiCapInfo,
    vectors: Arc<dyn MsiVectors>,
    /// What was routed at the last change (`None`: MSI off).
    active: Option<MsiProgram>,
    /// The mask bits as last told to `vectors` (bit `i`: vector `i` masked).
    told_masked: u32,
}

/// What the device must do with the host after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiChange {
    /// Nothing for the host.
    None,
    /// Deliver the first `n` vectors (MSI was turned on).
    Enable(u32),
    /// Stop delivering (MSI was turned off).
    Disable,
}

impl MsiState {
    /// MSI off, with `vectors` to deliver through.
    pub fn new(cap: MsiCapInfo, vectors: Arc<dyn MsiVectors>) -> Self {
        MsiState { cap, vectors, active: None, told_masked: 0 }
    }

    /// Register index (dword) of the mask bits, with per-vector masking.
    pub fn mask_reg(&self) -> Option<usize> {
        self.cap.masking.then(|| (self.cap.data_offset() + 4) / 4)
    }

    /// Register index (dword) of the pending bits, with per-vector masking.
    pub fn pending_reg(&self) -> Option<usize> {
        self.mask_reg().map(|r| r + 1)
    }

    /// The pending bits: vectors masked now whose host signals are held back.
    pub fn pending_bits(&self) -> u32 {
        (0..32)
            .filter(|&i| self.told_masked & (1 << i) != 0 && self.vectors.pending(i as usize))
            .fold(0, |bits, i| bits | (1 << i))
    }

    /// Tells the vectors the mask bits of the capability (per-vector masking only) while MSI
    /// is `enabled`; with MSI off nothing is masked (MSI-X shares the vectors).
    fn sync_masks(&mut self, cfg: &VirtualConfig, enabled: bool) {
        let Some(reg) = self.mask_reg() else { return };
        let bits = if enabled { cfg.shadow_bytes(reg * 4, 4) } else { 0 };
        let count = self.vectors.len().min(32);
        for i in 0..count {
            let bit = 1u32 << i;
            let masked = bits & bit != 0;
            if (self.told_masked & bit != 0) == masked {
                continue;
            }
            match self.vectors.set_masked(i, masked) {
                Ok(()) => self.told_masked ^= bit,
                Err(e) => crate::warn_limited!("vfio: MSI vector {i} mask not applied: {e}"),
            }
        }
    }

    /// Whether MSI is on.
    pub fn enabled(&self) -> bool {
        self.active.is_some()
    }

    /// Takes the capability's state after a guest write: routes vectors when MSI goes on or
    /// its message changes, clears them when it goes off.
    pub fn update(&mut self, cfg: &VirtualConfig) -> MsiChange {
        let program = MsiProgram::read(cfg, &self.cap);
        let usable = u32::try_from(self.vectors.len()).unwrap_or(u32::MAX);
        let program = MsiProgram { vectors: program.vectors.min(usable.max(1)), ..program };
        self.sync_masks(cfg, program.enabled);
        match (self.active, program.enabled) {
            (None, false) => MsiChange::None,
            (None, true) => {
                self.route(&program);
                self.active = Some(program);
                MsiChange::Enable(program.vectors)
            }
            (Some(old), true) => {
                if old != program {
                    if program.vectors != old.vectors {
                        // The guest changed the vector count while enabled (software should not):
                        // routes follow, the host keeps the vectors it was given.
                        crate::warn_limited!("vfio: MSI vector count changed while enabled");
                    }
                    self.route(&program);
                    self.active = Some(program);
                }
                MsiChange::None
            }
            (Some(old), false) => {
                self.clear(old.vectors);
                self.active = None;
                MsiChange::Disable
            }
        }
    }

    /// MSI off without telling the host (the device is being reset); mask bits clear, as
    /// the reset configuration space has them.
    pub fn reset(&mut self) {
        if let Some(old) = self.active.take() {
            self.clear(old.vectors);
        }
        for i in 0..self.vectors.len().min(32) {
            if self.told_masked & (1 << i) != 0 && self.vectors.set_masked(i, false).is_ok() {
                self.told_masked &= !(1 << i);
            }
        }
    }

    fn route(&self, program: &MsiProgram) {
        for i in 0..program.vectors {
            if let Err(e) = self.vectors.set_route(i as usize, program.message(i)) {
                crate::warn_limited!("vfio: MSI vector {i} not routed: {e}");
            }
        }
    }

    fn clear(&self, count: u32) {
        for i in 0..count {
            if let Err(e) = self.vectors.clear_route(i as usize) {
                crate::warn_limited!("vfio: MSI vector {i} route not cleared: {e}");
            }
        }
    }
}
