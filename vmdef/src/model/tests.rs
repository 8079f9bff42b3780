// SPDX-License-Identifier: Apache-2.0
//! Tests of the model's types and JSON form.

use super::*;

#[test]
fn names() {
    for ok in ["a", "web-01", "my_vm.test", &"x".repeat(64)] {
        assert_eq!(VmName::new(ok).unwrap().as_str(), ok);
    }
    for bad in ["", ".", "..", ".hidden", "-rf", "--help", "a/b", "a b", "a;b", "a\"b", "ü", &"x".repeat(65)]
    {
        assert!(VmName::new(bad).is_err(), "{bad:?} accepted");
    }
    let e = VmName::new("a/b").unwrap_err().to_string();
    assert!(e.contains("a/b") && e.contains("A-Z"), "{e}");
    let e = VmName::new("-x").unwrap_err().to_string();
    assert!(e.contains("'-'"), "{e}");
}

#[test]
fn mac_parse_and_print() {
    let m: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
    assert_eq!(m.octets(), [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
    assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
    for bad in ["52:54:00:ab:cd", "52:54:00:ab:cd:0f:11", "52-54-00-ab-cd-0f", "5:54:00:ab:cd:0f"] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad} accepted");
    }
    let e = "01:00:5e:00:00:01".parse::<MacAddr>().unwrap_err().to_string();
    assert!(e.contains("multicast"), "{e}");
    assert!("ff:ff:ff:ff:ff:ff".parse::<MacAddr>().is_err());
    assert!("00:00:00:00:00:00".parse::<MacAddr>().is_err());
}

#[test]
fn random_macs_are_local_and_differ() {
    let a = MacAddr::random();
    let b = MacAddr::random();
    assert_eq!(&a.octets()[..3], &[0x52, 0x54, 0x00]);
    assert!(MacAddr::new(a.octets()).is_ok());
    // 24 random bits: a collision in one pair is 1 in 16 million.
    assert_ne!(a, b);
}

#[test]
fn pci_addresses() {
    let a: PciAddress = "0000:01:00.0".parse().unwrap();
    assert_eq!((a.domain(), a.bus(), a.slot(), a.function()), (0, 1, 0, 0));
    let b: PciAddress = "3:1f.7".parse().unwrap();
    assert_eq!(b.to_string(), "0000:03:1f.7");
    for bad in ["0000:01:20.0", "0000:01:00.8", "01:00", "0000:100:00.0", "x:01:00.0", "0:0:0:0.0", ":01.0"] {
        assert!(bad.parse::<PciAddress>().is_err(), "{bad} accepted");
    }
    assert!(PciAddress::new(0, 0, 32, 0).is_err());
}

#[test]
fn json_defaults_fill_generated_values() {
    let def = VmDef::from_json(
        r#"{"name": "vm1", "memory_mib": 512, "vcpus": 2,
            "disks": [{"path": "/a.img", "bus": "virtio"}, {"bus": "ide", "device": "cdrom"},
                      {"path": "/b.img", "bus": "virtio", "target": "vda"}],
            "interfaces": [{"source": {"bridge": "br0"}}]}"#,
    )
    .unwrap();
    assert_eq!(def.os, Os::Pc { boot: vec![BootDevice::Disk] });
    assert_eq!(def.features, Features { acpi: true, apic: true });
    assert_eq!(def.serial, Some(Serial { log: None }));
    assert_eq!(def.on_reboot, LifecycleAction::Restart);
    assert!(!def.uuid.is_nil());
    assert_eq!(&def.interfaces[0].mac.octets()[..3], &[0x52, 0x54, 0]);
    assert_eq!(def.interfaces[0].model, NicModel::Virtio);
    let targets: Vec<&str> = def.disks.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(targets, ["vdb", "hda", "vda"]);
    assert!(def.disks[1].is_readonly());
}

#[test]
fn json_round_trip() {
    let mut def = VmDef::new(VmName::new("rt").unwrap(), 1024, 4);
    def.os = Os::Direct { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: None };
    def.serial = None;
    def.graphics.vnc = Some(Vnc { port: Some(5901), listen: "0.0.0.0".parse().unwrap(), password: None });
    def.hostdevs.push(HostDev { address: "0000:02:00.1".parse().unwrap(), managed: false });
    assert_eq!(VmDef::from_json(&def.to_json().unwrap()).unwrap(), def);
}

#[test]
fn json_errors_have_position_and_field() {
    let e = VmDef::from_json("{\n  \"name\": \"a\",\n  \"memory_mib\": 1,\n  \"vcpu\": 1\n}").unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown field `vcpu`") && e.message.contains("vcpus"), "{e}");

    let text =
        "{\"name\":\"a\",\"memory_mib\":1,\"vcpus\":1,\n\"disks\":[{\"path\":\"/x\",\"bus\":\"scsi\"}]}";
    let e = VmDef::from_json(text).unwrap_err();
    assert_eq!((e.line, e.path.as_str()), (2, "disks[0].bus"));
    assert!(e.message.contains("ide") && e.message.contains("virtio"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("line 2, column ") && shown.contains("field disks[0].bus"), "{shown}");

    let e = VmDef::from_json("{\"name\":\"a b\",\"memory_mib\":1,\"vcpus\":1}").unwrap_err();
    assert_eq!(e.path, "name");
    assert!(e.message.contains("A-Z"), "{e}");

    let e = VmDef::from_json("{\"name\":\"a\",\"memory_mib\":1}").unwrap_err();
    assert!(e.message.contains("missing field `vcpus`"), "{e}");

    let e = VmDef::from_json("{\"name\":\"a\",\n\"memory_mib\":1,,}").unwrap_err();
    assert_eq!(e.line, 2);
}

#[test]
fn json_os_variants_reject_mixed_fields() {
    let base = r#""name":"a","memory_mib":64,"vcpus":1"#;
    let ok = format!(r#"{{{base},"os":{{"machine":"direct","kernel":"/k","cmdline":"quiet"}}}}"#);
    let def = VmDef::from_json(&ok).unwrap();
    assert_eq!(def.os, Os::Direct { kernel: "/k".into(), initrd: None, cmdline: Some("quiet".into()) });
    let bad = format!(r#"{{{base},"os":{{"machine":"pc","kernel":"/k"}}}}"#);
    let e = VmDef::from_json(&bad).unwrap_err();
    assert!(e.message.contains("kernel"), "{e}");
    let bad = format!(r#"{{{base},"os":{{"machine":"q35"}}}}"#);
    assert!(VmDef::from_json(&bad).unwrap_err().message.contains("q35"));
}
