// SPDX-License-Identifier: Apache-2.0
//! Linux bzImage boot through the x86 64-bit boot protocol (Documentation/arch/x86/boot.rst).
//!
//! The bzImage's protected-mode part is loaded at 1 MiB by linux-loader; we then fill the zero
//! page (boot_params) with the image's setup header, the command line, the initramfs location,
//! the e820 map and the ACPI RSDP address, and the boot vCPU enters at `load address + 0x200`
//! (`startup_64`) in 64-bit mode with RSI pointing at the zero page.

use std::fs::File;

use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::{load_initramfs, write_cmdline, EntryMode, Error, KernelEntry};
use crate::x86_64::layout::{MemoryLayout, CMDLINE_ADDR, HIGH_RAM_START, ZERO_PAGE_ADDR};

/// Boot-protocol "HdrS" magic.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Loader type "undefined/other".
const LOADER_TYPE_OTHER: u8 = 0xff;
/// xloadflags: the kernel has a 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;
/// Offset of startup_64 from the protected-mode kernel's load address.
const STARTUP_64_OFFSET: u64 = 0x200;
/// Largest e820 table in the zero page.
const E820_MAX: usize = 128;

/// The zero page as a plain byte-valued structure for guest memory writes.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct ZeroPage(boot_params);

// SAFETY: boot_params is a packed plain-old-data C struct; any byte pattern is a valid value.
unsafe impl ByteValued for ZeroPage {}

impl ZeroPage {
    fn zeroed() -> ZeroPage {
        let mut bytes = vec![0u8; std::mem::size_of::<ZeroPage>()];
        // boot_params is packed (alignment 1), so any slice of the right length converts.
        *ZeroPage::from_mut_slice(&mut bytes).expect("size matches")
    }
}

/// Loads the bzImage, command line and optional initramfs, and writes the zero page.
pub fn load_bzimage(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &str,
    rsdp_addr: u64,
) -> Result<KernelEntry, Error> {
    let loaded =
        BzImage::load(mem, None, kernel, Some(GuestAddress(HIGH_RAM_START))).map_err(Error::NotBzImage)?;
    let mut hdr = loaded.setup_header.ok_or(Error::Not64Bit(0))?;
    let version = hdr.version;
    if version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::Not64Bit(version));
    }
    let kernel_end = loaded.kernel_load.0 + loaded.kernel_end;

    let cmdline_len = write_cmdline(mem, cmdline)?;

    hdr.type_of_loader = LOADER_TYPE_OTHER;
    hdr.boot_flag = 0xaa55;
    hdr.header = HDRS_MAGIC;
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    hdr.cmdline_size = cmdline_len as u32 + 1;
    if let Some(file) = initramfs {
        let max = u64::from(hdr.initrd_addr_max);
        let (addr, size) = load_initramfs(mem, layout, file, kernel_end, max)?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }

    let mut zp = ZeroPage::zeroed();
    zp.0.hdr = hdr;
    zp.0.acpi_rsdp_addr = rsdp_addr;
    let e820 = layout.e820();
    for (slot, e) in zp.0.e820_table.iter_mut().zip(e820.iter().take(E820_MAX)) {
        *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.kind as u32 };
    }
    zp.0.e820_entries = e820.len().min(E820_MAX) as u8;
    mem.write_obj(zp, GuestAddress(ZERO_PAGE_ADDR)).map_err(|_| Error::GuestWrite("zero page"))?;

    Ok(KernelEntry { entry: loaded.kernel_load.0 + STARTUP_64_OFFSET, kernel_end, mode: EntryMode::Long64 })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{mem, temp_file, vmm_tempfile};
    use super::*;

    /// A minimal bzImage: one setup sector plus a header, then a protected-mode payload.
    fn fake_bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut img = vec![0u8; 2 * 512 + 4096];
        img[0x1f1] = 1; // setup_sects
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        img[0x211] = 1; // loadflags: LOADED_HIGH
        img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        img[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        img[0x400] = 0xf4;
        img
    }

    #[test]
    fn text_file_is_not_a_kernel() {
        let m = mem(64 << 20);
        let mut f = temp_file(b"just some text, not a kernel\n");
        let err = load_bzimage(&m, &MemoryLayout::new(64 << 20), &mut f, None, "", 0).unwrap_err();
        assert!(matches!(err, Error::NotBzImage(_)), "{err}");
    }

    #[test]
    fn loads_kernel_cmdline_initramfs_and_zero_page() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut k = temp_file(&fake_bzimage(0x020f, XLF_KERNEL_64));
        let mut initrd = temp_file(&[0x5a; 10000]);
        let entry = load_bzimage(&m, &layout, &mut k, Some(&mut initrd), "console=ttyS0", 0xe0000).unwrap();
        assert_eq!(entry.entry, 0x10_0200);
        let zp: ZeroPage = m.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let hdr = zp.0.hdr;
        let (ptr, size, image, rsize) =
            (hdr.cmd_line_ptr, hdr.cmdline_size, hdr.ramdisk_image, hdr.ramdisk_size);
        assert_eq!((ptr, size), (CMDLINE_ADDR as u32, 14));
        assert_eq!(rsize, 10000);
        assert_eq!(image % 4096, 0);
        assert!(u64::from(image) + 10000 <= 64 << 20);
        let byte: u8 = m.read_obj(GuestAddress(u64::from(image) + 9999)).unwrap();
        assert_eq!(byte, 0x5a);
        let rsdp = zp.0.acpi_rsdp_addr;
        assert_eq!(rsdp, 0xe0000);
        assert_eq!(zp.0.e820_entries, 3);
        let mut cmd = [0u8; 14];
        m.read_slice(&mut cmd, GuestAddress(CMDLINE_ADDR)).unwrap();
        assert_eq!(&cmd, b"console=ttyS0\0");
    }

    #[test]
    fn old_or_32bit_only_kernels_are_refused() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut k = temp_file(&fake_bzimage(0x020b, XLF_KERNEL_64));
        assert!(matches!(load_bzimage(&m, &layout, &mut k, None, "", 0), Err(Error::Not64Bit(0x020b))));
        let mut k = temp_file(&fake_bzimage(0x020f, 0));
        assert!(matches!(load_bzimage(&m, &layout, &mut k, None, "", 0), Err(Error::Not64Bit(_))));
    }

    #[test]
    fn oversized_initramfs_and_cmdline_are_errors() {
        let layout = MemoryLayout::new(32 << 20);
        let m = mem(32 << 20);
        let mut k = temp_file(&fake_bzimage(0x020f, XLF_KERNEL_64));
        let mut big = vmm_tempfile();
        big.set_len(40 << 20).unwrap();
        let err = load_bzimage(&m, &layout, &mut k, Some(&mut big), "", 0).unwrap_err();
        assert!(matches!(err, Error::InitramfsTooBig { .. }), "{err}");
        let long = "x".repeat(crate::x86_64::layout::CMDLINE_MAX + 1);
        let err = load_bzimage(&m, &layout, &mut k, None, &long, 0).unwrap_err();
        assert!(matches!(err, Error::Cmdline(_)), "{err}");
    }
}
