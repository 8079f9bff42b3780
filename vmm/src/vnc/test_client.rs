// SPDX-License-Identifier: Apache-2.0
//! Test helpers: a hand-written RFB client and a fake console.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use devices::display::vga::Frame;
use devices::legacy::i8042::Key;

use super::rfb::{PixelFormat, Rect};
use super::Console;

/// 16 bpp true colour, little-endian RGB565: the usual low-bandwidth client format.
pub const RGB565: PixelFormat = PixelFormat::RGB565;

/// A console with a frame the test sets and a record of the input it got.
#[derive(Default)]
pub struct FakeConsole {
    pub frame: Mutex<Option<Arc<Frame>>>,
    pub keys: Mutex<Vec<(Key, bool)>>,
    pub moves: Mutex<Vec<(i32, i32, i32, u8)>>,
}

impl FakeConsole {
    pub fn with_frame(f: Frame) -> Arc<Self> {
        let c = FakeConsole::default();
        *c.frame.lock().unwrap() = Some(Arc::new(f));
        Arc::new(c)
    }
    pub fn set(&self, f: Frame) {
        *self.frame.lock().unwrap() = Some(Arc::new(f));
    }
    pub fn keys(&self) -> Vec<(Key, bool)> {
        self.keys.lock().unwrap().clone()
    }
    pub fn moves(&self) -> Vec<(i32, i32, i32, u8)> {
        self.moves.lock().unwrap().clone()
    }
}

impl Console for FakeConsole {
    fn frame(&self) -> Option<Arc<Frame>> {
        self.frame.lock().unwrap().clone()
    }
    fn key(&self, key: Key, pressed: bool) {
        self.keys.lock().unwrap().push((key, pressed));
    }
    fn pointer(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.moves.lock().unwrap().push((dx, dy, dz, buttons));
    }
}

/// A frame with a recognisable pattern: pixel (x, y) is (x, y, x ^ y) truncated to bytes.
pub fn pattern(w: u32, h: u32) -> Frame {
    let mut f = Frame::black(w, h);
    for y in 0..h {
        for x in 0..w {
            f.put(x, y, [x as u8, y as u8, (x ^ y) as u8]);
        }
    }
    f
}

/// The client side of RFB, as a test needs it.
pub struct Client<S: Read + Write> {
    pub s: S,
    pub width: u16,
    pub height: u16,
    pub name: String,
    pub format: PixelFormat,
    /// The framebuffer as raw pixel values.
    pub fb: Vec<u32>,
}

impl<S: Read + Write> Client<S> {
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    /// The 3.8 handshake, checking every byte the server sends.
    pub fn connect(mut s: S) -> Self {
        let mut v = [0u8; 12];
        s.read_exact(&mut v).unwrap();
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut sec = [0u8; 2];
        s.read_exact(&mut sec).unwrap();
        assert_eq!(sec, [1, 1]);
        s.write_all(&[1]).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).unwrap();
        assert_eq!(result, [0; 4]);
        s.write_all(&[1]).unwrap();
        Self::server_init(s)
    }

    /// The 3.8 handshake with VNC Authentication: the client after ServerInit, or the
    /// server's failure reason.
    pub fn connect_with_password(mut s: S, password: &[u8]) -> Result<Self, String> {
        let mut v = [0u8; 12];
        s.read_exact(&mut v).unwrap();
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut sec = [0u8; 2];
        s.read_exact(&mut sec).unwrap();
        assert_eq!(sec, [1, 2]);
        s.write_all(&[2]).unwrap();
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).unwrap();
        s.write_all(&super::auth::response(password, &challenge)).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).unwrap();
        if result != [0; 4] {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut reason = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut reason).unwrap();
            return Err(String::from_utf8_lossy(&reason).into_owned());
        }
        s.write_all(&[1]).unwrap();
        Ok(Self::server_init(s))
    }

    /// Reads ServerInit.
    pub fn server_init(mut s: S) -> Self {
        let mut init = [0u8; 24];
        s.read_exact(&mut init).unwrap();
        let width = u16::from_be_bytes([init[0], init[1]]);
        let height = u16::from_be_bytes([init[2], init[3]]);
        let mut pf = [0u8; 16];
        pf.copy_from_slice(&init[4..20]);
        let format = PixelFormat::from_bytes(&pf);
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        let mut name = vec![0u8; len];
        s.read_exact(&mut name).unwrap();
        Client {
            s,
            width,
            height,
            name: String::from_utf8(name).unwrap(),
            format,
            fb: vec![0; usize::from(width) * usize::from(height)],
        }
    }

    pub fn set_encodings(&mut self, e: &[i32]) {
        let mut m = vec![2, 0];
        m.extend_from_slice(&(e.len() as u16).to_be_bytes());
        for v in e {
            m.extend_from_slice(&v.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    pub fn set_format(&mut self, pf: PixelFormat) {
        let mut m = vec![0, 0, 0, 0];
        m.extend_from_slice(&pf.to_bytes());
        self.s.write_all(&m).unwrap();
        self.format = pf;
    }

    pub fn request(&mut self, incremental: bool, r: Rect) {
        let mut m = vec![3, u8::from(incremental)];
        for v in [r.x, r.y, r.w, r.h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    pub fn request_all(&mut self, incremental: bool) {
        let r = Rect { x: 0, y: 0, w: self.width, h: self.height };
        self.request(incremental, r);
    }

    pub fn key(&mut self, down: bool, keysym: u32) {
        let mut m = vec![4, u8::from(down), 0, 0];
        m.extend_from_slice(&keysym.to_be_bytes());
        self.s.write_all(&m).unwrap();
    }

    pub fn pointer(&mut self, buttons: u8, x: u16, y: u16) {
        let mut m = vec![5, buttons];
        m.extend_from_slice(&x.to_be_bytes());
        m.extend_from_slice(&y.to_be_bytes());
        self.s.write_all(&m).unwrap();
    }

    /// Reads one FramebufferUpdate into `fb`; returns its rectangles and encodings.
    pub fn read_update(&mut self) -> Vec<(Rect, i32)> {
        let h = self.read_n(4);
        assert_eq!(h[0], 0, "message type");
        let n = u16::from_be_bytes([h[2], h[3]]);
        let bpp = usize::from(self.format.bpp / 8);
        let mut rects = Vec::new();
        for _ in 0..n {
            let b = self.read_n(12);
            let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            let r = Rect { x: be(0), y: be(2), w: be(4), h: be(6) };
            let enc = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            rects.push((r, enc));
            match enc {
                0 => {
                    assert!(u32::from(r.x) + u32::from(r.w) <= u32::from(self.width));
                    assert!(u32::from(r.y) + u32::from(r.h) <= u32::from(self.height));
                    let data = self.read_n(usize::from(r.w) * usize::from(r.h) * bpp);
                    for (i, px) in data.chunks_exact(bpp).enumerate() {
                        let v = match (bpp, self.format.big_endian) {
                            (1, _) => u32::from(px[0]),
                            (2, false) => u32::from(u16::from_le_bytes([px[0], px[1]])),
                            (2, true) => u32::from(u16::from_be_bytes([px[0], px[1]])),
                            (_, false) => u32::from_le_bytes([px[0], px[1], px[2], px[3]]),
                            (_, true) => u32::from_be_bytes([px[0], px[1], px[2], px[3]]),
                        };
                        let (x, y) = (
                            usize::from(r.x) + i % usize::from(r.w),
                            usize::from(r.y) + i / usize::from(r.w),
                        );
                        self.fb[y * usize::from(self.width) + x] = v;
                    }
                }
                -223 => {
                    self.width = r.w;
                    self.height = r.h;
                    self.fb = vec![0; usize::from(r.w) * usize::from(r.h)];
                }
                other => panic!("unexpected encoding {other}"),
            }
        }
        rects
    }

    /// Pixel (x, y) as 0xRRGGBB (native format only).
    pub fn rgb(&self, x: u32, y: u32) -> u32 {
        self.fb[y as usize * usize::from(self.width) + x as usize]
    }
}

/// Whether the client's framebuffer equals `f` (native format).
pub fn same_as(fb: &[u32], f: &Frame) -> bool {
    fb.len() == (f.width * f.height) as usize
        && f.rgb
            .chunks_exact(3)
            .zip(fb)
            .all(|(p, &v)| v == (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
}
