// SPDX-License-Identifier: Apache-2.0
//! Characters to keys of a US keyboard (scan code set 2), for typing text into a guest
//! (the control socket's `sendkey`).

use super::keyboard::Key;

/// Set-2 make code of left Shift.
pub const LEFT_SHIFT: u8 = 0x12;

/// The key that types `c` on a US layout, and whether Shift must be held; `None` for
/// characters the layout has no key for.
pub fn key_for_char(c: char) -> Option<(Key, bool)> {
    const LETTERS: [u8; 26] = [
        0x1c, 0x32, 0x21, 0x23, 0x24, 0x2b, 0x34, 0x33, 0x43, 0x3b, 0x42, 0x4b, 0x3a, 0x31, 0x44, 0x4d, 0x15,
        0x2d, 0x1b, 0x2c, 0x3c, 0x2a, 0x1d, 0x22, 0x35, 0x1a,
    ];
    const DIGITS: [u8; 10] = [0x45, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46];
    let plain = |code: u8, shift: bool| Some((Key::Plain(code), shift));
    match c {
        'a'..='z' => plain(LETTERS[c as usize - 'a' as usize], false),
        'A'..='Z' => plain(LETTERS[c as usize - 'A' as usize], true),
        '0'..='9' => plain(DIGITS[c as usize - '0' as usize], false),
        ' ' => plain(0x29, false),
        '\n' | '\r' => plain(0x5a, false),
        '\t' => plain(0x0d, false),
        '\u{1b}' => plain(0x76, false),
        '\u{8}' => plain(0x66, false),
        '-' => plain(0x4e, false),
        '_' => plain(0x4e, true),
        '=' => plain(0x55, false),
        '+' => plain(0x55, true),
        '.' => plain(0x49, false),
        ',' => plain(0x41, false),
        '/' => plain(0x4a, false),
        ';' => plain(0x4c, false),
        ':' => plain(0x4c, true),
        '\'' => plain(0x52, false),
        '"' => plain(0x52, true),
        '(' => plain(0x46, true),
        ')' => plain(0x45, true),
        '>' => plain(0x49, true),
        '<' => plain(0x41, true),
        '|' => plain(0x5d, true),
        '\\' => plain(0x5d, false),
        '!' => plain(0x16, true),
        '$' => plain(0x25, true),
        '*' => plain(0x3e, true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_controls() {
        assert_eq!(key_for_char('a'), Some((Key::Plain(0x1c), false)));
        assert_eq!(key_for_char('C'), Some((Key::Plain(0x21), true)));
        assert_eq!(key_for_char('z'), Some((Key::Plain(0x1a), false)));
        assert_eq!(key_for_char('0'), Some((Key::Plain(0x45), false)));
        assert_eq!(key_for_char('9'), Some((Key::Plain(0x46), false)));
        assert_eq!(key_for_char('\n'), Some((Key::Plain(0x5a), false)));
        assert_eq!(key_for_char(':'), Some((Key::Plain(0x4c), true)));
        assert_eq!(key_for_char('é'), None);
    }
}
