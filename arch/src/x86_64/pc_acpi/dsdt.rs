// SPDX-License-Identifier: Apache-2.0
//! The DSDT of the PC machine: the PCI root bridge with its resource windows and interrupt
//! routing, the PIIX3's four PCI interrupt links, the ISA devices and `\_S5`.
//!
//! ```text
//! \_SB.PCI0           PNP0A03, _UID 0, _BBN 0, _CRS (windows), _PRT (static); no _ADR,
//!                     which ACPI forbids next to a _HID (iasl warns about QEMU's)
//! \_SB.PCI0.ISA_      the PIIX3 (00:01.0); region P40C = its PIRQ route registers 0x60-0x63
//! \_SB.PCI0.ISA_.RTC_ PNP0B00  I/O 0x70-0x71, IRQ 8
//! \_SB.PCI0.ISA_.KBD_ PNP0303  I/O 0x60, 0x64, IRQ 1
//! \_SB.PCI0.ISA_.MOU_ PNP0F13  IRQ 12
//! \_SB.PCI0.ISA_.COM1 PNP0501  I/O 0x3f8-0x3ff, IRQ 4
//! \_SB.LNKA-LNKD      PNP0C0F, _UID 1-4: PIRQA-D, IRQ 5, 10 or 11, set through P40C
//! \_SB.LNKS           PNP0C0F, _UID 5: the SCI (IRQ 9), used by the PIIX4 PM's INTA#
//! \_S5_               {SLP_TYP, SLP_TYP, 0, 0}
//! ```
//!
//! Interrupt routing follows QEMU's i440FX and SeaBIOS: device `slot`, pin `pin` (0 = INTA#)
//! drives PIRQ `(slot + pin - 1) mod 4`; the PM function (slot 1, INTA#) raises the SCI
//! directly. Everything the SeaBIOS DSDT scanner looks at (`_HID` as a `Name` holding an
//! EISA ID, `_STA` as a `Name` where it is constant, `_CRS` buffers) is plain data, so the
//! firmware sees the PS/2 keyboard and initializes it.

use std::ops::RangeInclusive;

use acpi_tables::aml::{
    self, AddressSpaceCacheable, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use crate::x86_64::acpi::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// IRQs a PCI interrupt link may be routed to (as QEMU's PIIX DSDT offers them).
pub const LINK_IRQS: [u8; 3] = [5, 10, 11];
/// Interrupt of the SCI link.
pub const SCI_LINK_IRQ: u8 = 9;
/// Names of the links of PIRQA-D.
pub const LINKS: [&str; 4] = ["LNKA", "LNKB", "LNKC", "LNKD"];

/// Already-encoded AML.
pub(crate) struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// `a`, encoded.
pub(crate) fn raw(a: &dyn Aml) -> Raw {
    let mut v = Vec::new();
    a.to_aml_bytes(&mut v);
    Raw(v)
}

/// `IRQNoFlags() {irq}`: the short ISA IRQ descriptor (edge, active high, exclusive).
struct IsaIrq(u8);

impl Aml for IsaIrq {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x22);
        sink.word(1u16 << self.0);
    }
}

/// `Interrupt(ResourceConsumer, Level, ActiveHigh, Shared) {irqs}`: an extended interrupt
/// descriptor listing several interrupts.
struct SharedLevelIrqs(Vec<u32>);

impl Aml for SharedLevelIrqs {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x89);
        sink.word(2 + 4 * self.0.len() as u16);
        // Consumer (bit 0), level (bit 1 clear), active high (bit 2 clear), shared (bit 3).
        sink.byte(0x09);
        sink.byte(self.0.len() as u8);
        for irq in &self.0 {
            sink.dword(*irq);
        }
    }
}

/// `Name(path, value)`.
pub(crate) fn name(path: &str, value: &dyn Aml) -> Raw {
    raw(&aml::Name::new(path.into(), value))
}

/// `Name(_HID, EisaId(id))`.
pub(crate) fn eisa_hid(id: &str) -> Raw {
    name("_HID", &aml::EISAName::new(id))
}

/// `IO(Decode16, port, port, 1, len)`.
pub(crate) fn io(port: u16, len: u8) -> aml::IO {
    aml::IO::new(port, port, 1, len)
}

/// An ISA device with a constant `_STA` (present, enabled, shown, functioning).
fn isa_device(path: &str, hid: &str, uid: Option<u8>, crs: &[&dyn Aml]) -> Raw {
    let hid = eisa_hid(hid);
    let uid = uid.map(|u| name("_UID", &u));
    let sta = name("_STA", &0x0fu8);
    let crs = name("_CRS", &aml::ResourceTemplate::new(crs.to_vec()));
    let mut children: Vec<&dyn Aml> = vec![&hid];
    if let Some(uid) = &uid {
        children.push(uid);
    }
    children.extend([&sta as &dyn Aml, &crs]);
    raw(&aml::Device::new(path.into(), children))
}

fn isa_bridge() -> Raw {
    let adr = name("_ADR", &0x0001_0000u32);
    let region = raw(&aml::OpRegion::new("P40C".into(), aml::OpRegionSpace::PCIConfig, &0x60u8, &4u8));
    let rtc = isa_device("RTC_", "PNP0B00", None, &[&io(0x70, 2), &IsaIrq(8)]);
    let kbd = isa_device("KBD_", "PNP0303", None, &[&io(0x60, 1), &io(0x64, 1), &IsaIrq(1)]);
    let mou = isa_device("MOU_", "PNP0F13", None, &[&IsaIrq(12)]);
    let com1 = isa_device("COM1", "PNP0501", Some(1), &[&io(0x3f8, 8), &IsaIrq(4)]);
    raw(&aml::Device::new("ISA_".into(), vec![&adr, &region, &rtc, &kbd, &mou, &com1]))
}

/// The link a device's pin is routed through (`pin` 0 = INTA#).
pub fn link_of(slot: u8, pin: u8) -> &'static str {
    if slot == 1 && pin == 0 {
        "LNKS"
    } else {
        LINKS[(usize::from(slot) + usize::from(pin) + 3) % 4]
    }
}

fn prt() -> Raw {
    let entries: Vec<(u32, u8, aml::Path)> = (1u8..32)
        .flat_map(|slot| (0u8..4).map(move |pin| (slot, pin)))
        .map(|(slot, pin)| ((u32::from(slot) << 16) | 0xffff, pin, link_of(slot, pin).into()))
        .collect();
    let packages: Vec<aml::Package> =
        entries.iter().map(|(adr, pin, link)| aml::Package::new(vec![adr, pin, link, &aml::ZERO])).collect();
    name("_PRT", &aml::Package::new(packages.iter().map(|p| p as &dyn Aml).collect()))
}

fn root_bridge(hole: &RangeInclusive<u32>, hole64: Option<&RangeInclusive<u64>>) -> Raw {
    let bus = aml::AddressSpace::new_bus_number(0u16, 0xffu16);
    let cf8 = io(0xcf8, 8);
    let io_low = aml::AddressSpace::new_io(0u16, 0x0cf7u16, None);
    let io_high = aml::AddressSpace::new_io(0x0d00u16, 0xffffu16, None);
    let vga =
        aml::AddressSpace::new_memory(AddressSpaceCacheable::Cacheable, true, 0xa_0000u32, 0xb_ffffu32, None);
    let mem32 = aml::AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        *hole.start(),
        *hole.end(),
        None,
    );
    let mem64 = hole64.map(|h| {
        aml::AddressSpace::new_memory(AddressSpaceCacheable::NotCacheable, true, *h.start(), *h.end(), None)
    });
    let mut windows: Vec<&dyn Aml> = vec![&bus, &cf8, &io_low, &io_high, &vga, &mem32];
    if let Some(m) = &mem64 {
        windows.push(m);
    }
    let hid = eisa_hid("PNP0A03");
    let uid = name("_UID", &0u8);
    let bbn = name("_BBN", &0u8);
    let crs = name("_CRS", &aml::ResourceTemplate::new(windows));
    let prt = prt();
    let isa = isa_bridge();
    raw(&aml::Device::new("PCI0".into(), vec![&hid, &uid, &bbn, &crs, &prt, &isa]))
}

/// `IQST(reg)`: a link's `_STA` from its route register (bit 7 = disabled).
fn iqst() -> Raw {
    let disabled = aml::And::new(&aml::ZERO, &0x80u8, &aml::Arg(0));
    let ret9 = aml::Return::new(&0x09u8);
    let if_disabled = aml::If::new(&disabled, vec![&ret9]);
    let ret_b = aml::Return::new(&0x0bu8);
    raw(&aml::Method::new("IQST".into(), 1, false, vec![&if_disabled, &ret_b]))
}

/// `IQCR(reg)`: a link's `_CRS` from its route register (interrupt 0 when disabled).
fn iqcr() -> Raw {
    let template = SharedLevelIrqs(vec![0]);
    let prr0 = name("PRR0", &aml::ResourceTemplate::new(vec![&template]));
    let prri: aml::Path = "PRRI".into();
    let prr0_path: aml::Path = "PRR0".into();
    let field = aml::CreateDWordField::new(&prri, &prr0_path, &5u8);
    let enabled = aml::LessThan::new(&aml::Arg(0), &0x80u8);
    let store = aml::Store::new(&prri, &aml::Arg(0));
    let if_enabled = aml::If::new(&enabled, vec![&store]);
    let ret = aml::Return::new(&prr0_path);
    raw(&aml::Method::new("IQCR".into(), 1, true, vec![&prr0, &field, &if_enabled, &ret]))
}

/// `LNKA`-`LNKD`: PIRQ `index`, routed through route register `PRQ<index>`.
fn pirq_link(index: usize) -> Raw {
    let reg: aml::Path = format!("PRQ{index}").as_str().into();
    let hid = eisa_hid("PNP0C0F");
    let uid = name("_UID", &(index as u8 + 1));
    let prs = name(
        "_PRS",
        &aml::ResourceTemplate::new(vec![&SharedLevelIrqs(
            LINK_IRQS.iter().map(|&i| u32::from(i)).collect(),
        )]),
    );
    let sta_call = aml::MethodCall::new("IQST".into(), vec![&reg]);
    let sta_ret = aml::Return::new(&sta_call);
    let sta = raw(&aml::Method::new("_STA".into(), 0, false, vec![&sta_ret]));
    let dis_or = aml::Or::new(&reg, &reg, &0x80u8);
    let dis = raw(&aml::Method::new("_DIS".into(), 0, false, vec![&dis_or]));
    let crs_call = aml::MethodCall::new("IQCR".into(), vec![&reg]);
    let crs_ret = aml::Return::new(&crs_call);
    let crs = raw(&aml::Method::new("_CRS".into(), 0, false, vec![&crs_ret]));
    let prri: aml::Path = "PRRI".into();
    let field = aml::CreateDWordField::new(&prri, &aml::Arg(0), &5u8);
    let store = aml::Store::new(&reg, &prri);
    let srs = raw(&aml::Method::new("_SRS".into(), 1, true, vec![&field, &store]));
    raw(&aml::Device::new(LINKS[index].into(), vec![&hid, &uid, &prs, &sta, &dis, &crs, &srs]))
}

/// `LNKS`: the SCI, hard-wired to IRQ 9.
fn sci_link() -> Raw {
    let hid = eisa_hid("PNP0C0F");
    let uid = name("_UID", &5u8);
    let sta = name("_STA", &0x0bu8);
    let irq = SharedLevelIrqs(vec![u32::from(SCI_LINK_IRQ)]);
    let prs = name("_PRS", &aml::ResourceTemplate::new(vec![&irq]));
    let crs = name("_CRS", &aml::ResourceTemplate::new(vec![&irq]));
    let srs = raw(&aml::Method::new("_SRS".into(), 1, false, vec![]));
    let dis = raw(&aml::Method::new("_DIS".into(), 0, false, vec![]));
    raw(&aml::Device::new("LNKS".into(), vec![&hid, &uid, &sta, &prs, &crs, &srs, &dis]))
}

/// The DSDT. `hole` is the 32-bit PCI memory window, `hole64` an optional window above
/// 4 GiB, `s5_sleep_type` the SLP_TYP value that powers the machine off.
pub fn dsdt(hole: &RangeInclusive<u32>, hole64: Option<&RangeInclusive<u64>>, s5_sleep_type: u8) -> Sdt {
    let pci0 = root_bridge(hole, hole64);
    let routes = raw(&aml::Field::new(
        "PCI0.ISA_.P40C".into(),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        [*b"PRQ0", *b"PRQ1", *b"PRQ2", *b"PRQ3"].into_iter().map(|n| FieldEntry::Named(n, 8)).collect(),
    ));
    let (iqst, iqcr) = (iqst(), iqcr());
    let links: Vec<Raw> = (0..4).map(pirq_link).collect();
    let lnks = sci_link();
    let mut sb_children: Vec<&dyn Aml> = vec![&pci0, &routes, &iqst, &iqcr];
    sb_children.extend(links.iter().map(|l| l as &dyn Aml));
    sb_children.push(&lnks);
    let sb = aml::Scope::new("\\_SB_".into(), sb_children);
    let s5 =
        aml::Name::new("\\_S5_".into(), &aml::Package::new(vec![&s5_sleep_type, &s5_sleep_type, &0u8, &0u8]));

    let mut dsdt = Sdt::new(*b"DSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let mut body = Vec::new();
    sb.to_aml_bytes(&mut body);
    s5.to_aml_bytes(&mut body);
    dsdt.append_slice(&body);
    dsdt
}
