// SPDX-License-Identifier: Apache-2.0
//! The RFB (VNC) protocol, RFC 6143, as pure functions: handshake messages, the client
//! message parser, pixel formats and raw rectangle encoding. No I/O happens here.
//!
//! Everything a client sends is hostile: the parser works on whatever bytes have arrived,
//! answers "need more" for a truncated message, and refuses (never panics on) unknown
//! message types, oversized `SetEncodings` lists and `ClientCutText` beyond
//! [`MAX_CUT_TEXT`]. Cut text is never buffered: the parser returns its length and the
//! session discards that many bytes as they arrive.

/// The version the server offers.
pub const SERVER_VERSION: &[u8; 12] = b"RFB 003.008\n";
/// Security type None.
pub const SECURITY_NONE: u8 = 1;
/// Security type VNC Authentication (DES challenge and response, RFC 6143 7.2.2).
pub const SECURITY_VNC_AUTH: u8 = 2;
/// Length of the VNC Authentication challenge and of the client's response.
pub const CHALLENGE_LEN: usize = 16;
/// Raw encoding.
pub const ENCODING_RAW: i32 = 0;
/// The DesktopSize pseudo-encoding: the server may change the framebuffer size.
pub const ENCODING_DESKTOP_SIZE: i32 = -223;
/// Most encodings accepted in one `SetEncodings` (clients send a few dozen at most).
pub const MAX_ENCODINGS: usize = 1024;
/// Longest `ClientCutText` accepted (and discarded); a longer one ends the connection.
pub const MAX_CUT_TEXT: u32 = 1 << 20;

/// Protocol version a client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// RFB 3.3: the server picks the security type, no SecurityResult for None.
    V3_3,
    /// RFB 3.7: the client picks from a list, no SecurityResult for None.
    V3_7,
    /// RFB 3.8: as 3.7, with a SecurityResult (and a reason on failure).
    V3_8,
}

/// A protocol violation by the client; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The 12-byte version string is malformed.
    #[error("bad protocol version string {0:?}")]
    BadVersion(String),
    /// The client chose a security type we did not offer (the second is the one offered).
    #[error("security type {0} was not offered (only {1})")]
    BadSecurityType(u8, u8),
    /// Unknown client message type (its length cannot be known).
    #[error("unknown client message type {0}")]
    UnknownMessage(u8),
    /// `SetEncodings` with more than [`MAX_ENCODINGS`] entries.
    #[error("SetEncodings with {0} encodings (at most {MAX_ENCODINGS})")]
    TooManyEncodings(usize),
    /// `ClientCutText` longer than [`MAX_CUT_TEXT`].
    #[error("ClientCutText of {0} bytes (at most {MAX_CUT_TEXT})")]
    CutTextTooLong(u32),
    /// A pixel format the server does not produce.
    #[error("unsupported pixel format: {0}")]
    PixelFormat(&'static str),
}

/// Parses the client's 12-byte version reply. Minor versions other than 7 and 8 are 3.3
/// (as RFC 6143 asks); newer minors (e.g. Apple's 3.889) are treated as 3.8.
pub fn parse_version(b: &[u8; 12]) -> Result<Version, ProtocolError> {
    let bad = || ProtocolError::BadVersion(String::from_utf8_lossy(b).into_owned());
    if &b[..4] != b"RFB " || b[7] != b'.' || b[11] != b'\n' {
        return Err(bad());
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().all(u8::is_ascii_digit).then(|| s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(major), Some(minor)) = (num(&b[4..7]), num(&b[8..11])) else {
        return Err(bad());
    };
    Ok(match (major, minor) {
        (3, 7) => Version::V3_7,
        (3, 8..) | (4.., _) => Version::V3_8,
        (3, _) => Version::V3_3,
        _ => return Err(bad()),
    })
}

/// The server's security message offering `kind` ([`SECURITY_NONE`] or
/// [`SECURITY_VNC_AUTH`]): the type itself (3.3) or a list of one type (3.7+).
pub fn security_offer(v: Version, kind: u8) -> Vec<u8> {
    match v {
        Version::V3_3 => u32::from(kind).to_be_bytes().to_vec(),
        _ => vec![1, kind],
    }
}

/// Checks the client's security-type choice (3.7 and 3.8) against the one type offered.
pub fn check_security_choice(choice: u8, offered: u8) -> Result<(), ProtocolError> {
    if choice == offered {
        Ok(())
    } else {
        Err(ProtocolError::BadSecurityType(choice, offered))
    }
}

/// The SecurityResult after security type `kind` succeeded: VNC Authentication always sends
/// one; None only in 3.8.
pub fn security_ok(v: Version, kind: u8) -> &'static [u8] {
    match (v, kind) {
        (Version::V3_8, _) | (_, SECURITY_VNC_AUTH) => &[0, 0, 0, 0],
        _ => &[],
    }
}

/// A failed SecurityResult: with its reason in 3.8, the bare status before (3.3 and 3.7
/// have no reason string).
pub fn security_result_failed(v: Version, reason: &str) -> Vec<u8> {
    match v {
        Version::V3_8 => security_failed(reason),
        _ => vec![0, 0, 0, 1],
    }
}

/// A failed SecurityResult with its reason (3.8).
pub fn security_failed(reason: &str) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 1];
    out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A pixel format as on the wire (RFC 6143 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel: 8, 16 or 32.
    pub bpp: u8,
    /// Useful bits in a pixel.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (false: colour map, not supported).
    pub true_colour: bool,
    /// Largest red value.
    pub red_max: u16,
    /// Largest green value.
    pub green_max: u16,
    /// Largest blue value.
    pub blue_max: u16,
    /// Bit position of red.
    pub red_shift: u8,
    /// Bit position of green.
    pub green_shift: u8,
    /// Bit position of blue.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// 16 bpp true colour, little-endian RGB565: the usual low-bandwidth client format.
    pub const RGB565: PixelFormat = PixelFormat {
        bpp: 16,
        depth: 16,
        big_endian: false,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    };

    /// The server's native format: 32 bpp, depth 24, little-endian, 0x00RRGGBB.
    pub const NATIVE: PixelFormat = PixelFormat {
        bpp: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The 16 bytes on the wire.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bpp;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Decodes 16 wire bytes (any values; see [`PixelFormat::check`]).
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        PixelFormat {
            bpp: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: be16(4),
            green_max: be16(6),
            blue_max: be16(8),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// Whether the server can produce this format: true colour at 8, 16 or 32 bpp with each
    /// channel inside the pixel.
    pub fn check(&self) -> Result<(), ProtocolError> {
        if !self.true_colour {
            return Err(ProtocolError::PixelFormat("colour-map formats are not supported"));
        }
        if !matches!(self.bpp, 8 | 16 | 32) {
            return Err(ProtocolError::PixelFormat("bits per pixel must be 8, 16 or 32"));
        }
        for (max, shift) in [
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        ] {
            let bits = 16 - max.leading_zeros();
            if u32::from(shift) + bits > u32::from(self.bpp) {
                return Err(ProtocolError::PixelFormat("a colour channel lies outside the pixel"));
            }
        }
        Ok(())
    }

    /// Bytes per pixel.
    pub fn bytes_pp(&self) -> usize {
        usize::from(self.bpp / 8)
    }
}

/// Converts RGB bytes to a client pixel format through per-channel tables.
#[derive(Clone)]
pub struct PixelConverter {
    format: PixelFormat,
    lut: [[u32; 256]; 3],
}

impl PixelConverter {
    /// A converter for `format`, which must have passed [`PixelFormat::check`].
    pub fn new(format: PixelFormat) -> Self {
        let mut lut = [[0u32; 256]; 3];
        let channels = [
            (format.red_max, format.red_shift),
            (format.green_max, format.green_shift),
            (format.blue_max, format.blue_shift),
        ];
        for (table, (max, shift)) in lut.iter_mut().zip(channels) {
            for (v, entry) in table.iter_mut().enumerate() {
                let scaled = (v as u32 * u32::from(max) + 127) / 255;
                *entry = scaled.checked_shl(u32::from(shift)).unwrap_or(0);
            }
        }
        PixelConverter { format, lut }
    }

    /// One pixel's value.
    pub fn pixel(&self, rgb: [u8; 3]) -> u32 {
        self.lut[0][usize::from(rgb[0])] | self.lut[1][usize::from(rgb[1])] | self.lut[2][usize::from(rgb[2])]
    }

    /// Appends RGB bytes (3 per pixel; a trailing partial pixel is ignored) as pixels.
    pub fn convert(&self, rgb: &[u8], out: &mut Vec<u8>) {
        let bpp = self.format.bytes_pp();
        out.reserve(rgb.len() / 3 * bpp);
        for px in rgb.chunks_exact(3) {
            let v = self.pixel([px[0], px[1], px[2]]);
            match (bpp, self.format.big_endian) {
                (1, _) => out.push(v as u8),
                (2, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
                (2, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
                (_, false) => out.extend_from_slice(&v.to_le_bytes()),
                (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            }
        }
    }
}

/// `ServerInit`: framebuffer size, the native pixel format and the desktop name.
pub fn server_init(width: u16, height: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + name.len());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

/// A rectangle of the framebuffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub w: u16,
    /// Height.
    pub h: u16,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// SetPixelFormat (type 0).
    SetPixelFormat(PixelFormat),
    /// SetEncodings (type 2).
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest (type 3).
    UpdateRequest {
        /// Only changes are wanted.
        incremental: bool,
        /// The area wanted.
        rect: Rect,
    },
    /// KeyEvent (type 4).
    Key {
        /// Pressed (true) or released.
        down: bool,
        /// X11 keysym.
        keysym: u32,
    },
    /// PointerEvent (type 5).
    Pointer {
        /// Button mask: bit 0 left, 1 middle, 2 right, 3/4 wheel up/down.
        buttons: u8,
        /// Absolute x.
        x: u16,
        /// Absolute y.
        y: u16,
    },
    /// ClientCutText (type 6) header: `len` bytes of text follow, to be discarded.
    CutText {
        /// Length of the text after the header.
        len: u32,
    },
}

/// Parses one message at the start of `buf`: `Ok(None)` until all of it has arrived, then the
/// message and the bytes it used (for `CutText` only the 8-byte header).
pub fn parse_client_message(buf: &[u8]) -> Result<Option<(ClientMessage, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else { return Ok(None) };
    let need = |n: usize| buf.len() >= n;
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let msg = match kind {
        0 => {
            if !need(20) {
                return Ok(None);
            }
            let mut pf = [0u8; 16];
            pf.copy_from_slice(&buf[4..20]);
            (ClientMessage::SetPixelFormat(PixelFormat::from_bytes(&pf)), 20)
        }
        2 => {
            if !need(4) {
                return Ok(None);
            }
            let n = usize::from(be16(2));
            if n > MAX_ENCODINGS {
                return Err(ProtocolError::TooManyEncodings(n));
            }
            let len = 4 + 4 * n;
            if !need(len) {
                return Ok(None);
            }
            let encodings = (0..n).map(|i| be32(4 + 4 * i) as i32).collect();
            (ClientMessage::SetEncodings(encodings), len)
        }
        3 => {
            if !need(10) {
                return Ok(None);
            }
            let rect = Rect { x: be16(2), y: be16(4), w: be16(6), h: be16(8) };
            (ClientMessage::UpdateRequest { incremental: buf[1] != 0, rect }, 10)
        }
        4 => {
            if !need(8) {
                return Ok(None);
            }
            (ClientMessage::Key { down: buf[1] != 0, keysym: be32(4) }, 8)
        }
        5 => {
            if !need(6) {
                return Ok(None);
            }
            (ClientMessage::Pointer { buttons: buf[1], x: be16(2), y: be16(4) }, 6)
        }
        6 => {
            if !need(8) {
                return Ok(None);
            }
            let len = be32(4);
            if len > MAX_CUT_TEXT {
                return Err(ProtocolError::CutTextTooLong(len));
            }
            (ClientMessage::CutText { len }, 8)
        }
        other => return Err(ProtocolError::UnknownMessage(other)),
    };
    Ok(Some(msg))
}

/// The header of a FramebufferUpdate with `rects` rectangles.
pub fn update_header(rects: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&rects.to_be_bytes());
}

/// A rectangle header: position, size and encoding.
pub fn rect_header(r: Rect, encoding: i32, out: &mut Vec<u8>) {
    for v in [r.x, r.y, r.w, r.h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&encoding.to_be_bytes());
}

/// A Raw rectangle of an RGB image `width` pixels wide: header and pixels. The rectangle
/// must lie inside the image (the caller clips it).
pub fn raw_rect(rgb: &[u8], width: u32, r: Rect, conv: &PixelConverter, out: &mut Vec<u8>) {
    rect_header(r, ENCODING_RAW, out);
    let stride = width as usize * 3;
    for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.h) {
        let start = y * stride + usize::from(r.x) * 3;
        let end = start + usize::from(r.w) * 3;
        if let Some(row) = rgb.get(start..end) {
            conv.convert(row, out);
        }
    }
}

/// A DesktopSize pseudo-rectangle announcing a new framebuffer size.
pub fn desktop_size_rect(width: u16, height: u16, out: &mut Vec<u8>) {
    rect_header(Rect { x: 0, y: 0, w: width, h: height }, ENCODING_DESKTOP_SIZE, out);
}

#[cfg(test)]
mod tests;
