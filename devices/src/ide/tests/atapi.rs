// SPDX-License-Identifier: Apache-2.0
//! ATAPI packet commands on the CD-ROM drive.

use super::*;

const BLOCKS: usize = 16;

/// A CD at secondary master, with the power-on UNIT ATTENTION already consumed.
fn cd_rig() -> Rig {
    let mut r = Rig::with(1, 0, IdeDrive::Cdrom(Box::new(MemDisk::new(patterned(BLOCKS * 2048), true))));
    r.outb(1, 6, 0xa0);
    let (st, _) = packet(&mut r, &[0x00], 0xfffe, false);
    assert_eq!(st & ST_ERR, ST_ERR, "power-on unit attention");
    r
}

fn cdb(bytes: &[u8]) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

/// Sends a packet and collects PIO data-in blocks; returns the final status and the data.
fn packet(r: &mut Rig, bytes: &[u8], limit: u16, dma: bool) -> (u8, Vec<u8>) {
    r.outb(1, 1, u8::from(dma));
    r.outb(1, 4, limit as u8);
    r.outb(1, 5, (limit >> 8) as u8);
    r.outb(1, 7, 0xa0);
    assert_eq!(r.alt(1) & (ST_BSY | ST_DRQ), ST_DRQ, "waiting for the packet");
    assert_eq!(r.inb(1, 2) & 3, 1, "interrupt reason: command");
    assert!(!r.irq(1));
    r.write_data(1, &cdb(bytes));
    let mut data = Vec::new();
    loop {
        let st = r.status(1);
        if st & ST_DRQ == 0 {
            if st & ST_BSY == 0 {
                assert_eq!(r.inb(1, 2) & 3, 3, "interrupt reason: completion");
            }
            return (st, data);
        }
        assert_eq!(r.inb(1, 2) & 3, 2, "interrupt reason: data to host");
        let n = usize::from(u16::from_le_bytes([r.inb(1, 4), r.inb(1, 5)]));
        assert!(n <= usize::from(limit.max(2)) || limit == 0);
        data.extend(r.read_data(1, n));
    }
}

fn ok(r: &mut Rig, bytes: &[u8]) -> Vec<u8> {
    let (st, data) = packet(r, bytes, 0xfffe, false);
    assert_eq!(st, ST_READY, "command {:#x}", bytes[0]);
    data
}

fn sense(r: &mut Rig) -> (u8, u8, u8) {
    let d = ok(r, &[0x03, 0, 0, 0, 18]);
    assert_eq!(d.len(), 18);
    assert_eq!(d[0], 0x70);
    (d[2] & 0xf, d[12], d[13])
}

fn check(r: &mut Rig, bytes: &[u8]) -> (u8, (u8, u8, u8)) {
    let (st, _) = packet(r, bytes, 0xfffe, false);
    assert_eq!(st, ST_READY | ST_ERR, "command {:#x} must fail", bytes[0]);
    let err = r.inb(1, 1);
    (err, sense(r))
}

#[test]
fn identify_packet_device_and_ata_commands() {
    let mut r = Rig::with(0, 1, IdeDrive::Cdrom(Box::new(MemDisk::new(vec![0; 4096], true))));
    r.outb(0, 6, 0xb0);
    assert_eq!(r.status(0), 0);
    r.outb(0, 7, 0xa1);
    assert!(r.irq(0));
    assert_eq!(r.status(0), ST_READY | ST_DRQ);
    let data = r.read_data(0, 512);
    assert_eq!(data.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    let w = words(&data);
    assert_eq!(w[0], 0x85c0);
    assert_eq!(ata_string(&w[27..47]), "VMM DVD-ROM");
    assert_eq!(ata_string(&w[10..20]), "VMM00002");
    assert_eq!((w[49], w[53], w[63], w[88], w[93]), (0x0b00, 0x0006, 0x0007, 0x003f, 0x6b00));
    assert_eq!(r.status(0), ST_READY);
    // IDENTIFY DEVICE and READ SECTORS abort and show the packet signature.
    for cmd in [0xecu8, 0x20] {
        r.outb(0, 4, 0);
        r.outb(0, 7, cmd);
        assert_eq!((r.status(0), r.inb(0, 1)), (ST_READY | ST_ERR, 0x04));
        assert_eq!((r.inb(0, 4), r.inb(0, 5)), (0x14, 0xeb));
    }
    r.outb(0, 7, 0xe5);
    assert_eq!((r.status(0), r.inb(0, 2)), (ST_READY, 0xff));
    for cmd in [0xe0u8, 0xe1] {
        r.outb(0, 7, cmd);
        assert_eq!(r.status(0), ST_READY);
    }
    r.outb(0, 1, 0x03);
    r.outb(0, 2, 0x22);
    r.outb(0, 7, 0xef);
    assert_eq!(r.status(0), ST_READY);
    r.outb(0, 1, 0x02);
    r.outb(0, 7, 0xef);
    assert_eq!(r.status(0), ST_READY | ST_ERR, "no write cache on a CD");
    for cmd in [0xc8u8, 0x30, 0xe7, 0x00] {
        r.outb(0, 7, cmd);
        assert_eq!((r.status(0), r.inb(0, 1)), (ST_READY | ST_ERR, 0x04), "command {cmd:#x}");
    }
    // DEVICE RESET: signature, no interrupt.
    r.outb(0, 7, 0xa0);
    r.status(0);
    r.outb(0, 7, 0x08);
    assert!(!r.irq(0));
    assert_eq!((r.status(0), r.inb(0, 1), r.inb(0, 4), r.inb(0, 5)), (0, 1, 0x14, 0xeb));
    assert_eq!(r.inb(0, 6) & 0x10, 0x10, "still selected");
    r.outb(0, 7, 0x90);
    assert!(r.irq(0));
    assert_eq!((r.inb(0, 1), r.inb(0, 5)), (1, 0xeb));
}

#[test]
fn unit_attention_once_after_power_on() {
    let mut r = Rig::with(1, 0, IdeDrive::Cdrom(Box::new(MemDisk::new(vec![0; 8192], true))));
    // INQUIRY does not consume it.
    assert_eq!(ok(&mut r, &[0x12, 0, 0, 0, 36]).len(), 36);
    let (err, s) = check(&mut r, &[0x00]);
    assert_eq!(err, 0x60);
    assert_eq!(s, (6, 0x29, 0));
    assert_eq!(sense(&mut r), (0, 0, 0), "reported once");
    ok(&mut r, &[0x00]);
    // REQUEST SENSE as the first command reports it directly.
    let mut r = Rig::with(1, 0, IdeDrive::Cdrom(Box::new(MemDisk::new(vec![0; 8192], true))));
    assert_eq!(sense(&mut r), (6, 0x29, 0));
    ok(&mut r, &[0x00]);
}

#[test]
fn inquiry_and_read_capacity_by_pio() {
    let mut r = cd_rig();
    let d = ok(&mut r, &[0x12, 0, 0, 0, 0xff]);
    assert_eq!(d.len(), 36);
    assert_eq!(&d[..2], &[0x05, 0x80], "CD-ROM, removable");
    assert_eq!(&d[8..16], b"VMM     ");
    assert_eq!(&d[16..27], b"VMM DVD-ROM");
    assert_eq!(ok(&mut r, &[0x12, 0, 0, 0, 5]).len(), 5, "allocation length");
    assert_eq!(ok(&mut r, &[0x12, 0, 0, 0, 0]).len(), 0);
    let d = ok(&mut r, &[0x25]);
    assert_eq!(d, [0, 0, 0, (BLOCKS - 1) as u8, 0, 0, 8, 0]);
    assert_eq!(check(&mut r, &[0x12, 1, 0x80, 0, 0xff]).1, (5, 0x24, 0), "no VPD pages");
}

#[test]
fn read10_and_read12_by_pio_with_small_byte_count_limit() {
    let mut r = cd_rig();
    let image = patterned(BLOCKS * 2048);
    // Limit 0x801 (odd): blocks of 0x800 bytes, each interrupting.
    let (st, d) = packet(&mut r, &[0x28, 0, 0, 0, 0, 3, 0, 0, 2], 0x801, false);
    assert_eq!(st, ST_READY);
    assert_eq!(d, image[3 * 2048..5 * 2048]);
    let (st, d) = packet(&mut r, &[0x28, 0, 0, 0, 0, 1, 0, 0, 1], 1000, false);
    assert_eq!(st, ST_READY);
    assert_eq!(d, image[2048..4096]);
    let d = ok(&mut r, &[0xa8, 0, 0, 0, 0, 14, 0, 0, 0, 2]);
    assert_eq!(d, image[14 * 2048..]);
    assert!(ok(&mut r, &[0x28, 0, 0, 0, 0, 0, 0, 0, 0]).is_empty(), "zero blocks");
    assert_eq!(check(&mut r, &[0x28, 0, 0, 0, 0, 15, 0, 0, 2]).1, (5, 0x21, 0));
    assert_eq!(check(&mut r, &[0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).1, (5, 0x21, 0));
    ok(&mut r, &[0x2b, 0, 0, 0, 0, 15]);
    assert_eq!(check(&mut r, &[0x2b, 0, 0, 0, 0, 16]).1, (5, 0x21, 0));
}

#[test]
fn packet_dma_read_inquiry_and_errors() {
    let mut r = cd_rig();
    let image = patterned(BLOCKS * 2048);
    r.enable_bus_master();
    r.prd(1, &[(0x2_0000, 0x800), (0x3_0000, 0x1000)]);
    let (st, d) = packet(&mut r, &[0x28, 0, 0, 0, 0, 2, 0, 0, 3], 0, true);
    assert_eq!((st & ST_BSY, d.len()), (ST_BSY, 0), "waiting for the engine");
    r.bm_start(1, true);
    assert!(r.irq(1));
    assert_eq!(r.bm_status(1), 0x04);
    assert_eq!((r.status(1), r.inb(1, 2) & 3), (ST_READY, 3));
    assert_eq!(r.mem_bytes(0x2_0000, 0x800), image[2 * 2048..3 * 2048]);
    assert_eq!(r.mem_bytes(0x3_0000, 0x1000), image[3 * 2048..5 * 2048]);
    // INQUIRY by DMA with a bigger table: stays active.
    r.ide.bar_write(4, 8, &[0]);
    r.ide.bar_write(4, 10, &[0x04]);
    r.bm_start(1, true);
    packet(&mut r, &[0x12, 0, 0, 0, 36], 0, true);
    assert_eq!(r.bm_status(1), 0x05);
    assert_eq!(&r.mem_bytes(0x2_0000, 36)[16..27], b"VMM DVD-ROM");
    // A failing command does not transfer; a no-data command with DMA set just completes.
    r.ide.bar_write(4, 8, &[0]);
    let (st, _) = packet(&mut r, &[0x28, 0, 0, 0, 0, 16, 0, 0, 1], 0, true);
    assert_eq!(st, ST_READY | ST_ERR);
    let (st, _) = packet(&mut r, &[0x00], 0, true);
    assert_eq!(st, ST_READY);
    // A bad PRD: error bit, ABORTED COMMAND sense.
    r.ide.bar_write(4, 10, &[0x06]);
    r.prd(1, &[(0xffff_0000, 0x800)]);
    r.bm_start(1, true);
    let (st, _) = packet(&mut r, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], 0, true);
    assert_eq!(st, ST_READY | ST_ERR);
    assert_eq!(r.bm_status(1), 0x06);
    assert_eq!(sense(&mut r), (0x0b, 0, 0));
}

fn toc(r: &mut Rig, msf: bool, format: u8, track: u8) -> Vec<u8> {
    ok(r, &[0x43, if msf { 2 } else { 0 }, format, 0, 0, 0, track, 0x03, 0x00])
}

#[test]
fn read_toc_formats() {
    let mut r = cd_rig();
    let d = toc(&mut r, false, 0, 0);
    assert_eq!(d, [0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x14, 0xaa, 0, 0, 0, 0, BLOCKS as u8]);
    let d = toc(&mut r, true, 0, 1);
    // Track 1 at 00:02:00; lead-out at 16 + 150 frames = 00:02:16.
    assert_eq!(&d[8..12], &[0, 0, 2, 0]);
    assert_eq!(&d[16..20], &[0, 0, 2, 16]);
    let d = toc(&mut r, false, 0, 0xaa);
    assert_eq!(d.len(), 12, "lead-out only");
    assert_eq!(check(&mut r, &[0x43, 0, 0, 0, 0, 0, 2, 0, 0xff]).1, (5, 0x24, 0));
    let d = toc(&mut r, false, 1, 0);
    assert_eq!(d, [0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
    let d = toc(&mut r, true, 2, 0);
    assert_eq!(d.len(), 4 + 4 * 11);
    assert_eq!(&d[4 + 2 * 11..4 + 3 * 11], &[1, 0x14, 0, 0xa2, 0, 0, 0, 0, 0, 2, 16]);
    // Old-style format in byte 9.
    let d = ok(&mut r, &[0x43, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x40]);
    assert_eq!(d.len(), 12);
    assert_eq!(check(&mut r, &[0x43, 0, 5, 0, 0, 0, 0, 0, 0xff]).1, (5, 0x24, 0));
    assert_eq!(ok(&mut r, &[0x43, 0, 0, 0, 0, 0, 0, 0, 4]).len(), 4);
}

#[test]
fn get_configuration_profiles() {
    let mut r = cd_rig();
    let d = ok(&mut r, &[0x46, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&d[6..8], &[0x00, 0x08], "current profile CD-ROM");
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize, d.len() - 4);
    assert_eq!(&d[8..12], &[0, 0, 0x03, 8], "profile list first");
    assert_eq!(&d[12..20], &[0x00, 0x10, 0, 0, 0x00, 0x08, 1, 0]);
    let d = ok(&mut r, &[0x46, 2, 0, 0x03, 0, 0, 0, 1, 0]);
    assert_eq!(d.len(), 8 + 8, "RT=2: only the removable-medium feature");
    assert_eq!(&d[8..10], &[0, 3]);
    let d = ok(&mut r, &[0x46, 1, 0, 0x02, 0, 0, 0, 1, 0]);
    assert_eq!(&d[8..10], &[0, 2], "from feature 2 on");
    assert_eq!(check(&mut r, &[0x46, 3]).1, (5, 0x24, 0));
    // A medium larger than a CD is a DVD.
    let big = Sparse { size: (CD_MAX_BLOCKS + 1) * CD_SECTOR, fail_from: u64::MAX };
    let mut r = Rig::with(1, 0, IdeDrive::Cdrom(Box::new(big)));
    let d = ok(&mut r, &[0x46, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&d[6..8], &[0x00, 0x10]);
    assert_eq!(&d[12..20], &[0x00, 0x10, 1, 0, 0x00, 0x08, 0, 0]);
}

#[test]
fn mode_sense_pages() {
    let mut r = cd_rig();
    let d = ok(&mut r, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff]);
    assert_eq!(d.len(), 8 + 22);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
    assert_eq!(&d[8..10], &[0x2a, 0x14]);
    assert_eq!(d[8 + 6] & 0xe9, 0x29, "tray, eject, lock");
    let d = ok(&mut r, &[0x1a, 0, 0x01, 0, 0xff]);
    assert_eq!(d, [11, 0, 0, 0, 0x01, 0x06, 0, 5, 0, 0, 0, 0]);
    let d = ok(&mut r, &[0x1a, 0, 0x3f, 0, 0xff]);
    assert_eq!(d.len(), 4 + 8 + 22);
    let d = ok(&mut r, &[0x1a, 0, 0x41, 0, 0xff]);
    assert_eq!(&d[4..], &[0x01, 0x06, 0, 0, 0, 0, 0, 0], "changeable values: none");
    assert_eq!(ok(&mut r, &[0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 10]).len(), 10);
    assert_eq!(check(&mut r, &[0x1a, 0, 0x05, 0, 0xff]).1, (5, 0x24, 0));
    assert_eq!(check(&mut r, &[0x1a, 0, 0xc1, 0, 0xff]).1, (5, 0x39, 0));
}

#[test]
fn events_removal_lock_and_misc() {
    let mut r = cd_rig();
    let d = ok(&mut r, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(d, [0, 6, 0x04, 0x10, 2, 0x02, 0, 0], "new medium once");
    let d = ok(&mut r, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(d[4], 0);
    let d = ok(&mut r, &[0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8]);
    assert_eq!(d, [0, 2, 0x80, 0x10], "no supported class asked for");
    assert_eq!(check(&mut r, &[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8]).1, (5, 0x24, 0), "asynchronous");
    // Lock, then eject is refused; unlock, eject accepted (the medium stays).
    ok(&mut r, &[0x1e, 0, 0, 0, 1]);
    let d = ok(&mut r, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff]);
    assert_eq!(d[8 + 6] & 0x02, 0x02, "lock state");
    assert_eq!(check(&mut r, &[0x1b, 0, 0, 0, 0x02]).1, (5, 0x53, 2));
    ok(&mut r, &[0x1b, 0, 0, 0, 0x01]);
    ok(&mut r, &[0x1e, 0, 0, 0, 0]);
    ok(&mut r, &[0x1b, 0, 0, 0, 0x02]);
    let d = ok(&mut r, &[0x51, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    assert_eq!(d.len(), 34);
    assert_eq!(&d[..8], &[0, 32, 0x0e, 1, 1, 1, 1, 0x20]);
    assert_eq!(check(&mut r, &[0x51, 1, 0, 0, 0, 0, 0, 0, 0xff]).1, (5, 0x24, 0));
    assert_eq!(ok(&mut r, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8]), vec![0; 8]);
    ok(&mut r, &[0xbb, 0, 0xff, 0xff]);
}

#[test]
fn bad_opcode_sense_and_clearing() {
    let mut r = cd_rig();
    let (err, s) = check(&mut r, &[0xff]);
    assert_eq!(err, 0x50, "sense key in the error register");
    assert_eq!(s, (5, 0x20, 0));
    assert_eq!(sense(&mut r), (0, 0, 0), "REQUEST SENSE clears it");
    check(&mut r, &[0x2a]);
    ok(&mut r, &[0x00]);
    assert_eq!(sense(&mut r), (0, 0, 0), "a successful command clears it");
    assert_eq!(ok(&mut r, &[0x03, 0, 0, 0, 4]).len(), 4);
    // Medium errors on read.
    let mut r = Rig::with(1, 0, IdeDrive::Cdrom(Box::new(Sparse { size: 8 * 2048, fail_from: 2048 })));
    check(&mut r, &[0x00]);
    assert_eq!(check(&mut r, &[0x28, 0, 0, 0, 0, 1, 0, 0, 1]).1, (3, 0x11, 0));
    // Data-port writes outside the packet phase are ignored.
    r.write_data(1, &[1, 2, 3, 4]);
    assert_eq!(r.status(1), ST_READY);
}
