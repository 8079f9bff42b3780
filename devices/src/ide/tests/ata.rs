// SPDX-License-Identifier: Apache-2.0
//! ATA disk commands.

use super::*;

const SECTORS: usize = 64;

fn disk_rig() -> (Rig, Shared) {
    let disk = Shared::new(patterned(SECTORS * 512), false);
    let r = Rig::with(0, 0, IdeDrive::Disk(Box::new(disk.clone())));
    (r, disk)
}

fn identify(r: &mut Rig) -> Vec<u16> {
    r.outb(0, 6, 0xa0);
    r.outb(0, 7, 0xec);
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    let data = r.read_data(0, 512);
    let sum = data.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    assert_eq!(sum, 0, "integrity word checksum");
    words(&data)
}

fn error_of(r: &mut Rig) -> (u8, u8) {
    (r.status(0), r.inb(0, 1))
}

#[test]
fn identify_device_words() {
    let disk = Sparse { size: 200 << 30, fail_from: u64::MAX };
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(disk)));
    let w = identify(&mut r);
    let sectors = (200u64 << 30) / 512;
    assert_eq!(w[0], 0x0040);
    assert_eq!((w[1], w[3], w[6]), (16383, 16, 63));
    assert_eq!(ata_string(&w[27..47]), "VMM HARDDISK");
    assert_eq!(ata_string(&w[10..20]), "VMM00001");
    assert_eq!(ata_string(&w[23..27]), "1.0");
    assert_eq!(w[47], 0x8010);
    assert_eq!(w[49] & 0x0300, 0x0300, "LBA and DMA");
    assert_eq!(w[53], 0x0007);
    assert_eq!((w[54], w[55], w[56]), (65535, 16, 63), "current CHS");
    assert_eq!(w[59], 0, "multiple mode off");
    assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff, "LBA28 capacity saturates");
    assert_eq!((w[63], w[64], w[88]), (0x0007, 0x0003, 0x003f));
    assert_eq!(w[80], 0x007e);
    assert_eq!(w[83] & 0xc400, 0x4400, "LBA48 supported");
    assert_eq!(w[86] & 0x0400, 0x0400, "LBA48 enabled");
    assert_eq!(w[85] & 0x0020, 0x0020, "write cache on");
    assert_eq!(w[93], 0x600b);
    let lba48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
    assert_eq!(lba48, sectors);
    assert_eq!(w[255] & 0xff, 0xa5);
    // The slave reports the other reset result.
    r.ide.attach(0, 1, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 512], false)))).unwrap();
    r.outb(0, 6, 0xb0);
    r.outb(0, 7, 0xec);
    let w = words(&r.read_data(0, 512));
    assert_eq!((w[93], w[1], w[54], w[60]), (0x6b00, 0, 0, 1));
}

#[test]
fn pio_read_sectors_lba28_interrupts_per_sector() {
    let (mut r, disk) = disk_rig();
    r.lba28(0, 0, 5, 3);
    r.outb(0, 7, 0x20);
    for s in 5..8 {
        assert!(r.irq(0), "sector {s}");
        assert_eq!(r.status(0), ST_READY | ST_DRQ);
        assert_eq!(r.read_data(0, 512), disk.data()[s * 512..(s + 1) * 512]);
    }
    assert_eq!(r.status(0), ST_READY);
    assert!(!r.irq(0), "no interrupt after the last block of a read");
    assert_eq!([r.inb(0, 3), r.inb(0, 4), r.inb(0, 5), r.inb(0, 6)], [7, 0, 0, 0xe0], "last sector");
    // 32-bit data-port accesses.
    r.lba28(0, 0, 1, 1);
    r.outb(0, 7, 0x21);
    let mut got = vec![0u8; 512];
    for c in got.chunks_mut(4) {
        r.ide.channel_read(0, PortKind::Command, 0, c);
    }
    assert_eq!(got, disk.data()[512..1024]);
}

#[test]
fn pio_write_sectors_interrupt_after_each_block() {
    let (mut r, disk) = disk_rig();
    r.lba28(0, 0, 10, 2);
    r.outb(0, 7, 0x30);
    assert!(!r.irq(0), "no interrupt before the first block");
    assert_eq!(r.alt(0), ST_READY | ST_DRQ);
    r.write_data(0, &[0xaa; 512]);
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    let mut dw = [0x5bu8; 4];
    for _ in 0..128 {
        r.ide.channel_write(0, PortKind::Command, 0, &dw);
        dw[0] = 0x5b;
    }
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY);
    let d = disk.data();
    assert!(d[10 * 512..11 * 512].iter().all(|&b| b == 0xaa));
    assert!(d[11 * 512..12 * 512].iter().all(|&b| b == 0x5b));
    assert_eq!(d[12 * 512], pattern(12 * 512), "nothing past the request");
    assert_eq!(disk.flushes(), 0, "write cache on: no flush");
    // Extra data-port writes are ignored.
    r.write_data(0, &[1, 2]);
    assert_eq!(disk.data()[12 * 512], pattern(12 * 512));
}

#[test]
fn lba48_pio_read_and_write() {
    let big = Sparse { size: (1 << 29) * 512 + 4096, fail_from: u64::MAX };
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(big)));
    let lba = (1u64 << 29) + 2;
    r.lba48(0, lba, 2);
    r.outb(0, 7, 0x24);
    for s in 0..2 {
        let got = r.read_data(0, 512);
        let want: Vec<u8> = (0..512).map(|i| pattern((lba + s) * 512 + i)).collect();
        assert_eq!(got, want);
    }
    assert_eq!(r.status(0), ST_READY);
    r.control(0, 0x80);
    assert_eq!(
        [r.inb(0, 3), r.inb(0, 4), r.inb(0, 5)],
        [0x20, 0, 0],
        "HOB: LBA bits 24-47 of the last sector"
    );
    r.control(0, 0);
    assert_eq!(r.inb(0, 3), 3);
    // Past the end: IDNF.
    r.lba48(0, lba + 6, 3);
    r.outb(0, 7, 0x24);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x14));
    // Writes through LBA48 on a small disk.
    let (mut r, disk) = disk_rig();
    r.lba48(0, 3, 1);
    r.outb(0, 7, 0x34);
    r.write_data(0, &[0x77; 512]);
    assert_eq!(r.status(0), ST_READY);
    assert!(disk.data()[3 * 512..4 * 512].iter().all(|&b| b == 0x77));
}

#[test]
fn read_write_multiple_and_set_multiple_mode() {
    let (mut r, disk) = disk_rig();
    r.lba28(0, 0, 0, 5);
    r.outb(0, 7, 0xc4);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04), "multiple mode not enabled");
    for bad in [3u8, 32] {
        r.outb(0, 2, bad);
        r.outb(0, 7, 0xc6);
        assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04));
    }
    r.outb(0, 2, 4);
    r.outb(0, 7, 0xc6);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(identify(&mut r)[59], 0x0104);
    // 5 sectors in blocks of 4 + 1, one interrupt per block.
    r.lba28(0, 0, 2, 5);
    r.outb(0, 7, 0xc4);
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    assert_eq!(r.read_data(0, 2048), disk.data()[1024..3072]);
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    assert_eq!(r.read_data(0, 512), disk.data()[3072..3584]);
    assert_eq!(r.status(0), ST_READY);
    // WRITE MULTIPLE EXT: 6 sectors = 4 + 2.
    r.lba48(0, 20, 6);
    r.outb(0, 7, 0x39);
    r.write_data(0, &[1; 2048]);
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    r.write_data(0, &[2; 1024]);
    assert_eq!(r.status(0), ST_READY);
    assert!(disk.data()[20 * 512..24 * 512].iter().all(|&b| b == 1));
    assert!(disk.data()[24 * 512..26 * 512].iter().all(|&b| b == 2));
    // READ MULTIPLE EXT and WRITE MULTIPLE.
    r.lba48(0, 24, 1);
    r.outb(0, 7, 0x29);
    assert_eq!(r.read_data(0, 512), vec![2; 512]);
    r.lba28(0, 0, 30, 1);
    r.outb(0, 7, 0xc5);
    r.write_data(0, &[3; 512]);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(disk.data()[30 * 512], 3);
    // Count 0 disables multiple mode.
    r.outb(0, 2, 0);
    r.outb(0, 7, 0xc6);
    assert_eq!(identify(&mut r)[59], 0);
}

fn dma_rig() -> (Rig, Shared) {
    let (mut r, disk) = disk_rig();
    r.enable_bus_master();
    (r, disk)
}

#[test]
fn dma_read_through_two_prd_entries() {
    let (mut r, disk) = dma_rig();
    r.prd(0, &[(0x2_0000, 0x200), (0x3_0000, 0x400)]);
    r.ide.bar_write(4, 2, &[0x06]);
    r.lba28(0, 0, 4, 3);
    r.outb(0, 7, 0xc8);
    assert_eq!(r.alt(0) & ST_BSY, ST_BSY, "busy until the engine runs");
    assert!(!r.irq(0));
    r.bm_start(0, true);
    assert!(r.irq(0));
    assert_eq!(r.bm_status(0), 0x04, "interrupt, not active: the table was used up exactly");
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(r.mem_bytes(0x2_0000, 0x200), disk.data()[4 * 512..5 * 512]);
    assert_eq!(r.mem_bytes(0x3_0000, 0x400), disk.data()[5 * 512..7 * 512]);
    assert_eq!(r.inb(0, 3), 6);
    // Engine started before the command (the other order) with a larger table: stays active.
    r.ide.bar_write(4, 0, &[0]);
    r.ide.bar_write(4, 2, &[0x04]);
    r.prd(0, &[(0x4_0000, 0x1000)]);
    r.bm_start(0, true);
    r.lba48(0, 0, 1);
    r.outb(0, 7, 0x25);
    assert_eq!(r.bm_status(0), 0x05);
    assert_eq!(r.mem_bytes(0x4_0000, 0x200), disk.data()[..512]);
}

#[test]
fn dma_write_and_bus_master_gate() {
    let (mut r, disk) = disk_rig();
    r.mem.write_slice(&[0x11; 0x200], GuestAddress(0x2_0000)).unwrap();
    r.mem.write_slice(&[0x22; 0x200], GuestAddress(0x2_1000)).unwrap();
    r.prd(0, &[(0x2_0000, 0x200), (0x2_1000, 0x200)]);
    r.lba28(0, 0, 8, 2);
    r.outb(0, 7, 0xca);
    r.bm_start(0, false);
    assert!(!r.irq(0), "bus mastering is off in the command register");
    assert_eq!(disk.data()[8 * 512], pattern(8 * 512));
    r.enable_bus_master();
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY);
    assert!(disk.data()[8 * 512..9 * 512].iter().all(|&b| b == 0x11));
    assert!(disk.data()[9 * 512..10 * 512].iter().all(|&b| b == 0x22));
    // WRITE DMA EXT with the write cache disabled flushes.
    r.outb(0, 1, 0x82);
    r.outb(0, 7, 0xef);
    assert_eq!(r.status(0), ST_READY);
    r.ide.bar_write(4, 0, &[0]);
    r.lba48(0, 12, 1);
    r.outb(0, 7, 0x35);
    r.bm_start(0, false);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(disk.flushes(), 1);
    assert_eq!(disk.data()[12 * 512], 0x11);
}

#[test]
fn bad_and_short_prd_tables() {
    let (mut r, _disk) = dma_rig();
    // Buffer outside guest memory.
    r.prd(0, &[(0xfff0_0000, 0x200)]);
    r.lba28(0, 0, 0, 1);
    r.outb(0, 7, 0xc8);
    r.bm_start(0, true);
    assert_eq!(r.bm_status(0), 0x06, "error and interrupt, not active");
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04));
    // Table itself outside guest memory.
    r.ide.bar_write(4, 0, &[0]);
    r.ide.bar_write(4, 2, &[0x06]);
    r.ide.bar_write(4, 4, &0x0ff0_0000u32.to_le_bytes());
    r.lba28(0, 0, 0, 1);
    r.outb(0, 7, 0xc8);
    r.bm_start(0, true);
    assert_eq!(r.bm_status(0), 0x06);
    // A table shorter than the transfer: not active, no interrupt, drive idle.
    r.ide.bar_write(4, 0, &[0]);
    r.ide.bar_write(4, 2, &[0x06]);
    r.prd(0, &[(0x2_0000, 0x200)]);
    r.lba28(0, 0, 0, 2);
    r.outb(0, 7, 0xc8);
    r.bm_start(0, true);
    assert_eq!(r.bm_status(0), 0x00);
    assert!(!r.irq(0));
    assert_eq!(r.status(0), ST_READY);
}

#[test]
fn errors_read_only_range_and_media() {
    let ro = MemDisk::new(vec![0; 4096], true);
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(ro)));
    for cmd in [0x30u8, 0xca, 0xc5] {
        r.lba28(0, 0, 0, 1);
        r.outb(0, 7, cmd);
        assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04), "write {cmd:#x} to read-only");
    }
    r.lba28(0, 0, 7, 2);
    r.outb(0, 7, 0x20);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x14), "beyond the disk");
    r.lba28(0, 0, 0, 0);
    r.outb(0, 7, 0x20);
    assert_eq!(error_of(&mut r).1, 0x14, "count 0 means 256 sectors");
    // Media errors.
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(Sparse { size: 8192, fail_from: 1024 })));
    r.lba28(0, 0, 1, 2);
    r.outb(0, 7, 0x20);
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    r.read_data(0, 512);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x40));
    assert_eq!(r.inb(0, 3), 2, "address of the failing sector");
    r.lba28(0, 0, 0, 1);
    r.outb(0, 7, 0x30);
    r.write_data(0, &[0; 512]);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04));
    r.enable_bus_master();
    r.prd(0, &[(0x2_0000, 0x400)]);
    r.lba28(0, 0, 1, 2);
    r.outb(0, 7, 0xc8);
    r.bm_start(0, true);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x40));
    assert_eq!(r.bm_status(0) & 0x07, 0x04);
}

#[test]
fn chs_addressing_and_initialize_device_parameters() {
    let (mut r, disk) = disk_rig();
    // Default 16 heads x 63 sectors: C0 H0 S5 is LBA 4.
    r.outb(0, 6, 0xa0);
    r.outb(0, 2, 1);
    r.outb(0, 3, 5);
    r.outb(0, 4, 0);
    r.outb(0, 5, 0);
    r.outb(0, 7, 0x20);
    assert_eq!(r.read_data(0, 512), disk.data()[4 * 512..5 * 512]);
    assert_eq!(r.inb(0, 3), 5);
    // 4 heads, 8 sectors per track: C1 H2 S3 is (1*4+2)*8+2 = 50.
    r.outb(0, 6, 0xa3);
    r.outb(0, 2, 8);
    r.outb(0, 7, 0x91);
    assert_eq!(r.status(0), ST_READY);
    let w = identify(&mut r);
    assert_eq!((w[54], w[55], w[56]), (2, 4, 8));
    assert_eq!(u32::from(w[57]) | u32::from(w[58]) << 16, 64);
    r.outb(0, 6, 0xa2);
    r.outb(0, 2, 2);
    r.outb(0, 3, 3);
    r.outb(0, 4, 1);
    r.outb(0, 5, 0);
    r.outb(0, 7, 0x20);
    assert_eq!(r.read_data(0, 512), disk.data()[50 * 512..51 * 512]);
    assert_eq!(r.read_data(0, 512), disk.data()[51 * 512..52 * 512]);
    assert_eq!([r.inb(0, 3), r.inb(0, 4), r.inb(0, 6) & 0xf], [4, 1, 2], "CHS of the last sector");
    // Sector 0 or a head beyond the geometry: IDNF.
    r.outb(0, 3, 0);
    r.outb(0, 7, 0x20);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x10));
    r.outb(0, 6, 0xa5);
    r.outb(0, 3, 1);
    r.outb(0, 7, 0x20);
    assert_eq!(error_of(&mut r).1, 0x10);
    // Zero sectors per track is refused.
    r.outb(0, 2, 0);
    r.outb(0, 7, 0x91);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04));
}

#[test]
fn set_features_transfer_mode_and_write_cache() {
    let (mut r, disk) = disk_rig();
    for (mode, ok) in [
        (0x22u8, true),
        (0x23, false),
        (0x45, true),
        (0x46, false),
        (0x0c, true),
        (0x0d, false),
        (0x01, true),
        (0x10, false),
    ] {
        r.outb(0, 1, 0x03);
        r.outb(0, 2, mode);
        r.outb(0, 7, 0xef);
        assert_eq!(r.status(0) & ST_ERR == 0, ok, "mode {mode:#x}");
        r.ide.channel_write(0, PortKind::Command, 1, &[0x03]);
    }
    r.outb(0, 1, 0x03);
    r.outb(0, 2, 0x45);
    r.outb(0, 7, 0xef);
    let w = identify(&mut r);
    assert_eq!((w[63], w[88]), (0x0007, 0x203f), "UDMA5 selected");
    r.outb(0, 1, 0x03);
    r.outb(0, 2, 0x22);
    r.outb(0, 7, 0xef);
    let w = identify(&mut r);
    assert_eq!((w[63], w[88]), (0x0407, 0x003f), "MWDMA2 selected");
    // Write cache off: each write flushes; word 85 follows.
    r.outb(0, 1, 0x82);
    r.outb(0, 7, 0xef);
    assert_eq!(identify(&mut r)[85] & 0x20, 0);
    r.lba28(0, 0, 1, 1);
    r.outb(0, 7, 0x30);
    r.write_data(0, &[0; 512]);
    assert_eq!(disk.flushes(), 1);
    r.outb(0, 1, 0x02);
    r.outb(0, 7, 0xef);
    assert_eq!(identify(&mut r)[85] & 0x20, 0x20);
    for (f, ok) in [(0x66u8, true), (0xcc, true), (0xaa, false), (0x99, false)] {
        r.outb(0, 1, f);
        r.outb(0, 7, 0xef);
        assert_eq!(r.status(0) & ST_ERR == 0, ok, "feature {f:#x}");
    }
}

#[test]
fn flush_verify_power_and_misc_commands() {
    let (mut r, disk) = disk_rig();
    for cmd in [0xe7u8, 0xea] {
        r.outb(0, 7, cmd);
        assert!(r.irq(0));
        assert_eq!(r.status(0), ST_READY);
    }
    assert_eq!(disk.flushes(), 2);
    r.lba28(0, 0, 60, 4);
    r.outb(0, 7, 0x40);
    assert_eq!(r.status(0), ST_READY);
    assert_eq!(r.inb(0, 3), 63);
    r.lba28(0, 0, 61, 4);
    r.outb(0, 7, 0x40);
    assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x14));
    r.lba48(0, 62, 2);
    r.outb(0, 7, 0x42);
    assert_eq!(r.status(0), ST_READY);
    for cmd in [0xe0u8, 0xe1, 0xe2, 0xe3, 0x10, 0x70] {
        r.outb(0, 7, cmd);
        assert!(r.irq(0));
        assert_eq!(r.status(0), ST_READY, "command {cmd:#x}");
    }
    r.outb(0, 2, 0);
    r.outb(0, 7, 0xe5);
    assert_eq!((r.status(0), r.inb(0, 2)), (ST_READY, 0xff), "CHECK POWER MODE: active");
    // Packet-device and unknown commands abort.
    for cmd in [0xa0u8, 0xa1, 0x08, 0xff, 0xb0] {
        r.outb(0, 7, cmd);
        assert_eq!(error_of(&mut r), (ST_READY | ST_ERR, 0x04), "command {cmd:#x}");
    }
    // EXECUTE DEVICE DIAGNOSTIC.
    r.lba28(0, 0, 0x55, 0x66);
    r.outb(0, 7, 0x90);
    assert!(r.irq(0));
    assert_eq!([r.status(0), r.inb(0, 1), r.inb(0, 2), r.inb(0, 3), r.inb(0, 4)], [ST_READY, 1, 1, 1, 0]);
}

#[test]
fn pci_reset_aborts_the_transfer_lowers_intrq_and_keeps_the_disk() {
    let (mut r, disk) = disk_rig();
    r.enable_bus_master();
    r.lba28(0, 0, 0, 2);
    r.outb(0, 7, 0x20); // READ SECTORS: data waiting, interrupt raised
    assert!(r.irq(0));
    assert_ne!(r.status(0) & ST_DRQ, 0);
    PciDevice::reset(&mut r.ide);
    assert!(!r.irq(0), "INTRQ low");
    assert_eq!(r.status(0), ST_READY, "idle, ready, no data request");
    assert_eq!(r.ide.config_read(1) & 0x7, 0, "bus mastering and decoding off");
    // The same disk answers after the reset.
    r.lba28(0, 0, 1, 1);
    r.outb(0, 7, 0x20);
    assert_eq!(r.read_data(0, 512), disk.data()[512..1024]);
}

#[test]
fn commands_move_the_drive_counters() {
    let (mut r, _disk) = dma_rig();
    let stats = r.ide.stats(0, 0).unwrap();
    // A PIO read of 3 sectors and a PIO write of 2: one request each, bytes as they move.
    r.lba28(0, 0, 5, 3);
    r.outb(0, 7, 0x20);
    for _ in 0..3 {
        r.read_data(0, 512);
    }
    r.lba28(0, 0, 10, 2);
    r.outb(0, 7, 0x30);
    r.write_data(0, &[0xaa; 1024]);
    // A DMA read of 3 sectors, then a cache flush.
    r.prd(0, &[(0x2_0000, 0x200), (0x3_0000, 0x400)]);
    r.lba28(0, 0, 4, 3);
    r.outb(0, 7, 0xc8);
    r.bm_start(0, true);
    r.outb(0, 7, 0xe7);
    let c = stats.snapshot();
    assert_eq!((c.rd_reqs, c.rd_bytes), (2, 6 * 512));
    assert_eq!((c.wr_reqs, c.wr_bytes), (1, 1024));
    assert_eq!((c.fl_reqs, c.errors), (1, 0));
    // Beyond the disk: an error, no request.
    r.lba28(0, 0, SECTORS as u32, 1);
    r.outb(0, 7, 0x20);
    assert_eq!(stats.snapshot().errors, 1);
    assert_eq!(stats.snapshot().rd_reqs, 2);
    assert!(r.ide.stats(2, 0).is_none() && r.ide.stats(0, 2).is_none());
    assert_eq!(r.ide.stats(1, 1).unwrap().snapshot(), Default::default(), "an empty position");
}

#[test]
fn media_errors_and_read_only_writes_are_counted() {
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(Sparse { size: 8192, fail_from: 1024 })));
    r.lba28(0, 0, 1, 2);
    r.outb(0, 7, 0x20);
    r.read_data(0, 512);
    let c = r.ide.stats(0, 0).unwrap().snapshot();
    assert_eq!((c.rd_reqs, c.rd_bytes, c.errors), (1, 512, 1));
    let mut r = Rig::with(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 4096], true))));
    r.lba28(0, 0, 0, 1);
    r.outb(0, 7, 0x30);
    let c = r.ide.stats(0, 0).unwrap().snapshot();
    assert_eq!((c.wr_reqs, c.wr_bytes, c.errors), (0, 0, 1));
}
