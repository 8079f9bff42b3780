// SPDX-License-Identifier: Apache-2.0
//! Tests of the IDE controller through its guest-visible registers.

mod ata;
mod atapi;

use std::sync::{Arc, Mutex};

use block::{DiskImage, MemDisk};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::irq::test_util::FakeIrq;

pub const ST_ERR: u8 = 0x01;
pub const ST_DRQ: u8 = 0x08;
pub const ST_READY: u8 = 0x50;
pub const ST_BSY: u8 = 0x80;
pub const PRD_TABLE: u64 = 0x1000;

/// A disk image shared with the test, so its contents and flushes can be checked.
#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<MemDisk>>);

impl Shared {
    pub fn new(data: Vec<u8>, read_only: bool) -> Self {
        Shared(Arc::new(Mutex::new(MemDisk::new(data, read_only))))
    }
    pub fn data(&self) -> Vec<u8> {
        self.0.lock().unwrap().data().to_vec()
    }
    pub fn flushes(&self) -> u64 {
        self.0.lock().unwrap().flushes
    }
}

impl DiskImage for Shared {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().size()
    }
    fn read_only(&self) -> bool {
        self.0.lock().unwrap().read_only()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), block::Error> {
        self.0.lock().unwrap().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), block::Error> {
        self.0.lock().unwrap().write_at(offset, buf)
    }
    fn flush(&mut self) -> Result<(), block::Error> {
        self.0.lock().unwrap().flush()
    }
}

/// A huge image whose byte at offset `o` is `pattern(o)`; writes and I/O past `fail_from`
/// fail.
pub struct Sparse {
    pub size: u64,
    pub fail_from: u64,
}

pub fn pattern(o: u64) -> u8 {
    ((o >> 9) as u8).wrapping_mul(7) ^ (o as u8)
}

impl DiskImage for Sparse {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), block::Error> {
        block::check_range(offset, buf.len(), self.size)?;
        if offset + buf.len() as u64 > self.fail_from {
            return Err(block::Error::Io(std::io::Error::other("bad sector")));
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = pattern(offset + i as u64);
        }
        Ok(())
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), block::Error> {
        Err(block::Error::Io(std::io::Error::other("bad sector")))
    }
    fn flush(&mut self) -> Result<(), block::Error> {
        Ok(())
    }
}

/// Image bytes: each sector numbered.
pub fn patterned(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern).collect()
}

pub struct Rig {
    pub ide: PiixIde,
    pub irq: [Arc<FakeIrq>; 2],
    pub mem: GuestMemoryMmap,
}

impl Rig {
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let irq = [Arc::new(FakeIrq::default()), Arc::new(FakeIrq::default())];
        let ide = PiixIde::new(mem.clone(), irq[0].clone(), irq[1].clone());
        Rig { ide, irq, mem }
    }

    pub fn with(ch: usize, unit: usize, drive: IdeDrive) -> Self {
        let mut r = Rig::new();
        r.ide.attach(ch, unit, drive).unwrap();
        r
    }

    pub fn outb(&mut self, ch: usize, reg: u64, v: u8) {
        self.ide.channel_write(ch, PortKind::Command, reg, &[v]);
    }
    pub fn inb(&mut self, ch: usize, reg: u64) -> u8 {
        let mut b = [0u8];
        self.ide.channel_read(ch, PortKind::Command, reg, &mut b);
        b[0]
    }
    pub fn status(&mut self, ch: usize) -> u8 {
        self.inb(ch, 7)
    }
    pub fn alt(&mut self, ch: usize) -> u8 {
        let mut b = [0u8];
        self.ide.channel_read(ch, PortKind::Control, 0, &mut b);
        b[0]
    }
    pub fn control(&mut self, ch: usize, v: u8) {
        self.ide.channel_write(ch, PortKind::Control, 0, &[v]);
    }
    pub fn irq(&self, ch: usize) -> bool {
        self.irq[ch].level()
    }
    /// Reads `n` bytes from the data port, 16 bits at a time.
    pub fn read_data(&mut self, ch: usize, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        for w in out.chunks_mut(2) {
            self.ide.channel_read(ch, PortKind::Command, 0, w);
        }
        out
    }
    pub fn write_data(&mut self, ch: usize, data: &[u8]) {
        for w in data.chunks(2) {
            self.ide.channel_write(ch, PortKind::Command, 0, w);
        }
    }
    /// Loads a 28-bit LBA command's registers for `unit`.
    pub fn lba28(&mut self, ch: usize, unit: u8, lba: u32, count: u8) {
        self.outb(ch, 6, 0xe0 | (unit << 4) | ((lba >> 24) as u8 & 0xf));
        self.outb(ch, 2, count);
        self.outb(ch, 3, lba as u8);
        self.outb(ch, 4, (lba >> 8) as u8);
        self.outb(ch, 5, (lba >> 16) as u8);
    }
    /// Loads a 48-bit LBA command's registers (high bytes first).
    pub fn lba48(&mut self, ch: usize, lba: u64, count: u16) {
        self.outb(ch, 6, 0x40);
        for (reg, hi, lo) in [(2, (count >> 8) as u8, count as u8), (3, (lba >> 24) as u8, lba as u8)] {
            self.outb(ch, reg, hi);
            self.outb(ch, reg, lo);
        }
        for (reg, shift) in [(4u64, 8u32), (5, 16)] {
            self.outb(ch, reg, (lba >> (shift + 24)) as u8);
            self.outb(ch, reg, (lba >> shift) as u8);
        }
    }
    pub fn enable_bus_master(&mut self) {
        self.ide.config_write(1, 0, &[0x05]);
    }
    /// Writes a PRD table at PRD_TABLE and points channel `ch` at it.
    pub fn prd(&mut self, ch: usize, entries: &[(u32, u32)]) {
        for (i, &(addr, count)) in entries.iter().enumerate() {
            let last = if i + 1 == entries.len() { 0x8000_0000 } else { 0 };
            self.mem.write_obj(addr, GuestAddress(PRD_TABLE + 8 * i as u64)).unwrap();
            self.mem.write_obj((count & 0xffff) | last, GuestAddress(PRD_TABLE + 8 * i as u64 + 4)).unwrap();
        }
        self.ide.bar_write(4, 8 * ch as u64 + 4, &(PRD_TABLE as u32).to_le_bytes());
    }
    pub fn bm_start(&mut self, ch: usize, to_memory: bool) {
        self.ide.bar_write(4, 8 * ch as u64, &[0x01 | if to_memory { 0x08 } else { 0 }]);
    }
    pub fn bm_status(&mut self, ch: usize) -> u8 {
        let mut b = [0u8];
        self.ide.bar_read(4, 8 * ch as u64 + 2, &mut b);
        b[0]
    }
    pub fn mem_bytes(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }
}

pub fn words(data: &[u8]) -> Vec<u16> {
    data.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

pub fn ata_string(w: &[u16]) -> String {
    w.iter().flat_map(|x| x.to_be_bytes()).map(char::from).collect::<String>().trim_end().to_string()
}

#[test]
fn pci_identity_class_and_bar4() {
    let mut r = Rig::new();
    let ide = &mut r.ide;
    assert_eq!(ide.config_read(0), 0x7010_8086);
    assert_eq!(ide.config_read(2), 0x0101_8000, "class 01 01 80, revision 0");
    assert_eq!(ide.config_read(3) >> 16 & 0xff, 0, "header type 0");
    assert_eq!(ide.config_read(1) >> 16, 0x0280);
    ide.config_write(0, 0, &[0; 4]);
    assert_eq!(ide.config_read(0), 0x7010_8086);
    for bar in [4usize, 5, 6, 7, 8, 9] {
        ide.config_write(bar, 0, &[0xff; 4]);
    }
    assert_eq!(ide.config_read(8), 0xffff_fff1, "BAR4: 16 bytes of I/O");
    assert_eq!((ide.config_read(4), ide.config_read(5), ide.config_read(9)), (0, 0, 0), "no BAR0-3/5");
    ide.config_write(8, 0, &0xc040u32.to_le_bytes());
    assert!(ide.bar_ranges().is_empty(), "I/O decoding off");
    ide.config_write(1, 0, &[0x07]);
    assert_eq!(ide.config_read(1) & 0xffff, 0x0005, "I/O and bus master writable, memory not");
    assert_eq!(
        ide.bar_ranges(),
        vec![PciBarRange { index: 4, kind: BarKind::Io, address: 0xc040, size: 16 }]
    );
    // IDE timing registers are read/write scratch.
    ide.config_write(0x10, 0, &[0x00, 0x80, 0x00, 0x80]);
    ide.config_write(0x11, 0, &[0x5a]);
    assert_eq!(ide.config_read(0x10), 0x8000_8000);
    assert_eq!(ide.config_read(0x11), 0x5a);
    assert_eq!(ide.debug_label(), "piix3-ide");
}

#[test]
fn bmdma_registers_through_bar4() {
    let mut r = Rig::new();
    r.ide.bar_write(4, 8 + 4, &0x0001_2345u32.to_le_bytes());
    r.ide.bar_write(4, 8 + 2, &[0x60]);
    r.ide.bar_write(4, 0, &[0x08]);
    let mut b = [0u8; 8];
    r.ide.bar_read(4, 8, &mut b);
    assert_eq!(b, [0, 0, 0x60, 0, 0x44, 0x23, 0x01, 0]);
    r.ide.bar_read(4, 0, &mut b);
    assert_eq!(b[0], 0x08, "primary engine is separate");
    let mut x = [0u8; 2];
    r.ide.bar_read(0, 0, &mut x);
    assert_eq!(x, [0xff; 2], "other BARs read all ones");
    r.ide.bar_read(4, 64, &mut x);
    assert_eq!(x, [0xff; 2]);
    r.ide.bar_write(4, 64, &[1]);
    r.ide.bar_write(1, 0, &[1]);
    // Start with nothing pending: active, no interrupt; stop clears active.
    r.bm_start(0, true);
    assert_eq!(r.bm_status(0), 0x01);
    r.ide.bar_write(4, 0, &[0]);
    assert_eq!(r.bm_status(0), 0x00);
}

#[test]
fn attach_checks_positions() {
    let mut r = Rig::new();
    let disk = || IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false)));
    assert_eq!(r.ide.attach(2, 0, disk()), Err(Error::NoSuchPosition { channel: 2, unit: 0 }));
    assert_eq!(r.ide.attach(0, 2, disk()), Err(Error::NoSuchPosition { channel: 0, unit: 2 }));
    r.ide.attach(1, 1, disk()).unwrap();
    assert_eq!(r.ide.attach(1, 1, disk()), Err(Error::Taken { channel: 1, unit: 1 }));
}

#[test]
fn empty_channel_and_absent_slave() {
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false))));
    // Secondary channel: nothing at all.
    r.outb(1, 2, 0x55);
    assert_eq!((r.inb(1, 2), r.status(1), r.alt(1), r.inb(1, 0)), (0, 0, 0, 0));
    r.outb(1, 7, 0xec);
    assert!(!r.irq(1));
    // Primary: device 1 is absent; its registers latch but its status reads 0.
    r.outb(0, 6, 0xb0);
    r.outb(0, 2, 0x55);
    r.outb(0, 3, 0xaa);
    assert_eq!((r.inb(0, 2), r.inb(0, 3), r.inb(0, 6)), (0x55, 0xaa, 0xb0));
    assert_eq!((r.status(0), r.alt(0)), (0, 0));
    r.outb(0, 7, 0xec);
    assert_eq!(r.status(0), 0, "commands to an absent device are ignored");
    assert!(!r.irq(0));
    r.outb(0, 6, 0xa0);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(r.inb(0, 2), 0x55, "both drives latched the write");
}

#[test]
fn task_file_latches_and_hob_reads_previous_bytes() {
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false))));
    r.lba48(0, 0x0605_0403_0201, 0x0a0b);
    assert_eq!([r.inb(0, 2), r.inb(0, 3), r.inb(0, 4), r.inb(0, 5)], [0x0b, 0x01, 0x02, 0x03]);
    r.control(0, 0x80);
    assert_eq!([r.inb(0, 2), r.inb(0, 3), r.inb(0, 4), r.inb(0, 5)], [0x0a, 0x04, 0x05, 0x06]);
    r.outb(0, 1, 0x11);
    assert_eq!(r.inb(0, 2), 0x0b, "a register write clears HOB");
    assert_eq!(r.inb(0, 1), 0x01, "error register after reset: diagnostics passed");
    let mut two = [0u8; 2];
    r.ide.channel_read(0, PortKind::Command, 2, &mut two);
    assert_eq!(two, [0x0b, 0x01], "wide accesses to byte registers go register by register");
    r.ide.channel_read(0, PortKind::Control, 1, &mut two);
    assert_eq!(two, [0xff; 2]);
    r.ide.channel_read(0, PortKind::Command, u64::MAX, &mut two);
    r.ide.channel_read(5, PortKind::Command, 0, &mut two);
    assert_eq!(two, [0xff; 2]);
    r.ide.channel_write(5, PortKind::Command, 7, &[0xec]);
}

#[test]
fn status_alt_status_and_interrupt_line() {
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false))));
    r.outb(0, 6, 0xa0);
    r.outb(0, 7, 0xec);
    assert!(r.irq(0), "IDENTIFY interrupts when data is ready");
    assert_eq!(r.bm_status(0) & 0x04, 0x04, "bus-master interrupt bit follows INTRQ");
    assert_eq!(r.alt(0), ST_READY | ST_DRQ);
    assert!(r.irq(0), "alternate status does not acknowledge");
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    assert!(!r.irq(0), "status acknowledges");
    r.read_data(0, 512);
    assert_eq!(r.status(0), ST_READY);
    // nIEN masks the line but not the bus-master bit; clearing it shows a pending INTRQ.
    r.ide.bar_write(4, 2, &[0x04]);
    r.control(0, 0x02);
    r.outb(0, 7, 0xec);
    assert!(!r.irq(0));
    assert_eq!(r.bm_status(0) & 0x04, 0x04);
    r.control(0, 0x00);
    assert!(r.irq(0));
    r.control(0, 0x02);
    assert!(!r.irq(0));
    // Writing a command clears a pending INTRQ first.
    r.control(0, 0);
    r.outb(0, 7, 0x00);
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY | ST_ERR);
    assert_eq!(r.inb(0, 1), 0x04, "NOP always aborts");
}

#[test]
fn software_reset_loads_signatures() {
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false))));
    r.ide.attach(0, 1, IdeDrive::Cdrom(Box::new(MemDisk::new(vec![0; 8192], true)))).unwrap();
    r.lba28(0, 0, 0x123456, 9);
    r.outb(0, 7, 0xec);
    assert!(r.irq(0));
    r.control(0, 0x04);
    assert_eq!(r.alt(0), ST_BSY, "busy while SRST is set");
    assert!(!r.irq(0));
    r.control(0, 0x00);
    assert_eq!(r.inb(0, 6) & 0x10, 0, "device 0 selected after reset");
    assert_eq!([r.inb(0, 1), r.inb(0, 2), r.inb(0, 3), r.inb(0, 4), r.inb(0, 5)], [1, 1, 1, 0, 0]);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(r.read_data(0, 2), vec![0xff, 0xff], "the IDENTIFY transfer was dropped");
    r.outb(0, 6, 0xb0);
    assert_eq!([r.inb(0, 1), r.inb(0, 2), r.inb(0, 3), r.inb(0, 4), r.inb(0, 5)], [1, 1, 1, 0x14, 0xeb]);
    assert_eq!(r.status(0), 0, "a packet device is not DRDY after reset");
    // Power-on reset of the whole function.
    r.ide.bar_write(4, 4, &[0x10, 0, 0, 0]);
    r.ide.reset();
    assert_eq!(r.bm_status(0), 0);
    let mut p = [0u8; 4];
    r.ide.bar_read(4, 4, &mut p);
    assert_eq!(p, [0; 4]);
}

#[test]
fn port_adapters_route_to_channels() {
    let mut r = Rig::new();
    r.ide.attach(1, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], false)))).unwrap();
    let ide = Arc::new(Mutex::new(r.ide));
    let ports = PiixIde::legacy_ports(&ide);
    let layout: Vec<_> = ports.iter().map(|(b, l, _)| (*b, *l)).collect();
    assert_eq!(layout, vec![(0x1f0, 8), (0x3f6, 1), (0x170, 8), (0x376, 1)]);
    let bus = crate::bus::Bus::new();
    for (base, len, dev) in ports {
        bus.insert(u64::from(base), u64::from(len), dev).unwrap();
    }
    let mut b = [0u8];
    bus.read(0x177, &mut b);
    assert_eq!(b[0], ST_READY);
    bus.read(0x1f7, &mut b);
    assert_eq!(b[0], 0, "primary is empty");
    bus.write(0x376, &[0x02]);
    bus.write(0x177, &[0xec]);
    assert!(!r.irq[1].level());
    bus.read(0x376, &mut b);
    assert_eq!(b[0], ST_READY | ST_DRQ);
    // 32-bit data-port reads.
    let mut d = [0u8; 4];
    bus.read(0x170, &mut d);
    assert_eq!(u16::from_le_bytes([d[0], d[1]]), 0x0040, "IDENTIFY word 0");
}
