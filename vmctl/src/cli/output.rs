// SPDX-License-Identifier: Apache-2.0
//! Human output of `vmctl`: tables and key-value blocks.

use crate::api::{state_name, PoolInfo, VmDetail, VmInfo, VolumeInfo};

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// `vmctl list`.
pub fn vm_table(vms: &[VmInfo]) -> String {
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                state_name(v.state).to_string(),
                v.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                v.vcpus.to_string(),
                format!("{} MiB", v.memory_mib),
                if v.autostart { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "PID", "VCPUS", "MEMORY", "AUTOSTART"], &rows)
}

/// A byte count for people: exact in the largest binary unit that divides it, else one
/// decimal (`10 GiB`, `1.5 MiB`, `512 B`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut unit = 0;
    let mut scale = 1024u64;
    while unit + 1 < UNITS.len() && n >= scale * 1024 {
        unit += 1;
        scale *= 1024;
    }
    if n % scale == 0 {
        format!("{} {}", n / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", n as f64 / scale as f64, UNITS[unit])
    }
}

/// `vmctl vol list`.
pub fn volume_table(vols: &[VolumeInfo]) -> String {
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(",") };
    let rows: Vec<Vec<String>> = vols
        .iter()
        .map(|v| {
            vec![
                v.pool.clone(),
                v.name.clone(),
                block::ImageFormat::from(v.format).name().to_string(),
                bytes(v.virtual_size),
                bytes(v.allocated),
                v.backing_file.clone().unwrap_or_else(|| "-".into()),
                list(&v.overlays),
                list(&v.used_by),
            ]
        })
        .collect();
    table(&["POOL", "NAME", "FORMAT", "SIZE", "ALLOCATED", "BACKING", "CLONES", "USED BY"], &rows)
}

/// `vmctl pool list`.
pub fn pool_table(pools: &[PoolInfo]) -> String {
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.volumes.to_string(),
                p.available.map(bytes).unwrap_or_else(|| "-".into()),
                p.path.clone(),
            ]
        })
        .collect();
    table(&["NAME", "VOLUMES", "AVAILABLE", "PATH"], &rows)
}

/// The VNC display of a running VM, or why there is none.
pub fn vnc_display(d: &VmDetail) -> Result<std::net::SocketAddr, String> {
    if let Some(a) = d.info.vnc {
        return Ok(a);
    }
    Err(if d.definition.graphics.vnc.is_none() {
        format!("{} has no VNC server; add graphics.vnc (XML: <graphics type='vnc'/>)", d.info.name)
    } else if d.info.vnc_socket.is_some() {
        format!(
            "{0}'s VNC server has no password, so it listens on a unix socket, not TCP; for a viewer, \
             run vmctl vnc {0}",
            d.info.name
        )
    } else {
        format!("{} is not running (state {})", d.info.name, state_name(d.info.state))
    })
}

/// The VNC display number of an address: port 5900 is display 0.
pub fn display_number(a: std::net::SocketAddr) -> u16 {
    a.port().saturating_sub(crate::daemon::lifecycle::VNC_PORT_FIRST)
}

/// A VNC address as virsh `vncdisplay` prints it: `127.0.0.1:0` for port 5900.
pub fn display_name(a: std::net::SocketAddr) -> String {
    let display = display_number(a);
    match a.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{display}"),
        ip => format!("{ip}:{display}"),
    }
}

/// `vmctl info`.
pub fn info_block(d: &VmDetail) -> String {
    let i = &d.info;
    let def = &d.definition;
    let machine = match &def.os {
        vmdef::model::Os::Pc { boot } => format!("pc (boot {boot:?})"),
        vmdef::model::Os::Direct { kernel, .. } => format!("direct ({})", kernel.display()),
    };
    let mut rows = vec![
        ("Name", i.name.clone()),
        ("UUID", i.uuid.clone()),
        ("State", state_name(i.state).to_string()),
        ("PID", i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
        ("vCPUs", i.vcpus.to_string()),
        ("Memory", format!("{} MiB", i.memory_mib)),
        ("CPU limit", def.cputune.to_string()),
        ("Machine", machine),
        ("Disks", def.disks.len().to_string()),
        ("Interfaces", def.interfaces.len().to_string()),
        ("Autostart", if i.autostart { "yes" } else { "no" }.to_string()),
    ];
    if let Some(a) = i.vnc {
        rows.push(("VNC", format!("{a} (display {}, password)", display_name(a))));
    } else if i.vnc_socket.is_some() {
        rows.push(("VNC", format!("unix socket (vmctl vnc {})", i.name)));
    }
    if let Some(r) = &i.exit_reason {
        rows.push(("Last exit", r.clone()));
    }
    rows.iter().map(|(k, v)| format!("{:<11} {v}\n", format!("{k}:"))).collect()
}

/// `secs` since the epoch as the host's local time, `2026-12-03 08:05:30`; the number itself
/// if libc cannot convert it.
pub fn local_time(secs: u64) -> String {
    let Ok(t) = libc::time_t::try_from(secs) else { return secs.to_string() };
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r writes only `tm`.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return secs.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmdef::store::RunState;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }

    #[test]
    fn byte_counts_for_people() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(1536 << 10), "1.5 MiB");
        assert_eq!(bytes(10 << 30), "10 GiB");
        assert_eq!(bytes(3 << 40), "3 TiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn volume_table_shows_clones_and_users() {
        let v = VolumeInfo {
            name: "base.qcow2".into(),
            pool: "default".into(),
            path: "/s/images/base.qcow2".into(),
            format: crate::api::VolFormat::Qcow2,
            virtual_size: 10 << 30,
            allocated: 196608,
            backing_file: None,
            overlays: vec!["a".into(), "b".into()],
            used_by: vec![],
        };
        let t = volume_table(&[v]);
        assert_eq!(
            t.lines().next().unwrap(),
            "POOL     NAME        FORMAT  SIZE    ALLOCATED  BACKING  CLONES  USED BY"
        );
        assert_eq!(
            t.lines().nth(1).unwrap(),
            "default  base.qcow2  qcow2   10 GiB  192 KiB    -        a,b     -"
        );
    }

    #[test]
    fn vnc_display_names_as_virsh_prints_them() {
        assert_eq!(display_name("127.0.0.1:5900".parse().unwrap()), "127.0.0.1:0");
        assert_eq!(display_name("0.0.0.0:5917".parse().unwrap()), "0.0.0.0:17");
        assert_eq!(display_name("[::1]:5901".parse().unwrap()), "[::1]:1");
    }

    #[test]
    fn vm_table_shows_state_and_pid() {
        let v = VmInfo {
            name: "web".into(),
            uuid: "u".into(),
            state: RunState::Shutoff,
            pid: None,
            memory_mib: 512,
            vcpus: 2,
            autostart: true,
            exit_reason: None,
            vnc: None,
            vnc_socket: None,
            warnings: Vec::new(),
        };
        let t = vm_table(&[v]);
        assert!(t.lines().nth(1).unwrap().starts_with("web   shut off  -    2      512 MiB  yes"), "{t}");
    }

    #[test]
    fn info_shows_the_cpu_limit() {
        let mut def = vmdef::VmDef::new(vmdef::VmName::new("web").unwrap(), 512, 2);
        let info = VmInfo {
            name: "web".into(),
            uuid: def.uuid.to_string(),
            state: RunState::Shutoff,
            pid: None,
            memory_mib: 512,
            vcpus: 2,
            autostart: false,
            exit_reason: None,
            vnc: None,
            vnc_socket: None,
            warnings: Vec::new(),
        };
        let block = info_block(&VmDetail { info: info.clone(), definition: def.clone() });
        assert!(block.contains("\nCPU limit:  none\n"), "{block}");
        def.cputune = vmdef::model::CpuTune { period_us: Some(100_000), quota_us: Some(50_000) };
        let block = info_block(&VmDetail { info, definition: def });
        assert!(
            block.contains("\nCPU limit:  50000 µs per 100000 µs period per vCPU (0.50 CPU each)\n"),
            "{block}"
        );
    }

    #[test]
    fn event_times_read_as_local_time() {
        // 1,800,000,000 s is 2027-01-15 08:00:00 UTC; the zone moves the hour only.
        let t = local_time(1_800_000_000);
        assert_eq!(t.len(), 19, "{t}");
        assert!(t.starts_with("2027-01-15 ") && t.ends_with(":00:00"), "{t}");
        let e = crate::api::Event {
            time: 1_800_000_000,
            vm: "web".into(),
            event: crate::api::EventKind::Started,
            state: RunState::Running,
            detail: None,
        };
        let line = super::super::verbs::event_line(&e, "");
        assert!(line.ends_with(" web: started -> running"), "{line}");
    }
}
