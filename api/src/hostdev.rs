// SPDX-License-Identifier: Apache-2.0
//! `--device vfio=ADDR[,rom=on|off]`: a host PCI function assigned to the guest with VFIO.
//!
//! In the JSON file, `"devices"` lists the same strings or objects
//! (`{"vfio": "0000:00:02.0", "rom": false}`).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::machine::StringOrFields;

/// Most assigned devices per VM.
pub const MAX_HOST_DEVICES: usize = 8;

/// A PCI address on the host: domain, bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment (domain).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.domain, self.bus, self.device, self.function)
    }
}

impl FromStr for PciAddress {
    type Err = String;

    /// `DDDD:BB:DD.F` as in /sys/bus/pci/devices, or `BB:DD.F` (domain 0) as lspci prints it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a PCI address; write it as lspci -D does, e.g. 0000:00:02.0");
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, rest) = match parts.as_slice() {
            [d, b, rest] => (*d, *b, *rest),
            [b, rest] => ("0", *b, *rest),
            _ => return Err(bad()),
        };
        let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, max: u32| u32::from_str_radix(t, 16).ok().filter(|&v| v <= max && !t.is_empty());
        match (hex(domain, 0xffff), hex(bus, 0xff), hex(dev, 0x1f), hex(func, 7)) {
            (Some(d), Some(b), Some(v), Some(f)) if domain.len() <= 4 && bus.len() <= 2 && dev.len() <= 2 => {
                Ok(PciAddress { domain: d as u16, bus: b as u8, device: v as u8, function: f as u8 })
            }
            _ => Err(bad()),
        }
    }
}

/// One `--device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevConfig {
    /// The host PCI function, bound to vfio-pci.
    pub addr: PciAddress,
    /// Show the device's expansion ROM to the guest (the firmware runs it); default on.
    pub rom: bool,
}

/// The JSON object form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDevFields {
    vfio: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rom: Option<bool>,
}

impl TryFrom<HostDevFields> for HostDevConfig {
    type Error = String;
    fn try_from(f: HostDevFields) -> Result<Self, String> {
        Ok(HostDevConfig { addr: f.vfio.parse()?, rom: f.rom.unwrap_or(true) })
    }
}

impl FromStr for HostDevConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let first = parts.next().unwrap_or_default();
        let Some(("vfio", addr)) = first.split_once('=') else {
            return Err(format!("'{first}' is not a device kind; use vfio=ADDR, e.g. vfio=0000:00:02.0"));
        };
        let mut dev = HostDevConfig { addr: addr.parse()?, rom: true };
        for opt in parts {
            match opt.split_once('=') {
                Some(("rom", "on" | "true")) => dev.rom = true,
                Some(("rom", "off" | "false")) => dev.rom = false,
                _ => return Err(format!("unknown option '{opt}'; use rom=on|off")),
            }
        }
        Ok(dev)
    }
}

impl fmt::Display for HostDevConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vfio={}", self.addr)?;
        if !self.rom {
            write!(f, ",rom=off")?;
        }
        Ok(())
    }
}

impl Serialize for HostDevConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        HostDevFields { vfio: self.addr.to_string(), rom: (!self.rom).then_some(false) }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HostDevConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrFields::<HostDevConfig, HostDevFields>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_sysfs_and_lspci() {
        let a: PciAddress = "0000:00:02.0".parse().unwrap();
        assert_eq!(a, PciAddress { domain: 0, bus: 0, device: 2, function: 0 });
        assert_eq!("01:1f.7".parse::<PciAddress>().unwrap().to_string(), "0000:01:1f.7");
        assert!("10000:00:02.0".parse::<PciAddress>().unwrap_err().contains("lspci -D"));
        for bad in ["", "00:20.0", "00:02.8", "00:02", "0:0:0:0.0", "zz:00.0", "00:02.", "000:100:00.0"] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_and_json_read_back() {
        let d: HostDevConfig = "vfio=0000:00:02.0".parse().unwrap();
        assert!(d.rom);
        let d2: HostDevConfig = "vfio=00:03.0,rom=off".parse().unwrap();
        assert_eq!(d2.to_string(), "vfio=0000:00:03.0,rom=off");
        assert!("pci=00:02.0".parse::<HostDevConfig>().unwrap_err().contains("vfio=ADDR"));
        assert!("vfio=00:02.0,bar=1".parse::<HostDevConfig>().unwrap_err().contains("rom=on|off"));
        for d in [d, d2] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<HostDevConfig>(&json).unwrap(), d, "{json}");
        }
        let j: HostDevConfig = serde_json::from_str(r#""vfio=0000:00:02.0,rom=off""#).unwrap();
        assert!(!j.rom);
        let e = serde_json::from_str::<HostDevConfig>(r#"{"vfio": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("lspci -D"), "{e}");
    }
}
