// SPDX-License-Identifier: Apache-2.0
use super::*;

/// 8 bpp true colour, BGR233 (blue in the top two bits), as old viewers ask for.
const BGR233: PixelFormat = PixelFormat {
    bpp: 8,
    depth: 8,
    big_endian: false,
    true_colour: true,
    red_max: 7,
    green_max: 7,
    blue_max: 3,
    red_shift: 0,
    green_shift: 3,
    blue_shift: 6,
};

#[test]
fn versions() {
    assert_eq!(parse_version(b"RFB 003.008\n"), Ok(Version::V3_8));
    assert_eq!(parse_version(b"RFB 003.007\n"), Ok(Version::V3_7));
    assert_eq!(parse_version(b"RFB 003.003\n"), Ok(Version::V3_3));
    // Unknown 3.x minors are 3.3; Apple's 3.889 is newer than 3.8.
    assert_eq!(parse_version(b"RFB 003.005\n"), Ok(Version::V3_3));
    assert_eq!(parse_version(b"RFB 003.889\n"), Ok(Version::V3_8));
    for bad in
        [b"RFB 003.00a\n", b"RFX 003.008\n", b"RFB 003.008 ", b"RFB 002.008\n", b"\0\0\0\0\0\0\0\0\0\0\0\0"]
    {
        assert!(matches!(parse_version(bad), Err(ProtocolError::BadVersion(_))), "{bad:?}");
    }
}

#[test]
fn security_messages() {
    assert_eq!(security_offer(Version::V3_3, SECURITY_NONE), vec![0, 0, 0, 1]);
    assert_eq!(security_offer(Version::V3_7, SECURITY_NONE), vec![1, 1]);
    assert_eq!(security_offer(Version::V3_8, SECURITY_NONE), vec![1, 1]);
    assert_eq!(security_offer(Version::V3_3, SECURITY_VNC_AUTH), vec![0, 0, 0, 2]);
    assert_eq!(security_offer(Version::V3_8, SECURITY_VNC_AUTH), vec![1, 2]);
    assert_eq!(check_security_choice(1, SECURITY_NONE), Ok(()));
    assert_eq!(check_security_choice(2, SECURITY_NONE), Err(ProtocolError::BadSecurityType(2, 1)));
    assert_eq!(check_security_choice(2, SECURITY_VNC_AUTH), Ok(()));
    assert_eq!(check_security_choice(1, SECURITY_VNC_AUTH), Err(ProtocolError::BadSecurityType(1, 2)));
    assert_eq!(security_ok(Version::V3_8, SECURITY_NONE), &[0, 0, 0, 0]);
    assert!(security_ok(Version::V3_7, SECURITY_NONE).is_empty());
    assert!(security_ok(Version::V3_3, SECURITY_NONE).is_empty());
    for v in [Version::V3_3, Version::V3_7, Version::V3_8] {
        assert_eq!(security_ok(v, SECURITY_VNC_AUTH), &[0, 0, 0, 0]);
    }
    assert_eq!(security_result_failed(Version::V3_3, "no"), vec![0, 0, 0, 1]);
    assert_eq!(security_result_failed(Version::V3_7, "no"), vec![0, 0, 0, 1]);
    assert_eq!(security_result_failed(Version::V3_8, "no"), security_failed("no"));
    assert_eq!(security_failed("no"), vec![0, 0, 0, 1, 0, 0, 0, 2, b'n', b'o']);
}

#[test]
fn server_init_bytes() {
    let b = server_init(720, 400, "vm");
    assert_eq!(&b[..4], &[0x02, 0xd0, 0x01, 0x90]);
    // 32 bpp, depth 24, little-endian, true colour, maxima 255, shifts 16/8/0.
    assert_eq!(&b[4..20], &[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    assert_eq!(&b[20..24], &[0, 0, 0, 2]);
    assert_eq!(&b[24..], b"vm");
}

#[test]
fn pixel_format_round_trip_and_checks() {
    let rgb565 = PixelFormat { big_endian: true, ..PixelFormat::RGB565 };
    assert_eq!(PixelFormat::from_bytes(&rgb565.to_bytes()), rgb565);
    assert_eq!(rgb565.check(), Ok(()));
    assert_eq!(PixelFormat::NATIVE.check(), Ok(()));
    assert_eq!(BGR233.check(), Ok(()));
    let colour_map = PixelFormat { true_colour: false, ..PixelFormat::NATIVE };
    assert!(matches!(colour_map.check(), Err(ProtocolError::PixelFormat(m)) if m.contains("colour-map")));
    for bpp in [0, 1, 4, 24, 64] {
        assert!(PixelFormat { bpp, ..PixelFormat::NATIVE }.check().is_err(), "{bpp}");
    }
    // Red at shift 16 does not fit in 16 bits; a shift of 200 fits nowhere.
    assert!(PixelFormat { bpp: 16, ..PixelFormat::NATIVE }.check().is_err());
    assert!(PixelFormat { blue_shift: 200, ..PixelFormat::NATIVE }.check().is_err());
    assert!(PixelFormat { red_max: 0xffff, red_shift: 16, ..PixelFormat::NATIVE }.check().is_ok());
    assert!(PixelFormat { red_max: 0xffff, red_shift: 17, ..PixelFormat::NATIVE }.check().is_err());
}

#[test]
fn pixel_conversion() {
    let native = PixelConverter::new(PixelFormat::NATIVE);
    let mut out = Vec::new();
    native.convert(&[0x12, 0x34, 0x56, 0xff, 0, 0, 9], &mut out);
    assert_eq!(out, vec![0x56, 0x34, 0x12, 0, 0, 0, 0xff, 0]);

    let rgb565 = PixelFormat::RGB565;
    let c = PixelConverter::new(rgb565);
    assert_eq!(c.pixel([255, 255, 255]), 0xffff);
    assert_eq!(c.pixel([255, 0, 0]), 0xf800);
    assert_eq!(c.pixel([0, 255, 0]), 0x07e0);
    assert_eq!(c.pixel([0, 0, 255]), 0x001f);
    assert_eq!(c.pixel([0x80, 0x80, 0x80]), (16 << 11) | (32 << 5) | 16);
    out.clear();
    c.convert(&[255, 0, 0], &mut out);
    assert_eq!(out, vec![0x00, 0xf8]);
    let be = PixelConverter::new(PixelFormat { big_endian: true, ..rgb565 });
    out.clear();
    be.convert(&[255, 0, 0], &mut out);
    assert_eq!(out, vec![0xf8, 0x00]);

    let be32 = PixelConverter::new(PixelFormat { big_endian: true, ..PixelFormat::NATIVE });
    out.clear();
    be32.convert(&[1, 2, 3], &mut out);
    assert_eq!(out, vec![0, 1, 2, 3]);

    let bgr233 = PixelConverter::new(BGR233);
    out.clear();
    bgr233.convert(&[255, 255, 255, 255, 0, 0, 0, 0, 255], &mut out);
    assert_eq!(out, vec![0xff, 0x07, 0xc0]);
}

fn pf_msg(pf: &PixelFormat) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0];
    m.extend_from_slice(&pf.to_bytes());
    m
}

/// Every prefix of a complete message is "need more", the whole parses, and trailing bytes
/// are left alone.
fn check_message(bytes: &[u8], want: ClientMessage) {
    for n in 0..bytes.len() {
        assert_eq!(parse_client_message(&bytes[..n]), Ok(None), "prefix {n} of {bytes:?}");
    }
    assert_eq!(parse_client_message(bytes), Ok(Some((want.clone(), bytes.len()))));
    let mut more = bytes.to_vec();
    more.extend_from_slice(&[3, 0, 0]);
    assert_eq!(parse_client_message(&more), Ok(Some((want, bytes.len()))));
}

#[test]
fn client_messages() {
    let pf = PixelFormat { bpp: 16, red_shift: 1, ..PixelFormat::NATIVE };
    check_message(&pf_msg(&pf), ClientMessage::SetPixelFormat(pf));
    check_message(
        &[2, 0, 0, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21, 0, 0, 0, 1],
        ClientMessage::SetEncodings(vec![0, -223, 1]),
    );
    check_message(&[2, 0, 0, 0], ClientMessage::SetEncodings(vec![]));
    check_message(
        &[3, 1, 0, 1, 0, 2, 0x02, 0xd0, 0x01, 0x90],
        ClientMessage::UpdateRequest { incremental: true, rect: Rect { x: 1, y: 2, w: 720, h: 400 } },
    );
    check_message(
        &[3, 0, 0, 0, 0, 0, 0, 1, 0, 1],
        ClientMessage::UpdateRequest { incremental: false, rect: Rect { x: 0, y: 0, w: 1, h: 1 } },
    );
    check_message(&[4, 1, 0, 0, 0, 0, 0xff, 0x0d], ClientMessage::Key { down: true, keysym: 0xff0d });
    check_message(&[4, 0, 0, 0, 0, 0, 0, 0x61], ClientMessage::Key { down: false, keysym: 0x61 });
    check_message(&[5, 0x05, 0x01, 0x00, 0x00, 0x20], ClientMessage::Pointer { buttons: 5, x: 256, y: 32 });
    // Cut text: only the header is consumed; the text is the session's to skip.
    check_message(&[6, 0, 0, 0, 0, 0, 0, 5], ClientMessage::CutText { len: 5 });
}

#[test]
fn hostile_client_messages() {
    assert_eq!(parse_client_message(&[]), Ok(None));
    for kind in [1u8, 7, 150, 248, 255] {
        assert_eq!(parse_client_message(&[kind, 0, 0, 0]), Err(ProtocolError::UnknownMessage(kind)));
    }
    // Oversized lists and texts are refused from their header alone.
    assert_eq!(parse_client_message(&[2, 0, 0xff, 0xff]), Err(ProtocolError::TooManyEncodings(0xffff)));
    let n = (MAX_ENCODINGS + 1) as u16;
    let [hi, lo] = n.to_be_bytes();
    assert_eq!(
        parse_client_message(&[2, 0, hi, lo]),
        Err(ProtocolError::TooManyEncodings(MAX_ENCODINGS + 1))
    );
    assert_eq!(
        parse_client_message(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        Err(ProtocolError::CutTextTooLong(u32::MAX))
    );
    let [a, b, c, d] = (MAX_CUT_TEXT + 1).to_be_bytes();
    assert_eq!(
        parse_client_message(&[6, 0, 0, 0, a, b, c, d]),
        Err(ProtocolError::CutTextTooLong(MAX_CUT_TEXT + 1))
    );
    let [a, b, c, d] = MAX_CUT_TEXT.to_be_bytes();
    assert_eq!(
        parse_client_message(&[6, 0, 0, 0, a, b, c, d]),
        Ok(Some((ClientMessage::CutText { len: MAX_CUT_TEXT }, 8)))
    );
    // The largest SetEncodings is accepted once complete.
    let mut m = vec![2, 0, hi, lo];
    m[3] -= 1;
    m[2..4].copy_from_slice(&(MAX_ENCODINGS as u16).to_be_bytes());
    m.resize(4 + 4 * MAX_ENCODINGS, 0);
    assert!(
        matches!(parse_client_message(&m), Ok(Some((ClientMessage::SetEncodings(v), _))) if v.len() == MAX_ENCODINGS)
    );
    // Garbage never panics.
    let mut seed = 0x1234_5678u32;
    for _ in 0..20_000 {
        let len = (seed % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8 % 8
            })
            .collect();
        if let Ok(Some((_, used))) = parse_client_message(&bytes) {
            assert!(used <= bytes.len());
        }
    }
}

#[test]
fn update_encoding() {
    let mut out = Vec::new();
    update_header(2, &mut out);
    assert_eq!(out, vec![0, 0, 0, 2]);
    out.clear();
    desktop_size_rect(1024, 768, &mut out);
    assert_eq!(out, vec![0, 0, 0, 0, 4, 0, 3, 0, 0xff, 0xff, 0xff, 0x21]);
    // A 2x1 rectangle at (1, 1) of a 3x2 image.
    let rgb: Vec<u8> = (0..18).collect();
    out.clear();
    raw_rect(&rgb, 3, Rect { x: 1, y: 1, w: 2, h: 1 }, &PixelConverter::new(PixelFormat::NATIVE), &mut out);
    assert_eq!(&out[..12], &[0, 1, 0, 1, 0, 2, 0, 1, 0, 0, 0, 0]);
    assert_eq!(&out[12..], &[14, 13, 12, 0, 17, 16, 15, 0]);
}
