// SPDX-License-Identifier: Apache-2.0
//! The host's PCI devices as VFIO sees them, read from sysfs: `vmctl hostdev list|bind|unbind`
//! and `vmctl host check`. Every function takes the sysfs root (`/sys`) and the procfs root
//! (`/proc`) as parameters, so the tests run on a fake tree in a temporary directory.

use std::path::{Path, PathBuf};

/// Drivers another device of the same IOMMU group may have without blocking assignment (the
/// kernel's viability rule: VFIO drivers, pci-stub, PCIe port services, or none).
const GROUP_SAFE_DRIVERS: [&str; 3] = ["vfio-pci", "pci-stub", "pcieport"];

/// Errors of `bind` and `unbind`.
#[derive(Debug, thiserror::Error)]
pub enum HostdevError {
    /// No such device.
    #[error("there is no PCI device {0} on this host (vmctl hostdev list)")]
    NoDevice(String),
    /// The vfio-pci driver is not loaded.
    #[error("the vfio-pci driver is not loaded: modprobe vfio-pci (vmctl host check)")]
    NoVfioDriver,
    /// A running VM holds the device's group.
    #[error("{addr} is in use by another VM: /dev/vfio/{group} is open in {users}; stop that VM first")]
    InUse {
        /// The device.
        addr: String,
        /// Its IOMMU group.
        group: u32,
        /// The processes holding it, like `1234 (vmm)`.
        users: String,
    },
    /// A sysfs write failed.
    #[error("cannot write {path}: {source}{hint}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
        /// How to fix it.
        hint: &'static str,
    },
    /// The kernel did not bind the driver.
    #[error("{addr} is bound to {now} after the probe, not {wanted}")]
    NotBound {
        /// The device.
        addr: String,
        /// The driver wanted.
        wanted: String,
        /// The driver it has.
        now: String,
    },
}

/// One host PCI function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostPciDevice {
    /// Address, like `0000:00:02.0`.
    pub addr: String,
    /// Vendor and device IDs, like `8086:100e`.
    pub ids: String,
    /// Class code, like `0x020000`.
    pub class: String,
    /// Driver bound now.
    pub driver: Option<String>,
    /// IOMMU group (none: the IOMMU is off).
    pub group: Option<u32>,
    /// Whether it can be given to a VM now (`yes`), after `vmctl hostdev bind` (`after bind`),
    /// or not (`no`).
    pub assignable: String,
    /// Why not, or what to do first.
    pub why: String,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn device_dir(sys: &Path, addr: &str) -> PathBuf {
    sys.join("bus/pci/devices").join(addr)
}

/// The IOMMU group of `addr`.
pub fn group_of(sys: &Path, addr: &str) -> Option<u32> {
    link_name(&device_dir(sys, addr).join("iommu_group"))?.parse().ok()
}

/// The driver bound to `addr`.
pub fn driver_of(sys: &Path, addr: &str) -> Option<String> {
    link_name(&device_dir(sys, addr).join("driver"))
}

/// The other devices of `group` bound to host drivers, like `0000:00:1f.3 (snd_hda_intel)`.
pub fn group_blockers(sys: &Path, group: u32, addr: &str) -> Vec<String> {
    let dir = sys.join("kernel/iommu_groups").join(group.to_string()).join("devices");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|other| other != addr)
        .filter_map(|other| {
            let d = driver_of(sys, &other)?;
            (!GROUP_SAFE_DRIVERS.contains(&d.as_str())).then(|| format!("{other} ({d})"))
        })
        .collect();
    out.sort();
    out
}

/// The processes with `/dev/vfio/<group>` open, like `1234 (vmm)`, from procfs at `proc`.
pub fn group_users(proc: &Path, group: u32) -> Vec<String> {
    let target = PathBuf::from(format!("/dev/vfio/{group}"));
    let mut users = Vec::new();
    for entry in std::fs::read_dir(proc).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let holds = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target));
        if holds {
            let comm = read_trim(&entry.path().join("comm")).unwrap_or_default();
            users.push(format!("{name} ({comm})"));
        }
    }
    users.sort();
    users
}

/// Every PCI function under `sys`, in address order, with whether it can be assigned.
pub fn list_devices(sys: &Path, proc: &Path) -> std::io::Result<Vec<HostPciDevice>> {
    let mut addrs: Vec<String> = std::fs::read_dir(sys.join("bus/pci/devices"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    addrs.sort();
    Ok(addrs.into_iter().map(|a| describe(sys, proc, &a)).collect())
}

/// One function and whether it can be assigned.
pub fn describe(sys: &Path, proc: &Path, addr: &str) -> HostPciDevice {
    let dir = device_dir(sys, addr);
    let id = |f: &str| read_trim(&dir.join(f)).map_or("?".into(), |v| v.trim_start_matches("0x").to_string());
    let class = read_trim(&dir.join("class")).unwrap_or_default();
    let driver = driver_of(sys, addr);
    let group = group_of(sys, addr);
    let (assignable, why) = match group {
        None => ("no", "no IOMMU group: the IOMMU is off (vmctl host check)".to_string()),
        Some(_) if class.starts_with("0x0604") || class.starts_with("0x0600") => {
            ("no", "a bridge; assign the devices behind it".to_string())
        }
        Some(g) => {
            let blockers = group_blockers(sys, g, addr);
            let users = group_users(proc, g);
            if !blockers.is_empty() {
                ("no", format!("group {g} shares devices bound to host drivers: {}", blockers.join(", ")))
            } else if !users.is_empty() {
                ("no", format!("in use by {}", users.join(", ")))
            } else if driver.as_deref() == Some("vfio-pci") {
                ("yes", String::new())
            } else {
                ("after bind", format!("vmctl hostdev bind {addr}"))
            }
        }
    };
    HostPciDevice {
        addr: addr.to_string(),
        ids: format!("{}:{}", id("vendor"), id("device")),
        class,
        driver,
        group,
        assignable: assignable.to_string(),
        why,
    }
}

fn write(path: &Path, value: &str) -> Result<(), HostdevError> {
    std::fs::write(path, value).map_err(|source| HostdevError::Write {
        path: path.display().to_string(),
        hint: if source.kind() == std::io::ErrorKind::PermissionDenied { " (run as root)" } else { "" },
        source,
    })
}

fn check_not_in_use(sys: &Path, proc: &Path, addr: &str) -> Result<(), HostdevError> {
    if let Some(group) = group_of(sys, addr) {
        let users = group_users(proc, group);
        if !users.is_empty() {
            return Err(HostdevError::InUse { addr: addr.into(), group, users: users.join(", ") });
        }
    }
    Ok(())
}

/// Binds `addr` to vfio-pci: `driver_override`, unbind from its driver, `drivers_probe`.
/// Returns the driver it had.
pub fn bind(sys: &Path, proc: &Path, addr: &str) -> Result<Option<String>, HostdevError> {
    let dir = device_dir(sys, addr);
    if !dir.exists() {
        return Err(HostdevError::NoDevice(addr.into()));
    }
    if !sys.join("bus/pci/drivers/vfio-pci").exists() {
        return Err(HostdevError::NoVfioDriver);
    }
    let before = driver_of(sys, addr);
    if before.as_deref() == Some("vfio-pci") {
        return Ok(before);
    }
    check_not_in_use(sys, proc, addr)?;
    write(&dir.join("driver_override"), "vfio-pci")?;
    if before.is_some() {
        write(&dir.join("driver/unbind"), addr)?;
    }
    write(&sys.join("bus/pci/drivers_probe"), addr)?;
    match driver_of(sys, addr) {
        Some(d) if d == "vfio-pci" => Ok(before),
        now => Err(HostdevError::NotBound {
            addr: addr.into(),
            wanted: "vfio-pci".into(),
            now: now.unwrap_or_else(|| "no driver".into()),
        }),
    }
}

/// Gives `addr` back to its host driver: clears `driver_override`, unbinds it from vfio-pci
/// (refused while a VM holds its group: the kernel would wait for that VM) and probes again.
/// Returns the driver it has afterwards.
pub fn unbind(sys: &Path, proc: &Path, addr: &str) -> Result<Option<String>, HostdevError> {
    let dir = device_dir(sys, addr);
    if !dir.exists() {
        return Err(HostdevError::NoDevice(addr.into()));
    }
    check_not_in_use(sys, proc, addr)?;
    write(&dir.join("driver_override"), "\n")?;
    if driver_of(sys, addr).is_some() {
        write(&dir.join("driver/unbind"), addr)?;
    }
    write(&sys.join("bus/pci/drivers_probe"), addr)?;
    Ok(driver_of(sys, addr))
}

/// One finding of `vmctl host check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Whether this is in order.
    pub ok: bool,
    /// What was checked and found.
    pub what: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

fn finding(ok: bool, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { ok, what: what.into(), fix: if ok { String::new() } else { fix.into() } }
}

/// Whether this host can assign devices: ACPI DMAR/IVRS table, IOMMU groups, the kernel
/// command line, the vfio modules and root.
pub fn host_check(sys: &Path, proc: &Path, euid: u32) -> Vec<Finding> {
    let tables = sys.join("firmware/acpi/tables");
    let dmar = tables.join("DMAR").exists();
    let ivrs = tables.join("IVRS").exists();
    let groups = std::fs::read_dir(sys.join("kernel/iommu_groups")).map_or(0, |d| d.count());
    let cmdline = read_trim(&proc.join("cmdline")).unwrap_or_default();
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let intel_on = words.iter().any(|w| w.starts_with("intel_iommu=") && w.contains("on"));
    let amd_off = words.contains(&"amd_iommu=off") || words.contains(&"iommu=off");
    let mut out = vec![finding(
        dmar || ivrs,
        match (dmar, ivrs) {
            (true, _) => "firmware describes an Intel VT-d IOMMU (ACPI DMAR table)",
            (_, true) => "firmware describes an AMD-Vi IOMMU (ACPI IVRS table)",
            _ => "no IOMMU in the firmware tables (neither ACPI DMAR nor IVRS)",
        },
        "enable VT-d (Intel) or AMD-Vi / IOMMU (AMD) in the firmware setup",
    )];
    if dmar {
        out.push(finding(
            intel_on,
            format!("kernel command line {} intel_iommu=on", if intel_on { "has" } else { "lacks" }),
            "add intel_iommu=on to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot",
        ));
    }
    if ivrs {
        out.push(finding(
            !amd_off,
            format!("kernel command line {} the AMD IOMMU", if amd_off { "turns off" } else { "leaves on" }),
            "remove amd_iommu=off / iommu=off from the kernel command line and reboot",
        ));
    }
    out.push(finding(
        groups > 0,
        format!("{groups} IOMMU groups"),
        "no IOMMU groups: the kernel did not enable the IOMMU (see the findings above; dmesg | grep -i -e DMAR -e IOMMU)",
    ));
    for (module, what) in
        [("vfio", "vfio"), ("vfio_iommu_type1", "vfio_iommu_type1"), ("vfio_pci", "vfio-pci")]
    {
        let loaded = sys.join("module").join(module).exists();
        out.push(finding(
            loaded,
            format!("module {what} {}", if loaded { "loaded" } else { "not loaded" }),
            format!("modprobe {what} (and list it in /etc/modules to load it at boot)"),
        ));
    }
    out.push(finding(
        euid == 0,
        if euid == 0 { "running as root".to_string() } else { format!("running as uid {euid}") },
        "binding drivers and opening /dev/vfio need root: run vmctl and vmctld as root",
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    struct Tree(PathBuf);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake device: address, ids, class, group, driver.
    type FakeDev<'a> = (&'a str, &'a str, &'a str, Option<u32>, Option<&'a str>);

    /// A fake /sys and /proc with `devices`.
    fn tree(name: &str, devices: &[FakeDev<'_>]) -> Tree {
        let root = std::env::temp_dir().join(format!("vmctl-hostdev-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sys = root.join("sys");
        for (addr, ids, class, group, driver) in devices {
            let dev = sys.join("bus/pci/devices").join(addr);
            std::fs::create_dir_all(&dev).unwrap();
            let (v, d) = ids.split_once(':').unwrap();
            std::fs::write(dev.join("vendor"), format!("0x{v}\n")).unwrap();
            std::fs::write(dev.join("device"), format!("0x{d}\n")).unwrap();
            std::fs::write(dev.join("class"), format!("{class}\n")).unwrap();
            std::fs::write(dev.join("driver_override"), "(null)\n").unwrap();
            if let Some(g) = group {
                let gdir = sys.join("kernel/iommu_groups").join(g.to_string());
                std::fs::create_dir_all(gdir.join("devices")).unwrap();
                symlink(&dev, gdir.join("devices").join(addr)).unwrap();
                symlink(&gdir, dev.join("iommu_group")).unwrap();
            }
            if let Some(drv) = driver {
                let ddir = sys.join("bus/pci/drivers").join(drv);
                std::fs::create_dir_all(&ddir).unwrap();
                symlink(&ddir, dev.join("driver")).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("proc")).unwrap();
        Tree(root)
    }

    #[test]
    fn list_says_which_devices_can_be_assigned_and_why_not() {
        let t = tree(
            "list",
            &[
                ("0000:00:00.0", "8086:29c0", "0x060000", Some(0), None),
                ("0000:00:02.0", "8086:100e", "0x020000", Some(1), Some("e1000")),
                ("0000:00:03.0", "1b36:0010", "0x010802", Some(2), Some("vfio-pci")),
                ("0000:00:1f.0", "8086:2918", "0x060100", Some(3), Some("lpc_ich")),
                ("0000:00:1f.3", "8086:2930", "0x0c0500", Some(3), Some("i801_smbus")),
                ("0000:00:04.0", "1af4:1041", "0x020000", None, Some("virtio-pci")),
            ],
        );
        let (sys, proc) = (t.0.join("sys"), t.0.join("proc"));
        let l = list_devices(&sys, &proc).unwrap();
        let row = |a: &str| l.iter().find(|d| d.addr == a).unwrap().clone();
        assert_eq!(l.len(), 6);
        assert_eq!(l[0].addr, "0000:00:00.0", "address order");
        assert_eq!(
            (row("0000:00:00.0").assignable.as_str(), row("0000:00:00.0").why.contains("bridge")),
            ("no", true)
        );
        let e = row("0000:00:02.0");
        assert_eq!((e.ids.as_str(), e.driver.as_deref(), e.group), ("8086:100e", Some("e1000"), Some(1)));
        assert_eq!(
            (e.assignable.as_str(), e.why.as_str()),
            ("after bind", "vmctl hostdev bind 0000:00:02.0")
        );
        assert_eq!(row("0000:00:03.0").assignable, "yes");
        let s = row("0000:00:1f.3");
        assert!(s.assignable == "no" && s.why.contains("0000:00:1f.0 (lpc_ich)"), "{s:?}");
        let v = row("0000:00:04.0");
        assert!(v.assignable == "no" && v.why.contains("IOMMU is off"), "{v:?}");
    }

    #[test]
    fn bind_and_unbind_write_the_sysfs_files_and_refuse_devices_in_use() {
        let t = tree("bind", &[("0000:00:02.0", "8086:100e", "0x020000", Some(1), Some("e1000"))]);
        let (sys, proc) = (t.0.join("sys"), t.0.join("proc"));
        let dev = sys.join("bus/pci/devices/0000:00:02.0");
        // e1000's unbind file, the probe file; the fake kernel does not rebind, so bind reports it.
        std::fs::write(sys.join("bus/pci/drivers/e1000/unbind"), "").unwrap();
        std::fs::write(sys.join("bus/pci/drivers_probe"), "").unwrap();
        assert!(matches!(bind(&sys, &proc, "0000:00:02.0"), Err(HostdevError::NoVfioDriver)));
        std::fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci")).unwrap();
        let e = bind(&sys, &proc, "0000:00:02.0").unwrap_err();
        assert!(e.to_string().contains("bound to e1000 after the probe"), "{e}");
        assert_eq!(read_trim(&dev.join("driver_override")).unwrap(), "vfio-pci");
        assert_eq!(read_trim(&sys.join("bus/pci/drivers/e1000/unbind")).unwrap(), "0000:00:02.0");
        assert_eq!(read_trim(&sys.join("bus/pci/drivers_probe")).unwrap(), "0000:00:02.0");
        assert!(matches!(bind(&sys, &proc, "0000:09:00.0"), Err(HostdevError::NoDevice(_))));
        // As the kernel would have it: bound to vfio-pci, and a vmm holding the group.
        std::fs::remove_file(dev.join("driver")).unwrap();
        symlink(sys.join("bus/pci/drivers/vfio-pci"), dev.join("driver")).unwrap();
        assert_eq!(bind(&sys, &proc, "0000:00:02.0").unwrap().as_deref(), Some("vfio-pci"), "already bound");
        let fd = proc.join("4242/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::fs::write(proc.join("4242/comm"), "vmm\n").unwrap();
        symlink("/dev/vfio/1", fd.join("7")).unwrap();
        assert_eq!(group_users(&proc, 1), ["4242 (vmm)"]);
        let e = unbind(&sys, &proc, "0000:00:02.0").unwrap_err();
        assert!(
            e.to_string().contains("in use by another VM") && e.to_string().contains("4242 (vmm)"),
            "{e}"
        );
        assert_eq!(describe(&sys, &proc, "0000:00:02.0").why, "in use by 4242 (vmm)");
        std::fs::remove_dir_all(proc.join("4242")).unwrap();
        std::fs::write(sys.join("bus/pci/drivers/vfio-pci/unbind"), "").unwrap();
        assert_eq!(unbind(&sys, &proc, "0000:00:02.0").unwrap().as_deref(), Some("vfio-pci"));
        assert_eq!(read_trim(&dev.join("driver_override")).unwrap(), "");
        assert_eq!(read_trim(&sys.join("bus/pci/drivers/vfio-pci/unbind")).unwrap(), "0000:00:02.0");
    }

    #[test]
    fn host_check_names_each_problem_with_its_fix() {
        let t = tree("check", &[]);
        let (sys, proc) = (t.0.join("sys"), t.0.join("proc"));
        std::fs::write(proc.join("cmdline"), "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n").unwrap();
        let bad = host_check(&sys, &proc, 1000);
        assert!(bad.iter().all(|f| !f.ok), "{bad:#?}");
        assert!(bad[0].what.contains("no IOMMU") && bad[0].fix.contains("VT-d"));
        assert!(bad
            .iter()
            .any(|f| f.what == "module vfio-pci not loaded" && f.fix.starts_with("modprobe vfio-pci")));
        assert!(bad.iter().any(|f| f.fix.contains("run vmctl and vmctld as root")));
        std::fs::create_dir_all(sys.join("firmware/acpi/tables")).unwrap();
        std::fs::write(sys.join("firmware/acpi/tables/DMAR"), "").unwrap();
        let f = host_check(&sys, &proc, 0);
        assert!(f[1].what.contains("lacks intel_iommu=on") && f[1].fix.contains("update-grub"), "{f:#?}");
        std::fs::write(proc.join("cmdline"), "root=/dev/sda1 intel_iommu=on\n").unwrap();
        std::fs::create_dir_all(sys.join("kernel/iommu_groups/0")).unwrap();
        for m in ["vfio", "vfio_iommu_type1", "vfio_pci"] {
            std::fs::create_dir_all(sys.join("module").join(m)).unwrap();
        }
        let good = host_check(&sys, &proc, 0);
        assert!(good.iter().all(|f| f.ok && f.fix.is_empty()), "{good:#?}");
        assert_eq!(good.len(), 7);
    }
}
