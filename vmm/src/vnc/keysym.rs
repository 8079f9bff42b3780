// SPDX-License-Identifier: Apache-2.0
//! X11 keysyms (what VNC clients send) to the keys of a US PS/2 keyboard (scan code set 2).
//!
//! A keysym names a symbol, not a key: the client sends Shift itself, so `A` and `a` both
//! map to the A key, `!` to the 1 key. Symbols that need another layout's keys (Latin-1
//! letters with accents, dead keys) have no key here and are dropped by the caller; a guest
//! with another keyboard layout sees US key positions.

use devices::legacy::i8042::Key;

/// The set-2 make code of the key that types printable ASCII `c` on a US keyboard.
fn ascii_key(c: u8) -> Option<u8> {
    const LETTERS: [u8; 26] = [
        0x1c, 0x32, 0x21, 0x23, 0x24, 0x2b, 0x34, 0x33, 0x43, 0x3b, 0x42, 0x4b, 0x3a, 0x31, 0x44, 0x4d, 0x15,
        0x2d, 0x1b, 0x2c, 0x3c, 0x2a, 0x1d, 0x22, 0x35, 0x1a,
    ];
    const DIGITS: [u8; 10] = [0x45, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46];
    Some(match c {
        b'a'..=b'z' => LETTERS[usize::from(c - b'a')],
        b'A'..=b'Z' => LETTERS[usize::from(c - b'A')],
        b'0'..=b'9' => DIGITS[usize::from(c - b'0')],
        b' ' => 0x29,
        b'!' => 0x16,
        b'@' => 0x1e,
        b'#' => 0x26,
        b'$' => 0x25,
        b'%' => 0x2e,
        b'^' => 0x36,
        b'&' => 0x3d,
        b'*' => 0x3e,
        b'(' => 0x46,
        b')' => 0x45,
        b'`' | b'~' => 0x0e,
        b'-' | b'_' => 0x4e,
        b'=' | b'+' => 0x55,
        b'[' | b'{' => 0x54,
        b']' | b'}' => 0x5b,
        b'\\' | b'|' => 0x5d,
        b';' | b':' => 0x4c,
        b'\'' | b'"' => 0x52,
        b',' | b'<' => 0x41,
        b'.' | b'>' => 0x49,
        b'/' | b'?' => 0x4a,
        _ => return None,
    })
}

/// Whether a US keyboard types this keysym only with Shift held: the shifted symbols of the
/// digit and punctuation keys. Letters are left out: with Caps Lock on, a client sends `A`
/// for the A key without Shift.
pub fn needs_shift(keysym: u32) -> bool {
    u8::try_from(keysym).is_ok_and(|c| b"~!@#$%^&*()_+{}|:\"<>?".contains(&c))
}

/// The PS/2 key for an X11 keysym, or None if a US keyboard has no such key.
pub fn keysym_to_key(keysym: u32) -> Option<Key> {
    use Key::{Extended as E, Plain as P};
    if let Ok(c @ 0x20..=0x7e) = u8::try_from(keysym) {
        return ascii_key(c).map(P);
    }
    Some(match keysym {
        0xff08 => P(0x66),                   // BackSpace
        0xff09 | 0xfe20 => P(0x0d),          // Tab, ISO_Left_Tab (Shift+Tab)
        0xff0d => P(0x5a),                   // Return
        0xff13 => Key::Pause,                // Pause
        0xff14 => P(0x7e),                   // Scroll_Lock
        0xff15 | 0xff61 => Key::PrintScreen, // Sys_Req, Print
        0xff1b => P(0x76),                   // Escape
        0xff50 => E(0x6c),                   // Home
        0xff51 => E(0x6b),                   // Left
        0xff52 => E(0x75),                   // Up
        0xff53 => E(0x74),                   // Right
        0xff54 => E(0x72),                   // Down
        0xff55 => E(0x7d),                   // Prior (Page Up)
        0xff56 => E(0x7a),                   // Next (Page Down)
        0xff57 => E(0x69),                   // End
        0xff63 => E(0x70),                   // Insert
        0xff67 => E(0x2f),                   // Menu
        0xff7f => P(0x77),                   // Num_Lock
        0xff8d => E(0x5a),                   // KP_Enter
        0xff95 | 0xffb7 => P(0x6c),          // KP_Home, KP_7
        0xff96 | 0xffb4 => P(0x6b),          // KP_Left, KP_4
        0xff97 | 0xffb8 => P(0x75),          // KP_Up, KP_8
        0xff98 | 0xffb6 => P(0x74),          // KP_Right, KP_6
        0xff99 | 0xffb2 => P(0x72),          // KP_Down, KP_2
        0xff9a | 0xffb9 => P(0x7d),          // KP_Prior, KP_9
        0xff9b | 0xffb3 => P(0x7a),          // KP_Next, KP_3
        0xff9c | 0xffb1 => P(0x69),          // KP_End, KP_1
        0xff9d | 0xffb5 => P(0x73),          // KP_Begin, KP_5
        0xff9e | 0xffb0 => P(0x70),          // KP_Insert, KP_0
        0xff9f | 0xffae => P(0x71),          // KP_Delete, KP_Decimal
        0xffaa => P(0x7c),                   // KP_Multiply
        0xffab => P(0x79),                   // KP_Add
        0xffad => P(0x7b),                   // KP_Subtract
        0xffaf => E(0x4a),                   // KP_Divide
        0xffbe => P(0x05),                   // F1
        0xffbf => P(0x06),                   // F2
        0xffc0 => P(0x04),                   // F3
        0xffc1 => P(0x0c),                   // F4
        0xffc2 => P(0x03),                   // F5
        0xffc3 => P(0x0b),                   // F6
        0xffc4 => P(0x83),                   // F7
        0xffc5 => P(0x0a),                   // F8
        0xffc6 => P(0x01),                   // F9
        0xffc7 => P(0x09),                   // F10
        0xffc8 => P(0x78),                   // F11
        0xffc9 => P(0x07),                   // F12
        0xffe1 => P(0x12),                   // Shift_L
        0xffe2 => P(0x59),                   // Shift_R
        0xffe3 => P(0x14),                   // Control_L
        0xffe4 => E(0x14),                   // Control_R
        0xffe5 => P(0x58),                   // Caps_Lock
        0xffe7 | 0xffeb => E(0x1f),          // Meta_L, Super_L (left Windows key)
        0xffe8 | 0xffec => E(0x27),          // Meta_R, Super_R (right Windows key)
        0xffe9 => P(0x11),                   // Alt_L
        0xffea | 0xfe03 => E(0x11),          // Alt_R, ISO_Level3_Shift (AltGr)
        0xffff => E(0x71),                   // Delete
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::legacy::i8042::keymap::key_for_char;

    #[test]
    fn ascii_matches_the_sendkey_keymap() {
        // Every character the control socket's sendkey can type maps to the same key here.
        for c in (0x20u8..=0x7e).map(char::from) {
            if let Some((key, _shift)) = key_for_char(c) {
                assert_eq!(keysym_to_key(c as u32), Some(key), "{c:?}");
            }
        }
    }

    #[test]
    fn every_printable_ascii_has_a_key() {
        for c in 0x20u32..=0x7e {
            assert!(keysym_to_key(c).is_some(), "{c:#x}");
        }
        assert_eq!(keysym_to_key(u32::from(b'A')), keysym_to_key(u32::from(b'a')));
        assert_eq!(keysym_to_key(u32::from(b'!')), keysym_to_key(u32::from(b'1')));
        assert_eq!(keysym_to_key(u32::from(b'{')), Some(Key::Plain(0x54)));
        assert_eq!(keysym_to_key(u32::from(b'~')), Some(Key::Plain(0x0e)));
    }

    #[test]
    fn special_keys() {
        let cases = [
            (0xff0d, Key::Plain(0x5a)),
            (0xff08, Key::Plain(0x66)),
            (0xff09, Key::Plain(0x0d)),
            (0xff1b, Key::Plain(0x76)),
            (0xff51, Key::Extended(0x6b)),
            (0xff52, Key::Extended(0x75)),
            (0xff53, Key::Extended(0x74)),
            (0xff54, Key::Extended(0x72)),
            (0xff50, Key::Extended(0x6c)),
            (0xff57, Key::Extended(0x69)),
            (0xff55, Key::Extended(0x7d)),
            (0xff56, Key::Extended(0x7a)),
            (0xff63, Key::Extended(0x70)),
            (0xffff, Key::Extended(0x71)),
            (0xffe1, Key::Plain(0x12)),
            (0xffe2, Key::Plain(0x59)),
            (0xffe3, Key::Plain(0x14)),
            (0xffe4, Key::Extended(0x14)),
            (0xffe9, Key::Plain(0x11)),
            (0xffea, Key::Extended(0x11)),
            (0xff61, Key::PrintScreen),
            (0xff13, Key::Pause),
            (0xff8d, Key::Extended(0x5a)),
        ];
        for (sym, key) in cases {
            assert_eq!(keysym_to_key(sym), Some(key), "{sym:#x}");
        }
    }

    #[test]
    fn function_keys_are_distinct_valid_codes() {
        let keys: Vec<Key> = (0xffbe..=0xffc9).map(|s| keysym_to_key(s).unwrap()).collect();
        assert_eq!(keys[0], Key::Plain(0x05));
        assert_eq!(keys[11], Key::Plain(0x07));
        for (i, k) in keys.iter().enumerate() {
            assert!(k.set2_sequence(true).is_some());
            assert!(!keys[..i].contains(k), "F{} repeats a key", i + 1);
        }
    }

    #[test]
    fn shifted_symbols() {
        for c in "~!@#$%^&*()_+{}|:\"<>?".chars() {
            assert!(needs_shift(c as u32), "{c}");
        }
        for c in "`1234567890-=[]\\;',./ aZ".chars() {
            assert!(!needs_shift(c as u32), "{c}");
        }
        assert!(!needs_shift(0xff0d));
    }

    #[test]
    fn unknown_keysyms_have_no_key() {
        for sym in [
            0, 0x1f, 0x7f, 0xe9,   /* eacute */
            0x20ac, /* EuroSign */
            0xfe52, /* dead_circumflex */
        ] {
            assert_eq!(keysym_to_key(sym), None, "{sym:#x}");
        }
        assert_eq!(keysym_to_key(0x1000_0041), None);
    }

    #[test]
    fn all_mapped_keys_have_valid_scan_codes() {
        for sym in (0x20..=0x7e).chain(0xfe00..=0xffff) {
            if let Some(k) = keysym_to_key(sym) {
                assert!(k.set2_sequence(true).is_some(), "{sym:#x} -> {k:?}");
            }
        }
    }
}
