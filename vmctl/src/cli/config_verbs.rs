// SPDX-License-Identifier: Apache-2.0
//! virsh's everyday verbs on a VM's stored definition: `autostart`, `domblklist`,
//! `domiflist`, `setmem`, `setvcpus`, `attach-disk`, `detach-disk`, `attach-interface`,
//! `detach-interface`.
//!
//! Each reads the definition (`GET /v1/vms/NAME`), changes it and stores it again (`PUT`), so
//! the daemon validates the result exactly as for `define` and nothing is half-changed. Like
//! virsh with `--config`, a change applies at the VM's next start; a running VM is not
//! changed live (no hotplug), and the verbs that change hardware say so by requiring
//! `--config`, as virsh does for a domain that is not running.

use clap::Args;
use hyper::Method;
use vmdef::model::{Disk, DiskBus, DiskDevice, DiskFormat, Interface, MacAddr, NetSource, NicModel};
use vmdef::VmDef;

use std::path::Path;

use vmdef::store::RunState;
use vmdef::VmName;

use super::verbs::print_json;
use super::{output, Failure};
use crate::api::{CloneVolume, PoolInfo, VmDetail, VmInfo, VolumeInfo};
use crate::client::Client;

/// `vmctl autostart NAME [--disable]`.
#[derive(Args, Debug, PartialEq)]
pub struct AutostartArgs {
    /// VM name.
    pub name: String,
    /// Do not start it with the daemon any more.
    #[arg(long)]
    pub disable: bool,
}

/// `vmctl setmem NAME SIZE --config`.
#[derive(Args, Debug, PartialEq)]
pub struct SetmemArgs {
    /// VM name.
    pub name: String,
    /// New guest RAM: MiB, or with a unit (`512M`, `2G`, `1048576K`), as virsh takes it.
    pub size: String,
    /// Change the stored definition (applies at the next start); required: no live change.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl setvcpus NAME COUNT --config`.
#[derive(Args, Debug, PartialEq)]
pub struct SetvcpusArgs {
    /// VM name.
    pub name: String,
    /// New number of vCPUs.
    pub count: u32,
    /// Change the stored definition (applies at the next start); required: no live change.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl attach-disk NAME SOURCE TARGET --config`.
#[derive(Args, Debug, PartialEq)]
pub struct AttachDiskArgs {
    /// VM name.
    pub name: String,
    /// The image (a path in a storage pool: `vmctl vol path VOL`); empty for an empty CD-ROM.
    pub source: String,
    /// Guest-visible name: `vdX` (virtio) or `hdX` (IDE).
    pub target: String,
    /// `virtio` or `ide` [default: from the target's prefix].
    #[arg(long, value_name = "BUS")]
    pub targetbus: Option<String>,
    /// `raw` or `qcow2` [default: from the file name's extension, else raw].
    #[arg(long, value_name = "FORMAT", alias = "subdriver")]
    pub driver_type: Option<String>,
    /// `disk` or `cdrom` (virsh's --type).
    #[arg(long = "type", value_name = "TYPE", default_value = "disk")]
    pub device: String,
    /// Read-only for the guest.
    #[arg(long)]
    pub mode_readonly: bool,
    /// Change the stored definition (applies at the next start); required: no hotplug.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl detach-disk NAME TARGET --config`.
#[derive(Args, Debug, PartialEq)]
pub struct DetachDiskArgs {
    /// VM name.
    pub name: String,
    /// The disk's target (`vdb`) or its source path.
    pub target: String,
    /// Change the stored definition (applies at the next start); required: no hot unplug.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl attach-interface NAME TYPE SOURCE --config`.
#[derive(Args, Debug, PartialEq)]
pub struct AttachInterfaceArgs {
    /// VM name.
    pub name: String,
    /// `network` (a vmctl network) or `bridge` (an existing host bridge).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The network's or the bridge's name.
    pub source: String,
    /// `virtio` or `e1000`.
    #[arg(long, default_value = "virtio")]
    pub model: String,
    /// MAC address [default: a random 52:54:00:xx:xx:xx].
    #[arg(long)]
    pub mac: Option<String>,
    /// Change the stored definition (applies at the next start); required: no hotplug.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl detach-interface NAME --mac MAC --config`.
#[derive(Args, Debug, PartialEq)]
pub struct DetachInterfaceArgs {
    /// VM name.
    pub name: String,
    /// The interface's MAC address (`vmctl domiflist NAME` lists them).
    #[arg(long)]
    pub mac: String,
    /// Change the stored definition (applies at the next start); required: no hot unplug.
    #[arg(long)]
    pub config: bool,
}

/// `vmctl clone NAME NEW [--linked]`.
#[derive(Args, Debug, PartialEq)]
pub struct CloneArgs {
    /// The VM to clone (shut off).
    pub name: String,
    /// The new VM's name.
    pub new: String,
    /// Make each disk a qcow2 overlay of the original (which becomes a template) instead of
    /// a full copy.
    #[arg(long)]
    pub linked: bool,
}

fn need_config(config: bool, verb: &str) -> Result<(), Failure> {
    if config {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "{verb} changes only the stored definition (no live change): add --config; it applies at the next start"
    )))
}

/// The stored definition with its secrets (the VNC password), to store again.
async fn load(client: &Client, name: &str) -> Result<VmDef, Failure> {
    let d: VmDetail = client.get_json(&format!("/v1/vms/{name}?security_info=true")).await?;
    Ok(d.definition)
}

async fn store(client: &Client, def: &VmDef) -> Result<VmInfo, Failure> {
    let body = def.to_json().map_err(|e| Failure::error(e.to_string()))?;
    let path = format!("/v1/vms/{}", def.name);
    let (_, b) = client.request(Method::PUT, &path, Some("application/json"), body.into_bytes()).await?;
    serde_json::from_slice(&b).map_err(|e| Failure::error(e.to_string()))
}

fn done(json: bool, info: &VmInfo, what: &str) {
    if json {
        print_json(info);
    } else {
        println!("{} {what}", info.name);
    }
}

/// Parses virsh's memory sizes: a plain number is MiB here (virsh: KiB; a number below
/// 1024 KiB is refused by both), suffixes K/KiB, M/MiB, G/GiB, T/TiB, case-insensitive.
pub fn parse_mib(s: &str) -> Result<u64, Failure> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || Failure::bad_input(format!("size {s:?}: give MiB or a number with K, M, G or T (512M, 2G)"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => Some(n),
        "k" | "kb" | "kib" => (n % 1024 == 0).then_some(n / 1024),
        "g" | "gb" | "gib" => n.checked_mul(1024),
        "t" | "tb" | "tib" => n.checked_mul(1024 * 1024),
        _ => None,
    };
    mib.filter(|m| *m > 0).ok_or_else(bad)
}

/// The disk `attach-disk` adds, checked against the definition's other disks.
pub fn new_disk(def: &VmDef, a: &AttachDiskArgs) -> Result<Disk, Failure> {
    let bus = match (a.targetbus.as_deref(), &a.target[..a.target.len().min(2)]) {
        (Some("virtio"), _) | (None, "vd") => DiskBus::Virtio,
        (Some("ide"), _) | (None, "hd") => DiskBus::Ide,
        (Some(other), _) => {
            return Err(Failure::bad_input(format!("--targetbus {other}: use virtio or ide")))
        }
        (None, _) => {
            return Err(Failure::bad_input(format!(
                "target {}: name it vdX (virtio) or hdX (IDE), or give --targetbus",
                a.target
            )))
        }
    };
    let device = match a.device.as_str() {
        "disk" => DiskDevice::Disk,
        "cdrom" => DiskDevice::Cdrom,
        other => return Err(Failure::bad_input(format!("--type {other}: use disk or cdrom"))),
    };
    let format = match a.driver_type.as_deref() {
        Some("raw") => DiskFormat::Raw,
        Some("qcow2") => DiskFormat::Qcow2,
        Some(other) => return Err(Failure::bad_input(format!("--driver-type {other}: use raw or qcow2"))),
        None if a.source.ends_with(".qcow2") => DiskFormat::Qcow2,
        None => DiskFormat::Raw,
    };
    if def.disks.iter().any(|d| d.target == a.target) {
        return Err(Failure::bad_input(format!(
            "{} already has a disk {}; pick another target",
            def.name, a.target
        )));
    }
    let path = (!a.source.is_empty()).then(|| a.source.clone().into());
    if path.is_none() && device != DiskDevice::Cdrom {
        return Err(Failure::bad_input("an empty source is only for a CD-ROM (--type cdrom)"));
    }
    Ok(Disk { path, format, bus, device, target: a.target.clone(), readonly: a.mode_readonly })
}

/// The NIC `attach-interface` adds.
pub fn new_interface(a: &AttachInterfaceArgs) -> Result<Interface, Failure> {
    let source = match a.kind.as_str() {
        "network" => NetSource::Network(a.source.clone()),
        "bridge" => NetSource::Bridge(a.source.clone()),
        other => return Err(Failure::bad_input(format!("type {other}: use network or bridge"))),
    };
    let model = match a.model.as_str() {
        "virtio" => NicModel::Virtio,
        "e1000" => NicModel::E1000,
        other => return Err(Failure::bad_input(format!("--model {other}: use virtio or e1000"))),
    };
    let mac = match &a.mac {
        Some(m) => m.parse::<MacAddr>().map_err(|e| Failure::bad_input(format!("--mac: {e}")))?,
        None => MacAddr::random(),
    };
    Ok(Interface { source, model, mac })
}

/// `domblklist` rows: target, bus, device, source.
pub fn disk_rows(def: &VmDef) -> Vec<Vec<String>> {
    def.disks
        .iter()
        .map(|d| {
            vec![
                d.target.clone(),
                format!("{:?}", d.bus).to_lowercase(),
                format!("{:?}", d.device).to_lowercase(),
                d.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

/// `domiflist` rows: type, source, model, MAC.
pub fn interface_rows(def: &VmDef) -> Vec<Vec<String>> {
    def.interfaces
        .iter()
        .map(|i| {
            let (kind, source) = match &i.source {
                NetSource::Network(n) => ("network", n.as_str()),
                NetSource::Bridge(b) => ("bridge", b.as_str()),
            };
            vec![kind.into(), source.into(), format!("{:?}", i.model).to_lowercase(), i.mac.to_string()]
        })
        .collect()
}

/// `vmctl autostart`.
pub async fn autostart(client: &Client, a: &AutostartArgs, json: bool) -> Result<(), Failure> {
    let mut def = load(client, &a.name).await?;
    def.autostart = !a.disable;
    let info = store(client, &def).await?;
    done(
        json,
        &info,
        if a.disable { "will not be started with the daemon" } else { "will be started with the daemon" },
    );
    Ok(())
}

/// `vmctl domblklist`.
pub async fn domblklist(client: &Client, name: &str, json: bool) -> Result<(), Failure> {
    let def = load(client, name).await?;
    if json {
        print_json(&def.disks);
    } else {
        print!("{}", output::table(&["Target", "Bus", "Device", "Source"], &disk_rows(&def)));
    }
    Ok(())
}

/// `vmctl domiflist`.
pub async fn domiflist(client: &Client, name: &str, json: bool) -> Result<(), Failure> {
    let def = load(client, name).await?;
    if json {
        print_json(&def.interfaces);
    } else {
        print!("{}", output::table(&["Type", "Source", "Model", "MAC"], &interface_rows(&def)));
    }
    Ok(())
}

/// `vmctl setmem`.
pub async fn setmem(client: &Client, a: &SetmemArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "setmem")?;
    let mib = parse_mib(&a.size)?;
    let mut def = load(client, &a.name).await?;
    def.memory_mib = mib;
    let info = store(client, &def).await?;
    done(json, &info, &format!("memory set to {mib} MiB (applies at the next start)"));
    Ok(())
}

/// `vmctl setvcpus`.
pub async fn setvcpus(client: &Client, a: &SetvcpusArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "setvcpus")?;
    let mut def = load(client, &a.name).await?;
    def.vcpus = a.count;
    let info = store(client, &def).await?;
    done(json, &info, &format!("vCPUs set to {} (applies at the next start)", a.count));
    Ok(())
}

/// `vmctl attach-disk`.
pub async fn attach_disk(client: &Client, a: &AttachDiskArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "attach-disk")?;
    let mut def = load(client, &a.name).await?;
    let disk = new_disk(&def, a)?;
    def.disks.push(disk);
    let info = store(client, &def).await?;
    done(json, &info, &format!("disk {} attached (applies at the next start)", a.target));
    Ok(())
}

/// `vmctl detach-disk`.
pub async fn detach_disk(client: &Client, a: &DetachDiskArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "detach-disk")?;
    let mut def = load(client, &a.name).await?;
    let before = def.disks.len();
    def.disks.retain(|d| d.target != a.target && d.path.as_deref() != Some(std::path::Path::new(&a.target)));
    if def.disks.len() == before {
        return Err(Failure {
            code: crate::api::exit::NOT_FOUND,
            message: format!("{} has no disk {} (vmctl domblklist {} lists them)", a.name, a.target, a.name),
        });
    }
    let info = store(client, &def).await?;
    done(json, &info, &format!("disk {} detached (applies at the next start)", a.target));
    Ok(())
}

/// `vmctl attach-interface`.
pub async fn attach_interface(client: &Client, a: &AttachInterfaceArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "attach-interface")?;
    let mut def = load(client, &a.name).await?;
    let nic = new_interface(a)?;
    let mac = nic.mac;
    def.interfaces.push(nic);
    let info = store(client, &def).await?;
    done(json, &info, &format!("interface {mac} attached (applies at the next start)"));
    Ok(())
}

/// `vmctl detach-interface`.
pub async fn detach_interface(client: &Client, a: &DetachInterfaceArgs, json: bool) -> Result<(), Failure> {
    need_config(a.config, "detach-interface")?;
    let mac: MacAddr = a.mac.parse().map_err(|e| Failure::bad_input(format!("--mac: {e}")))?;
    let mut def = load(client, &a.name).await?;
    let before = def.interfaces.len();
    def.interfaces.retain(|i| i.mac != mac);
    if def.interfaces.len() == before {
        return Err(Failure {
            code: crate::api::exit::NOT_FOUND,
            message: format!("{} has no interface {mac} (vmctl domiflist {} lists them)", a.name, a.name),
        });
    }
    let info = store(client, &def).await?;
    done(json, &info, &format!("interface {mac} detached (applies at the next start)"));
    Ok(())
}

/// The pool volume (pool name, file name) holding `path`, from the pools' directories.
pub fn pool_volume<'a>(pools: &'a [PoolInfo], path: &Path) -> Option<(&'a str, String)> {
    let dir = path.parent()?;
    let file = path.file_name()?.to_str()?.to_string();
    pools.iter().find(|p| Path::new(&p.path) == dir).map(|p| (p.name.as_str(), file))
}

/// The clone's name for the disk `target` of a clone named `new` (`web2.qcow2`, then
/// `web2-vdb.qcow2`): the first disk takes the VM's name.
pub fn clone_volume_name(new: &str, first: bool, target: &str, ext: &str) -> String {
    match (first, ext.is_empty()) {
        (true, true) => new.to_string(),
        (true, false) => format!("{new}.{ext}"),
        (false, true) => format!("{new}-{target}"),
        (false, false) => format!("{new}-{target}.{ext}"),
    }
}

/// `vmctl clone`.
pub async fn clone_vm(client: &Client, a: &CloneArgs, json: bool) -> Result<(), Failure> {
    let detail: VmDetail = client.get_json(&format!("/v1/vms/{}?security_info=true", a.name)).await?;
    if detail.info.state != RunState::Shutoff {
        return Err(Failure {
            code: crate::api::exit::CONFLICT,
            message: format!(
                "{} is {}; shut it down before cloning it",
                a.name,
                crate::api::state_name(detail.info.state)
            ),
        });
    }
    let name = VmName::new(&a.new).map_err(|e| Failure::bad_input(format!("new name {}: {e}", a.new)))?;
    let pools: Vec<PoolInfo> = client.get_json("/v1/pools").await?;
    let mut def = detail.definition;
    def.name = name;
    def.uuid = uuid::Uuid::new_v4();
    def.autostart = false;
    for nic in &mut def.interfaces {
        nic.mac = MacAddr::random();
    }
    let mut made: Vec<(String, String)> = Vec::new();
    let mut result = Ok(());
    let mut first = true;
    for disk in def.disks.iter_mut().filter(|d| d.device == DiskDevice::Disk) {
        let Some(path) = disk.path.clone() else { continue };
        let Some((pool, vol)) = pool_volume(&pools, &path) else {
            result = Err(Failure::bad_input(format!(
                "disk {} ({}) is not a volume of a storage pool; clone copies only pool volumes",
                disk.target,
                path.display()
            )));
            break;
        };
        let (action, ext) = if a.linked {
            ("clone", "qcow2")
        } else {
            ("copy", Path::new(&vol).extension().and_then(|e| e.to_str()).unwrap_or(""))
        };
        let new_vol = clone_volume_name(&a.new, first, &disk.target, ext);
        first = false;
        let url = format!("/v1/pools/{pool}/volumes/{vol}/{action}");
        let body = serde_json::to_vec(&CloneVolume { name: new_vol.clone() })
            .map_err(|e| Failure::error(e.to_string()))?;
        match client.request(Method::POST, &url, Some("application/json"), body).await {
            Ok((_, b)) => {
                let v: VolumeInfo = serde_json::from_slice(&b).map_err(|e| Failure::error(e.to_string()))?;
                made.push((pool.to_string(), new_vol));
                disk.path = Some(v.path.into());
                if a.linked {
                    disk.format = DiskFormat::Qcow2;
                }
            }
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    if result.is_ok() {
        let body = def.to_json().map_err(|e| Failure::error(e.to_string()))?;
        result = client
            .request(Method::POST, "/v1/vms", Some("application/json"), body.into_bytes())
            .await
            .map(|_| ())
            .map_err(Failure::from);
    }
    if let Err(e) = result {
        // Nothing half-made stays behind: the volumes made for the clone go again.
        for (pool, vol) in made {
            let _ = client
                .request(Method::DELETE, &format!("/v1/pools/{pool}/volumes/{vol}"), None, Vec::new())
                .await;
        }
        return Err(e);
    }
    if json {
        print_json(&def);
    } else {
        let how = if a.linked { "linked clone" } else { "copy" };
        println!(
            "{} cloned from {} ({} disk(s) as a {how}, new UUID and MACs)",
            a.new,
            a.name,
            made_count(&def)
        );
    }
    Ok(())
}

fn made_count(def: &VmDef) -> usize {
    def.disks.iter().filter(|d| d.device == DiskDevice::Disk && d.path.is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> VmDef {
        let mut d = VmDef::new(VmName::new("web").unwrap(), 512, 1);
        d.disks.push(Disk {
            path: Some("/p/web.qcow2".into()),
            format: DiskFormat::Qcow2,
            bus: DiskBus::Virtio,
            device: DiskDevice::Disk,
            target: "vda".into(),
            readonly: false,
        });
        d
    }

    fn attach(source: &str, target: &str) -> AttachDiskArgs {
        AttachDiskArgs {
            name: "web".into(),
            source: source.into(),
            target: target.into(),
            targetbus: None,
            driver_type: None,
            device: "disk".into(),
            mode_readonly: false,
            config: true,
        }
    }

    #[test]
    fn memory_sizes_as_virsh_takes_them() {
        for (s, mib) in
            [("512", 512), ("512M", 512), ("2G", 2048), ("2GiB", 2048), ("1048576K", 1024), ("1t", 1 << 20)]
        {
            assert_eq!(parse_mib(s).unwrap(), mib, "{s}");
        }
        for bad in ["", "0", "12X", "1000K", "-1", "G"] {
            assert!(parse_mib(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attached_disks_take_bus_and_format_from_their_names() {
        let d = def();
        let disk = new_disk(&d, &attach("/p/data.qcow2", "vdb")).unwrap();
        assert_eq!(
            (disk.bus, disk.format, disk.device),
            (DiskBus::Virtio, DiskFormat::Qcow2, DiskDevice::Disk)
        );
        let disk = new_disk(&d, &attach("/p/a.raw", "hdb")).unwrap();
        assert_eq!((disk.bus, disk.format), (DiskBus::Ide, DiskFormat::Raw));
        let e = new_disk(&d, &attach("/p/x.raw", "vda")).unwrap_err();
        assert!(e.message.contains("already has a disk vda"), "{}", e.message);
        let e = new_disk(&d, &attach("/p/x.raw", "sdb")).unwrap_err();
        assert!(e.message.contains("vdX (virtio) or hdX (IDE)"), "{}", e.message);
        assert!(new_disk(&d, &attach("", "vdc")).is_err(), "an empty source is only for a CD-ROM");
        let mut cd = attach("", "hdc");
        cd.device = "cdrom".into();
        assert_eq!(new_disk(&d, &cd).unwrap().path, None);
    }

    #[test]
    fn interfaces_and_lists() {
        let a = AttachInterfaceArgs {
            name: "web".into(),
            kind: "network".into(),
            source: "default".into(),
            model: "virtio".into(),
            mac: Some("52:54:00:00:00:01".into()),
            config: true,
        };
        let mut d = def();
        d.interfaces.push(new_interface(&a).unwrap());
        assert_eq!(interface_rows(&d), vec![vec!["network", "default", "virtio", "52:54:00:00:00:01"]]);
        assert_eq!(disk_rows(&d), vec![vec!["vda", "virtio", "disk", "/p/web.qcow2"]]);
        let bad = AttachInterfaceArgs { kind: "user".into(), ..a };
        assert!(new_interface(&bad).unwrap_err().message.contains("use network or bridge"));
        assert!(need_config(false, "setmem").unwrap_err().message.contains("add --config"));
    }

    #[test]
    fn clone_names_and_pool_lookup() {
        assert_eq!(clone_volume_name("web2", true, "vda", "qcow2"), "web2.qcow2");
        assert_eq!(clone_volume_name("web2", false, "vdb", "raw"), "web2-vdb.raw");
        assert_eq!(clone_volume_name("web2", false, "vdb", ""), "web2-vdb");
        let pools =
            vec![PoolInfo { name: "default".into(), path: "/s/images".into(), volumes: 1, available: None }];
        assert_eq!(
            pool_volume(&pools, Path::new("/s/images/web.qcow2")),
            Some(("default", "web.qcow2".into()))
        );
        assert_eq!(pool_volume(&pools, Path::new("/elsewhere/web.qcow2")), None);
    }
}
