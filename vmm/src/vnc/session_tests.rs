// SPDX-License-Identifier: Apache-2.0
//! Sessions over socket pairs, with a fake console.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use devices::display::vga::Frame;
use devices::legacy::i8042::{Key, MOUSE_LEFT, MOUSE_RIGHT};

use super::super::test_client::{pattern, same_as, Client, FakeConsole, RGB565};
use super::super::VncPassword;
use super::*;

type Server = JoinHandle<Result<(), SessionError>>;

fn start(console: &Arc<FakeConsole>) -> (UnixStream, Server, Arc<AtomicBool>) {
    start_auth(console, Arc::new(Auth::new(None)))
}

fn start_auth(console: &Arc<FakeConsole>, auth: Arc<Auth>) -> (UnixStream, Server, Arc<AtomicBool>) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (c, st) = (console.clone(), stop.clone());
    let t = std::thread::spawn(move || serve(b, c.as_ref(), "test vm", &auth, &st));
    (a, t, stop)
}

fn connect(console: &Arc<FakeConsole>) -> (Client<UnixStream>, Server, Arc<AtomicBool>) {
    let (a, t, stop) = start(console);
    (Client::connect(a), t, stop)
}

/// Nothing arrives within `ms` milliseconds.
fn quiet(c: &mut Client<UnixStream>, ms: u64) -> bool {
    c.s.set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
    let mut b = [0u8; 1];
    let r = c.s.read(&mut b);
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn ended(t: Server) -> Result<(), SessionError> {
    t.join().unwrap()
}

fn wait_for<T>(what: impl Fn() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = what() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out");
}

#[test]
fn handshake_3_8_and_server_init() {
    let console = FakeConsole::with_frame(pattern(720, 400));
    let (c, t, _) = connect(&console);
    assert_eq!((c.width, c.height, c.name.as_str()), (720, 400, "test vm"));
    assert_eq!(c.format, PixelFormat::NATIVE);
    drop(c);
    assert!(ended(t).is_ok());
}

#[test]
fn handshake_3_3_and_3_7() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    for (version, security) in [(b"RFB 003.003\n", vec![0u8, 0, 0, 1]), (b"RFB 003.007\n", vec![1, 1])] {
        let (mut a, t, _) = start(&console);
        let mut v = [0u8; 12];
        a.read_exact(&mut v).unwrap();
        a.write_all(version).unwrap();
        let mut sec = vec![0u8; security.len()];
        a.read_exact(&mut sec).unwrap();
        assert_eq!(sec, security);
        if security.len() == 2 {
            a.write_all(&[1]).unwrap();
        }
        // No SecurityResult for None before 3.8: ClientInit, then ServerInit.
        a.write_all(&[0]).unwrap();
        let c = Client::server_init(a);
        assert_eq!((c.width, c.height), (8, 4));
        drop(c);
        assert!(ended(t).is_ok());
    }
}

#[test]
fn no_display_yet_gives_the_default_size() {
    let console = Arc::new(FakeConsole::default());
    let (mut c, t, _) = connect(&console);
    assert_eq!((c.width, c.height), (720, 400));
    // A request waits for a frame.
    c.request_all(false);
    assert!(quiet(&mut c, 100));
    console.set(pattern(720, 400));
    c.read_update();
    assert!(same_as(&c.fb, &console.frame().unwrap()));
    drop(c);
    ended(t).unwrap();
}

#[test]
fn bad_handshakes_end_the_session() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    // Security type 2 (VncAuth) was not offered: a failed result with a reason.
    let (mut a, t, _) = start(&console);
    let mut v = [0u8; 12];
    a.read_exact(&mut v).unwrap();
    a.write_all(b"RFB 003.008\n").unwrap();
    let mut sec = [0u8; 2];
    a.read_exact(&mut sec).unwrap();
    a.write_all(&[2]).unwrap();
    let mut result = Vec::new();
    a.read_to_end(&mut result).unwrap();
    assert_eq!(&result[..4], &[0, 0, 0, 1]);
    assert!(String::from_utf8_lossy(&result[8..]).contains("None"));
    assert!(matches!(ended(t), Err(SessionError::Protocol(ProtocolError::BadSecurityType(2, 1)))));
    // Not RFB at all.
    let (mut a, t, _) = start(&console);
    a.read_exact(&mut v).unwrap();
    a.write_all(b"GET / HTTP/1.").unwrap();
    assert!(matches!(ended(t), Err(SessionError::Protocol(ProtocolError::BadVersion(_)))));
    // A client that leaves half-way.
    let (mut a, t, _) = start(&console);
    a.read_exact(&mut v).unwrap();
    a.write_all(b"RFB 0").unwrap();
    drop(a);
    assert!(matches!(ended(t), Err(SessionError::Io(_))));
}

#[test]
fn full_then_incremental_updates() {
    let console = FakeConsole::with_frame(pattern(200, 130));
    let (mut c, t, _) = connect(&console);
    c.request_all(false);
    let rects = c.read_update();
    assert_eq!(rects, vec![(Rect { x: 0, y: 0, w: 200, h: 130 }, 0)]);
    assert!(same_as(&c.fb, &pattern(200, 130)));
    assert_eq!(c.rgb(3, 2), 0x03_02_01);
    // Nothing changed: an incremental request waits.
    c.request_all(true);
    assert!(quiet(&mut c, 150));
    // One pixel changes: only its tile is sent.
    let mut f = pattern(200, 130);
    f.put(130, 70, [0xff, 0xee, 0xdd]);
    console.set(f.clone());
    let rects = c.read_update();
    assert_eq!(rects, vec![(Rect { x: 128, y: 64, w: 64, h: 64 }, 0)]);
    assert_eq!(c.rgb(130, 70), 0xffeedd);
    assert!(same_as(&c.fb, &f));
    // A non-incremental request for a part sends that part at once.
    c.request(false, Rect { x: 10, y: 20, w: 5, h: 1000 });
    assert_eq!(c.read_update(), vec![(Rect { x: 10, y: 20, w: 5, h: 110 }, 0)]);
    // A request outside the screen gets an empty update, not an error.
    c.request(false, Rect { x: 500, y: 500, w: 5, h: 5 });
    assert_eq!(c.read_update(), vec![]);
    drop(c);
    ended(t).unwrap();
}

#[test]
fn updates_are_rate_limited() {
    let console = FakeConsole::with_frame(pattern(64, 64));
    let (mut c, t, _) = connect(&console);
    c.request_all(false);
    c.read_update();
    let start = std::time::Instant::now();
    for i in 0..6u8 {
        let mut f = pattern(64, 64);
        f.put(0, 0, [i, 0xaa, 0]);
        console.set(f);
        // Full requests are rate-limited as well as incremental ones.
        c.request_all(i % 2 == 0);
        c.read_update();
    }
    // Six looks one interval apart take at least five intervals.
    assert!(start.elapsed() >= FRAME_INTERVAL * 5, "{:?}", start.elapsed());
    drop(c);
    ended(t).unwrap();
}

#[test]
fn desktop_size_resizes_the_client() {
    let console = FakeConsole::with_frame(pattern(720, 400));
    let (mut c, t, _) = connect(&console);
    c.set_encodings(&[rfb::ENCODING_RAW, rfb::ENCODING_DESKTOP_SIZE]);
    c.request_all(false);
    c.read_update();
    console.set(pattern(1024, 768));
    c.request_all(true);
    assert_eq!(c.read_update(), vec![(Rect { x: 0, y: 0, w: 1024, h: 768 }, rfb::ENCODING_DESKTOP_SIZE)]);
    assert_eq!((c.width, c.height), (1024, 768));
    // After a resize even an incremental request gets the whole screen.
    c.request_all(true);
    assert_eq!(c.read_update(), vec![(Rect { x: 0, y: 0, w: 1024, h: 768 }, 0)]);
    assert!(same_as(&c.fb, &pattern(1024, 768)));
    drop(c);
    ended(t).unwrap();
}

#[test]
fn without_desktop_size_the_screen_is_cropped() {
    let console = FakeConsole::with_frame(pattern(100, 50));
    let (mut c, t, _) = connect(&console);
    c.set_encodings(&[rfb::ENCODING_RAW, 1 /* CopyRect */]);
    c.request_all(false);
    c.read_update();
    console.set(pattern(300, 40));
    c.request_all(false);
    assert_eq!(c.read_update(), vec![(Rect { x: 0, y: 0, w: 100, h: 50 }, 0)]);
    assert_eq!((c.width, c.height), (100, 50));
    assert_eq!(c.rgb(99, 39), 0x63_27_44);
    assert_eq!(c.rgb(5, 45), 0);
    drop(c);
    ended(t).unwrap();
}

#[test]
fn sixteen_bit_pixels() {
    let mut f = Frame::black(4, 1);
    f.put(0, 0, [255, 0, 0]);
    f.put(1, 0, [0, 255, 0]);
    f.put(2, 0, [0, 0, 255]);
    f.put(3, 0, [255, 255, 255]);
    let console = FakeConsole::with_frame(f);
    let (mut c, t, _) = connect(&console);
    c.set_format(RGB565);
    c.request_all(false);
    c.read_update();
    assert_eq!(c.fb, vec![0xf800, 0x07e0, 0x001f, 0xffff]);
    drop(c);
    ended(t).unwrap();
}

#[test]
fn colour_map_format_disconnects() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (mut c, t, _) = connect(&console);
    c.set_format(PixelFormat { bpp: 8, true_colour: false, ..PixelFormat::NATIVE });
    assert!(matches!(ended(t), Err(SessionError::Protocol(ProtocolError::PixelFormat(_)))));
    let mut rest = Vec::new();
    assert_eq!(c.s.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn keys_reach_the_console_and_held_keys_are_released() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (mut c, t, _) = connect(&console);
    c.key(true, 0xffe1); // Shift_L
    c.key(true, u32::from(b'A'));
    c.key(false, u32::from(b'A'));
    c.key(true, 0xff0d);
    c.key(false, 0xff0d);
    c.key(true, 0x20ac); // EuroSign: no key, dropped
    c.key(true, 0xffbe); // F1 held
    wait_for(|| (console.keys().len() == 6).then_some(()));
    drop(c);
    ended(t).unwrap();
    let keys = console.keys();
    assert_eq!(
        keys,
        vec![
            (Key::Plain(0x12), true),
            (Key::Plain(0x1c), true),
            (Key::Plain(0x1c), false),
            (Key::Plain(0x5a), true),
            (Key::Plain(0x5a), false),
            (Key::Plain(0x05), true),
            (Key::Plain(0x12), false),
            (Key::Plain(0x05), false),
        ]
    );
}

#[test]
fn shifted_symbols_get_shift_when_the_client_sends_none() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (mut c, t, _) = connect(&console);
    c.key(true, u32::from(b'_'));
    c.key(false, u32::from(b'_'));
    // With Shift held by the client, nothing is added.
    c.key(true, 0xffe2);
    c.key(true, u32::from(b'_'));
    c.key(false, u32::from(b'_'));
    c.key(false, 0xffe2);
    wait_for(|| (console.keys().len() == 8).then_some(()));
    drop(c);
    ended(t).unwrap();
    let (shift, rshift, minus) = (Key::Plain(0x12), Key::Plain(0x59), Key::Plain(0x4e));
    assert_eq!(
        console.keys(),
        vec![
            (shift, true),
            (minus, true),
            (shift, false),
            (minus, false),
            (rshift, true),
            (minus, true),
            (minus, false),
            (rshift, false),
        ]
    );
}

#[test]
fn pointer_positions_become_relative_moves() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (mut c, t, _) = connect(&console);
    c.pointer(0, 100, 100); // first position: nothing to send
    c.pointer(0, 110, 90); // right 10, up 10
    c.pointer(1, 110, 90); // left button
    c.pointer(5, 105, 95); // + right button, moved
    c.pointer(0x08, 105, 95); // wheel up, buttons released
    c.pointer(0x00, 105, 95);
    c.pointer(0x10, 105, 95); // wheel down
    c.pointer(0x10, 105, 95); // still down: nothing new
    wait_for(|| (console.moves().len() == 5).then_some(()));
    drop(c);
    ended(t).unwrap();
    assert_eq!(
        console.moves(),
        vec![
            (10, 10, 0, 0),
            (0, 0, 0, MOUSE_LEFT),
            (-5, -5, 0, MOUSE_LEFT | MOUSE_RIGHT),
            (0, 0, -1, 0),
            (0, 0, 1, 0),
        ]
    );
}

#[test]
fn cut_text_is_skipped_in_pieces() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (mut c, t, _) = connect(&console);
    let len = 100_000u32;
    let mut m = vec![6, 0, 0, 0];
    m.extend_from_slice(&len.to_be_bytes());
    c.s.write_all(&m).unwrap();
    // The text arrives slowly, in odd pieces, with key-event-looking bytes in it.
    let text = vec![4u8; len as usize];
    for piece in text.chunks(33_333) {
        c.s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    c.key(true, u32::from(b'x'));
    wait_for(|| (!console.keys().is_empty()).then_some(()));
    assert_eq!(console.keys(), vec![(Key::Plain(0x22), true)]);
    drop(c);
    ended(t).unwrap();
}

#[test]
fn hostile_messages_disconnect() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let cases: [&[u8]; 4] =
        [&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], &[2, 0, 0xff, 0xff], &[0xfe, 1, 2, 3], &[1]];
    for bytes in cases {
        let (mut c, t, _) = connect(&console);
        c.s.write_all(bytes).unwrap();
        assert!(matches!(ended(t), Err(SessionError::Protocol(_))), "{bytes:?}");
    }
}

#[test]
fn stop_flag_ends_an_idle_session() {
    let console = FakeConsole::with_frame(pattern(8, 8));
    let (c, t, stop) = connect(&console);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    ended(t).unwrap();
    drop(c);
}

fn password_auth() -> Arc<Auth> {
    Arc::new(Auth::with_delay(Some(VncPassword::new("secret").unwrap()), Duration::ZERO))
}

#[test]
fn vnc_auth_3_8_right_password_is_served() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    let (a, t, _) = start_auth(&console, password_auth());
    let c = Client::connect_with_password(a, b"secret").unwrap();
    assert_eq!((c.width, c.height, c.name.as_str()), (8, 4, "test vm"));
    drop(c);
    assert!(ended(t).is_ok());
}

#[test]
fn vnc_auth_3_8_wrong_password_gets_the_reason() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    let (a, t, _) = start_auth(&console, password_auth());
    let reason = Client::connect_with_password(a, b"secreT").err().unwrap();
    assert!(reason.contains("wrong password"), "{reason}");
    assert!(matches!(ended(t), Err(SessionError::Auth(AuthError::WrongPassword))));
}

#[test]
fn vnc_auth_offered_alone_and_none_refused() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    let (mut a, t, _) = start_auth(&console, password_auth());
    let mut v = [0u8; 12];
    a.read_exact(&mut v).unwrap();
    a.write_all(b"RFB 003.008\n").unwrap();
    let mut sec = [0u8; 2];
    a.read_exact(&mut sec).unwrap();
    assert_eq!(sec, [1, 2]);
    a.write_all(&[1]).unwrap();
    let mut result = Vec::new();
    a.read_to_end(&mut result).unwrap();
    assert_eq!(&result[..4], &[0, 0, 0, 1]);
    assert!(String::from_utf8_lossy(&result[8..]).contains("VNC Authentication"));
    assert!(matches!(ended(t), Err(SessionError::Protocol(ProtocolError::BadSecurityType(1, 2)))));
}

/// 3.3 (the server names the type) and 3.7 (the client picks it): a SecurityResult follows
/// the response, without a reason string when it fails.
#[test]
fn vnc_auth_3_3_and_3_7() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    for (version, security) in [(b"RFB 003.003\n", vec![0u8, 0, 0, 2]), (b"RFB 003.007\n", vec![1, 2])] {
        for (password, ok) in [(&b"secret"[..], true), (&b"guess"[..], false)] {
            let (mut a, t, _) = start_auth(&console, password_auth());
            let mut v = [0u8; 12];
            a.read_exact(&mut v).unwrap();
            a.write_all(version).unwrap();
            let mut sec = vec![0u8; security.len()];
            a.read_exact(&mut sec).unwrap();
            assert_eq!(sec, security);
            if security.len() == 2 {
                a.write_all(&[2]).unwrap();
            }
            let mut challenge = [0u8; 16];
            a.read_exact(&mut challenge).unwrap();
            a.write_all(&super::super::auth::response(password, &challenge)).unwrap();
            let mut result = [0u8; 4];
            a.read_exact(&mut result).unwrap();
            if ok {
                assert_eq!(result, [0; 4]);
                a.write_all(&[0]).unwrap();
                let c = Client::server_init(a);
                assert_eq!((c.width, c.height), (8, 4));
                drop(c);
                assert!(ended(t).is_ok());
            } else {
                assert_eq!(result, [0, 0, 0, 1]);
                let mut rest = Vec::new();
                a.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "no reason string before 3.8: {rest:?}");
                assert!(matches!(ended(t), Err(SessionError::Auth(AuthError::WrongPassword))));
            }
        }
    }
}

/// Each challenge is fresh: two connections never see the same one.
#[test]
fn vnc_auth_challenges_are_random() {
    let console = FakeConsole::with_frame(pattern(8, 4));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (mut a, _t, _) = start_auth(&console, password_auth());
        let mut v = [0u8; 12];
        a.read_exact(&mut v).unwrap();
        a.write_all(b"RFB 003.008\n").unwrap();
        let mut sec = [0u8; 2];
        a.read_exact(&mut sec).unwrap();
        a.write_all(&[2]).unwrap();
        let mut challenge = [0u8; 16];
        a.read_exact(&mut challenge).unwrap();
        seen.push(challenge);
    }
    assert_ne!(seen[0], seen[1]);
}
