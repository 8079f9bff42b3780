// SPDX-License-Identifier: Apache-2.0
//! The legacy PC motherboard devices.

pub mod acpi_pm;
pub mod cmos_rtc;
pub mod debugcon;
pub mod fw_cfg;
pub mod i8042;
pub mod port80;
pub mod port92;
pub mod uart16550;

/// A request a device makes of the whole machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformRequest {
    /// Turn the machine off (ACPI S5).
    PowerOff,
    /// Reset the machine (keyboard-controller reset line, reset register).
    Reset,
}

/// Where devices send [`PlatformRequest`]s; implemented by the VMM.
pub trait PlatformControl: Send + Sync {
    /// Asks for a power-off or reset; it takes effect once every vCPU has stopped.
    fn request(&self, request: PlatformRequest);
}

/// Test helper: records requests.
#[cfg(test)]
pub mod test_util {
    use std::sync::Mutex;

    /// Remembers every request.
    #[derive(Default)]
    pub struct Recorder(pub Mutex<Vec<super::PlatformRequest>>);

    impl super::PlatformControl for Recorder {
        fn request(&self, request: super::PlatformRequest) {
            self.0.lock().unwrap().push(request);
        }
    }

    impl Recorder {
        /// Requests so far.
        pub fn seen(&self) -> Vec<super::PlatformRequest> {
            self.0.lock().unwrap().clone()
        }
    }
}
