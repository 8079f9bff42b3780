// SPDX-License-Identifier: Apache-2.0
//! Linux direct boot through the x86 64-bit boot protocol (Documentation/arch/x86/boot.rst).
//!
//! The bzImage's protected-mode part is loaded at 1 MiB by linux-loader; we then fill the zero
//! page (boot_params) with the image's setup header, the command line, the initramfs location,
//! the e820 map and the ACPI RSDP address, and the boot vCPU enters at `load address + 0x200`
//! (`startup_64`) in 64-bit mode with RSI pointing at the zero page.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{MemoryLayout, CMDLINE_ADDR, CMDLINE_MAX, HIGH_RAM_START, ZERO_PAGE_ADDR};

/// Errors while loading a kernel and initramfs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file is not a bzImage we can boot.
    #[error("not a Linux bzImage (x86 boot protocol header missing or unreadable)")]
    NotBzImage(#[source] linux_loader::loader::Error),
    /// The kernel cannot be entered in 64-bit mode.
    #[error("the kernel does not support the 64-bit boot entry (boot protocol {0:#x}, needs >= 2.12 with XLF_KERNEL_64)")]
    Not64Bit(u16),
    /// The command line is too long or contains a byte Linux would not accept.
    #[error("kernel command line rejected: {0}")]
    Cmdline(String),
    /// The initramfs does not fit in guest RAM.
    #[error("initramfs of {size} bytes does not fit in guest RAM between the kernel (ends at {kernel_end:#x}) and {limit:#x}")]
    InitramfsTooBig {
        /// Its size.
        size: u64,
        /// End of the loaded kernel.
        kernel_end: u64,
        /// Highest address it may reach.
        limit: u64,
    },
    /// Reading the initramfs failed.
    #[error("cannot read the initramfs")]
    InitramfsRead(#[source] std::io::Error),
    /// Writing the boot structures into guest memory failed.
    #[error("cannot write the {0} into guest memory")]
    GuestWrite(&'static str),
}

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

/// Where to start the boot vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    /// 64-bit entry point.
    pub entry: u64,
    /// End of the loaded kernel image.
    pub kernel_end: u64,
}

/// Loads the bzImage, command line and optional initramfs, and writes the zero page.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &str,
    rsdp_addr: u64,
) -> Result<KernelEntry, Error> {
    let loaded = BzImage::load(mem, None, kernel, Some(GuestAddress(HIGH_RAM_START)))
        .map_err(Error::NotBzImage)?;
    let mut hdr = loaded.setup_header.ok_or(Error::Not64Bit(0))?;
    let version = hdr.version;
    if version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::Not64Bit(version));
    }
    let kernel_end = loaded.kernel_load.0 + loaded.kernel_end;

    let cmdline = Cmdline::try_from(cmdline, CMDLINE_MAX).map_err(|e| Error::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline)
        .map_err(|_| Error::GuestWrite("command line"))?;
    let cmdline_len = cmdline.as_cstring().map(|c| c.as_bytes().len()).unwrap_or(0);

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

    Ok(KernelEntry { entry: loaded.kernel_load.0 + STARTUP_64_OFFSET, kernel_end })
}

/// Places the initramfs page-aligned at the top of low RAM (below `addr_max` and 4 GiB).
fn load_initramfs(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    file: &mut File,
    kernel_end: u64,
    addr_max: u64,
) -> Result<(u64, u64), Error> {
    let size = file.seek(SeekFrom::End(0)).map_err(Error::InitramfsRead)?;
    file.seek(SeekFrom::Start(0)).map_err(Error::InitramfsRead)?;
    let limit = layout.low_ram_size().min(addr_max.saturating_add(1));
    let too_big = Error::InitramfsTooBig { size, kernel_end, limit };
    let addr = limit.checked_sub(size).ok_or(too_big)? & !0xfff;
    if addr < kernel_end {
        return Err(Error::InitramfsTooBig { size, kernel_end, limit });
    }
    let len = usize::try_from(size).map_err(|_| Error::InitramfsTooBig { size, kernel_end, limit })?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|_| Error::GuestWrite("initramfs"))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(bytes: &[u8]) -> File {
        let mut f = vmm_tempfile();
        f.write_all(bytes).unwrap();
        f
    }

    fn vmm_tempfile() -> File {
        let path = std::env::temp_dir().join(format!(
            "arch-boot-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

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
        let err = load_linux(&m, &MemoryLayout::new(64 << 20), &mut f, None, "", 0).unwrap_err();
        assert!(matches!(err, Error::NotBzImage(_)), "{err}");
    }

    #[test]
    fn loads_kernel_cmdline_initramfs_and_zero_page() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut k = temp_file(&fake_bzimage(0x020f, XLF_KERNEL_64));
        let mut initrd = temp_file(&[0x5a; 10000]);
        let entry = load_linux(&m, &layout, &mut k, Some(&mut initrd), "console=ttyS0", 0xe0000).unwrap();
        assert_eq!(entry.entry, 0x10_0200);
        let zp: ZeroPage = m.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let hdr = zp.0.hdr;
        let (ptr, size, image, rsize) = (hdr.cmd_line_ptr, hdr.cmdline_size, hdr.ramdisk_image, hdr.ramdisk_size);
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
        assert!(matches!(load_linux(&m, &layout, &mut k, None, "", 0), Err(Error::Not64Bit(0x020b))));
        let mut k = temp_file(&fake_bzimage(0x020f, 0));
        assert!(matches!(load_linux(&m, &layout, &mut k, None, "", 0), Err(Error::Not64Bit(_))));
    }

    #[test]
    fn oversized_initramfs_and_cmdline_are_errors() {
        let layout = MemoryLayout::new(32 << 20);
        let m = mem(32 << 20);
        let mut k = temp_file(&fake_bzimage(0x020f, XLF_KERNEL_64));
        let mut big = vmm_tempfile();
        big.set_len(40 << 20).unwrap();
        let err = load_linux(&m, &layout, &mut k, Some(&mut big), "", 0).unwrap_err();
        assert!(matches!(err, Error::InitramfsTooBig { .. }), "{err}");
        let long = "x".repeat(CMDLINE_MAX + 1);
        let err = load_linux(&m, &layout, &mut k, None, &long, 0).unwrap_err();
        assert!(matches!(err, Error::Cmdline(_)), "{err}");
    }
}
