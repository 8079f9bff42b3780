// SPDX-License-Identifier: Apache-2.0
//! `vmctl hostdev list|bind|unbind` and `vmctl host check`: run on this host, from sysfs,
//! without the daemon.

use std::path::Path;
use std::process::ExitCode;

use super::output::table;
use super::HostdevCmd;
use crate::api::exit;
use crate::hostdev::{self, HostdevError};

const SYS: &str = "/sys";
const PROC: &str = "/proc";

fn fail(json: bool, code: u8, message: &str) -> ExitCode {
    if json {
        eprintln!("{}", serde_json::json!({ "error": message, "code": code }));
    } else {
        eprintln!("vmctl: error: {message}");
    }
    ExitCode::from(code)
}

fn code_of(e: &HostdevError) -> u8 {
    match e {
        HostdevError::NoDevice(_) => exit::NOT_FOUND,
        HostdevError::InUse { .. } => exit::CONFLICT,
        _ => exit::ERROR,
    }
}

/// `vmctl hostdev ...`.
pub fn hostdev(cmd: &HostdevCmd, json: bool) -> ExitCode {
    let (sys, proc) = (Path::new(SYS), Path::new(PROC));
    match cmd {
        HostdevCmd::List => match hostdev::list_devices(sys, proc) {
            Ok(devs) if json => {
                println!("{}", serde_json::to_string_pretty(&devs).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(devs) => {
                let rows: Vec<Vec<String>> = devs
                    .iter()
                    .map(|d| {
                        vec![
                            d.addr.clone(),
                            d.ids.clone(),
                            d.class.trim_start_matches("0x").to_string(),
                            d.group.map_or("-".into(), |g| g.to_string()),
                            d.driver.clone().unwrap_or_else(|| "-".into()),
                            d.assignable.clone(),
                            d.why.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ADDRESS", "IDS", "CLASS", "GROUP", "DRIVER", "ASSIGNABLE", "NOTE"], &rows)
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(json, exit::ERROR, &format!("cannot read {SYS}/bus/pci/devices: {e}")),
        },
        HostdevCmd::Bind { addr } => match hostdev::bind(sys, proc, addr) {
            Ok(before) => {
                let from = before.map_or("no driver".to_string(), |d| format!("driver {d}"));
                println!("{addr} bound to vfio-pci (was {from})");
                ExitCode::SUCCESS
            }
            Err(e) => fail(json, code_of(&e), &e.to_string()),
        },
        HostdevCmd::Unbind { addr } => match hostdev::unbind(sys, proc, addr) {
            Ok(now) => {
                println!(
                    "{addr} released from vfio-pci; now {}",
                    now.map_or("no driver".into(), |d| format!("driver {d}"))
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(json, code_of(&e), &e.to_string()),
        },
    }
}

/// `vmctl host check`: exit 0 when every finding is in order, 1 otherwise.
pub fn host_check(json: bool) -> ExitCode {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let findings = hostdev::host_check(Path::new(SYS), Path::new(PROC), euid);
    let ok = findings.iter().all(|f| f.ok);
    if json {
        println!("{}", serde_json::json!({ "ok": ok, "findings": findings }));
    } else {
        for f in &findings {
            println!("{} {}", if f.ok { "ok  " } else { "FAIL" }, f.what);
            if !f.ok {
                println!("     fix: {}", f.fix);
            }
        }
        println!("{}", if ok { "VFIO passthrough: ready" } else { "VFIO passthrough: not ready" });
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::ERROR)
    }
}
