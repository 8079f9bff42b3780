// SPDX-License-Identifier: Apache-2.0
//! Linux direct boot: a bzImage through the x86 64-bit boot protocol ([`bzimage`]), or an
//! uncompressed ELF `vmlinux` through its PVH entry point ([`pvh`]), which skips the guest's
//! self-decompression. The format is recognised from the file's first bytes.

pub mod bzimage;
pub mod pvh;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::load_cmdline;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{MemoryLayout, CMDLINE_ADDR, CMDLINE_MAX};

/// Errors while loading a kernel and initramfs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file is neither a bzImage nor an ELF image we can boot.
    #[error("not a Linux kernel: neither a bzImage (x86 boot header) nor an ELF vmlinux")]
    NotAKernel(#[source] std::io::Error),
    /// The kernel file is not a bzImage we can boot.
    #[error("not a Linux bzImage (x86 boot protocol header missing or unreadable)")]
    NotBzImage(#[source] linux_loader::loader::Error),
    /// The ELF image could not be loaded.
    #[error("cannot load the ELF kernel")]
    Elf(#[source] linux_loader::loader::Error),
    /// The ELF image has no PVH entry point note.
    #[error("the ELF kernel has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH=y or pass the bzImage")]
    NoPvhEntry,
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

/// The CPU mode the boot vCPU starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit long mode with identity paging, RSI = zero page (bzImage).
    Long64,
    /// 32-bit flat protected mode, paging off, RBX = `hvm_start_info` (PVH).
    Pvh32 {
        /// Guest-physical address of the start info.
        start_info: u64,
    },
}

/// Where and how to start the boot vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    /// Entry point.
    pub entry: u64,
    /// End of the loaded kernel image.
    pub kernel_end: u64,
    /// CPU mode at the entry point.
    pub mode: EntryMode,
}

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// Loads a bzImage or ELF vmlinux, the command line and optional initramfs, and writes the
/// boot information the kernel reads (zero page or PVH start info).
pub fn load_linux(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &str,
    rsdp_addr: u64,
) -> Result<KernelEntry, Error> {
    let mut magic = [0u8; 4];
    kernel.seek(SeekFrom::Start(0)).and_then(|_| kernel.read_exact(&mut magic)).map_err(Error::NotAKernel)?;
    kernel.seek(SeekFrom::Start(0)).map_err(Error::NotAKernel)?;
    if magic == ELF_MAGIC {
        pvh::load_pvh(mem, layout, kernel, initramfs, cmdline, rsdp_addr)
    } else {
        bzimage::load_bzimage(mem, layout, kernel, initramfs, cmdline, rsdp_addr)
    }
}

/// Writes the command line at [`CMDLINE_ADDR`]; returns its length without the NUL.
pub(crate) fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<usize, Error> {
    let cmdline = Cmdline::try_from(cmdline, CMDLINE_MAX).map_err(|e| Error::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline).map_err(|_| Error::GuestWrite("command line"))?;
    Ok(cmdline.as_cstring().map(|c| c.as_bytes().len()).unwrap_or(0))
}

/// Places the initramfs page-aligned at the top of low RAM (below `addr_max` and 4 GiB).
pub(crate) fn load_initramfs(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    file: &mut File,
    kernel_end: u64,
    addr_max: u64,
) -> Result<(u64, u64), Error> {
    let size = file.seek(SeekFrom::End(0)).map_err(Error::InitramfsRead)?;
    file.seek(SeekFrom::Start(0)).map_err(Error::InitramfsRead)?;
    let limit = layout.low_ram_size().min(addr_max.saturating_add(1));
    let too_big = || Error::InitramfsTooBig { size, kernel_end, limit };
    let addr = limit.checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if addr < kernel_end {
        return Err(too_big());
    }
    let len = usize::try_from(size).map_err(|_| too_big())?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|_| Error::GuestWrite("initramfs"))?;
    Ok((addr, size))
}

/// Helpers shared by the loaders' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::fs::File;
    use std::io::Write;

    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// An anonymous temporary file.
    pub fn vmm_tempfile() -> File {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("arch-boot-test-{}-{n}", std::process::id()));
        let f = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    /// A temporary file holding `bytes`.
    pub fn temp_file(bytes: &[u8]) -> File {
        let mut f = vmm_tempfile();
        f.write_all(bytes).unwrap();
        f
    }

    /// Guest memory of `size` bytes at 0.
    pub fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{mem, temp_file};
    use super::*;

    #[test]
    fn short_or_foreign_files_are_not_kernels() {
        let layout = MemoryLayout::new(64 << 20);
        let m = mem(64 << 20);
        let mut f = temp_file(b"MZ");
        assert!(matches!(load_linux(&m, &layout, &mut f, None, "", 0), Err(Error::NotAKernel(_))));
        let mut f = temp_file(&[0u8; 4096]);
        assert!(matches!(load_linux(&m, &layout, &mut f, None, "", 0), Err(Error::NotBzImage(_))));
        let mut f = temp_file(b"\x7fELF garbage");
        assert!(matches!(load_linux(&m, &layout, &mut f, None, "", 0), Err(Error::Elf(_))));
    }
}
