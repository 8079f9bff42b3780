// SPDX-License-Identifier: Apache-2.0
//! Wire types of the `vmctld` HTTP API (`/v1`), shared by the daemon and `vmctl`.
//!
//! Every error is a JSON body [`ErrorBody`] with an HTTP status: 400 bad input, 404 no such
//! VM, 409 the VM is in the wrong state or the definition conflicts with another, 500 the
//! host failed. `vmctl` maps them to its exit codes (see [`exit_code_for_status`]).

use serde::{Deserialize, Serialize};
use vmdef::store::RunState;
use vmdef::VmDef;

/// API version prefix.
pub const PREFIX: &str = "/v1";

/// Header value `vmctl` and `vmctld` use to upgrade `GET /v1/vms/{name}/console`.
pub const CONSOLE_PROTOCOL: &str = "vmctl-console";

/// One VM in `GET /v1/vms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Current state.
    pub state: RunState,
    /// Process id of its `vmm`, while one runs.
    pub pid: Option<u32>,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Started when the daemon starts.
    pub autostart: bool,
    /// Why the VM last stopped, if known.
    pub exit_reason: Option<String>,
}

/// `GET /v1/vms/{name}`: the state and the stored definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmDetail {
    /// State.
    pub info: VmInfo,
    /// The definition as stored.
    pub definition: VmDef,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where possible, how to fix it.
    pub error: String,
}

/// What happened in an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A definition was stored (new or replaced).
    Defined,
    /// A definition was removed.
    Undefined,
    /// A VM process was started.
    Started,
    /// A running VM process was found again after a daemon restart.
    Adopted,
    /// The vCPUs were stopped.
    Paused,
    /// The vCPUs run again.
    Resumed,
    /// The VM process exited normally or was stopped.
    Stopped,
    /// The VM process died or the guest crashed.
    Crashed,
}

/// One line of `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The VM.
    pub vm: String,
    /// What happened.
    pub event: EventKind,
    /// The state after it.
    pub state: RunState,
    /// Exit reason or other detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `vmctl` exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (daemon unreachable, host error).
    pub const ERROR: u8 = 1;
    /// Bad input: a definition or argument that does not parse or validate.
    pub const BAD_INPUT: u8 = 2;
    /// No such VM.
    pub const NOT_FOUND: u8 = 3;
    /// Conflict or wrong state (already running, not running, name taken).
    pub const CONFLICT: u8 = 4;
}

/// The `vmctl` exit code for an HTTP status of the API.
pub fn exit_code_for_status(status: u16) -> u8 {
    match status {
        200..=299 => exit::OK,
        400 | 413 | 415 | 422 => exit::BAD_INPUT,
        404 => exit::NOT_FOUND,
        409 => exit::CONFLICT,
        _ => exit::ERROR,
    }
}

/// The state name as `vmctl list` prints it.
pub fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Shutoff => "shut off",
        RunState::Crashed => "crashed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes() {
        assert_eq!(exit_code_for_status(200), 0);
        assert_eq!(exit_code_for_status(201), 0);
        assert_eq!(exit_code_for_status(400), 2);
        assert_eq!(exit_code_for_status(415), 2);
        assert_eq!(exit_code_for_status(404), 3);
        assert_eq!(exit_code_for_status(409), 4);
        assert_eq!(exit_code_for_status(500), 1);
    }

    #[test]
    fn event_round_trips_as_one_json_line() {
        let e = Event {
            time: 5,
            vm: "a".into(),
            event: EventKind::Crashed,
            state: RunState::Crashed,
            detail: Some("x".into()),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(!s.contains('\n'));
        assert!(s.contains(r#""event":"crashed""#));
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    }
}
