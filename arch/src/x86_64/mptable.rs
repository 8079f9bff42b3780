// SPDX-License-Identifier: Apache-2.0
//! Intel MultiProcessor Specification 1.4 tables, for guests that boot with ACPI disabled.
//!
//! Written by hand: no maintained crate builds MP tables (cloud-hypervisor and Firecracker
//! each carry their own). The floating pointer and the configuration table live in the EBDA,
//! where a guest's MP scan looks first. Entries: one processor per vCPU (APIC ID = index,
//! vCPU 0 the BSP), an ISA bus, the IOAPIC, ISA IRQs 0-15 identity-routed to IOAPIC pins
//! (the in-kernel IOAPIC's default routing), ExtINT on pin 0 via LINT0 and NMI on LINT1.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::acpi::ioapic_id;
use super::layout::{IOAPIC_ADDR, LAPIC_ADDR, LEGACY_HOLE_START, MPTABLE_ADDR};

/// Errors while writing the MP table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More vCPUs than fit in the EBDA or can be named by 8-bit APIC IDs.
    #[error("an MP table cannot describe {0} vCPUs")]
    TooManyCpus(u32),
    /// Guest memory does not cover the EBDA.
    #[error("cannot write the MP table into guest memory")]
    GuestWrite,
}

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_IRQS: u8 = 16;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn int_entry(kind: u8, entry_type: u8, irq: u8, dest: u8, pin: u8) -> [u8; 8] {
    // kind 3 = I/O interrupt, 4 = local interrupt; flags 0 = conforms to the bus.
    [kind, entry_type, 0, 0, 0, irq, dest, pin]
}

/// Builds the floating pointer and configuration table for `cpu_count` vCPUs.
pub fn build(cpu_count: u32) -> Result<Vec<u8>, Error> {
    if cpu_count == 0 || cpu_count >= 255 {
        return Err(Error::TooManyCpus(cpu_count));
    }
    let ioapic = ioapic_id(cpu_count);
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..cpu_count {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        let mut e = vec![0, cpu as u8, APIC_VERSION, flags];
        e.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        e.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        e.extend_from_slice(&[0; 8]);
        entries.extend_from_slice(&e);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut io = vec![2, ioapic, IOAPIC_VERSION, 1];
    io.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    entries.extend_from_slice(&io);
    count += 2;
    entries.extend_from_slice(&int_entry(3, INT_TYPE_EXTINT, 0, ioapic, 0));
    for irq in 1..ISA_IRQS {
        entries.extend_from_slice(&int_entry(3, INT_TYPE_INT, irq, ioapic, irq));
    }
    entries.extend_from_slice(&int_entry(4, INT_TYPE_EXTINT, 0, 0xff, 0));
    entries.extend_from_slice(&int_entry(4, INT_TYPE_NMI, 0, 0xff, 1));
    count += u16::from(ISA_IRQS) + 2;

    let table_len = HEADER_LEN + entries.len();
    let mut header = Vec::with_capacity(table_len);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.extend_from_slice(&[4, 0]); // spec revision 1.4, checksum
    header.extend_from_slice(b"RVMM    ");
    header.extend_from_slice(b"PC          ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    header.extend_from_slice(&entries);
    header[7] = checksum(&header);

    let table_addr = MPTABLE_ADDR + FLOATING_LEN as u64;
    if table_addr + table_len as u64 > LEGACY_HOLE_START {
        return Err(Error::TooManyCpus(cpu_count));
    }
    let mut out = Vec::with_capacity(FLOATING_LEN + table_len);
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&(table_addr as u32).to_le_bytes());
    out.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length 1, rev 1.4, checksum, features
    out[10] = checksum(&out);
    out.extend_from_slice(&header);
    Ok(out)
}

/// Writes the MP table at [`MPTABLE_ADDR`].
pub fn write_mptable(mem: &GuestMemoryMmap, cpu_count: u32) -> Result<(), Error> {
    let table = build(cpu_count)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_ADDR)).map_err(|_| Error::GuestWrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_pointer_and_table_are_consistent() {
        for cpus in [1u32, 4, 8] {
            let t = build(cpus).unwrap();
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(checksum(&t[..16]), 0);
            let addr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(addr, MPTABLE_ADDR + 16);
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(checksum(table), 0);
            let entries = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(entries as u32, cpus + 2 + 16 + 2);
            // First processor is the BSP, others only enabled.
            assert_eq!(table[HEADER_LEN + 3], CPU_ENABLED | CPU_BSP);
            if cpus > 1 {
                assert_eq!(table[HEADER_LEN + 20 + 3], CPU_ENABLED);
            }
        }
    }

    #[test]
    fn invalid_counts_and_missing_memory_are_errors() {
        assert!(build(0).is_err());
        assert!(build(255).is_err());
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        assert!(matches!(write_mptable(&mem, 1), Err(Error::GuestWrite)));
    }
}
