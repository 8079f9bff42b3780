// SPDX-License-Identifier: Apache-2.0
//! The 64-word Microwire EEPROM behind EECD (bit-banged) and EERD (one-shot reads).
//!
//! Layout (SDM table 5-2): words 0-2 the MAC address (little-endian byte pairs), 0x08-0x09 the
//! PBA number, 0x0a and 0x0f the initialization control words, 0x0b-0x0e the subsystem and
//! device IDs, 0x3f a checksum making the sum of all 64 words 0xBABA.
//!
//! Microwire protocol (SDM 5.5): with CS high, the driver clocks in (on SK rising edges) a
//! start bit, the 2-bit opcode and a 6-bit address; for READ (110b) the device then shifts
//! the word out on DO, most significant bit first, advancing on each SK falling edge and
//! continuing into the following words. Write/erase opcodes are accepted and ignored: the
//! image is read-only (the guest's driver only writes it through tools such as ethtool).

/// Number of 16-bit words.
pub const WORDS: usize = 64;
/// The checksum word.
pub const CHECKSUM_WORD: usize = 0x3f;
/// What all words must add up to.
pub const CHECKSUM_SUM: u16 = 0xbaba;

/// EECD: clock.
pub const EECD_SK: u32 = 1 << 0;
/// EECD: chip select.
pub const EECD_CS: u32 = 1 << 1;
/// EECD: data in (to the EEPROM).
pub const EECD_DI: u32 = 1 << 2;
/// EECD: data out (from the EEPROM).
pub const EECD_DO: u32 = 1 << 3;
/// EECD: flash write enable (bits 5:4).
pub const EECD_FWE_MASK: u32 = 3 << 4;
/// EECD: software requests the EEPROM.
pub const EECD_REQ: u32 = 1 << 6;
/// EECD: access granted.
pub const EECD_GNT: u32 = 1 << 7;
/// EECD: EEPROM present.
pub const EECD_PRES: u32 = 1 << 8;
/// EERD: start a read.
pub const EERD_START: u32 = 1 << 0;
/// EERD: read done.
pub const EERD_DONE: u32 = 1 << 4;
/// EERD: word address (bits 15:8).
pub const EERD_ADDR_SHIFT: u32 = 8;
/// EERD: data (bits 31:16).
pub const EERD_DATA_SHIFT: u32 = 16;

const OPCODE_READ: u32 = 0b110;
/// Start bit, 2 opcode bits, 6 address bits.
const COMMAND_BITS: u32 = 9;

/// EEPROM contents and the Microwire shift state.
#[derive(Debug, Clone)]
pub struct Eeprom {
    words: [u16; WORDS],
    /// SK, CS, DI, FWE and REQ as last written.
    eecd: u32,
    shift_in: u32,
    bits_in: u32,
    /// Bit position of the next output bit (word * 16 + bit), while reading.
    out_pos: Option<u32>,
}

impl Eeprom {
    /// An image for a device with `mac`, PCI IDs `device`, subsystem `sub_vendor:sub_device`.
    pub fn new(mac: [u8; 6], device: u16, sub_vendor: u16, sub_device: u16) -> Self {
        let mut words = [0u16; WORDS];
        for i in 0..3 {
            words[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
        }
        // Compatibility word: no special behaviour; OEM words 0x06/0x07 zero.
        words[0x03] = 0x0000;
        // LED settings: 0xffff asks the driver for its defaults.
        words[0x04] = 0xffff;
        // Image version.
        words[0x05] = 0x1000;
        // Printed board assembly number.
        words[0x08] = 0x1234;
        words[0x09] = 0x5678;
        // Initialization control 1: signature 01b in bits 15:14, load subsystem IDs (bit 1),
        // load vendor/device IDs (bit 0).
        words[0x0a] = 0x4003;
        words[0x0b] = sub_device;
        words[0x0c] = sub_vendor;
        words[0x0d] = device;
        words[0x0e] = 0x8086;
        // Initialization control 2: pause and asymmetric pause advertised (bits 13:12).
        words[0x0f] = 0x3000;
        // Initialization control 3 (port A) at 0x24: no APM wake-up.
        for w in words.iter_mut().take(CHECKSUM_WORD).skip(0x30) {
            *w = 0xffff;
        }
        let sum = words[..CHECKSUM_WORD].iter().fold(0u16, |s, w| s.wrapping_add(*w));
        words[CHECKSUM_WORD] = CHECKSUM_SUM.wrapping_sub(sum);
        Eeprom { words, eecd: 0, shift_in: 0, bits_in: 0, out_pos: None }
    }

    /// Word `index` (out-of-range indexes read as all ones, like an unprogrammed part).
    pub fn word(&self, index: usize) -> u16 {
        self.words.get(index).copied().unwrap_or(0xffff)
    }

    /// The MAC address stored in words 0-2.
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        for i in 0..3 {
            mac[2 * i..2 * i + 2].copy_from_slice(&self.words[i].to_le_bytes());
        }
        mac
    }

    /// Value read from EECD.
    pub fn read_eecd(&self) -> u32 {
        let mut v = self.eecd | EECD_PRES;
        if self.eecd & EECD_REQ != 0 {
            v |= EECD_GNT;
        }
        // DO idles high (ready); while reading it carries the current data bit.
        let bit = match self.out_pos {
            Some(pos) => {
                let word = self.words[((pos >> 4) as usize) % WORDS];
                (word >> (15 - (pos & 15))) & 1 != 0
            }
            None => true,
        };
        if bit {
            v |= EECD_DO;
        }
        v
    }

    /// A guest write of EECD.
    pub fn write_eecd(&mut self, value: u32) {
        let old = self.eecd;
        self.eecd = value & (EECD_SK | EECD_CS | EECD_DI | EECD_FWE_MASK | EECD_REQ);
        if value & EECD_CS == 0 {
            // Deselected: the next selection starts a new command.
            self.shift_in = 0;
            self.bits_in = 0;
            self.out_pos = None;
            return;
        }
        if old & EECD_CS == 0 {
            self.shift_in = 0;
            self.bits_in = 0;
            self.out_pos = None;
        }
        let rising = old & EECD_SK == 0 && value & EECD_SK != 0;
        let falling = old & EECD_SK != 0 && value & EECD_SK == 0;
        if falling {
            if let Some(pos) = self.out_pos.as_mut() {
                *pos = (*pos + 1) % (WORDS as u32 * 16);
            }
            return;
        }
        if !rising || self.out_pos.is_some() {
            return;
        }
        // A start bit must come first: leading zeros are ignored.
        if self.bits_in == 0 && value & EECD_DI == 0 {
            return;
        }
        self.shift_in = (self.shift_in << 1) | u32::from(value & EECD_DI != 0);
        self.bits_in = self.bits_in.saturating_add(1);
        if self.bits_in == COMMAND_BITS {
            let opcode = self.shift_in >> 6;
            let addr = self.shift_in & 0x3f;
            if opcode == OPCODE_READ {
                // The bit position advances on the falling edge that ends this clock, so the
                // first data bit is on DO for the next rising edge.
                self.out_pos = Some((addr * 16 + WORDS as u32 * 16 - 1) % (WORDS as u32 * 16));
            } else {
                log::debug!("e1000: EEPROM opcode {opcode:#b} ignored (read-only image)");
            }
        }
    }

    /// The EERD value after a guest write of `value`: a read with START is done at once.
    pub fn eerd(&self, value: u32) -> u32 {
        let value = value & !(EERD_DONE | (0xffff << EERD_DATA_SHIFT));
        if value & EERD_START == 0 {
            return value;
        }
        let addr = ((value >> EERD_ADDR_SHIFT) & 0xff) as usize;
        (value & !EERD_START) | EERD_DONE | (u32::from(self.word(addr)) << EERD_DATA_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn eeprom() -> Eeprom {
        Eeprom::new(MAC, 0x100e, 0x8086, 0x001e)
    }

    fn clock(e: &mut Eeprom, di: bool) -> bool {
        let base = EECD_CS | if di { EECD_DI } else { 0 };
        e.write_eecd(base);
        e.write_eecd(base | EECD_SK);
        let out = e.read_eecd() & EECD_DO != 0;
        e.write_eecd(base);
        out
    }

    /// The Linux driver's sequence: select, shift out opcode and address, shift in 16 bits.
    fn bitbang_read(e: &mut Eeprom, addr: u16) -> u16 {
        e.write_eecd(EECD_REQ);
        assert_ne!(e.read_eecd() & EECD_GNT, 0);
        e.write_eecd(EECD_REQ | EECD_CS);
        for i in (0..3).rev() {
            clock(e, (0b110 >> i) & 1 != 0);
        }
        for i in (0..6).rev() {
            clock(e, (addr >> i) & 1 != 0);
        }
        let mut v = 0u16;
        for _ in 0..16 {
            v = (v << 1) | u16::from(clock(e, false));
        }
        e.write_eecd(EECD_REQ);
        e.write_eecd(0);
        v
    }

    #[test]
    fn image_has_mac_ids_and_checksum() {
        let e = eeprom();
        assert_eq!(e.mac(), MAC);
        assert_eq!(e.word(0), 0x5452);
        assert_eq!(e.word(0x0d), 0x100e);
        assert_eq!(e.word(0x0e), 0x8086);
        let sum = (0..WORDS).fold(0u16, |s, i| s.wrapping_add(e.word(i)));
        assert_eq!(sum, CHECKSUM_SUM);
        assert_eq!(e.word(999), 0xffff);
    }

    #[test]
    fn microwire_read_of_every_word() {
        let mut e = eeprom();
        for addr in 0..WORDS as u16 {
            assert_eq!(bitbang_read(&mut e, addr), e.word(addr as usize), "word {addr}");
        }
        assert_ne!(e.read_eecd() & EECD_PRES, 0);
        assert_ne!(e.read_eecd() & EECD_DO, 0, "idle DO is high");
    }

    #[test]
    fn sequential_read_continues_into_the_next_word() {
        let mut e = eeprom();
        e.write_eecd(EECD_CS);
        for i in (0..3).rev() {
            clock(&mut e, (0b110 >> i) & 1 != 0);
        }
        for _ in 0..6 {
            clock(&mut e, false);
        }
        let mut words = [0u16; 3];
        for w in words.iter_mut() {
            for _ in 0..16 {
                *w = (*w << 1) | u16::from(clock(&mut e, false));
            }
        }
        assert_eq!(words, [e.word(0), e.word(1), e.word(2)]);
    }

    #[test]
    fn non_read_opcodes_are_ignored() {
        let mut e = eeprom();
        e.write_eecd(EECD_CS);
        // Leading zeros before the start bit are skipped; then WRITE (101) to word 0.
        clock(&mut e, false);
        for bit in [true, false, true, false, false, false, false, false, false] {
            clock(&mut e, bit);
        }
        for _ in 0..16 {
            assert!(clock(&mut e, false), "no read in progress: DO stays high");
        }
        e.write_eecd(0);
        assert_eq!(bitbang_read(&mut e, 0), 0x5452);
    }

    #[test]
    fn eerd_reads_words() {
        let e = eeprom();
        let v = e.eerd(EERD_START | (1 << EERD_ADDR_SHIFT));
        assert_eq!(v & EERD_DONE, EERD_DONE);
        assert_eq!(v >> EERD_DATA_SHIFT, u32::from(e.word(1)));
        assert_eq!(v & EERD_START, 0);
        assert_eq!(e.eerd(0x3f << EERD_ADDR_SHIFT), 0x3f << EERD_ADDR_SHIFT, "no START: no read");
        let far = e.eerd(EERD_START | (0xff << EERD_ADDR_SHIFT));
        assert_eq!(far >> EERD_DATA_SHIFT, 0xffff);
    }
}
