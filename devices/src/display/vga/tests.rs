// SPDX-License-Identifier: Apache-2.0
//! Whole-card tests: modes programmed through the ports the way SeaVGABIOS does, memory
//! written through the bus adapters, the result checked through text_dump and decoded PNGs.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, VolatileMemory};

use super::*;
use crate::bus::Bus;
use crate::pci::PciDevice;

// SeaVGABIOS register tables (stdvgamodes.c) for modes 3, 0x12 and 0x13.
const SEQU_03: [u8; 4] = [0x00, 0x03, 0x00, 0x02];
const CRTC_03: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x9c,
    0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
];
const ACTL_01: [u8; 20] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x0c,
    0x00, 0x0f, 0x08,
];
const GRDC_01: [u8; 9] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff];
const SEQU_0E: [u8; 4] = [0x01, 0x0f, 0x00, 0x06];
const CRTC_11: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xea,
    0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
];
const ACTL_10: [u8; 20] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x01,
    0x00, 0x0f, 0x00,
];
const GRDC_0D: [u8; 9] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff];
const SEQU_13: [u8; 4] = [0x01, 0x0f, 0x00, 0x0e];
const CRTC_13: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9c,
    0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
];
const ACTL_13: [u8; 20] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x41,
    0x00, 0x0f, 0x00,
];
const GRDC_13: [u8; 9] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff];

/// The card on port and memory buses, as the machine wires it.
struct Rig {
    vga: Arc<Mutex<StdVga>>,
    io: Bus,
    mmio: Bus,
}

impl Rig {
    fn new() -> Self {
        let vga = Arc::new(Mutex::new(StdVga::new().unwrap()));
        let io = Bus::new();
        io.insert(
            u64::from(VGA_PORTS_BASE),
            u64::from(VGA_PORTS_LEN),
            Arc::new(Mutex::new(VgaIoPorts(vga.clone()))),
        )
        .unwrap();
        io.insert(
            u64::from(VBE_PORTS_BASE),
            u64::from(VBE_PORTS_LEN),
            Arc::new(Mutex::new(VbeIoPorts(vga.clone()))),
        )
        .unwrap();
        let mmio = Bus::new();
        mmio.insert(
            LEGACY_WINDOW_BASE,
            LEGACY_WINDOW_SIZE,
            Arc::new(Mutex::new(VgaLegacyWindow(vga.clone()))),
        )
        .unwrap();
        Rig { vga, io, mmio }
    }

    fn outb(&self, port: u16, v: u8) {
        assert!(self.io.write(u64::from(port), &[v]));
    }
    fn outw(&self, port: u16, v: u16) {
        assert!(self.io.write(u64::from(port), &v.to_le_bytes()));
    }
    fn inb(&self, port: u16) -> u8 {
        let mut b = [0];
        assert!(self.io.read(u64::from(port), &mut b));
        b[0]
    }
    fn inw(&self, port: u16) -> u16 {
        let mut b = [0; 2];
        assert!(self.io.read(u64::from(port), &mut b));
        u16::from_le_bytes(b)
    }
    fn poke(&self, addr: u64, data: &[u8]) {
        assert!(self.mmio.write(addr, data));
    }
    fn peek(&self, addr: u64) -> u8 {
        let mut b = [0];
        assert!(self.mmio.read(addr, &mut b));
        b[0]
    }
    fn dispi(&self, index: u16, v: u16) {
        self.outw(0x1ce, index);
        self.outw(0x1cf, v);
    }

    /// Programs a standard mode the way SeaVGABIOS's stdvga_set_mode does.
    fn set_mode(&self, misc: u8, sequ: &[u8; 4], crtc: &[u8; 25], actl: &[u8; 20], grdc: &[u8; 9]) {
        self.inb(0x3da);
        self.outb(0x3c0, 0x00); // palette access: screen off
        for (i, &v) in sequ.iter().enumerate() {
            self.outw(0x3c4, (u16::from(v) << 8) | (i as u16 + 1));
        }
        self.outw(0x3c4, 0x0300);
        self.outb(0x3c2, misc);
        self.outw(0x3d4, 0x0011); // unprotect
        for (i, &v) in crtc.iter().enumerate() {
            self.outw(0x3d4, (u16::from(v) << 8) | i as u16);
        }
        self.inb(0x3da);
        for (i, &v) in actl.iter().enumerate() {
            self.outb(0x3c0, i as u8);
            self.outb(0x3c0, v);
        }
        self.outb(0x3c0, 0x14);
        self.outb(0x3c0, 0x00);
        for (i, &v) in grdc.iter().enumerate() {
            self.outw(0x3ce, (u16::from(v) << 8) | i as u16);
        }
        self.inb(0x3da);
        self.outb(0x3c0, 0x20); // video on
    }

    fn dac(&self, index: u8, rgb: [u8; 3]) {
        self.outb(0x3c8, index);
        for c in rgb {
            self.outb(0x3c9, c);
        }
    }

    /// Loads one 16-line glyph into font map 0 through plane 2, as SeaVGABIOS's
    /// stdvga_load_font does (get_font_access / release_font_access).
    fn load_glyph(&self, ch: u8, rows: &[u8; 16]) {
        self.outw(0x3c4, 0x0100);
        self.outw(0x3c4, 0x0402);
        self.outw(0x3c4, 0x0704);
        self.outw(0x3c4, 0x0300);
        self.outw(0x3ce, 0x0204);
        self.outw(0x3ce, 0x0005);
        self.outw(0x3ce, 0x0406);
        self.poke(0xa0000 + u64::from(ch) * 32, rows);
        self.outw(0x3c4, 0x0100);
        self.outw(0x3c4, 0x0302);
        self.outw(0x3c4, 0x0304);
        self.outw(0x3c4, 0x0300);
        self.outw(0x3ce, 0x0004);
        self.outw(0x3ce, 0x1005);
        self.outw(0x3ce, 0x0e06);
    }

    fn png(&self) -> (u32, u32, Vec<u8>) {
        decode(&self.vga.lock().unwrap().screenshot_png().unwrap())
    }
}

fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn px(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * img.0 + x) * 3) as usize;
    [img.2[i], img.2[i + 1], img.2[i + 2]]
}

fn mode3(rig: &Rig) {
    rig.set_mode(0x67, &SEQU_03, &CRTC_03, &ACTL_01, &GRDC_01);
}

#[test]
fn text_dump_of_a_bios_written_screen() {
    let rig = Rig::new();
    mode3(&rig);
    let mut cells = Vec::new();
    for &c in b"Hello, world!" {
        cells.extend_from_slice(&[c, 0x07]);
    }
    rig.poke(0xb8000, &cells);
    // Row 1: a box corner and a horizontal line, written as 16-bit words like `stosw`.
    rig.poke(0xb8000 + 160, &[0xc9, 0x1f, 0xcd, 0x1f, 0xbb, 0x1f]);
    // Bottom-right cell.
    rig.poke(0xb8000 + 2 * (80 * 25 - 1), &[b'Z', 0x07]);
    assert_eq!(rig.peek(0xb8000 + 1), 0x07, "attribute reads back");
    let vga = rig.vga.lock().unwrap();
    assert!(vga.in_text_mode());
    let text = vga.text_dump().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 25);
    assert_eq!(lines[0], "Hello, world!");
    assert_eq!(lines[1], "╔═╗");
    assert_eq!(lines[2], "");
    assert_eq!(lines[24], format!("{}Z", " ".repeat(79)));
    drop(vga);
    // Scrolling by the CRTC start address (in character cells).
    rig.outw(0x3d4, 0x500d); // start address low = 80
    assert!(rig.vga.lock().unwrap().text_dump().unwrap().starts_with("╔═╗\n"));
    // Graphics mode: no text.
    rig.outw(0x3ce, 0x0506);
    assert_eq!(rig.vga.lock().unwrap().text_dump(), None);
}

#[test]
fn text_screenshot_uses_the_guest_font_palette_and_attributes() {
    let rig = Rig::new();
    mode3(&rig);
    // EGA palette entries behind attribute colours 1 (blue) and 14 (yellow, DAC 0x3e).
    rig.dac(0x01, [0x00, 0x00, 0x2a]);
    rig.dac(0x3e, [0x3f, 0x3f, 0x15]);
    // 'A' as a glyph with the top half's left nibble lit.
    let mut glyph = [0u8; 16];
    glyph[..8].fill(0xf0);
    rig.load_glyph(b'A', &glyph);
    rig.poke(0xb8000, &[b'A', 0x1e]);
    let img = rig.png();
    assert_eq!((img.0, img.1), (720, 400), "80x25 cells of 9x16");
    let yellow = [0xff, 0xff, 0x55];
    let blue = [0x00, 0x00, 0xaa];
    assert_eq!(px(&img, 0, 0), yellow);
    assert_eq!(px(&img, 3, 7), yellow);
    assert_eq!(px(&img, 4, 0), blue);
    assert_eq!(px(&img, 0, 8), blue);
    assert_eq!(px(&img, 8, 0), blue, "9th column is background for letters");
    // Font reads back through plane 2 with font access.
    assert_eq!(rig.vga.lock().unwrap().vram.read_u8(usize::from(b'A') * 32 * 4 + 2), 0xf0);
    // The text dump is unaffected by the font.
    assert!(rig.vga.lock().unwrap().text_dump().unwrap().starts_with("A\n"));
}

#[test]
fn text_cursor_is_drawn_at_its_cell() {
    let rig = Rig::new();
    mode3(&rig);
    rig.dac(0x07, [0x2a, 0x2a, 0x2a]);
    rig.poke(0xb8000, &[b' ', 0x07, b' ', 0x07]);
    rig.outw(0x3d4, 0x010f); // cursor at cell 1
    let img = rig.png();
    assert_eq!(px(&img, 9, 13), [0xaa, 0xaa, 0xaa], "cursor lines 13-14");
    assert_eq!(px(&img, 9, 12), [0, 0, 0]);
    assert_eq!(px(&img, 0, 13), [0, 0, 0]);
    rig.outw(0x3d4, 0x2d0a); // cursor off
    assert_eq!(px(&rig.png(), 9, 13), [0, 0, 0]);
}

#[test]
fn blanked_screen_renders_black() {
    let rig = Rig::new();
    mode3(&rig);
    let mut glyph = [0u8; 16];
    glyph.fill(0xff);
    rig.load_glyph(b'#', &glyph);
    rig.dac(0x07, [0x2a, 0x2a, 0x2a]);
    rig.poke(0xb8000, &[b'#', 0x07]);
    assert_ne!(px(&rig.png(), 0, 0), [0, 0, 0]);
    rig.inb(0x3da);
    rig.outb(0x3c0, 0x00); // palette address source cleared
    assert_eq!(px(&rig.png(), 0, 0), [0, 0, 0]);
}

#[test]
fn mode_13h_renders_320x200_from_chain4_writes() {
    let rig = Rig::new();
    rig.set_mode(0x63, &SEQU_13, &CRTC_13, &ACTL_13, &GRDC_13);
    rig.dac(4, [0x2a, 0, 0]);
    rig.poke(0xa0000 + 320 * 10 + 5, &[4]);
    assert_eq!(rig.peek(0xa0000 + 320 * 10 + 5), 4);
    assert_eq!(rig.vga.lock().unwrap().vram.read_u8(320 * 10 + 5), 4, "linear in VRAM");
    let img = rig.png();
    assert_eq!((img.0, img.1), (320, 200));
    assert_eq!(px(&img, 5, 10), [0xaa, 0, 0]);
    assert_eq!(px(&img, 6, 10), [0, 0, 0]);
}

#[test]
fn mode_12h_planar_renders_640x480() {
    let rig = Rig::new();
    rig.set_mode(0xe3, &SEQU_0E, &CRTC_11, &ACTL_10, &GRDC_0D);
    rig.dac(0x3c, [0x3f, 0x15, 0x15]); // attribute 12 -> DAC 0x3c
                                       // Write mode 2, colour 12, bit mask selects pixel 2 of the byte at row 3, column 8..15.
    rig.outw(0x3ce, 0x0205);
    rig.outw(0x3ce, 0x2008);
    rig.peek(0xa0000 + 80 * 3 + 1); // load latches
    rig.poke(0xa0000 + 80 * 3 + 1, &[12]);
    let img = rig.png();
    assert_eq!((img.0, img.1), (640, 480));
    assert_eq!(px(&img, 8 + 2, 3), [0xff, 0x55, 0x55]);
    assert_eq!(px(&img, 8 + 3, 3), [0, 0, 0]);
    // Read mode 1 finds the pixel by colour.
    rig.outw(0x3ce, 0x0805);
    rig.outw(0x3ce, 0x0c02);
    assert_eq!(rig.peek(0xa0000 + 80 * 3 + 1), 0x20);
}

#[test]
fn vbe_through_ports_32bpp_lfb_screenshot() {
    let rig = Rig::new();
    mode3(&rig);
    rig.dispi(0, 0xb0c0);
    assert_eq!(rig.inw(0x1cf), 0xb0c0);
    rig.dispi(0, 0xb0c5);
    assert_eq!(rig.inw(0x1cf), 0xb0c5);
    assert_eq!(rig.inw(0x1ce), 0);
    rig.outw(0x1ce, 0x0a);
    assert_eq!(rig.inw(0x1cf), 256, "16 MiB in 64 KiB units");
    rig.dispi(4, 0x02); // GETCAPS
    rig.outw(0x1ce, 1);
    assert_eq!(rig.inw(0x1cf), 16000);
    rig.dispi(4, 0);
    rig.dispi(3, 32);
    rig.dispi(1, 640);
    rig.dispi(2, 480);
    rig.dispi(5, 0);
    rig.dispi(4, 0x41);
    let vga = rig.vga.lock().unwrap();
    assert_eq!(vga.vbe_mode(), Some((640, 480, 32)));
    assert_eq!(vga.text_dump(), None);
    // The guest writes the LFB (mapped VRAM): pixel (10, 20) in B, G, R, X order.
    let region = vga.vram_region();
    region.as_volatile_slice().write_slice(&[0x30, 0x20, 0x10, 0], (20 * 640 + 10) * 4).unwrap();
    let img = decode(&vga.screenshot_png().unwrap());
    assert_eq!((img.0, img.1), (640, 480));
    assert_eq!(px(&img, 10, 20), [0x10, 0x20, 0x30]);
    assert_eq!(px(&img, 11, 20), [0, 0, 0]);
}

#[test]
fn vbe_packed_depths_and_banked_window() {
    let rig = Rig::new();
    rig.dispi(3, 8);
    rig.dispi(1, 640);
    rig.dispi(2, 480);
    rig.dispi(4, 0x01);
    rig.dac(7, [0x3f, 0, 0x3f]);
    // Bank 1 through the window at 0xA0000: chain-4 was switched on by the enable.
    rig.dispi(5, 1);
    rig.poke(0xa0000 + 5, &[7]);
    assert_eq!(rig.vga.lock().unwrap().vram.read_u8(0x1_0005), 7);
    let (x, y) = (0x1_0005 % 640, 0x1_0005 / 640);
    assert_eq!(px(&rig.png(), x, y), [0xff, 0, 0xff]);
    // 8-bit DAC: components used as written.
    rig.dispi(4, 0x21);
    assert_eq!(px(&rig.png(), x, y), [0x3f, 0, 0x3f]);
    // 16 bpp (5:6:5) and 15 bpp (5:5:5).
    rig.dispi(4, 0);
    rig.dispi(3, 16);
    rig.dispi(4, 0x81);
    rig.vga.lock().unwrap().vram.write_u32(0, 0xf800);
    assert_eq!(px(&rig.png(), 0, 0), [0xff, 0, 0]);
    rig.dispi(3, 15);
    rig.vga.lock().unwrap().vram.write_u32(0, 0x03e0);
    assert_eq!(px(&rig.png(), 0, 0), [0, 0xff, 0]);
    rig.dispi(3, 24);
    rig.vga.lock().unwrap().vram.write_u32(0, 0x00ff_0000);
    assert_eq!(px(&rig.png(), 0, 0), [0xff, 0, 0]);
    // Disabling returns to the VGA mode.
    rig.dispi(4, 0);
    assert_eq!(rig.vga.lock().unwrap().vbe_mode(), None);
}

#[test]
fn word_port_writes_split_into_index_and_data() {
    let rig = Rig::new();
    rig.outb(0x3c2, 0x67);
    rig.outw(0x3c4, 0x0f02);
    assert_eq!(rig.inb(0x3c4), 2);
    assert_eq!(rig.inb(0x3c5), 0x0f);
    assert_eq!(rig.inw(0x3c4), 0x0f02);
    rig.outw(0x3ce, 0xff08);
    assert_eq!(rig.inb(0x3cf), 0xff);
    assert_eq!(rig.inb(0x3b5), 0xff, "mono CRTC ignored in colour mode");
    // A 32-bit access at the end of the range does not run past it.
    let mut d = [0u8; 4];
    assert!(rig.io.read(0x3de, &mut d));
    assert_eq!(&d[2..], &[0xff, 0xff]);
    assert!(rig.io.write(0x3de, &[1, 2, 3, 4]));
}

#[test]
fn hostile_accesses_do_not_panic() {
    let rig = Rig::new();
    let mut seed = 0x1234_5678u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for _ in 0..10000 {
        let r = next();
        let v = next();
        match r % 6 {
            0 => rig.outb(0x3b0 + (v % 0x30) as u16, (v >> 8) as u8),
            1 => {
                rig.inb(0x3b0 + (v % 0x30) as u16);
            }
            2 => rig.dispi(((v >> 16) % 16) as u16, v as u16),
            3 => rig.poke(0xa0000 + u64::from(v % 0x2_0000), &(v >> 3).to_le_bytes()),
            4 => {
                rig.peek(0xa0000 + u64::from(v % 0x2_0000));
            }
            _ => {
                let mut vga = rig.vga.lock().unwrap();
                let off = u64::from(v % 0x1000);
                vga.bar_write(2, off, &v.to_le_bytes()[..(r as usize >> 8) % 4 + 1]);
                let mut b = [0u8; 3];
                vga.bar_read(2, off, &mut b);
            }
        }
        if r % 2000 == 0 {
            let vga = rig.vga.lock().unwrap();
            let frame = vga.render();
            assert_eq!(frame.rgb.len(), frame.width as usize * frame.height as usize * 3);
            assert!(u64::from(frame.width) * u64::from(frame.height) <= MAX_PIXELS);
            let _ = vga.text_dump();
        }
    }
    // Extreme VBE geometry renders within bounds.
    rig.dispi(4, 0);
    rig.dispi(3, 4);
    rig.dispi(1, 0xffff);
    rig.dispi(2, 0xffff);
    rig.dispi(4, 0x81);
    rig.dispi(8, 0xffff);
    rig.dispi(9, 0xffff);
    let frame = rig.vga.lock().unwrap().render();
    assert!(u64::from(frame.width) * u64::from(frame.height) <= MAX_PIXELS);
}

#[test]
fn vbe_planar_4bpp_renders_through_the_attribute_palette() {
    let rig = Rig::new();
    // SeaVGABIOS sets mode 0x6A's VGA state before a planar VBE mode; mode 0x12's will do.
    rig.set_mode(0xe3, &SEQU_0E, &CRTC_11, &ACTL_10, &GRDC_0D);
    rig.dac(0x39, [0x15, 0x15, 0x3f]); // attribute 9 -> DAC 0x39
    rig.dispi(3, 4);
    rig.dispi(1, 800);
    rig.dispi(2, 600);
    rig.dispi(4, 0x01);
    assert_eq!(rig.vga.lock().unwrap().vbe_mode(), Some((800, 600, 4)));
    // Pixel (800 + 1, ...) = row 1, x 1: planar offset 100 + 0, bit 6.
    rig.outw(0x3ce, 0x0205);
    rig.outw(0x3ce, 0x4008);
    rig.peek(0xa0000 + 100);
    rig.poke(0xa0000 + 100, &[9]);
    let img = rig.png();
    assert_eq!((img.0, img.1), (800, 600));
    assert_eq!(px(&img, 1, 1), [0x55, 0x55, 0xff]);
    assert_eq!(px(&img, 0, 1), [0, 0, 0]);
}

#[test]
fn forty_column_text_mode_dump() {
    let rig = Rig::new();
    let mut crtc = CRTC_03;
    crtc[1] = 0x27;
    crtc[0x13] = 0x14;
    rig.set_mode(0x67, &[0x08, 0x03, 0x00, 0x02], &crtc, &ACTL_01, &GRDC_01);
    rig.poke(0xb8000 + 80, &[b'x', 7]); // second row starts at cell 40
    let text = rig.vga.lock().unwrap().text_dump().unwrap();
    assert_eq!(text.lines().nth(1), Some("x"));
    let img = rig.png();
    assert_eq!((img.0, img.1), (40 * 9, 400));
}

#[test]
fn reset_leaves_vbe_mode_and_keeps_video_memory() {
    let r = Rig::new();
    r.dispi(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    r.outb(0x3c2, 0x67); // miscellaneous output
    lock(&r.vga).config_write(4, 0, &0xfd00_0000u32.to_le_bytes());
    lock(&r.vga).config_write(1, 0, &[0x03, 0x00]);
    let region = lock(&r.vga).vram_region();
    // SAFETY: the region is VRAM_SIZE bytes long and only this test uses it.
    unsafe { *region.as_ptr().add(0x1234) = 0x5a };
    let before = region.as_ptr();
    lock(&r.vga).reset();
    r.outw(0x1ce, vbe::INDEX_ENABLE);
    assert_eq!(r.inw(0x1cf) & vbe::ENABLED, 0, "VBE off");
    assert_eq!(r.inb(0x3cc), 0, "miscellaneous output back to its power-on value");
    assert!(lock(&r.vga).bar_ranges().is_empty(), "BARs unassigned, decoding off");
    assert_eq!(lock(&r.vga).vram_region().as_ptr(), before, "the same host memory");
    // SAFETY: as above.
    assert_eq!(unsafe { *region.as_ptr().add(0x1234) }, 0x5a, "video memory keeps its contents");
}
