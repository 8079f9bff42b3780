// SPDX-License-Identifier: Apache-2.0
//! MSI-X (PCI Local Bus Specification 3.0, section 6.8.2): the capability, the vector table and
//! the pending bit array (PBA) of one function.
//!
//! The device owns a [`MsixTable`], puts [`MsixTable::capability`] into its configuration space
//! with [`PciConfigSpace::add_capability`](super::PciConfigSpace::add_capability), hands the
//! message control register to [`MsixTable::set_control`] after every guest configuration write,
//! and forwards guest accesses to the BAR ranges holding the table and the PBA. Every entry has
//! its own route in [`MsiVectors`], set while MSI-X is enabled and cleared when it is disabled.
//!
//! Masks reach two places: [`MsixTable::trigger`] (the device model signalling a vector)
//! checks them itself and keeps the pending bit in the PBA; and while MSI-X is enabled, every
//! change of a vector's effective mask (its own bit or the function mask) goes to
//! [`MsiVectors::set_masked`], so that signals of agents outside the vmm (a VFIO device, a
//! vhost worker) are held back too. A PBA bit reads as set if either holds the vector pending.
//! With MSI-X disabled the table masks nothing in the back end: a VFIO device shares the
//! vectors with its MSI capability.
//!
//! Log levels: `debug` for malformed guest accesses, `warn` for routes or deliveries the
//! interrupt back end refused.

use std::fmt;
use std::sync::Arc;

use crate::interrupt::{MsiMessage, MsiVectors};

/// The MSI-X capability ID.
pub const MSIX_CAP_ID: u8 = 0x11;
/// Size of one table entry in bytes.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// The most vectors a function may have.
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Message control bit 15: MSI-X enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// Message control bit 14: function mask.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control bit 0: the entry is masked.
const ENTRY_MASKED: u32 = 1;
/// Bytes in one PBA qword.
const PBA_QWORD: u64 = 8;

/// One table entry (four dwords: message address low and high, message data, vector control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Entry {
    /// The state after reset: zero message, masked.
    const RESET: Entry = Entry { addr_lo: 0, addr_hi: 0, data: 0, control: ENTRY_MASKED };

    fn masked(&self) -> bool {
        self.control & ENTRY_MASKED != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage { address: u64::from(self.addr_lo) | (u64::from(self.addr_hi) << 32), data: self.data }
    }

    fn to_array(self) -> [u32; 4] {
        [self.addr_lo, self.addr_hi, self.data, self.control]
    }

    /// An entry from its four dwords; reserved vector control bits read as zero.
    fn from_array(d: [u32; 4]) -> Self {
        Entry { addr_lo: d[0], addr_hi: d[1], data: d[2], control: d[3] & ENTRY_MASKED }
    }
}

impl crate::persist::Persist for MsixTable {
    type State = MsixState;

    fn save(&self) -> Result<MsixState, crate::persist::PersistError> {
        Ok(self.state())
    }

    fn restore(&mut self, s: &MsixState) -> Result<(), crate::persist::PersistError> {
        if s.entries.len() != self.len() {
            return Err(crate::persist::PersistError::Mismatch {
                device: "msix".into(),
                why: format!("{} entries saved, the table has {}", s.entries.len(), self.len()),
            });
        }
        MsixTable::restore(self, s);
        Ok(())
    }
}

/// The MSI-X state of one function, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MsixState {
    /// Each entry's message address low, high, message data and vector control.
    pub entries: Vec<[u32; 4]>,
    /// The pending bits, 64 vectors a qword.
    pub pba: Vec<u64>,
    /// MSI-X enable.
    pub enabled: bool,
    /// Function mask.
    pub function_masked: bool,
}

/// The MSI-X table, pending bits and message control state of one function.
pub struct MsixTable {
    entries: Vec<Entry>,
    pba: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    /// Each vector's mask as last told to `vectors` (`set_masked`).
    told_masked: Vec<bool>,
    vectors: Arc<dyn MsiVectors>,
}

impl fmt::Debug for MsixTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsixTable")
            .field("entries", &self.entries)
            .field("pba", &self.pba)
            .field("enabled", &self.enabled)
            .field("function_masked", &self.function_masked)
            .finish_non_exhaustive()
    }
}

impl MsixTable {
    /// `count` vectors (1..=2048; other counts are clamped, with a warning) delivered through
    /// `vectors`, which must have at least `count`. All entries start masked (vector control
    /// bit 0 set), as the specification requires after reset.
    pub fn new(count: u16, vectors: Arc<dyn MsiVectors>) -> Self {
        let clamped = count.clamp(1, MSIX_MAX_VECTORS);
        if clamped != count {
            crate::warn_limited!("msix: {count} vectors requested, using {clamped}");
        }
        let count = usize::from(clamped);
        if vectors.len() < count {
            crate::warn_limited!("msix: {count} entries but only {} vectors to deliver them", vectors.len());
        }
        MsixTable {
            entries: vec![Entry::RESET; count],
            pba: vec![0; count.div_ceil(64)],
            enabled: false,
            function_masked: false,
            told_masked: vec![false; count],
            vectors,
        }
    }

    /// Number of vectors (table entries).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries (never: it has at least one).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the table in bytes, for laying out the BAR that holds it.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * MSIX_ENTRY_SIZE
    }

    /// Size of the PBA in bytes (whole qwords), for laying out the BAR that holds it.
    pub fn pba_size(&self) -> u64 {
        self.pba.len() as u64 * PBA_QWORD
    }

    /// The capability body (the 10 bytes after ID and next pointer: message control with the
    /// table size N-1 and the current enable and function mask bits, table offset/BIR, PBA
    /// offset/BIR) and its write mask (only message control bits 15, enable, and 14, function
    /// mask, are writable), for `PciConfigSpace::add_capability`. The BIRs keep their low 3
    /// bits and the offsets their qword-aligned part.
    pub fn capability(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> (Vec<u8>, Vec<u8>) {
        // At most 2048 entries, so N-1 fits the 11-bit table size field.
        let mut control = (self.entries.len() - 1) as u16;
        if self.enabled {
            control |= MSIX_ENABLE;
        }
        if self.function_masked {
            control |= MSIX_FUNCTION_MASK;
        }
        let table = (table_offset & !0x7) | u32::from(table_bar & 0x7);
        let pba = (pba_offset & !0x7) | u32::from(pba_bar & 0x7);
        let mut body = control.to_le_bytes().to_vec();
        body.extend_from_slice(&table.to_le_bytes());
        body.extend_from_slice(&pba.to_le_bytes());
        let mut mask = vec![0u8; body.len()];
        mask[1] = ((MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8) as u8;
        (body, mask)
    }

    /// Takes the message control register's current value `control` after a guest
    /// configuration write hit the capability. Enabling routes every entry; disabling clears
    /// the routes; unmasking the function delivers (and clears) the pending vectors of unmasked
    /// entries.
    pub fn set_control(&mut self, control: u16) {
        let enable = control & MSIX_ENABLE != 0;
        let was_delivering = self.delivering();
        let was_enabled = self.enabled;
        if enable && !self.enabled {
            self.enabled = true;
            self.route_all();
        } else if !enable && self.enabled {
            self.enabled = false;
            self.clear_routes();
        }
        let function_masked = control & MSIX_FUNCTION_MASK != 0;
        if function_masked != self.function_masked || self.enabled != was_enabled {
            self.function_masked = function_masked;
            self.sync_masks();
        }
        if self.delivering() && !was_delivering {
            self.deliver_pending();
        }
    }

    /// Whether MSI-X is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the function mask is set.
    pub fn function_masked(&self) -> bool {
        self.function_masked
    }

    /// A guest read of the table at byte `offset`: aligned 4- or 8-byte accesses within the
    /// table; anything else reads all ones.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        let Some((index, field)) = self.table_access(offset, data.len()) else {
            log::debug!("msix: bad table read of {} bytes at {offset:#x}", data.len());
            data.fill(0xff);
            return;
        };
        let entry = self.entries[index].to_array();
        for (chunk, value) in data.chunks_exact_mut(4).zip(&entry[field..]) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// A guest write of the table at byte `offset` (aligned 4- or 8-byte accesses within the
    /// table; anything else is ignored). A changed message address or data updates the
    /// entry's route while MSI-X is enabled, masked or not (software should change them only
    /// while masked); unmasking an entry with its pending bit set delivers it and clears the bit.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let Some((index, field)) = self.table_access(offset, data.len()) else {
            log::debug!("msix: bad table write of {} bytes at {offset:#x}", data.len());
            return;
        };
        let old = self.entries[index];
        let mut dwords = old.to_array();
        for (chunk, value) in data.chunks_exact(4).zip(&mut dwords[field..]) {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(chunk);
            *value = u32::from_le_bytes(bytes);
        }
        let new = Entry::from_array(dwords);
        self.entries[index] = new;
        if self.enabled && new.message() != old.message() {
            self.route(index);
        }
        self.sync_mask(index);
        if old.masked() && !new.masked() && self.delivering() && self.pending(index) {
            self.set_pending(index, false);
            self.deliver(index);
        }
    }

    /// A guest read of the PBA at byte `offset` (aligned 4- or 8-byte accesses within it;
    /// anything else reads all ones). The PBA is read-only: the device ignores guest writes.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let len = data.len();
        let qword = aligned_access(offset, len, self.pba_size())
            .and_then(|_| usize::try_from(offset / PBA_QWORD).ok())
            .and_then(|i| self.pba.get(i));
        let Some(qword) = qword else {
            log::debug!("msix: bad PBA read of {len} bytes at {offset:#x}");
            data.fill(0xff);
            return;
        };
        // Signals held back by the interrupt back end are pending too.
        let first = (offset / PBA_QWORD * 64) as usize;
        let mut qword = *qword;
        for (bit, told) in self.told_masked.iter().skip(first).take(64).enumerate() {
            if *told && self.vectors.pending(first + bit) {
                qword |= 1 << bit;
            }
        }
        // Aligned, so a 4-byte access starts at byte 0 or 4 of the qword.
        let start = (offset % PBA_QWORD) as usize;
        data.copy_from_slice(&qword.to_le_bytes()[start..start + len]);
    }

    /// The device signals `vector`. Returns false if MSI-X is disabled (the caller then uses
    /// INTx). If the vector or the function is masked, sets the vector's pending bit;
    /// otherwise delivers it. A vector beyond the table returns true and does nothing.
    pub fn trigger(&mut self, vector: u16) -> bool {
        if !self.enabled {
            return false;
        }
        let index = usize::from(vector);
        let Some(entry) = self.entries.get(index) else {
            log::debug!("msix: vector {vector} is beyond the table of {}", self.entries.len());
            return true;
        };
        if self.function_masked || entry.masked() {
            self.set_pending(index, true);
        } else {
            self.deliver(index);
        }
        true
    }

    /// Back to the power-on state: disabled, function unmasked, all entries masked with zero
    /// address and data, no pending bits, routes cleared.
    pub fn reset(&mut self) {
        if self.enabled {
            self.clear_routes();
        }
        self.entries.fill(Entry::RESET);
        self.pba.fill(0);
        self.enabled = false;
        self.function_masked = false;
        self.sync_masks();
    }

    /// The state, for a snapshot.
    pub fn state(&self) -> MsixState {
        MsixState {
            entries: self.entries.iter().map(|e| e.to_array()).collect(),
            pba: self.pba.clone(),
            enabled: self.enabled,
            function_masked: self.function_masked,
        }
    }

    /// Takes the state of a snapshot and re-routes the entries if MSI-X is enabled. A state of
    /// another table size is applied as far as it fits (with a warning): missing entries are
    /// reset, extra entries and pending bits are dropped. Nothing is delivered.
    pub fn restore(&mut self, s: &MsixState) {
        if s.entries.len() != self.entries.len() || s.pba.len() != self.pba.len() {
            crate::warn_limited!(
                "msix: restoring {} entries into a table of {}",
                s.entries.len(),
                self.entries.len()
            );
        }
        if self.enabled {
            self.clear_routes();
        }
        for (i, entry) in self.entries.iter_mut().enumerate() {
            *entry = s.entries.get(i).copied().map_or(Entry::RESET, Entry::from_array);
        }
        for i in 0..self.entries.len() {
            let bit = s.pba.get(i / 64).is_some_and(|q| q & (1 << (i % 64)) != 0);
            self.set_pending(i, bit);
        }
        self.enabled = s.enabled;
        self.function_masked = s.function_masked;
        self.sync_masks();
        if self.enabled {
            self.route_all();
        }
    }

    /// Whether unmasked entries are delivered now.
    fn delivering(&self) -> bool {
        self.enabled && !self.function_masked
    }

    /// The entry and dword a guest table access reaches, if it is an aligned 4- or 8-byte
    /// access within the table (an 8-byte one then stays within one entry).
    fn table_access(&self, offset: u64, len: usize) -> Option<(usize, usize)> {
        aligned_access(offset, len, self.table_size())?;
        let index = usize::try_from(offset / MSIX_ENTRY_SIZE).ok()?;
        Some((index, (offset % MSIX_ENTRY_SIZE / 4) as usize))
    }

    fn pending(&self, index: usize) -> bool {
        self.pba.get(index / 64).is_some_and(|q| q & (1 << (index % 64)) != 0)
    }

    fn set_pending(&mut self, index: usize, pending: bool) {
        if let Some(q) = self.pba.get_mut(index / 64) {
            let bit = 1u64 << (index % 64);
            *q = if pending { *q | bit } else { *q & !bit };
        }
    }

    /// Tells the interrupt back end the effective mask of vector `index` (while enabled: its
    /// own bit or the function mask) if it changed.
    fn sync_mask(&mut self, index: usize) {
        let masked = self.enabled && (self.function_masked || self.entries[index].masked());
        if self.told_masked[index] == masked || index >= self.vectors.len() {
            return;
        }
        match self.vectors.set_masked(index, masked) {
            Ok(()) => self.told_masked[index] = masked,
            Err(e) => crate::warn_limited!(
                "msix: vector {index} not {}: {e}",
                if masked { "masked" } else { "unmasked" }
            ),
        }
    }

    fn sync_masks(&mut self) {
        for index in 0..self.entries.len() {
            self.sync_mask(index);
        }
    }

    fn route(&self, index: usize) {
        if let Err(e) = self.vectors.set_route(index, self.entries[index].message()) {
            crate::warn_limited!("msix: vector {index} not routed: {e}");
        }
    }

    fn route_all(&self) {
        for index in 0..self.entries.len() {
            self.route(index);
        }
    }

    fn clear_routes(&self) {
        for index in 0..self.entries.len() {
            if let Err(e) = self.vectors.clear_route(index) {
                crate::warn_limited!("msix: route of vector {index} not cleared: {e}");
            }
        }
    }

    fn deliver(&self, index: usize) {
        if let Err(e) = self.vectors.trigger(index) {
            crate::warn_limited!("msix: vector {index} not delivered: {e}");
        }
    }

    /// Delivers the pending vectors of unmasked entries, clearing their pending bits.
    fn deliver_pending(&mut self) {
        for index in 0..self.entries.len() {
            if self.pending(index) && !self.entries[index].masked() {
                self.set_pending(index, false);
                self.deliver(index);
            }
        }
    }
}

/// `Some(())` if an access of `len` bytes at `offset` is 4 or 8 bytes, aligned to its size and
/// within `size` bytes.
fn aligned_access(offset: u64, len: usize, size: u64) -> Option<()> {
    let len = match len {
        4 => 4u64,
        8 => 8u64,
        _ => return None,
    };
    let end = offset.checked_add(len)?;
    (offset % len == 0 && end <= size).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::FakeMsi;
    use crate::pci::PciConfigSpace;

    const ADDR: u64 = 0x0000_0001_fee0_1000;

    fn enabled_table(count: u16) -> (MsixTable, Arc<FakeMsi>) {
        let fake = FakeMsi::new(usize::from(count));
        let mut t = MsixTable::new(count, fake.clone());
        t.set_control(MSIX_ENABLE);
        (t, fake)
    }

    fn entry_offset(index: u64) -> u64 {
        index * MSIX_ENTRY_SIZE
    }

    fn program(t: &mut MsixTable, index: u64, address: u64, data: u32) {
        t.write_table(entry_offset(index), &address.to_le_bytes());
        t.write_table(entry_offset(index) + 8, &data.to_le_bytes());
    }

    fn set_masked(t: &mut MsixTable, index: u64, masked: bool) {
        t.write_table(entry_offset(index) + 12, &u32::from(masked).to_le_bytes());
    }

    fn read32(t: &MsixTable, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read_table(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn pba(t: &MsixTable) -> u64 {
        let mut b = [0u8; 8];
        t.read_pba(0, &mut b);
        u64::from_le_bytes(b)
    }

    #[test]
    fn capability_bytes_and_config_space() {
        let t = MsixTable::new(5, FakeMsi::new(5));
        let (body, mask) = t.capability(2, 0x1000, 4, 0x2003);
        assert_eq!(body, [0x04, 0x00, 0x02, 0x10, 0x00, 0x00, 0x04, 0x20, 0x00, 0x00]);
        assert_eq!(mask, [0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((t.table_size(), t.pba_size()), (80, 8));
        let big = MsixTable::new(MSIX_MAX_VECTORS, FakeMsi::new(2048));
        assert_eq!(big.capability(0, 0, 0, 0).0[..2], [0xff, 0x07]);
        assert_eq!((big.len(), big.table_size(), big.pba_size()), (2048, 0x8000, 0x100));

        // In a configuration space, the guest sets enable and function mask only.
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        let at = c.add_capability(MSIX_CAP_ID, &body, &mask).unwrap();
        c.write(at / 4, 2, &[0xff, 0xff]);
        assert_eq!(c.read_bytes(at + 2, 2) as u16, 0xc004);
        c.write(at / 4 + 1, 0, &[0; 4]);
        assert_eq!(c.read_bytes(at + 4, 4), 0x1002);
    }

    #[test]
    fn new_clamps_the_vector_count() {
        assert_eq!(MsixTable::new(0, FakeMsi::new(1)).len(), 1);
        assert_eq!(MsixTable::new(u16::MAX, FakeMsi::new(1)).len(), 2048);
        assert!(!MsixTable::new(3, FakeMsi::new(3)).is_empty());
    }

    #[test]
    fn entries_start_masked_and_fields_read_back() {
        let mut t = MsixTable::new(3, FakeMsi::new(3));
        for i in 0..3 {
            assert_eq!([0, 4, 8, 12].map(|f| read32(&t, entry_offset(i) + f)), [0, 0, 0, 1]);
        }
        assert_eq!(pba(&t), 0);
        // Each field with a 4-byte access.
        t.write_table(entry_offset(1), &0xfee0_0000u32.to_le_bytes());
        t.write_table(entry_offset(1) + 4, &0x1u32.to_le_bytes());
        t.write_table(entry_offset(1) + 8, &0x4041u32.to_le_bytes());
        t.write_table(entry_offset(1) + 12, &0xffff_fffeu32.to_le_bytes());
        assert_eq!([0, 4, 8, 12].map(|f| read32(&t, entry_offset(1) + f)), [0xfee0_0000, 1, 0x4041, 0]);
        t.write_table(entry_offset(1) + 12, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&t, entry_offset(1) + 12), 1, "reserved control bits read 0");
        // 8-byte accesses: address, then data and control together.
        t.write_table(entry_offset(2), &ADDR.to_le_bytes());
        t.write_table(entry_offset(2) + 8, &0x0000_0000_0000_0055u64.to_le_bytes());
        let mut q = [0u8; 8];
        t.read_table(entry_offset(2), &mut q);
        assert_eq!(u64::from_le_bytes(q), ADDR);
        t.read_table(entry_offset(2) + 8, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x55, "data 0x55, unmasked");
        assert_eq!(t.state().entries[0], [0, 0, 0, 1], "other entries untouched");
    }

    #[test]
    fn enabling_routes_and_disabling_clears() {
        let fake = FakeMsi::new(2);
        let mut t = MsixTable::new(2, fake.clone());
        program(&mut t, 0, ADDR, 0x41);
        assert_eq!(fake.route(0), None, "no routes while disabled");
        assert!(!t.trigger(0), "disabled: the caller uses INTx");
        assert!(fake.take_triggered().is_empty());
        t.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(t.enabled() && t.function_masked());
        assert_eq!(fake.route(0), Some(MsiMessage { address: ADDR, data: 0x41 }));
        assert_eq!(fake.route(1), Some(MsiMessage::default()));
        // Changing the message while enabled re-routes, masked or not.
        program(&mut t, 1, 0xfee0_2000, 0x42);
        assert_eq!(fake.route(1), Some(MsiMessage { address: 0xfee0_2000, data: 0x42 }));
        set_masked(&mut t, 1, false);
        t.write_table(entry_offset(1) + 8, &0x43u32.to_le_bytes());
        assert_eq!(fake.route(1), Some(MsiMessage { address: 0xfee0_2000, data: 0x43 }));
        t.set_control(0);
        assert!(!t.enabled());
        assert_eq!((fake.route(0), fake.route(1)), (None, None));
        assert!(!t.trigger(1));
    }

    #[test]
    fn masked_entry_keeps_the_vector_pending() {
        let (mut t, fake) = enabled_table(70);
        program(&mut t, 66, ADDR, 0x50);
        assert!(t.trigger(66));
        assert!(fake.take_triggered().is_empty());
        let mut q = [0u8; 8];
        t.read_pba(8, &mut q);
        assert_eq!(u64::from_le_bytes(q), 1 << 2);
        let mut d = [0u8; 4];
        t.read_pba(8, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1 << 2);
        assert_eq!(pba(&t), 0);
        set_masked(&mut t, 66, false);
        assert_eq!(fake.take_triggered(), [66]);
        t.read_pba(8, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0, "pending bit cleared");
        set_masked(&mut t, 66, false);
        assert!(fake.take_triggered().is_empty(), "delivered once");
        assert!(t.trigger(66));
        assert_eq!(fake.take_triggered(), [66]);
        // Masking again: pending again, nothing delivered.
        set_masked(&mut t, 66, true);
        assert!(t.trigger(66));
        assert!(fake.take_triggered().is_empty());
        assert_eq!(t.state().pba, [0, 1 << 2]);
    }

    #[test]
    fn function_mask_keeps_vectors_pending() {
        let (mut t, fake) = enabled_table(4);
        for i in 0..4 {
            set_masked(&mut t, i, i == 3);
        }
        t.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(t.trigger(0) && t.trigger(2) && t.trigger(3));
        assert!(fake.take_triggered().is_empty());
        assert_eq!(pba(&t), 0b1101);
        // Unmasking an entry while the function is masked delivers nothing.
        set_masked(&mut t, 3, false);
        set_masked(&mut t, 3, true);
        assert!(fake.take_triggered().is_empty());
        t.set_control(MSIX_ENABLE);
        assert_eq!(fake.take_triggered(), [0, 2]);
        assert_eq!(pba(&t), 0b1000, "entry 3 is still masked");
        t.set_control(MSIX_ENABLE);
        assert!(fake.take_triggered().is_empty());
        set_masked(&mut t, 3, false);
        assert_eq!(fake.take_triggered(), [3]);
        assert_eq!(pba(&t), 0);
    }

    /// Outside agents (a VFIO device, vhost) signal the back end directly: every change of a
    /// vector's effective mask reaches it, and what it holds back reads as pending.
    #[test]
    fn masks_reach_the_back_end_and_its_held_signals_read_as_pending() {
        let fake = FakeMsi::new(3);
        let mut t = MsixTable::new(3, fake.clone());
        let masked = |f: &FakeMsi| f.masked.lock().unwrap().iter().copied().collect::<Vec<_>>();
        assert_eq!(masked(&fake), [0usize; 0], "disabled: nothing masked in the back end");
        t.set_control(MSIX_ENABLE);
        assert_eq!(masked(&fake), [0, 1, 2], "enabled: the masked entries are masked there too");
        set_masked(&mut t, 1, false);
        assert_eq!(masked(&fake), [0, 2]);
        // Masked again: an outside signal is held and shows in the PBA with the device's own.
        set_masked(&mut t, 1, true);
        fake.held.lock().unwrap().insert(1);
        assert_eq!(pba(&t), 0b010);
        assert!(t.trigger(2));
        assert_eq!(pba(&t), 0b110);
        set_masked(&mut t, 1, false);
        assert_eq!(fake.take_triggered(), [1], "the back end delivers what it held");
        assert_eq!(pba(&t), 0b100);
        // The function mask masks every vector in the back end; clearing it unmasks only the
        // entries whose own bit is clear.
        t.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert_eq!(masked(&fake), [0, 1, 2]);
        t.set_control(MSIX_ENABLE);
        assert_eq!(masked(&fake), [0, 2]);
        // Disabling or resetting lets go of every mask.
        t.set_control(0);
        assert_eq!(masked(&fake), [0usize; 0]);
        t.set_control(MSIX_ENABLE);
        assert_eq!(masked(&fake), [0, 2]);
        t.reset();
        assert_eq!(masked(&fake), [0usize; 0]);
    }

    #[test]
    fn bad_accesses_are_ignored() {
        let (mut t, fake) = enabled_table(2);
        program(&mut t, 0, ADDR, 0x41);
        let before = t.state();
        for (offset, len) in
            [(0, 1), (0, 2), (0, 3), (0, 16), (2, 4), (4, 8), (12, 8), (32, 4), (28, 8), (u64::MAX, 4)]
        {
            let mut b = vec![0u8; len];
            t.read_table(offset, &mut b);
            assert!(b.iter().all(|&x| x == 0xff), "table read {offset:#x}/{len}");
            t.write_table(offset, &vec![0u8; len]);
            let mut b = vec![0u8; len];
            t.read_pba(offset, &mut b);
            assert!(b.iter().all(|&x| x == 0xff), "PBA read {offset:#x}/{len}");
        }
        let mut b = [0u8; 4];
        t.read_pba(8, &mut b);
        assert_eq!(b, [0xff; 4], "beyond the one-qword PBA");
        t.read_pba(4, &mut b);
        assert_eq!(b, [0; 4]);
        assert_eq!(t.state(), before);
        assert!(t.trigger(2) && t.trigger(u16::MAX), "beyond the table");
        assert!(fake.take_triggered().is_empty());
        assert_eq!(pba(&t), 0);
    }

    #[test]
    fn back_end_errors_do_not_panic() {
        // A group smaller than the table: routes and deliveries of the extra entries fail.
        let fake = FakeMsi::new(1);
        let mut t = MsixTable::new(3, fake.clone());
        t.set_control(MSIX_ENABLE);
        set_masked(&mut t, 2, false);
        program(&mut t, 2, ADDR, 1);
        assert!(t.trigger(2));
        t.set_control(0);
        assert!(fake.take_triggered().is_empty());
    }

    #[test]
    fn reset_returns_to_power_on() {
        let (mut t, fake) = enabled_table(2);
        program(&mut t, 1, ADDR, 0x41);
        set_masked(&mut t, 0, false);
        t.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(t.trigger(0));
        t.reset();
        assert!(!t.enabled() && !t.function_masked());
        assert_eq!((fake.route(0), fake.route(1)), (None, None));
        assert_eq!(t.state(), MsixTable::new(2, FakeMsi::new(2)).state());
        assert!(!t.trigger(0));
        t.set_control(MSIX_ENABLE);
        assert!(fake.take_triggered().is_empty(), "the pending bit is gone");
    }

    #[test]
    fn state_round_trips_and_restore_reroutes() {
        let (mut t, _) = enabled_table(3);
        program(&mut t, 0, ADDR, 0x41);
        program(&mut t, 2, 0xfee0_3000, 0x43);
        set_masked(&mut t, 2, false);
        t.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(t.trigger(2));
        let (mut fresh, _) = enabled_table(3);
        crate::persist::round_trip(&t, &mut fresh);
        let (mut small, _) = enabled_table(2);
        assert!(crate::persist::Persist::restore(&mut small, &t.state()).is_err());
        let state = t.state();
        assert_eq!(
            state,
            MsixState {
                entries: vec![[0xfee0_1000, 1, 0x41, 1], [0, 0, 0, 1], [0xfee0_3000, 0, 0x43, 0]],
                pba: vec![0b100],
                enabled: true,
                function_masked: true,
            }
        );
        let fake = FakeMsi::new(3);
        let mut r = MsixTable::new(3, fake.clone());
        r.restore(&state);
        assert_eq!(r.state(), state);
        assert_eq!(fake.route(0), Some(MsiMessage { address: ADDR, data: 0x41 }));
        assert_eq!(fake.route(2), Some(MsiMessage { address: 0xfee0_3000, data: 0x43 }));
        assert!(fake.take_triggered().is_empty(), "restore delivers nothing");
        r.set_control(MSIX_ENABLE);
        assert_eq!(fake.take_triggered(), [2]);
        // A disabled state clears the routes; a state of another size is applied as far as it fits.
        r.restore(&MsixState {
            entries: vec![[1, 2, 3, 0xff]; 5],
            pba: vec![!0; 2],
            enabled: false,
            function_masked: false,
        });
        assert_eq!(fake.route(0), None);
        assert_eq!(r.state().entries, vec![[1, 2, 3, 1]; 3]);
        assert_eq!(r.state().pba, vec![0b111]);
        r.restore(&MsixState { entries: vec![], pba: vec![], enabled: false, function_masked: false });
        assert_eq!(r.state(), MsixTable::new(3, FakeMsi::new(3)).state());
    }
}
