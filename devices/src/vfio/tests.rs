// SPDX-License-Identifier: Apache-2.0
//! The VFIO PCI device against a fake host device: configuration-space virtualization (BAR
//! sizing and moves, ROM, the capability chain with MSI and MSI-X emulated), the MSI-X table
//! in its trapped BAR, interrupt switching and reset.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::backend::{BackendError, IntxEventfds, IrqKind, RegionInfo, VfioBackend, CONFIG_REGION};
use super::config::ConfigError;
use super::device::{DeviceError, VfioPciDevice};
use crate::interrupt::{InterruptError, InterruptManager, MsiMessage, MsiVectors};
use crate::pci::{BarKind, PciBarRange, PciDevice};

/// What the fake device saw.
#[derive(Default)]
struct State {
    config: Vec<u8>,
    regions: Vec<RegionInfo>,
    /// Contents of BARs 0-6 (6: ROM).
    data: Vec<Vec<u8>>,
    /// Interrupt calls, like "intx on", "msi on 4", "msix off".
    irqs: Vec<String>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
    fn take_irqs(&self) -> Vec<String> {
        std::mem::take(&mut self.st().irqs)
    }
}

impl VfioBackend for Fake {
    fn region(&self, index: usize) -> Option<RegionInfo> {
        self.st().regions.get(index).copied().filter(|r| r.size > 0)
    }
    fn read(&self, index: usize, offset: u64, data: &mut [u8]) -> Result<(), BackendError> {
        let st = self.st();
        let src = if index == CONFIG_REGION { &st.config } else { &st.data[index] };
        let o = offset as usize;
        let part =
            src.get(o..o + data.len()).ok_or(BackendError::OutOfRange { index, offset, len: data.len() })?;
        data.copy_from_slice(part);
        Ok(())
    }
    fn write(&self, index: usize, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut st = self.st();
        if index == CONFIG_REGION {
            st.config_writes.push((offset, data.to_vec()));
        }
        let dst = if index == CONFIG_REGION { &mut st.config } else { &mut st.data[index] };
        let o = offset as usize;
        dst.get_mut(o..o + data.len())
            .ok_or(BackendError::OutOfRange { index, offset, len: data.len() })?
            .copy_from_slice(data);
        Ok(())
    }
    fn mmap(&mut self, index: usize) -> Option<u64> {
        Some(0x7000_0000 + index as u64 * 0x100_0000)
    }
    fn irq_count(&self, kind: IrqKind) -> u32 {
        match kind {
            IrqKind::Intx => 1,
            IrqKind::Msi => 4,
            IrqKind::Msix => 5,
        }
    }
    fn enable_intx(&self, _trigger: &EventFd, _resample: &EventFd) -> Result<(), BackendError> {
        self.st().irqs.push("intx on".into());
        Ok(())
    }
    fn enable_msi(&self, kind: IrqKind, fds: &[&EventFd]) -> Result<(), BackendError> {
        self.st().irqs.push(format!("{kind:?} on {}", fds.len()));
        Ok(())
    }
    fn disable_irq(&self, kind: IrqKind) -> Result<(), BackendError> {
        self.st().irqs.push(format!("{kind:?} off"));
        Ok(())
    }
    fn reset(&self) -> bool {
        self.st().resets += 1;
        true
    }
}

/// Vectors with real eventfds (the device hands them to the host) that record routes.
struct Vectors {
    routes: Mutex<Vec<Option<MsiMessage>>>,
    fds: Vec<EventFd>,
    masked: Mutex<Vec<bool>>,
}

impl MsiVectors for Vectors {
    fn len(&self) -> usize {
        self.fds.len()
    }
    fn set_route(&self, vector: usize, msg: MsiMessage) -> Result<(), InterruptError> {
        *self.routes.lock().unwrap().get_mut(vector).ok_or(InterruptError::NoSuchVector(vector))? = Some(msg);
        Ok(())
    }
    fn clear_route(&self, vector: usize) -> Result<(), InterruptError> {
        *self.routes.lock().unwrap().get_mut(vector).ok_or(InterruptError::NoSuchVector(vector))? = None;
        Ok(())
    }
    fn trigger(&self, vector: usize) -> Result<(), InterruptError> {
        self.fds.get(vector).ok_or(InterruptError::NoSuchVector(vector))?;
        Ok(())
    }
    fn notifier(&self, vector: usize) -> Option<&EventFd> {
        self.fds.get(vector)
    }
    fn set_masked(&self, vector: usize, masked: bool) -> Result<(), InterruptError> {
        *self.masked.lock().unwrap().get_mut(vector).ok_or(InterruptError::NoSuchVector(vector))? = masked;
        Ok(())
    }
    fn pending(&self, vector: usize) -> bool {
        // A host signal of a masked vector stays in its eventfd (non-blocking: EAGAIN when none).
        self.masked.lock().unwrap().get(vector).copied().unwrap_or(false)
            && self.fds[vector].read().map(|n| self.fds[vector].write(n).is_ok()).unwrap_or(false)
    }
}

#[derive(Default)]
struct Manager(Mutex<Option<Arc<Vectors>>>);

impl InterruptManager for Manager {
    fn msi_vectors(&self, count: usize) -> Result<Arc<dyn MsiVectors>, InterruptError> {
        let v = Arc::new(Vectors {
            routes: Mutex::new(vec![None; count]),
            fds: (0..count).map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap()).collect(),
            masked: Mutex::new(vec![false; count]),
        });
        *self.0.lock().unwrap() = Some(v.clone());
        Ok(v)
    }
}

impl Manager {
    fn route(&self, i: usize) -> Option<MsiMessage> {
        self.0.lock().unwrap().as_ref().unwrap().routes.lock().unwrap()[i]
    }
}

struct Intx {
    trigger: EventFd,
    resample: EventFd,
    deasserts: Mutex<usize>,
}

impl IntxEventfds for Intx {
    fn trigger(&self) -> &EventFd {
        &self.trigger
    }
    fn resample(&self) -> &EventFd {
        &self.resample
    }
    fn deassert(&self) {
        *self.deasserts.lock().unwrap() += 1;
    }
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

/// A NIC-like function: BAR0 128 KiB memory, BAR1 32 I/O ports, BAR2 64-bit prefetchable
/// 16 KiB, BAR4 16 KiB holding the MSI-X table (5 vectors) and PBA, a 64 KiB ROM; capabilities
/// power management (0x40), MSI 64-bit with 4 vectors (0x50), MSI-X (0x70).
fn fake() -> Fake {
    let mut c = vec![0u8; 256];
    put(&mut c, 0, &[0x86, 0x80, 0xd3, 0x10]);
    put(&mut c, 4, &[0x00, 0x00, 0x10, 0x00]); // status: capability list
    put(&mut c, 8, &[0x01, 0x00, 0x00, 0x02]); // revision 1, class 02 00 00
    c[0x0e] = 0x80; // multi-function on the host
    put(&mut c, 0x10, &0xfeb0_0000u32.to_le_bytes()); // host addresses, never shown
    put(&mut c, 0x14, &0x0000_e001u32.to_le_bytes());
    put(&mut c, 0x18, &0xc000_000cu32.to_le_bytes());
    put(&mut c, 0x20, &0xfeb4_0000u32.to_le_bytes());
    put(&mut c, 0x2c, &[0x34, 0x12, 0x78, 0x56]); // subsystem
    c[0x34] = 0x40;
    c[0x3c] = 11;
    c[0x3d] = 1;
    put(&mut c, 0x40, &[0x01, 0x50, 0x03, 0x00, 0x00, 0x00]); // PM
    put(&mut c, 0x50, &[0x05, 0x70, 0x85, 0x00]); // MSI: 64-bit, MMC 2 (4), enabled by the host
    put(&mut c, 0x70, &[0x11, 0x00, 0x04, 0xc0]); // MSI-X: 5 entries, host bits set
    put(&mut c, 0x74, &0x0000_0004u32.to_le_bytes()); // table in BAR4 at 0
    put(&mut c, 0x78, &0x0000_0804u32.to_le_bytes()); // PBA in BAR4 at 0x800
    let r = |size: u64, mmappable: bool| RegionInfo { size, readable: true, writable: true, mmappable };
    let regions = vec![
        r(0x2_0000, true),
        r(0x20, false),
        r(0x4000, true),
        RegionInfo::default(),
        r(0x4000, true),
        RegionInfo::default(),
        RegionInfo { size: 0x1_0000, readable: true, writable: false, mmappable: false },
        r(256, false),
    ];
    let data = regions.iter().take(7).map(|r| (0..r.size).map(|i| i as u8).collect()).collect();
    Fake(Arc::new(Mutex::new(State { config: c, regions, data, ..Default::default() })))
}

fn open(f: &Fake) -> (VfioPciDevice, Arc<Manager>, Arc<Intx>) {
    let mgr = Arc::new(Manager::default());
    let intx = Arc::new(Intx {
        trigger: EventFd::new(0).unwrap(),
        resample: EventFd::new(0).unwrap(),
        deasserts: Mutex::new(0),
    });
    let d = VfioPciDevice::new("hostdev0", Box::new(f.clone()), mgr.as_ref(), Some(intx.clone())).unwrap();
    (d, mgr, intx)
}

fn w32(d: &mut VfioPciDevice, offset: usize, v: u32) {
    d.config_write(offset / 4, 0, &v.to_le_bytes());
}

fn r8(d: &VfioPciDevice, offset: usize) -> u8 {
    (d.config_read(offset / 4) >> (8 * (offset % 4))) as u8
}

#[test]
fn start_resets_and_delivers_intx() {
    let f = fake();
    let (d, _, _) = open(&f);
    assert_eq!(f.st().resets, 1, "function reset when opened");
    assert_eq!(f.take_irqs(), ["intx on"]);
    assert_eq!((d.mapped_bars(), d.trapped_bars()), (vec![0, 2], vec![1, 4]), "MSI-X BAR and I/O trapped");
    assert_eq!(d.bar_host_memory(0), Some(0x7000_0000));
    assert_eq!(d.bar_host_memory(4), None);
    drop(d);
    assert_eq!(f.st().resets, 2, "and reset when the VM stops");
    assert_eq!(f.take_irqs(), ["Intx off"]);
}

#[test]
fn header_is_virtualized() {
    let f = fake();
    let (mut d, _, _) = open(&f);
    assert_eq!(d.config_read(0), 0x10d3_8086);
    assert_eq!(d.config_read(2), 0x0200_0001);
    assert_eq!(r8(&d, 0x0e), 0, "single function");
    assert_eq!(d.config_read(11), 0x5678_1234, "subsystem IDs are the device's");
    for reg in 4..10 {
        assert_eq!(d.config_read(reg) & !0xf, 0, "host BAR addresses are hidden");
    }
    assert_eq!(d.config_read(15) & 0xffff, 0x0100, "INTA#, line unset");
    d.config_write(15, 0, &[10]);
    assert_eq!(d.config_read(15) & 0xff, 10);
    w32(&mut d, 0x10, 0xfe00_0000);
    assert!(f.st().config_writes.is_empty(), "BARs and the line stay in the VMM");
    // The command register reaches the device (bus master, memory) and reads back as written.
    d.config_write(1, 0, &[0x06, 0x04]);
    assert_eq!(f.st().config_writes, [(4, vec![0x06, 0x04])]);
    assert_eq!(d.config_read(1) & 0xffff, 0x0406);
    assert_eq!(d.config_read(1) >> 16, 0x0010, "status is the device's");
    // Cache line size goes to the device; the header type does not.
    d.config_write(3, 0, &[0x10, 0x00, 0xff]);
    assert_eq!(f.st().config_writes.last().unwrap(), &(12, vec![0x10, 0x00]));
}

#[test]
fn bars_size_move_and_decode() {
    let f = fake();
    let (mut d, _, _) = open(&f);
    for reg in 4..10 {
        w32(&mut d, reg * 4, u32::MAX);
    }
    let sized: Vec<u32> = (4..10).map(|r| d.config_read(r)).collect();
    assert_eq!(sized, [0xfffe_0000, 0xffff_ffe1, 0xffff_c00c, 0xffff_ffff, 0xffff_c000, 0]);
    w32(&mut d, 0x30, u32::MAX);
    assert_eq!(d.config_read(12), 0xffff_0001, "64 KiB ROM");
    w32(&mut d, 0x10, 0xfe00_0000);
    w32(&mut d, 0x14, 0xc000);
    w32(&mut d, 0x18, 0);
    w32(&mut d, 0x1c, 0x1);
    w32(&mut d, 0x20, 0xfe02_0000);
    w32(&mut d, 0x30, 0xfe04_0001);
    assert!(d.bar_ranges().is_empty(), "decoding off");
    d.config_write(1, 0, &[0x07]);
    let want = |index, kind, address, size| PciBarRange { index, kind, address, size };
    assert_eq!(
        d.bar_ranges(),
        [
            want(0, BarKind::Mem32, 0xfe00_0000, 0x2_0000),
            want(1, BarKind::Io, 0xc000, 0x20),
            want(2, BarKind::Mem64, 0x1_0000_0000, 0x4000),
            want(4, BarKind::Mem32, 0xfe02_0000, 0x4000),
            want(6, BarKind::Mem32, 0xfe04_0000, 0x1_0000),
        ]
    );
    w32(&mut d, 0x10, 0xfd00_0000);
    assert_eq!(d.bar_ranges()[0].address, 0xfd00_0000);
    // Trapped accesses go to the regions at the same offsets; the ROM is read-only.
    let mut b = [0u8; 2];
    d.bar_read(1, 0x10, &mut b);
    assert_eq!(b, [0x10, 0x11]);
    d.bar_write(1, 0x1e, &[0xaa, 0xbb]);
    assert_eq!(f.st().data[1][0x1e..], [0xaa, 0xbb]);
    d.bar_write(1, 0x1f, &[1, 2]);
    d.bar_read(1, 0x1f, &mut b);
    assert_eq!(b, [0xff, 0xff], "past the region");
    d.bar_read(6, 0x1234, &mut b);
    assert_eq!(b, [0x34, 0x35]);
    d.bar_write(6, 0, &[9]);
    assert_eq!(f.st().data[6][0], 0);
    d.bar_read(4, 0x3ffe, &mut b);
    assert_eq!(b, [0xfe, 0xff], "BAR4 outside the table and PBA is the device's");
    // A ROM without its enable bit decodes nothing.
    w32(&mut d, 0x30, 0xfe04_0000);
    assert_eq!(d.bar_ranges().len(), 4);
}

#[test]
fn capability_chain_with_msi_and_msix_emulated() {
    let f = fake();
    let (mut d, _, _) = open(&f);
    assert_eq!(d.config().capabilities(), [(0x01, 0x40), (0x05, 0x50), (0x11, 0x70)]);
    assert_eq!((r8(&d, 0x34), r8(&d, 0x41), r8(&d, 0x51), r8(&d, 0x71)), (0x40, 0x50, 0x70, 0));
    assert_eq!(d.config_read(0x50 / 4), 0x0084_7005, "MSI: enable off as emulated, 64-bit, MMC 2");
    assert_eq!(d.config_read(0x70 / 4), 0x0004_0011, "MSI-X: enable and mask off");
    assert_eq!((d.config_read(0x74 / 4), d.config_read(0x78 / 4)), (0x4, 0x804));
    // Power management is the device's: writes reach it.
    d.config_write(0x44 / 4, 0, &[0x03, 0x00]);
    assert_eq!(f.st().config_writes.last().unwrap(), &(0x44, vec![0x03, 0x00]));
    // MSI and MSI-X registers never do.
    let before = f.st().config_writes.len();
    w32(&mut d, 0x54, 0xfee0_1000);
    w32(&mut d, 0x5c, 0xffff_4041);
    d.config_write(0x70 / 4, 3, &[0x40]);
    assert_eq!(f.st().config_writes.len(), before);
    assert_eq!(d.config_read(0x5c / 4), 0x4041, "16-bit data");
    assert_eq!(r8(&d, 0x73), 0x40, "function mask");
    assert_eq!(d.config_read(0x74 / 4), 0x4, "table offset read-only");
    d.config_write(0x74 / 4, 0, &[0xff; 4]);
    assert_eq!(d.config_read(0x74 / 4), 0x4);
}

#[test]
fn msi_enable_routes_vectors_and_moves_the_host_off_intx() {
    let f = fake();
    let (mut d, mgr, _) = open(&f);
    f.take_irqs();
    w32(&mut d, 0x54, 0xfee0_1000);
    w32(&mut d, 0x58, 0);
    d.config_write(0x5c / 4, 0, &[0x41, 0x40]);
    assert!(f.take_irqs().is_empty());
    // MME 2 (4 vectors) and enable.
    d.config_write(0x52 / 4, 2, &[0x21, 0x00]);
    assert_eq!(f.take_irqs(), ["Intx off", "Msi on 4"]);
    assert_eq!(mgr.route(0), Some(MsiMessage { address: 0xfee0_1000, data: 0x4040 }));
    assert_eq!(mgr.route(3), Some(MsiMessage { address: 0xfee0_1000, data: 0x4043 }));
    // A new address while enabled moves the routes; the host keeps its vectors.
    w32(&mut d, 0x54, 0xfee0_2000);
    assert_eq!(mgr.route(1).unwrap().address, 0xfee0_2000);
    assert!(f.take_irqs().is_empty());
    d.config_write(0x52 / 4, 2, &[0x20, 0x00]);
    assert_eq!(f.take_irqs(), ["Msi off", "intx on"]);
    assert_eq!(mgr.route(0), None);
}

#[test]
fn msix_table_is_trapped_in_its_bar() {
    let f = fake();
    let (mut d, mgr, _) = open(&f);
    f.take_irqs();
    // Entry 1: address, data, unmasked (through BAR4 at the table offset).
    d.bar_write(4, 0x10, &0xfee0_0000u32.to_le_bytes());
    d.bar_write(4, 0x14, &0u32.to_le_bytes());
    d.bar_write(4, 0x18, &0x31u32.to_le_bytes());
    d.bar_write(4, 0x1c, &0u32.to_le_bytes());
    assert_eq!(f.st().data[4][0x10..0x14], [0x10, 0x11, 0x12, 0x13], "the device's table is untouched");
    let mut b = [0u8; 4];
    d.bar_read(4, 0x18, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x31);
    d.bar_read(4, 0x0c, &mut b);
    assert_eq!(u32::from_le_bytes(b), 1, "entry 0 masked");
    d.bar_read(4, 0x800, &mut b);
    assert_eq!(b, [0; 4], "emulated PBA");
    d.bar_read(4, 0x12, &mut [0u8; 2]);
    assert_eq!(mgr.route(1), None, "MSI-X off");
    d.config_write(0x70 / 4, 3, &[0x80]);
    assert_eq!(f.take_irqs(), ["Intx off", "Msix on 5"]);
    assert_eq!(mgr.route(1), Some(MsiMessage { address: 0xfee0_0000, data: 0x31 }));
    d.bar_write(4, 0x18, &0x32u32.to_le_bytes());
    assert_eq!(mgr.route(1).unwrap().data, 0x32, "a changed entry is routed again");
    // Past the table (5 entries) is the device's again.
    d.bar_write(4, 0x50, &[7]);
    assert_eq!(f.st().data[4][0x50], 7);
    d.config_write(0x70 / 4, 3, &[0x00]);
    assert_eq!(f.take_irqs(), ["Msix off", "intx on"]);
    assert_eq!(mgr.route(1), None);
}

#[test]
fn a_masked_msix_vector_holds_the_hosts_signal_until_unmasked() {
    let f = fake();
    let (mut d, mgr, _) = open(&f);
    let v = mgr.0.lock().unwrap().clone().unwrap();
    let masked = |i: usize| v.masked.lock().unwrap()[i];
    assert!(!(0..5).any(masked), "MSI-X off: nothing masked in the back end");
    d.config_write(0x70 / 4, 3, &[0x80]);
    assert!((0..5).all(masked), "on: all entries start masked");
    d.bar_write(4, 0x10, &0xfee0_0000u32.to_le_bytes());
    d.bar_write(4, 0x18, &0x31u32.to_le_bytes());
    d.bar_write(4, 0x1c, &0u32.to_le_bytes());
    assert!(!masked(1) && masked(0));
    // The guest masks entry 1; the device signals it: pending in the PBA, not delivered.
    d.bar_write(4, 0x1c, &1u32.to_le_bytes());
    assert!(masked(1));
    v.fds[1].write(1).unwrap();
    let mut b = [0u8; 8];
    d.bar_read(4, 0x800, &mut b);
    assert_eq!(u64::from_le_bytes(b), 0b10, "PBA bit 1");
    d.bar_write(4, 0x1c, &0u32.to_le_bytes());
    assert!(!masked(1));
    // The function mask holds every vector.
    d.config_write(0x70 / 4, 3, &[0xc0]);
    assert!((0..5).all(masked));
    d.config_write(0x70 / 4, 3, &[0x80]);
    assert!(!masked(1) && masked(2));
}

#[test]
fn msi_per_vector_mask_bits_hold_the_hosts_signals() {
    let f = fake();
    // MSI with per-vector masking: 64-bit, MMC 2, PVM; mask bits at 0x60, pending at 0x64.
    f.st().config[0x52] = 0x85;
    f.st().config[0x53] = 0x01;
    let (mut d, mgr, _) = open(&f);
    let v = mgr.0.lock().unwrap().clone().unwrap();
    w32(&mut d, 0x54, 0xfee0_1000);
    d.config_write(0x52 / 4, 2, &[0x21, 0x01]);
    w32(&mut d, 0x60, 0b0100);
    assert_eq!(*v.masked.lock().unwrap(), [false, false, true, false, false]);
    assert_eq!(d.config_read(0x64 / 4), 0, "nothing pending");
    v.fds[2].write(1).unwrap();
    assert_eq!(d.config_read(0x64 / 4), 0b0100, "the host's signal of masked vector 2 is pending");
    assert_eq!(d.config_read(0x60 / 4), 0b0100, "mask bits read back");
    w32(&mut d, 0x60, 0);
    assert!(!v.masked.lock().unwrap()[2]);
    assert_eq!(d.config_read(0x64 / 4), 0);
    // MSI off lets go of the masks (MSI-X uses the same vectors).
    w32(&mut d, 0x60, 0b1000);
    assert!(v.masked.lock().unwrap()[3]);
    d.config_write(0x52 / 4, 2, &[0x20, 0x01]);
    assert!(!v.masked.lock().unwrap().iter().any(|m| *m));
}

#[test]
fn guest_reset_resets_the_function_and_the_emulation() {
    let f = fake();
    let (mut d, mgr, intx) = open(&f);
    w32(&mut d, 0x10, 0xfe00_0000);
    d.config_write(1, 0, &[0x06]);
    d.bar_write(4, 0x08, &0x30u32.to_le_bytes());
    d.config_write(0x70 / 4, 3, &[0x80]);
    assert!(mgr.route(0).is_some());
    f.take_irqs();
    let resets = f.st().resets;
    d.reset();
    assert_eq!(f.st().resets, resets + 1);
    assert_eq!(f.take_irqs(), ["Msix off", "intx on"]);
    assert_eq!(*intx.deasserts.lock().unwrap(), 1);
    assert_eq!((d.config_read(4), d.config_read(1) & 0xffff), (0, 0));
    assert_eq!(f.st().config_writes.last().unwrap(), &(4, vec![0, 0]), "command cleared on the device");
    assert_eq!(mgr.route(0), None);
    let mut b = [0u8; 4];
    d.bar_read(4, 0x08, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0, "table entries back to zero");
    assert_eq!(r8(&d, 0x73), 0);
}

#[test]
fn bad_guest_accesses_are_ignored() {
    let f = fake();
    let (mut d, _, _) = open(&f);
    let before = f.st().config_writes.len();
    d.config_write(0x44 / 4, 3, &[1, 2]);
    d.config_write(64, 0, &[1]);
    d.config_write(0x44 / 4, 0, &[]);
    assert_eq!(f.st().config_writes.len(), before);
    assert_eq!(d.config_read(64), 0);
    let mut b = [0u8; 4];
    d.bar_read(0, u64::MAX - 1, &mut b);
    assert_eq!(b, [0xff; 4]);
    d.bar_read(3, 0, &mut b);
    assert_eq!(b, [0xff; 4], "no BAR 3 (upper half of BAR 2)");
    d.bar_write(9, 0, &[1]);
    d.bar_read(4, 0x2, &mut b[..2]);
    assert_eq!(b[..2], [0xff, 0xff], "unaligned table read");
}

#[test]
fn malformed_devices_are_refused() {
    let f = fake();
    f.st().config[0x0e] = 0x01;
    let mgr = Manager::default();
    let e = VfioPciDevice::new("x", Box::new(f.clone()), &mgr, None).err().unwrap();
    assert!(matches!(e, DeviceError::Config(ConfigError::HeaderType(1))), "{e}");
    let f = fake();
    f.st().config[0x78] = 0x05; // PBA in BAR 5, which does not exist
    let e = VfioPciDevice::new("x", Box::new(f.clone()), &mgr, None).err().unwrap();
    assert!(e.to_string().contains("BAR 5"), "{e}");
    let f = fake();
    f.st().config[0x74..0x78].copy_from_slice(&0x3f_f004u32.to_le_bytes());
    let e = VfioPciDevice::new("x", Box::new(f.clone()), &mgr, None).err().unwrap();
    assert!(e.to_string().contains("beyond BAR 4"), "{e}");
    let f = fake();
    f.st().config[0..2].copy_from_slice(&[0xff, 0xff]);
    assert!(VfioPciDevice::new("x", Box::new(f.clone()), &mgr, None).is_err());
    // A capability list that loops ends; without INTx wiring the host gets no INTx.
    let f = fake();
    f.st().config[0x41] = 0x40;
    let d = VfioPciDevice::new("x", Box::new(f.clone()), &mgr, None).unwrap();
    assert_eq!(d.config().capabilities().len(), 48);
    assert!(d.config().msi().is_none());
    assert!(f.take_irqs().is_empty());
}
