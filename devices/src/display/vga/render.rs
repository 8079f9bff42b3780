// SPDX-License-Identifier: Apache-2.0
//! Scan-out on request: the current mode rendered into an RGB frame, and PNG encoding.
//!
//! Modes: VBE packed pixels at 8 (DAC palette), 15, 16, 24 and 32 bits per pixel and VBE
//! 4-bit planar, all from the linear framebuffer at the VBE start address; VGA text modes
//! (see [`super::text`]); VGA 16-colour planar modes (0x0D-0x12) and 256-colour mode 0x13,
//! at their native resolution (320x200 for mode 0x13, not the doubled 640x400 the monitor
//! shows). CGA-compatible graphics modes 4-6 (shift register interleave, CRTC address
//! wrapping) are not rendered: they come out black at their size. Horizontal pel panning
//! and the split screen (line compare) are ignored.

use super::memory::Vram;
use super::regs::VgaRegs;
use super::vbe::Vbe;

/// Largest frame rendered, in pixels; taller frames are cut at the bottom.
pub const MAX_PIXELS: u64 = 16 << 20;

/// An RGB frame, 3 bytes per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes of red, green, blue.
    pub rgb: Vec<u8>,
}

/// Errors encoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

impl Frame {
    /// A black frame (at least 1x1; never more than [`MAX_PIXELS`]).
    pub fn black(width: u32, height: u32) -> Self {
        let width = width.max(1);
        let height = height.clamp(1, (MAX_PIXELS / u64::from(width)).max(1) as u32);
        Frame { width, height, rgb: vec![0; width as usize * height as usize * 3] }
    }

    /// Sets pixel (x, y); ignored outside the frame.
    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// The bytes of row `y` (empty outside the frame).
    fn row_mut(&mut self, y: u32) -> &mut [u8] {
        if y >= self.height {
            return &mut [];
        }
        let stride = self.width as usize * 3;
        &mut self.rgb[y as usize * stride..(y as usize + 1) * stride]
    }

    /// Pixel (x, y), None outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        (x < self.width && y < self.height).then(|| {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        })
    }

    /// The frame as an 8-bit RGB PNG file.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&self.rgb)?;
        }
        Ok(out)
    }
}

/// Renders whatever the card displays now.
pub(super) fn render(regs: &VgaRegs, vbe: &Vbe, vram: &Vram) -> Frame {
    let mut frame = if vbe.enabled() {
        render_vbe(regs, vbe, vram)
    } else if !regs.graphics_mode() {
        super::text::render(regs, vram)
    } else {
        render_vga_graphics(regs, vram)
    };
    // The palette address source bit blanks VGA modes only: VBE modes ignore it.
    let blank = regs.sr[1] & 0x20 != 0 || (!vbe.enabled() && regs.ar_index & 0x20 == 0);
    if blank {
        frame.rgb.fill(0);
    }
    frame
}

fn render_vbe(regs: &VgaRegs, vbe: &Vbe, vram: &Vram) -> Frame {
    let (width, height, bpp) = vbe.mode();
    let mut frame = Frame::black(width, height);
    if bpp == 4 {
        draw_planar(regs, vram, &mut frame, vbe.start_addr as usize, vbe.line_offset as usize);
        return frame;
    }
    let bytes_pp = usize::from(bpp).div_ceil(8);
    let dac: Vec<[u8; 3]> = (0..=255).map(|i| regs.dac_rgb(i)).collect();
    let mut line = vec![0u8; width as usize * bytes_pp];
    for y in 0..frame.height {
        vram.read_into(vbe.start_addr as usize + y as usize * vbe.line_offset as usize, &mut line);
        for (out, px) in frame.row_mut(y).chunks_exact_mut(3).zip(line.chunks_exact(bytes_pp)) {
            let rgb = match bpp {
                8 => dac[usize::from(px[0])],
                15 => {
                    let v = u16::from_le_bytes([px[0], px[1]]);
                    [expand5((v >> 10) as u8), expand5((v >> 5) as u8), expand5(v as u8)]
                }
                16 => {
                    let v = u16::from_le_bytes([px[0], px[1]]);
                    [expand5((v >> 11) as u8), expand6((v >> 5) as u8), expand5(v as u8)]
                }
                // 24 and 32: blue, green, red in memory order.
                _ => [px[2], px[1], px[0]],
            };
            out.copy_from_slice(&rgb);
        }
    }
    frame
}

fn expand5(v: u8) -> u8 {
    let v = v & 0x1f;
    (v << 3) | (v >> 2)
}

fn expand6(v: u8) -> u8 {
    let v = v & 0x3f;
    (v << 2) | (v >> 4)
}

/// 16-colour planar scan-out: eight pixels per four plane bytes, bit 7 leftmost, through the
/// colour plane enable mask and the attribute palette; one memory row per frame row.
fn draw_planar(regs: &VgaRegs, vram: &Vram, frame: &mut Frame, start: usize, pitch: usize) {
    let palette = regs.palette16();
    let plane_enable = regs.ar[0x12] & 0x0f;
    let groups = (frame.width as usize).div_ceil(8);
    let mut line = vec![0u8; groups * 4];
    for y in 0..frame.height {
        vram.read_into(start + y as usize * pitch, &mut line);
        for (x, out) in frame.row_mut(y).chunks_exact_mut(3).enumerate() {
            let planes = &line[(x / 8) * 4..(x / 8) * 4 + 4];
            let shift = 7 - (x % 8);
            let c = planes.iter().enumerate().fold(0u8, |c, (p, plane)| c | (((plane >> shift) & 1) << p));
            out.copy_from_slice(&palette[usize::from(c & plane_enable)]);
        }
    }
}

fn render_vga_graphics(regs: &VgaRegs, vram: &Vram) -> Frame {
    let shift_control = (regs.gr[5] >> 5) & 3;
    let double_scan = u32::from(regs.cr[9] >> 7);
    let rows_per_line = ((u32::from(regs.cr[9] & 0x1f) + 1) << double_scan).max(1);
    let lines = regs.vertical_display_end() + 1;
    let height = (lines / rows_per_line).max(1);
    let start = regs.start_address() as usize * 4;
    let pitch = regs.line_offset() as usize;
    let dots = regs.display_width();
    match shift_control {
        0 => {
            let mut frame = Frame::black(dots, height);
            draw_planar(regs, vram, &mut frame, start, pitch);
            frame
        }
        1 => {
            log::debug!("vga: CGA-compatible graphics modes are not rendered");
            Frame::black(dots, height)
        }
        _ => {
            // 256 colours: one byte per pixel, each pixel two dots wide.
            let mut frame = Frame::black(dots / 2, height);
            let dac: Vec<[u8; 3]> = (0..=255).map(|i| regs.dac_rgb(i)).collect();
            let mut line = vec![0u8; frame.width as usize];
            for y in 0..frame.height {
                vram.read_into(start + y as usize * pitch, &mut line);
                for (out, &b) in frame.row_mut(y).chunks_exact_mut(3).zip(&line) {
                    out.copy_from_slice(&dac[usize::from(b)]);
                }
            }
            frame
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_bounded_and_encodes() {
        let f = Frame::black(0, 0);
        assert_eq!((f.width, f.height), (1, 1));
        let f = Frame::black(16000, 12000);
        assert!(u64::from(f.width) * u64::from(f.height) <= MAX_PIXELS);
        let mut f = Frame::black(3, 2);
        f.put(2, 1, [1, 2, 3]);
        f.put(3, 1, [9, 9, 9]);
        assert_eq!(f.pixel(2, 1), Some([1, 2, 3]));
        assert_eq!(f.pixel(3, 1), None);
        let png = f.to_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn colour_expansion() {
        assert_eq!(expand5(0x1f), 0xff);
        assert_eq!(expand5(0x10), 0x84);
        assert_eq!(expand6(0x3f), 0xff);
        assert_eq!(expand6(0), 0);
    }
}
