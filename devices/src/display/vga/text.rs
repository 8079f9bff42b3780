// SPDX-License-Identifier: Apache-2.0
//! Alphanumeric (text) modes: the screen as Unicode text and rendered with the guest's font.
//!
//! A text screen lives in planes 0 (character codes) and 1 (attributes); with the interleaved
//! VRAM layout, cell `i` of a row is at bytes `4 * i` and `4 * i + 1` from the row's start.
//! The CRTC gives the geometry: CR01 + 1 columns, character height CR09[4:0] + 1, rows =
//! (vertical display end + 1) / height, start address CR0C:CR0D, row pitch CR13 * 8 bytes.
//! Glyphs are read from plane 2, 32 bytes per character, in the character maps SR03 selects
//! (attribute bit 3 picks map A or B).

use super::memory::Vram;
use super::regs::VgaRegs;
use super::render::Frame;

/// Code page 437 to Unicode. 0x00 and 0xFF (NUL and no-break space) map to a plain space.
const CP437: [char; 256] = [
    ' ', '☺', '☻', '♥', '♦', '♣', '♠', '•', '◘', '○', '◙', '♂', '♀', '♪', '♫', '☼', //
    '►', '◄', '↕', '‼', '¶', '§', '▬', '↨', '↑', '↓', '→', '←', '∟', '↔', '▲', '▼', //
    ' ', '!', '"', '#', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '@', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '[', '\\', ']', '^', '_', //
    '`', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '{', '|', '}', '~', '⌂', //
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', //
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', //
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', //
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', //
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', //
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', //
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', //
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ', //
];

/// The Unicode character code page 437 byte `b` shows.
pub fn cp437_to_char(b: u8) -> char {
    CP437[usize::from(b)]
}

/// Text geometry as the CRTC programs it.
struct Geometry {
    cols: u32,
    rows: u32,
    char_height: u32,
    char_width: u32,
    /// VRAM byte of the first cell.
    start: usize,
    /// VRAM bytes per row of cells.
    pitch: usize,
}

fn geometry(regs: &VgaRegs) -> Geometry {
    let char_height = u32::from(regs.cr[9] & 0x1f) + 1;
    let cols = u32::from(regs.cr[1]) + 1;
    let rows = ((regs.vertical_display_end() + 1) / char_height).max(1);
    let char_width = if regs.sr[1] & 1 != 0 { 8 } else { 9 };
    Geometry {
        cols,
        rows,
        char_height,
        char_width,
        start: regs.start_address() as usize * 4,
        pitch: regs.line_offset() as usize,
    }
}

/// Reads the cells of one row as (character, attribute) pairs.
fn row_cells(vram: &Vram, g: &Geometry, row: u32) -> Vec<(u8, u8)> {
    let mut buf = vec![0u8; g.cols as usize * 4];
    vram.read_into(g.start + row as usize * g.pitch, &mut buf);
    buf.chunks_exact(4).map(|c| (c[0], c[1])).collect()
}

/// The screen as lines of text, trailing spaces of each line removed, each line ended by
/// a newline.
pub(super) fn dump(regs: &VgaRegs, vram: &Vram) -> String {
    let g = geometry(regs);
    let mut out = String::new();
    for row in 0..g.rows {
        let line: String = row_cells(vram, &g, row).iter().map(|&(c, _)| cp437_to_char(c)).collect();
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }
    out
}

/// VRAM byte of glyph row 0 of character 0 in the font map for attribute bit 3 set (map A)
/// and clear (map B).
fn font_bases(regs: &VgaRegs) -> [usize; 2] {
    let v = usize::from(regs.sr[3]);
    let map_b = ((v >> 4) & 1) | ((v << 1) & 6);
    let map_a = ((v >> 5) & 1) | ((v >> 1) & 6);
    [map_b * 8192 * 4 + 2, map_a * 8192 * 4 + 2]
}

/// Renders the text screen with the guest's font, attribute palette and cursor.
pub(super) fn render(regs: &VgaRegs, vram: &Vram) -> Frame {
    let g = geometry(regs);
    let width = g.cols * g.char_width;
    let height = g.rows * g.char_height;
    let mut frame = Frame::black(width, height);
    let palette = regs.palette16();
    let bases = font_bases(regs);
    let blink = regs.ar[0x10] & 0x08 != 0;
    let line_graphics = regs.ar[0x10] & 0x04 != 0;
    let cursor_addr = ((u32::from(regs.cr[0x0e]) << 8) | u32::from(regs.cr[0x0f])) as usize * 4;
    let cursor_on = regs.cr[0x0a] & 0x20 == 0;
    let (cursor_start, cursor_end) = (u32::from(regs.cr[0x0a] & 0x1f), u32::from(regs.cr[0x0b] & 0x1f));
    // Whole fonts are read once: 256 glyphs of 32 rows for each of the two maps.
    let fonts: Vec<Vec<u8>> = bases
        .iter()
        .map(|&base| {
            let mut raw = vec![0u8; 256 * 32 * 4];
            vram.read_into(base, &mut raw);
            raw.iter().step_by(4).copied().collect()
        })
        .collect();
    for row in 0..g.rows {
        for (col, &(ch, attr)) in row_cells(vram, &g, row).iter().enumerate() {
            let fg = palette[usize::from(attr & 0x0f)];
            let bg = palette[usize::from((attr >> 4) & if blink { 0x07 } else { 0x0f })];
            let font = &fonts[usize::from((attr >> 3) & 1)];
            let cell_addr = g.start + row as usize * g.pitch + col * 4;
            let x0 = col as u32 * g.char_width;
            for line in 0..g.char_height {
                let mut bits = font[usize::from(ch) * 32 + (line as usize).min(31)];
                if cursor_on && cell_addr == cursor_addr && line >= cursor_start && line <= cursor_end {
                    bits = 0xff;
                }
                let y = row * g.char_height + line;
                for dot in 0..g.char_width {
                    let on = if dot < 8 {
                        bits & (0x80 >> dot) != 0
                    } else {
                        line_graphics && (0xc0..=0xdf).contains(&ch) && bits & 1 != 0
                    };
                    frame.put(x0 + dot, y, if on { fg } else { bg });
                }
            }
        }
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp437_ascii_is_exact_and_box_drawing_maps() {
        for b in 0x20u8..0x7f {
            assert_eq!(cp437_to_char(b), b as char);
        }
        assert_eq!(cp437_to_char(0xc9), '╔');
        assert_eq!(cp437_to_char(0xcd), '═');
        assert_eq!(cp437_to_char(0xb3), '│');
        assert_eq!(cp437_to_char(0xdb), '█');
        assert_eq!(cp437_to_char(0x00), ' ');
        assert_eq!(cp437_to_char(0xff), ' ');
        assert_eq!(cp437_to_char(0xe1), 'ß');
    }

    #[test]
    fn font_map_select_decodes_sr3() {
        let mut r = VgaRegs::new();
        assert_eq!(font_bases(&r), [2, 2]);
        r.sr[3] = 0x01 | 0x10 | 0x08; // map B = 3, map A = 2 * 2 = 4
        assert_eq!(font_bases(&r), [3 * 8192 * 4 + 2, 4 * 8192 * 4 + 2]);
    }
}
