// SPDX-License-Identifier: Apache-2.0
//! The control socket protocol (`vmm --control PATH`): one JSON object per line each way.
//!
//! | request | response |
//! | --- | --- |
//! | `{"cmd":"status"}` | `{"state":"running"\|"paused","pid":N,"boots":N}` |
//! | `{"cmd":"powerbutton"}` | `{"ok":true}`: an ACPI power-button press |
//! | `{"cmd":"stop"}` | `{"ok":true}`, then the VMM exits with status 130 (as on SIGTERM) |
//! | `{"cmd":"reset"}` | `{"ok":true}`: the current boot ends and the machine boots again |
//! | `{"cmd":"pause"}` / `{"cmd":"resume"}` | `{"ok":true}` |
//! | `{"cmd":"screendump","path":"/x.png"}` | `{"ok":true}` |
//! | `{"cmd":"sendkey","keys":"text"}` | `{"ok":true}`: the text typed on the PS/2 keyboard |
//! | `{"cmd":"devices"}` | `{"devices":[{"id":"vda","kind":"virtio-blk","pci":"00:07.0","detail":"..."},...]}` |
//! | `{"cmd":"stats"}` | [`VmStats`]: `{"uptime_ms":N,"cpu_time_ns":N,"vcpu_time_ns":[N,...],"rss_bytes":N,"memory_bytes":N,"disks":[...],"nics":[...]}` |
//!
//! Any failure is `{"error":"..."}`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// The VM's state.
    Status,
    /// Press the ACPI power button.
    Powerbutton,
    /// End the VMM (exit status 130).
    Stop,
    /// End the current boot and boot again.
    Reset,
    /// Stop the vCPUs; the process stays.
    Pause,
    /// Restart the vCPUs after `pause`.
    Resume,
    /// Save the display as a PNG file.
    Screendump {
        /// Where, as the VMM sees the file system.
        path: PathBuf,
    },
    /// Type text on the guest's keyboard.
    Sendkey {
        /// The text.
        keys: String,
    },
    /// The machine's devices, by id.
    Devices,
    /// CPU time, memory and the I/O counters of the disks and NICs.
    Stats,
}

impl Request {
    /// The `cmd` of the request: `status`, `stop`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Powerbutton => "powerbutton",
            Request::Stop => "stop",
            Request::Reset => "reset",
            Request::Pause => "pause",
            Request::Resume => "resume",
            Request::Screendump { .. } => "screendump",
            Request::Sendkey { .. } => "sendkey",
            Request::Devices => "devices",
            Request::Stats => "stats",
        }
    }

    /// The request as one line of JSON (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Whether the vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Running.
    Running,
    /// Paused by a `pause` request.
    Paused,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Running or paused.
    pub state: RunState,
    /// The VMM's pid.
    pub pid: u32,
    /// Boots so far (the first is 1; a reset or guest reboot adds one).
    pub boots: u32,
}

/// One device of the machine, as `devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Unique within the VM: `vda`, `net0`, `ide0-0`, `com1`...
    pub id: String,
    /// What it is: `virtio-blk`, `e1000`, `piix3-ide`, `uart16550`...
    pub kind: String,
    /// Its PCI address on bus 0 (`00:07.0`), for PCI functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// What is behind it: the image, the tap, the port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The answer to `stats`: counters since the VMM started (they never go back while it runs;
/// a new VMM process starts them again at zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStats {
    /// Milliseconds since the VMM started.
    pub uptime_ms: u64,
    /// CPU time of the whole VMM process (vCPUs, device threads, user and system), in ns.
    pub cpu_time_ns: u64,
    /// CPU time of each vCPU thread, in ns, by vCPU index (empty before the vCPUs start).
    pub vcpu_time_ns: Vec<u64>,
    /// Resident memory of the VMM process in bytes (guest RAM the guest touched, plus the
    /// VMM's own), if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// Every disk, in device-id order.
    pub disks: Vec<DiskStats>,
    /// Every NIC, in device-id order.
    pub nics: Vec<NicStats>,
}

/// Counters of one disk in [`VmStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    /// The device id (`vda`, `ide0-0`), as `devices` lists it.
    pub id: String,
    /// The model (`virtio-blk`, `ide-disk`, `ide-cdrom`).
    pub kind: String,
    /// Read requests.
    pub rd_reqs: u64,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Write requests.
    pub wr_reqs: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Flushes.
    pub fl_reqs: u64,
    /// Failed requests.
    pub errors: u64,
}

/// Counters of one NIC in [`VmStats`], from the guest's side (`rx`: frames to the guest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicStats {
    /// The device id (`net0`).
    pub id: String,
    /// The model (`virtio-net`, `e1000`).
    pub kind: String,
    /// Frames the VMM does not see: with vhost-net the host kernel moves them, and the
    /// counters below stay at zero (the tap's own counters are in the host's sysfs, out of
    /// the VMM's reach).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_kernel: bool,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Their bytes (Ethernet frames, without virtio-net header or CRC).
    pub rx_bytes: u64,
    /// Frames for the guest dropped.
    pub rx_dropped: u64,
    /// Frames the guest sent.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the guest sent that were dropped.
    pub tx_dropped: u64,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// The request failed.
    Error {
        /// What went wrong.
        error: String,
    },
    /// The answer to `status`.
    Status(Status),
    /// The answer to `devices`.
    Devices {
        /// In id order.
        devices: Vec<DeviceInfo>,
    },
    /// The answer to `stats`.
    Stats(VmStats),
    /// Done (`{"ok":true}`).
    Ok {
        /// Always true.
        ok: bool,
    },
}

impl Response {
    /// `{"ok":true}`.
    pub fn ok() -> Response {
        Response::Ok { ok: true }
    }

    /// `{"error":msg}`.
    pub fn error(msg: impl Into<String>) -> Response {
        Response::Error { error: msg.into() }
    }

    /// The response as one line of JSON (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_cmd() {
        assert_eq!(Request::Status.to_line(), r#"{"cmd":"status"}"#);
        assert_eq!(
            Request::Screendump { path: "/x.png".into() }.to_line(),
            r#"{"cmd":"screendump","path":"/x.png"}"#
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"sendkey","keys":"root\n"}"#).unwrap();
        assert_eq!(r, Request::Sendkey { keys: "root\n".into() });
        assert_eq!(r.name(), "sendkey");
        for bad in [r#"{"cmd":"fly"}"#, r#"{"cmd":"screendump"}"#, "x"] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stats_round_trip_and_are_told_apart() {
        assert_eq!(Request::Stats.to_line(), r#"{"cmd":"stats"}"#);
        assert_eq!(Request::Stats.name(), "stats");
        let s = Response::Stats(VmStats {
            uptime_ms: 1500,
            cpu_time_ns: 9,
            vcpu_time_ns: vec![4, 5],
            rss_bytes: Some(4096),
            memory_bytes: 1 << 30,
            disks: vec![DiskStats {
                id: "vda".into(),
                kind: "virtio-blk".into(),
                rd_reqs: 1,
                rd_bytes: 512,
                ..Default::default()
            }],
            nics: vec![NicStats {
                id: "net0".into(),
                kind: "virtio-net".into(),
                in_kernel: true,
                ..Default::default()
            }],
        });
        let line = s.to_line();
        assert!(
            line.starts_with(r#"{"uptime_ms":1500,"cpu_time_ns":9,"vcpu_time_ns":[4,5],"rss_bytes":4096,"#),
            "{line}"
        );
        assert!(
            line.contains(
                r#""disks":[{"id":"vda","kind":"virtio-blk","rd_reqs":1,"rd_bytes":512,"wr_reqs":0,"#
            ),
            "{line}"
        );
        assert!(line.contains(r#""in_kernel":true"#), "{line}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), s);
        // Without RSS and with a NIC whose frames the VMM sees, both keys are left out.
        let quiet = Response::Stats(VmStats { nics: vec![NicStats::default()], ..Default::default() });
        let line = quiet.to_line();
        assert!(!line.contains("rss_bytes") && !line.contains("in_kernel"), "{line}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), quiet);
        // Neither a status nor ok is mistaken for stats, nor the other way round.
        let ok: Response = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert_eq!(ok, Response::ok());
    }

    #[test]
    fn responses_are_told_apart_by_their_fields() {
        let s = Response::Status(Status { state: RunState::Paused, pid: 7, boots: 2 });
        assert_eq!(s.to_line(), r#"{"state":"paused","pid":7,"boots":2}"#);
        assert_eq!(Response::ok().to_line(), r#"{"ok":true}"#);
        assert_eq!(Response::error("no").to_line(), r#"{"error":"no"}"#);
        let d = Response::Devices {
            devices: vec![DeviceInfo {
                id: "vda".into(),
                kind: "virtio-blk".into(),
                pci: Some("00:07.0".into()),
                detail: "/x.qcow2".into(),
            }],
        };
        assert_eq!(
            d.to_line(),
            r#"{"devices":[{"id":"vda","kind":"virtio-blk","pci":"00:07.0","detail":"/x.qcow2"}]}"#
        );
        assert_eq!(Request::Devices.to_line(), r#"{"cmd":"devices"}"#);
        for r in [s, Response::ok(), Response::error("no"), d] {
            assert_eq!(serde_json::from_str::<Response>(&r.to_line()).unwrap(), r);
        }
    }
}
