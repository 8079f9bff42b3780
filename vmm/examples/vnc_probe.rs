// SPDX-License-Identifier: Apache-2.0
//! `vnc_probe`: a minimal VNC client for the end-to-end tests (static, no viewer needed).
//!
//! Usage: `vnc_probe ADDR [--password PW] [--expect-size WxH] [--compare FILE.png] [--type TEXT]
//! [--wait-resize SECS]`
//! where ADDR is `unix:PATH` or `HOST:PORT`. It does the RFB 3.8 handshake (security None, or
//! VNC Authentication with `--password`: a test tool, the password is on its command line),
//! asks for Raw and DesktopSize, reads one whole frame and prints
//! `vnc-probe: frame WxH colours=N nonblack=M name="..."`. With `--type` it then types the
//! text as keysym presses and releases, without Shift (`\n` is Return; the server adds Shift
//! for shifted symbols, upper-case letters come out lower-case); with `--wait-resize` it then
//! waits up to SECS seconds for the server to resize the screen (DesktopSize) and reads the
//! new frame (`vnc-probe: resized from WxH to WxH nonblack=M`); with `--compare` it checks the frame
//! against an 8-bit RGB PNG (e.g. the vmm's screen dump) and prints `vnc-probe: compare D
//! of N pixels differ`. Exit status 0 when every check passed, 1 otherwise.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

trait Stream: Read + Write {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()>;
}
impl Stream for UnixStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}
impl Stream for TcpStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

type Res<T> = Result<T, String>;

struct Probe {
    s: Box<dyn Stream>,
    width: usize,
    height: usize,
    /// 0xRRGGBB per pixel.
    fb: Vec<u32>,
    name: String,
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

impl Probe {
    fn read_n(&mut self, n: usize) -> Res<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).map_err(io)?;
        Ok(b)
    }

    fn connect(addr: &str, password: Option<&str>) -> Res<Probe> {
        let s: Box<dyn Stream> = if let Some(path) = addr.strip_prefix("unix:") {
            let s = UnixStream::connect(path).map_err(|e| format!("{path}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(20))).map_err(io)?;
            Box::new(s)
        } else {
            let s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(20))).map_err(io)?;
            Box::new(s)
        };
        let mut p = Probe { s, width: 0, height: 0, fb: Vec::new(), name: String::new() };
        let v = p.read_n(12)?;
        if &v[..4] != b"RFB " {
            return Err(format!("not an RFB server: {:?}", String::from_utf8_lossy(&v)));
        }
        p.s.write_all(b"RFB 003.008\n").map_err(io)?;
        let n = p.read_n(1)?[0];
        let types = p.read_n(usize::from(n))?;
        match password {
            None if !types.contains(&1) => {
                return Err(format!("security type None not offered ({types:?}); give --password"))
            }
            None => p.s.write_all(&[1]).map_err(io)?,
            Some(_) if !types.contains(&2) => {
                return Err(format!("VNC Authentication not offered ({types:?}); drop --password"))
            }
            Some(pw) => {
                p.s.write_all(&[2]).map_err(io)?;
                let mut challenge = [0u8; 16];
                challenge.copy_from_slice(&p.read_n(16)?);
                p.s.write_all(&vmm::vnc::auth::response(pw.as_bytes(), &challenge)).map_err(io)?;
            }
        }
        if p.read_n(4)? != [0, 0, 0, 0] {
            // 3.8 sends the reason.
            let len = p.read_n(4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize).unwrap_or(0);
            let reason =
                p.read_n(len.min(4096)).map(|r| String::from_utf8_lossy(&r).into_owned()).unwrap_or_default();
            return Err(format!("security handshake failed: {reason}"));
        }
        p.s.write_all(&[1]).map_err(io)?;
        let init = p.read_n(24)?;
        p.width = usize::from(u16::from_be_bytes([init[0], init[1]]));
        p.height = usize::from(u16::from_be_bytes([init[2], init[3]]));
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        if len > 4096 {
            return Err(format!("desktop name of {len} bytes"));
        }
        p.name = String::from_utf8_lossy(&p.read_n(len)?).into_owned();
        p.fb = vec![0; p.width * p.height];
        // Our own pixel format, so the probe does not depend on the server's choice:
        // 32 bpp little-endian 0x00RRGGBB.
        let mut m = vec![0u8, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];
        // SetEncodings: Raw, DesktopSize.
        m.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
        p.s.write_all(&m).map_err(io)?;
        Ok(p)
    }

    fn request(&mut self, incremental: bool) -> Res<()> {
        let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&(self.width as u16).to_be_bytes());
        m.extend_from_slice(&(self.height as u16).to_be_bytes());
        self.s.write_all(&m).map_err(io)
    }

    /// Reads one update; true if it resized the framebuffer.
    fn read_update(&mut self) -> Res<bool> {
        let h = self.read_n(4)?;
        if h[0] != 0 {
            return Err(format!("unexpected server message {}", h[0]));
        }
        let mut resized = false;
        for _ in 0..u16::from_be_bytes([h[2], h[3]]) {
            let b = self.read_n(12)?;
            let be = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
            let (x, y, w, hh) = (be(0), be(2), be(4), be(6));
            match i32::from_be_bytes([b[8], b[9], b[10], b[11]]) {
                0 => {
                    if x + w > self.width || y + hh > self.height {
                        return Err(format!(
                            "rectangle {w}x{hh}+{x}+{y} outside {}x{}",
                            self.width, self.height
                        ));
                    }
                    let data = self.read_n(w * hh * 4)?;
                    for (i, px) in data.chunks_exact(4).enumerate() {
                        let v = u32::from_le_bytes([px[0], px[1], px[2], px[3]]) & 0xff_ffff;
                        self.fb[(y + i / w) * self.width + x + i % w] = v;
                    }
                }
                -223 => {
                    (self.width, self.height) = (w, hh);
                    self.fb = vec![0; w * hh];
                    resized = true;
                }
                e => return Err(format!("unexpected encoding {e}")),
            }
        }
        Ok(resized)
    }

    /// A whole frame: a full request, again after each resize.
    fn frame(&mut self) -> Res<()> {
        for _ in 0..4 {
            self.request(false)?;
            if !self.read_update()? {
                return Ok(());
            }
        }
        Err("the screen keeps changing size".into())
    }

    fn key(&mut self, keysym: u32) -> Res<()> {
        for down in [1u8, 0] {
            let mut m = vec![4, down, 0, 0];
            m.extend_from_slice(&keysym.to_be_bytes());
            self.s.write_all(&m).map_err(io)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn compare(p: &Probe, path: &str) -> Res<usize> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut reader =
        png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(format!("{path}: not 8-bit RGB"));
    }
    if (info.width as usize, info.height as usize) != (p.width, p.height) {
        return Err(format!(
            "{path} is {}x{}, the VNC frame {}x{}",
            info.width, info.height, p.width, p.height
        ));
    }
    let rgb = &buf[..info.buffer_size()];
    Ok(rgb
        .chunks_exact(3)
        .zip(&p.fb)
        .filter(|(c, &v)| v != (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
        .count())
}

fn run(args: &[String]) -> Res<bool> {
    let addr = args.first().ok_or(
        "usage: vnc_probe ADDR [--password PW] [--expect-size WxH] [--compare FILE.png] [--type TEXT] \
         [--wait-resize SECS]",
    )?;
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let mut p = Probe::connect(addr, opt("--password").map(String::as_str))?;
    p.frame()?;
    let colours: HashSet<u32> = p.fb.iter().copied().collect();
    let nonblack = p.fb.iter().filter(|&&v| v != 0).count();
    println!(
        "vnc-probe: frame {}x{} colours={} nonblack={nonblack} name={:?}",
        p.width,
        p.height,
        colours.len(),
        p.name
    );
    let mut ok = nonblack > 0;
    if let Some(size) = opt("--expect-size") {
        if *size != format!("{}x{}", p.width, p.height) {
            println!("vnc-probe: expected {size}");
            ok = false;
        }
    }
    if let Some(path) = opt("--compare") {
        let differ = compare(&p, path)?;
        println!("vnc-probe: compare {differ} of {} pixels differ", p.fb.len());
        ok &= differ == 0;
    }
    if let Some(text) = opt("--type") {
        let text = text.replace("\\n", "\n");
        for c in text.chars() {
            let keysym = match c {
                '\n' => 0xff0d,
                ' ' => 0x20,
                c if c.is_ascii_graphic() => u32::from(c),
                c => return Err(format!("cannot type {c:?}")),
            };
            p.key(keysym)?;
        }
        println!("vnc-probe: typed {text:?}");
    }
    if let Some(secs) = opt("--wait-resize") {
        let secs: u64 = secs.parse().map_err(|_| format!("--wait-resize {secs}: not a number of seconds"))?;
        let start = std::time::Instant::now();
        let (w0, h0) = (p.width, p.height);
        let deadline = Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                println!("vnc-probe: no resize within {secs} s");
                return Ok(false);
            }
            // The server answers an incremental request only when the screen changes, and a
            // guest may leave it still for long (GRUB loading fonts on a slow host): wait for
            // the update as long as the deadline allows, not the connection's 20 s.
            p.s.set_timeout(left.max(Duration::from_secs(1))).map_err(io)?;
            p.request(true)?;
            match p.read_update() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if start.elapsed() >= deadline => {
                    println!("vnc-probe: no resize within {secs} s ({e})");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        p.s.set_timeout(Duration::from_secs(20)).map_err(io)?;
        p.frame()?;
        let nonblack = p.fb.iter().filter(|&&v| v != 0).count();
        println!("vnc-probe: resized from {w0}x{h0} to {}x{} nonblack={nonblack}", p.width, p.height);
    }
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vnc-probe: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
