// SPDX-License-Identifier: Apache-2.0
//! Wire types of the `vmctld` HTTP API (`/v1`), shared by the daemon and `vmctl`.
//!
//! Every error is a JSON body [`ErrorBody`] with an HTTP status: 400 bad input, 404 no such
//! VM, pool, volume or network, 409 the VM is in the wrong state, the definition conflicts with
//! another, or the volume is in use or a template, 500 the host failed. `vmctl` maps them to its exit codes (see [`exit_code_for_status`]).

use serde::{Deserialize, Serialize};
use vmdef::store::RunState;
use vmdef::VmDef;

/// API version prefix.
pub const PREFIX: &str = "/v1";

/// Header value `vmctl` and `vmctld` use to upgrade `GET /v1/vms/{name}/console`.
pub const CONSOLE_PROTOCOL: &str = "vmctl-console";

/// Header value `vmctl` and `vmctld` use to upgrade `GET /v1/vms/{name}/vnc` to the raw RFB
/// stream of the VM's VNC server.
pub const VNC_PROTOCOL: &str = "vmctl-vnc";

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
    /// Where its VNC server listens while it runs (`127.0.0.1:5900`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc: Option<std::net::SocketAddr>,
    /// The unix socket its VNC server listens on while it runs, when it has no VNC password
    /// (reach it with `vmctl vnc NAME`, through `GET /v1/vms/{name}/vnc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_socket: Option<std::path::PathBuf>,
    /// Only in the answer to a define: what of a libvirt XML was ignored or adapted, each
    /// with its line (`line 12, column 5: <memballoon> is ignored: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /v1/vms/{name}`: the state and the stored definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmDetail {
    /// State.
    pub info: VmInfo,
    /// The definition as stored.
    pub definition: VmDef,
}

/// One pool in `GET /v1/pools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// Name.
    pub name: String,
    /// Its directory (absolute).
    pub path: String,
    /// Number of volumes.
    pub volumes: usize,
    /// Bytes free for unprivileged users on its file system, if known.
    pub available: Option<u64>,
}

/// Image format of a new volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VolFormat {
    /// A flat (sparse) image.
    #[default]
    Raw,
    /// QEMU copy-on-write v3.
    Qcow2,
}

impl From<VolFormat> for block::ImageFormat {
    fn from(f: VolFormat) -> Self {
        match f {
            VolFormat::Raw => block::ImageFormat::Raw,
            VolFormat::Qcow2 => block::ImageFormat::Qcow2,
        }
    }
}

/// A size in a request: bytes, or a string with a binary unit (`"10G"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Text such as `"512M"` or `"10G"` (units K, M, G, T are powers of 1024).
    Text(String),
}

/// One volume in `GET /v1/pools/{pool}/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// File name.
    pub name: String,
    /// Pool.
    pub pool: String,
    /// Absolute path: what a VM definition's disk `path` names.
    pub path: String,
    /// `raw` or `qcow2`.
    pub format: VolFormat,
    /// Size the guest sees, in bytes.
    pub virtual_size: u64,
    /// Bytes the file occupies on the host.
    pub allocated: u64,
    /// The backing file as its qcow2 header names it (a linked clone's template).
    pub backing_file: Option<String>,
    /// Volumes of the pool backed by this one (its linked clones): it is a template.
    pub overlays: Vec<String>,
    /// VMs whose definitions name this file as a disk.
    pub used_by: Vec<String>,
}

/// Body of `POST /v1/pools/{pool}/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// File name in the pool.
    pub name: String,
    /// Virtual size.
    pub size: Size,
    /// Format; default raw.
    #[serde(default)]
    pub format: VolFormat,
}

/// Body of `POST /v1/pools/{pool}/volumes/{name}/resize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// The new virtual size; larger than the current one.
    pub size: Size,
}

/// Body of `POST /v1/pools/{pool}/volumes/{name}/clone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneVolume {
    /// Name of the new overlay volume.
    pub name: String,
}

/// One network in `GET /v1/networks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Started: its bridge, nftables table and dnsmasq exist.
    pub active: bool,
    /// Started when the daemon starts.
    pub autostart: bool,
    /// The host bridge.
    pub bridge: String,
    /// The host's address and prefix on the bridge, e.g. `10.77.0.1/24`.
    pub ipv4: String,
    /// Masquerade to the uplink.
    pub nat: bool,
    /// The dynamic DHCP range as `start-end`, if any.
    pub dhcp: Option<String>,
    /// Number of port forwards.
    pub forwards: usize,
    /// dnsmasq's pid while active.
    pub dnsmasq_pid: Option<u32>,
    /// VMs whose definitions have an interface on it.
    pub used_by: Vec<String>,
}

/// `GET /v1/networks/{name}`: the state and the stored definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetDetail {
    /// State.
    pub info: NetInfo,
    /// The definition as stored.
    pub definition: vmdef::network::NetDef,
}

/// The role of a user or API token of the HTTPS listener (the socket's roles, see
/// `docs/vmctl.md`, "HTTPS, users and tokens").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccountRole {
    /// Everything.
    Admin,
    /// Read, consoles and the power operations.
    Operator,
}

impl AccountRole {
    /// The name used in JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            AccountRole::Admin => "admin",
            AccountRole::Operator => "operator",
        }
    }
}

/// A user or API token as `GET /v1/users` and `GET /v1/tokens` show it (never a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The name.
    pub name: String,
    /// What it may do.
    pub role: AccountRole,
    /// When it was made (Unix seconds).
    pub created: u64,
}

/// `POST /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The user name, `[a-z_][a-z0-9_-]{0,31}`.
    pub name: String,
    /// The role.
    pub role: AccountRole,
    /// The password (at least 8 characters).
    pub password: String,
}

/// `PUT /v1/users/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password (at least 8 characters).
    pub password: String,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The token's name, `[a-z_][a-z0-9_-]{0,31}`.
    pub name: String,
    /// The role.
    pub role: AccountRole,
}

/// The answer to `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token's name, role and time.
    #[serde(flatten)]
    pub info: AccountInfo,
    /// The secret, for `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// `POST /v1/session`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// `GET /v1/session` and the answer to `POST /v1/session`: who the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The user name (the Unix user over the socket, the token's name for a token).
    pub user: String,
    /// `admin`, `operator` or `none`.
    pub role: String,
    /// How the caller was identified: `peer` (socket credentials), `session` or `token`.
    pub auth: String,
    /// For a session: the value every request but GET must carry in `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub csrf_token: Option<String>,
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
    /// No such VM, pool or volume.
    pub const NOT_FOUND: u8 = 3;
    /// Conflict or wrong state (already running, not running, name taken, volume in use or
    /// a template).
    pub const CONFLICT: u8 = 4;
    /// Refused: the caller's user or group may not do that (HTTP 403).
    pub const FORBIDDEN: u8 = 5;
}

/// The `vmctl` exit code for an HTTP status of the API.
pub fn exit_code_for_status(status: u16) -> u8 {
    match status {
        200..=299 => exit::OK,
        400 | 413 | 415 | 422 => exit::BAD_INPUT,
        404 => exit::NOT_FOUND,
        409 => exit::CONFLICT,
        403 => exit::FORBIDDEN,
        _ => exit::ERROR,
    }
}

/// `GET /v1/vms/{name}/stats`: the VMM's counters now and, with `?history=hour|day`, the
/// samples vmctld keeps (every 10 s for the last hour, every minute for the last day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStatsReport {
    /// The VM.
    pub name: String,
    /// Its state.
    pub state: RunState,
    /// Unix time of `current`, in seconds.
    pub time: u64,
    /// The counters since the VMM started, read now; absent when no VMM runs or it did not
    /// answer (`error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<::api::control::VmStats>,
    /// Why `current` is absent although the VM runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The latest rates (the newest 10-second sample), once two samples were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<StatsSample>,
    /// Seconds between the samples of `history` (10 or 60), with `history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// The samples asked for with `?history=`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StatsSample>,
}

/// Rates over one sampling interval, summed over the VM's disks and NICs. Rates are never
/// negative: an interval in which the VMM restarted counts from zero over the new VMM's
/// uptime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSample {
    /// Unix time at the end of the interval, in seconds.
    pub time: u64,
    /// CPU use of the VMM process, in percent of one host CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    /// CPU use of the vCPU threads together, in percent of one host CPU.
    pub vcpu_percent: f64,
    /// Resident memory of the VMM at the end of the interval, in bytes.
    pub rss_bytes: u64,
    /// Disk bytes read per second.
    pub rd_bytes_per_s: f64,
    /// Disk bytes written per second.
    pub wr_bytes_per_s: f64,
    /// Disk requests (reads, writes, flushes) per second.
    pub disk_reqs_per_s: f64,
    /// Network bytes to the guest per second.
    pub rx_bytes_per_s: f64,
    /// Network bytes from the guest per second.
    pub tx_bytes_per_s: f64,
    /// Frames both ways per second.
    pub pkts_per_s: f64,
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
