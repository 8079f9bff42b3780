// SPDX-License-Identifier: Apache-2.0
//! The VGA register file behind ports 0x3B0-0x3DF: sequencer (0x3C4/5), graphics controller
//! (0x3CE/F), attribute controller (0x3C0/1 with its index/data flip-flop), CRT controller
//! (0x3B4/5 or 0x3D4/5 as the miscellaneous output register selects), the DAC (0x3C6-0x3C9),
//! miscellaneous output (0x3C2 write, 0x3CC read), feature control and the input status
//! registers.
//!
//! Registers follow the IBM VGA technical reference: reserved bits read as zero, CRTC 0-7
//! are write-protected while CR11 bit 7 is set (except CR7 bit 4), and reading input status 1
//! resets the attribute flip-flop. Input status 1 toggles its retrace and display-enable bits
//! on every read, so guests polling for a retrace edge see one immediately.

/// Bits a guest may set in each sequencer register.
const SR_MASK: [u8; 8] = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff];
/// Bits a guest may set in each graphics controller register; 9-15 do not exist.
const GR_MASK: [u8; 16] = [0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0];
/// Number of attribute controller registers (16 palette entries, mode, overscan, plane
/// enable, horizontal pel panning, colour select).
pub(super) const AR_COUNT: usize = 0x15;

/// Input status 1: display disabled (in a blanking interval).
pub(super) const ST01_DISP_ENABLE: u8 = 0x01;
/// Input status 1: vertical retrace.
pub(super) const ST01_V_RETRACE: u8 = 0x08;

/// Miscellaneous output bit 0: colour emulation (CRTC at 0x3D4, input status 1 at 0x3DA).
pub(super) const MISC_COLOR: u8 = 0x01;

/// The register file.
#[derive(Clone)]
pub(super) struct VgaRegs {
    pub sr_index: u8,
    pub sr: [u8; 8],
    pub gr_index: u8,
    pub gr: [u8; 16],
    pub ar_index: u8,
    pub ar: [u8; AR_COUNT],
    /// False: the next 0x3C0 write is an index; true: it is data.
    pub ar_flip_flop: bool,
    pub cr_index: u8,
    pub cr: [u8; 256],
    pub msr: u8,
    pub fcr: u8,
    pub st00: u8,
    pub st01: u8,
    pub pel_mask: u8,
    /// 0: DAC in write mode; 3: in read mode (as read from 0x3C7).
    pub dac_state: u8,
    pub dac_sub_index: u8,
    pub dac_read_index: u8,
    pub dac_write_index: u8,
    dac_cache: [u8; 3],
    /// 256 entries of red, green, blue; 6 significant bits unless the VBE 8-bit DAC is on.
    pub palette: [u8; 768],
    /// The VBE "8-bit DAC" enable bit.
    pub dac_8bit: bool,
    /// The four plane bytes loaded by the last latched read.
    pub latch: u32,
}

impl VgaRegs {
    /// Power-on state: everything zero (monochrome addressing) except the PEL mask.
    pub fn new() -> Self {
        VgaRegs {
            sr_index: 0,
            sr: [0; 8],
            gr_index: 0,
            gr: [0; 16],
            ar_index: 0,
            ar: [0; AR_COUNT],
            ar_flip_flop: false,
            cr_index: 0,
            cr: [0; 256],
            msr: 0,
            fcr: 0,
            st00: 0,
            st01: 0,
            pel_mask: 0xff,
            dac_state: 0,
            dac_sub_index: 0,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_cache: [0; 3],
            palette: [0; 768],
            dac_8bit: false,
            latch: 0,
        }
    }

    /// Whether `port` belongs to the CRTC block the miscellaneous output register does not
    /// select (0x3Bx in colour mode, 0x3Dx in monochrome mode): such ports do not decode.
    fn port_ignored(&self, port: u16) -> bool {
        if self.msr & MISC_COLOR != 0 {
            (0x3b0..=0x3bf).contains(&port)
        } else {
            (0x3d0..=0x3df).contains(&port)
        }
    }

    /// A guest byte read of `port` (0x3B0-0x3DF).
    pub fn read_port(&mut self, port: u16) -> u8 {
        if self.port_ignored(port) {
            return 0xff;
        }
        match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    0
                } else {
                    self.ar_index
                }
            }
            0x3c1 => self.ar.get(usize::from(self.ar_index & 0x1f)).copied().unwrap_or(0),
            0x3c2 => self.st00,
            0x3c4 => self.sr_index,
            0x3c5 => self.sr[usize::from(self.sr_index & 7)],
            0x3c6 => self.pel_mask,
            0x3c7 => self.dac_state,
            0x3c8 => self.dac_write_index,
            0x3c9 => {
                let i = usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub_index);
                let v = self.palette[i];
                self.dac_sub_index += 1;
                if self.dac_sub_index == 3 {
                    self.dac_sub_index = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => self.fcr,
            0x3cc => self.msr,
            0x3ce => self.gr_index,
            0x3cf => self.gr[usize::from(self.gr_index & 0x0f)],
            0x3b4 | 0x3d4 => self.cr_index,
            0x3b5 | 0x3d5 => self.cr[usize::from(self.cr_index)],
            0x3ba | 0x3da => {
                self.st01 ^= ST01_V_RETRACE | ST01_DISP_ENABLE;
                self.ar_flip_flop = false;
                self.st01
            }
            _ => 0,
        }
    }

    /// A guest byte write of `value` to `port` (0x3B0-0x3DF).
    pub fn write_port(&mut self, port: u16, value: u8) {
        if self.port_ignored(port) {
            return;
        }
        match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    self.write_ar(value);
                } else {
                    self.ar_index = value & 0x3f;
                }
                self.ar_flip_flop = !self.ar_flip_flop;
            }
            0x3c2 => self.msr = value & !0x10,
            0x3c4 => self.sr_index = value & 7,
            0x3c5 => {
                let i = usize::from(self.sr_index & 7);
                self.sr[i] = value & SR_MASK[i];
            }
            0x3c6 => self.pel_mask = value,
            0x3c7 => {
                self.dac_read_index = value;
                self.dac_sub_index = 0;
                self.dac_state = 3;
            }
            0x3c8 => {
                self.dac_write_index = value;
                self.dac_sub_index = 0;
                self.dac_state = 0;
            }
            0x3c9 => {
                self.dac_cache[usize::from(self.dac_sub_index)] = value;
                self.dac_sub_index += 1;
                if self.dac_sub_index == 3 {
                    let i = usize::from(self.dac_write_index) * 3;
                    self.palette[i..i + 3].copy_from_slice(&self.dac_cache);
                    self.dac_sub_index = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
            }
            0x3ce => self.gr_index = value & 0x0f,
            0x3cf => {
                let i = usize::from(self.gr_index & 0x0f);
                self.gr[i] = value & GR_MASK[i];
            }
            0x3b4 | 0x3d4 => self.cr_index = value,
            0x3b5 | 0x3d5 => self.write_cr(value),
            0x3ba | 0x3da => self.fcr = value & 0x10,
            _ => log::debug!("vga: write {value:#x} to unhandled port {port:#x}"),
        }
    }

    fn write_ar(&mut self, value: u8) {
        let index = usize::from(self.ar_index & 0x1f);
        let masked = match index {
            0x00..=0x0f => value & 0x3f,
            0x10 => value & !0x10,
            0x11 => value,
            0x12 => value & 0x3f,
            0x13 | 0x14 => value & 0x0f,
            _ => return,
        };
        self.ar[index] = masked;
    }

    fn write_cr(&mut self, value: u8) {
        let index = self.cr_index;
        if self.cr[0x11] & 0x80 != 0 && index <= 7 {
            // Registers 0-7 are protected; only the line compare bit 8 in CR7 stays writable.
            if index == 7 {
                self.cr[7] = (self.cr[7] & !0x10) | (value & 0x10);
            }
            return;
        }
        self.cr[usize::from(index)] = value;
    }

    /// GR6 bit 0: graphics (true) or alphanumeric (false) mode.
    pub fn graphics_mode(&self) -> bool {
        self.gr[6] & 1 != 0
    }

    /// Display start address in CRTC units (CR0C:CR0D).
    pub fn start_address(&self) -> u32 {
        (u32::from(self.cr[0x0c]) << 8) | u32::from(self.cr[0x0d])
    }

    /// Bytes of video memory (all four planes interleaved) between two displayed rows.
    pub fn line_offset(&self) -> u32 {
        u32::from(self.cr[0x13]) << 3
    }

    /// The last displayed scan line (vertical display enable end, 10 bits).
    pub fn vertical_display_end(&self) -> u32 {
        let ovf = self.cr[7];
        u32::from(self.cr[0x12]) | (u32::from(ovf & 0x02) << 7) | (u32::from(ovf & 0x40) << 3)
    }

    /// Displayed characters per row minus one, times eight: the horizontal display width in
    /// dots of 8-dot characters.
    pub fn display_width(&self) -> u32 {
        (u32::from(self.cr[1]) + 1) * 8
    }

    /// DAC entry `index` as 8-bit red, green, blue (the PEL mask applied).
    pub fn dac_rgb(&self, index: u8) -> [u8; 3] {
        let i = usize::from(index & self.pel_mask) * 3;
        let c = [self.palette[i], self.palette[i + 1], self.palette[i + 2]];
        if self.dac_8bit {
            c
        } else {
            c.map(|v| {
                let v = v & 0x3f;
                (v << 2) | (v >> 4)
            })
        }
    }

    /// The 16-entry palette of text and 16-colour modes: attribute palette register →
    /// colour select → DAC.
    pub fn palette16(&self) -> [[u8; 3]; 16] {
        let mut out = [[0u8; 3]; 16];
        for (i, entry) in out.iter_mut().enumerate() {
            let v = self.ar[i];
            let index = if self.ar[0x10] & 0x80 != 0 {
                ((self.ar[0x14] & 0x0f) << 4) | (v & 0x0f)
            } else {
                ((self.ar[0x14] & 0x0c) << 4) | (v & 0x3f)
            };
            // The DAC in 16-colour modes always holds 6-bit values.
            let i = usize::from(index & self.pel_mask) * 3;
            *entry = [self.palette[i], self.palette[i + 1], self.palette[i + 2]].map(|v| {
                let v = v & 0x3f;
                (v << 2) | (v >> 4)
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn color() -> VgaRegs {
        let mut r = VgaRegs::new();
        r.write_port(0x3c2, 0x67);
        r
    }

    #[test]
    fn sequencer_and_graphics_index_data_with_masks() {
        let mut r = color();
        r.write_port(0x3c4, 0x02);
        r.write_port(0x3c5, 0xff);
        assert_eq!(r.read_port(0x3c4), 2);
        assert_eq!(r.read_port(0x3c5), 0x0f, "map mask has four bits");
        r.write_port(0x3c4, 0xfc); // index wraps to 4
        assert_eq!(r.read_port(0x3c4), 4);
        r.write_port(0x3c5, 0xff);
        assert_eq!(r.read_port(0x3c5), 0x0e);
        r.write_port(0x3c4, 5);
        r.write_port(0x3c5, 0xff);
        assert_eq!(r.read_port(0x3c5), 0, "SR5 does not exist");
        r.write_port(0x3ce, 0x05);
        r.write_port(0x3cf, 0xff);
        assert_eq!(r.read_port(0x3cf), 0x7b);
        r.write_port(0x3ce, 0x08);
        r.write_port(0x3cf, 0xa5);
        assert_eq!(r.read_port(0x3cf), 0xa5);
        r.write_port(0x3ce, 0x1c); // index 0xc: no such register
        assert_eq!(r.read_port(0x3ce), 0x0c);
        r.write_port(0x3cf, 0xff);
        assert_eq!(r.read_port(0x3cf), 0);
        r.write_port(0x3ce, 0x06);
        r.write_port(0x3cf, 0x05);
        assert!(r.graphics_mode());
    }

    #[test]
    fn attribute_controller_flip_flop_and_input_status_reset() {
        let mut r = color();
        r.read_port(0x3da);
        r.write_port(0x3c0, 0x01); // index
        assert_eq!(r.read_port(0x3c0), 0, "reads 0 while the flip-flop points at data");
        r.write_port(0x3c0, 0xff); // data
        assert_eq!(r.read_port(0x3c0), 0x01, "flip-flop back on index");
        assert_eq!(r.read_port(0x3c1), 0x3f);
        r.write_port(0x3c0, 0x10 | 0x20);
        r.write_port(0x3c0, 0xff);
        assert_eq!(r.read_port(0x3c1), 0xef, "mode control bit 4 is reserved");
        assert_eq!(r.ar_index & 0x20, 0x20, "palette address source kept in the index");
        // Half-way: index written, then 0x3DA read resets to index state.
        r.write_port(0x3c0, 0x12);
        assert!(r.ar_flip_flop);
        r.read_port(0x3da);
        assert!(!r.ar_flip_flop);
        r.write_port(0x3c0, 0x14);
        r.write_port(0x3c0, 0xff);
        assert_eq!(r.read_port(0x3c1), 0x0f);
        assert_eq!(r.read_port(0x3c0), 0x14);
        // Indices past 0x14 store nothing and read zero.
        r.write_port(0x3c0, 0x1f);
        r.write_port(0x3c0, 0x55);
        assert_eq!(r.read_port(0x3c1), 0);
    }

    #[test]
    fn input_status_toggles_retrace_on_each_read() {
        let mut r = color();
        let a = r.read_port(0x3da);
        let b = r.read_port(0x3da);
        assert_eq!(a ^ b, ST01_V_RETRACE | ST01_DISP_ENABLE);
        assert_eq!(a & ST01_V_RETRACE, ST01_V_RETRACE);
        assert_eq!(r.read_port(0x3ba), 0xff, "mono port ignored in colour mode");
        r.write_port(0x3da, 0xff);
        assert_eq!(r.read_port(0x3ca), 0x10);
        assert_eq!(r.read_port(0x3c2), 0, "input status 0");
    }

    #[test]
    fn misc_output_selects_crtc_ports() {
        let mut r = VgaRegs::new();
        r.write_port(0x3b4, 0x0e);
        r.write_port(0x3b5, 0x12);
        assert_eq!(r.read_port(0x3d5), 0xff);
        r.write_port(0x3d4, 0x0e);
        r.write_port(0x3d5, 0x99);
        assert_eq!(r.cr[0x0e], 0x12, "0x3D5 ignored in mono mode");
        r.write_port(0x3c2, 0xff);
        assert_eq!(r.read_port(0x3cc), 0xef, "bit 4 reserved");
        assert_eq!(r.read_port(0x3d4), 0x0e);
        assert_eq!(r.read_port(0x3d5), 0x12);
        assert_eq!(r.read_port(0x3b5), 0xff);
        r.write_port(0x3b5, 0x77);
        assert_eq!(r.cr[0x0e], 0x12);
    }

    #[test]
    fn crtc_protection_and_derived_values() {
        let mut r = color();
        let mut cr = |i: u8, v: u8| {
            r.write_port(0x3d4, i);
            r.write_port(0x3d5, v);
        };
        cr(0x01, 0x4f);
        cr(0x07, 0x42);
        cr(0x12, 0xdf);
        cr(0x11, 0x80);
        cr(0x01, 0x00); // protected
        cr(0x07, 0xff); // only bit 4 lands
        cr(0x0c, 0x12);
        cr(0x0d, 0x34);
        cr(0x13, 0x28);
        cr(0xff, 0x5a);
        assert_eq!(r.cr[1], 0x4f);
        assert_eq!(r.cr[7], 0x52);
        assert_eq!(r.vertical_display_end(), 0x3df);
        assert_eq!(r.display_width(), 640);
        assert_eq!(r.start_address(), 0x1234);
        assert_eq!(r.line_offset(), 320);
        assert_eq!(r.read_port(0x3d5), 0x5a);
    }

    #[test]
    fn dac_auto_increments_over_three_components() {
        let mut r = color();
        r.write_port(0x3c8, 0xfe);
        for v in [1, 2, 3, 4, 5, 6, 7] {
            r.write_port(0x3c9, v);
        }
        assert_eq!(r.read_port(0x3c8), 0x00, "write index wrapped past 0xff");
        assert_eq!(r.read_port(0x3c7), 0, "write mode");
        assert_eq!(&r.palette[0xfe * 3..], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.palette[0], 0, "partial triple not committed");
        r.write_port(0x3c7, 0xff);
        assert_eq!(r.read_port(0x3c7), 3, "read mode");
        assert_eq!([r.read_port(0x3c9), r.read_port(0x3c9), r.read_port(0x3c9)], [4, 5, 6]);
        assert_eq!(r.read_port(0x3c9), 0, "read index wrapped to entry 0");
        r.write_port(0x3c6, 0x0f);
        assert_eq!(r.read_port(0x3c6), 0x0f);
        // 6-bit to 8-bit expansion.
        r.palette[3..6].copy_from_slice(&[0x3f, 0x20, 0]);
        assert_eq!(r.dac_rgb(1), [0xff, 0x82, 0]);
        assert_eq!(r.dac_rgb(0x11), [0xff, 0x82, 0], "PEL mask applied");
        r.dac_8bit = true;
        assert_eq!(r.dac_rgb(1), [0x3f, 0x20, 0]);
    }

    #[test]
    fn palette16_goes_through_attribute_registers() {
        let mut r = color();
        r.palette[0x1a * 3..0x1a * 3 + 3].copy_from_slice(&[0x3f, 0, 0x3f]);
        r.palette[0x3a * 3..0x3a * 3 + 3].copy_from_slice(&[0x10, 0x3f, 0]);
        r.ar[2] = 0x1a;
        r.ar[0x14] = 0x03;
        assert_eq!(r.palette16()[2], [0xff, 0, 0xff], "colour select bits 3:2 are zero");
        r.ar[0x10] = 0x80; // P5:P4 from colour select bits 1:0
        assert_eq!(r.palette16()[2], [0x41, 0xff, 0]);
    }
}
