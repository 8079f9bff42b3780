// SPDX-License-Identifier: Apache-2.0
//! The snapshot seam: a device's state out as a serde value, and back in.
//!
//! A snapshot is the vCPUs' state, each device's [`Persist::save`] and guest memory, taken
//! while the vCPUs are paused; restoring builds the same machine from the same configuration
//! and hands each device its state. The same walk will serve live migration.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The device cannot describe its state (a device type without snapshot support).
    #[error("{0} cannot be saved")]
    Unsupported(String),
    /// The state does not fit this device (another model, queue count or size).
    #[error("the state does not fit {device}: {why}")]
    Mismatch {
        /// The device.
        device: String,
        /// What differs.
        why: String,
    },
    /// The device could not be started again with the restored state.
    #[error("cannot resume {device}: {why}")]
    Resume {
        /// The device.
        device: String,
        /// What failed.
        why: String,
    },
}

/// A device whose state can be saved and restored.
pub trait Persist {
    /// The state, as plain data.
    type State: Serialize + DeserializeOwned;
    /// The state now. The machine is paused, so nothing changes it meanwhile.
    fn save(&self) -> Result<Self::State, PersistError>;
    /// Takes `state`, saved from a device built from the same configuration.
    fn restore(&mut self, state: &Self::State) -> Result<(), PersistError>;
}

/// Test helper: saves, serializes to JSON and back, restores into `fresh`, and checks that
/// `fresh` then saves the same state.
#[cfg(test)]
pub fn round_trip<D: Persist>(dev: &D, fresh: &mut D) -> D::State
where
    D::State: PartialEq + std::fmt::Debug,
{
    let state = dev.save().expect("save");
    let json = serde_json::to_string(&state).expect("serialize");
    let back: D::State = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, state, "JSON round trip");
    fresh.restore(&back).expect("restore");
    assert_eq!(fresh.save().expect("save again"), state, "restored device saves the same state");
    state
}
