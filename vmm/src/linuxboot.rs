// SPDX-License-Identifier: Apache-2.0
//! Linux kernel boot on the PC machine, as QEMU's `-kernel` does it: the VMM prepares a
//! bzImage for the 16-bit boot protocol and puts it in fw_cfg; SeaBIOS runs the option ROM
//! `genroms/linuxboot_dma.bin` (from Debian's `qemu-system-data`), which copies the pieces to
//! the addresses given here with fw_cfg DMA and jumps to the kernel's real-mode setup code.
//!
//! Memory layout ("modern bzImage", Documentation/arch/x86/boot.rst, protocol >= 2.02):
//!
//! | address | what |
//! | --- | --- |
//! | 0x10000 | real-mode setup code (`setup_sects + 1` sectors, at most 32 KiB) |
//! | up to 0x1fe00 | its heap (`heap_end_ptr` 0xfe00), then the ROM's stack below 0x20000 |
//! | 0x20000 | kernel command line |
//! | 0x100000 | protected-mode kernel (the rest of the bzImage) |
//! | top of low RAM, minus [`FIRMWARE_RESERVE`] | initramfs, page-aligned, below `initrd_addr_max` |
//!
//! The ROM may move the initramfs: unless it ends in the page of the kernel's
//! `initrd_addr_max`, the ROM puts it at the top of the RAM the BIOS reports (INT 15h E801)
//! and updates `ramdisk_image` itself.
//!
//! Everything here is pure: [`plan`] checks a kernel image, initramfs size, command line and
//! RAM size and says where everything goes; [`LinuxBootPlan::into_items`] turns it into fw_cfg
//! items. A file that is not a bzImage we can boot this way is a [`LinuxBootError`] naming
//! the field, never a panic.

/// fw_cfg item: where the protected-mode kernel goes (u32).
pub const KEY_KERNEL_ADDR: u16 = 0x07;
/// fw_cfg item: its size (u32).
pub const KEY_KERNEL_SIZE: u16 = 0x08;
/// fw_cfg item: where the initramfs goes (u32).
pub const KEY_INITRD_ADDR: u16 = 0x0a;
/// fw_cfg item: its size (u32).
pub const KEY_INITRD_SIZE: u16 = 0x0b;
/// fw_cfg item: the protected-mode kernel.
pub const KEY_KERNEL_DATA: u16 = 0x11;
/// fw_cfg item: the initramfs.
pub const KEY_INITRD_DATA: u16 = 0x12;
/// fw_cfg item: where the command line goes (u32).
pub const KEY_CMDLINE_ADDR: u16 = 0x13;
/// fw_cfg item: its size including the NUL (u32).
pub const KEY_CMDLINE_SIZE: u16 = 0x14;
/// fw_cfg item: the command line, NUL-terminated.
pub const KEY_CMDLINE_DATA: u16 = 0x15;
/// fw_cfg item: where the real-mode setup code goes (u32).
pub const KEY_SETUP_ADDR: u16 = 0x16;
/// fw_cfg item: its size (u32).
pub const KEY_SETUP_SIZE: u16 = 0x17;
/// fw_cfg item: the real-mode setup code with its header filled in.
pub const KEY_SETUP_DATA: u16 = 0x18;

/// The fw_cfg file name SeaBIOS runs the ROM from.
pub const ROM_FILE: &str = "genroms/linuxboot_dma.bin";
/// Its OpenFirmware path in `bootorder` (the ROM's boot entry, tried first).
pub const ROM_BOOT_PATH: &str = "/rom@genroms/linuxboot_dma.bin";

/// Where the real-mode setup code goes.
pub const SETUP_ADDR: u32 = 0x1_0000;
/// Where the command line goes.
pub const CMDLINE_ADDR: u32 = 0x2_0000;
/// Where the protected-mode kernel goes.
pub const KERNEL_ADDR: u32 = 0x10_0000;
/// Largest real-mode part: it must end before its heap (boot.rst: X to X+0x8000).
pub const MAX_SETUP_SIZE: usize = 0x8000;
/// RAM at the top of low memory left to the BIOS (SeaBIOS keeps its tables and the ACPI
/// tables there); the initramfs goes below it.
pub const FIRMWARE_RESERVE: u64 = 0x10_0000;
/// Longest command line accepted, whatever the kernel allows (our own limit, the direct
/// machine's too).
pub const CMDLINE_LIMIT: usize = arch::x86_64::layout::CMDLINE_MAX - 1;

/// Offsets in the real-mode header (Documentation/arch/x86/boot.rst).
mod hdr {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const VID_MODE: usize = 0x1fa;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    /// End of the fields read or written here.
    pub const END: usize = 0x23c;
}

/// loadflags: the protected-mode code is loaded at 1 MiB.
const LOADED_HIGH: u8 = 0x01;
/// loadflags: `heap_end_ptr` is valid.
const CAN_USE_HEAP: u8 = 0x80;
/// xloadflags: the initramfs may live above 4 GiB.
const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 0x02;
/// Loader type "undefined" (no assigned ID).
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// initrd_addr_max of kernels before protocol 2.03.
const OLD_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;
/// Command line limit of kernels before protocol 2.06.
const OLD_CMDLINE_MAX: usize = 255;
/// "HdrS".
const HDRS: &[u8; 4] = b"HdrS";

/// Why a kernel cannot boot through the BIOS on the PC machine. [`field`](Self::field) names
/// the configuration field to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinuxBootError {
    /// An ELF vmlinux: the option ROM boots only bzImages.
    #[error(
        "an ELF vmlinux cannot boot through the BIOS; pass the bzImage (vmlinuz), or drop --machine pc \
         to boot the vmlinux directly (PVH)"
    )]
    ElfVmlinux,
    /// No x86 boot-protocol header.
    #[error("not a Linux bzImage (no \"HdrS\" boot header at 0x202, or no 0xAA55 boot flag)")]
    NotBzImage,
    /// Boot protocol before 2.02.
    #[error(
        "boot protocol {}.{:02} is too old; booting through the BIOS needs 2.02 or later (Linux 2.4+)",
        .0 >> 8,
        .0 & 0xff
    )]
    OldProtocol(u16),
    /// A zImage (loaded low).
    #[error("a zImage (loadflags without LOADED_HIGH) is not supported; pass a bzImage")]
    NotLoadedHigh,
    /// The file ends inside the real-mode part.
    #[error("setup_sects says the real-mode part is {setup} bytes, but the file has only {file}")]
    Truncated {
        /// Real-mode part's size.
        setup: usize,
        /// File size.
        file: usize,
    },
    /// The real-mode part does not fit below its heap.
    #[error("setup_sects says the real-mode part is {0} bytes; at most 32768 fit below its heap")]
    SetupTooLarge(usize),
    /// Nothing after the real-mode part.
    #[error("the bzImage has no protected-mode kernel after its {0}-byte real-mode part")]
    NoPayload(usize),
    /// The kernel does not fit in low RAM with the firmware's reserve.
    #[error("the protected-mode kernel ({size} bytes at 1 MiB) does not fit below {limit:#x} in low RAM; give the guest more memory")]
    KernelTooBig {
        /// Its size.
        size: u64,
        /// End of usable low RAM.
        limit: u64,
    },
    /// An empty initramfs file.
    #[error("the initramfs file is empty")]
    InitramfsEmpty,
    /// The initramfs does not fit between the kernel and its limit.
    #[error("{size} bytes do not fit between the kernel (ends at {kernel_end:#x}) and {limit:#x} (initrd_addr_max or the top of low RAM); give the guest more memory")]
    InitramfsTooBig {
        /// Its size.
        size: u64,
        /// End of the protected-mode kernel.
        kernel_end: u64,
        /// First byte it may not reach.
        limit: u64,
    },
    /// The command line is longer than the kernel (or we) accept.
    #[error("{len} bytes is too long; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A NUL byte would end the command line early.
    #[error("contains a NUL byte")]
    CmdlineNul,
    /// A `vga=` value the boot protocol has no mode for.
    #[error("'vga={0}' is not normal, ext, ask or a mode number")]
    BadVgaMode(String),
}

impl LinuxBootError {
    /// The configuration field the error is about: "kernel", "initramfs" or "cmdline".
    pub fn field(&self) -> &'static str {
        use LinuxBootError::*;
        match self {
            InitramfsEmpty | InitramfsTooBig { .. } => "initramfs",
            CmdlineTooLong { .. } | CmdlineNul | BadVgaMode(_) => "cmdline",
            _ => "kernel",
        }
    }
}

/// Where everything goes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBootPlan {
    /// The real-mode part with its header filled in (goes to [`SETUP_ADDR`]).
    pub setup: Vec<u8>,
    /// Boot protocol version of the kernel.
    pub protocol: u16,
    /// Size of the protected-mode kernel (the file after `setup`).
    pub kernel_size: u32,
    /// Address and size of the initramfs, if any.
    pub initrd: Option<(u32, u32)>,
    /// The command line with its NUL (goes to [`CMDLINE_ADDR`]).
    pub cmdline: Vec<u8>,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// The video mode a `vga=` parameter asks for (the last one wins, as for other parameters),
/// or `None` without one. The real-mode code, not the kernel, reads it from `vid_mode`.
fn vga_mode(cmdline: &str) -> Result<Option<u16>, LinuxBootError> {
    let Some(v) = cmdline.split_ascii_whitespace().rev().find_map(|w| w.strip_prefix("vga=")) else {
        return Ok(None);
    };
    let mode = match v {
        "normal" => Some(0xffff),
        "ext" => Some(0xfffe),
        "ask" => Some(0xfffd),
        _ => match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u16::from_str_radix(hex, 16).ok(),
            None => v.parse::<u16>().ok(),
        },
    };
    mode.map(Some).ok_or_else(|| LinuxBootError::BadVgaMode(v.to_string()))
}

/// Checks `kernel` (the whole bzImage file), the initramfs size, the command line and the RAM
/// below the PCI hole (`low_ram`, bytes from address 0), and fills in the real-mode header.
pub fn plan(
    kernel: &[u8],
    initrd_len: Option<u64>,
    cmdline: &str,
    low_ram: u64,
) -> Result<LinuxBootPlan, LinuxBootError> {
    use LinuxBootError::*;
    if kernel.starts_with(b"\x7fELF") {
        return Err(ElfVmlinux);
    }
    if kernel.len() < hdr::END
        || &kernel[hdr::HEADER..hdr::HEADER + 4] != HDRS
        || u16_at(kernel, hdr::BOOT_FLAG) != 0xaa55
    {
        return Err(NotBzImage);
    }
    let protocol = u16_at(kernel, hdr::VERSION);
    if protocol < 0x0202 {
        return Err(OldProtocol(protocol));
    }
    if kernel[hdr::LOADFLAGS] & LOADED_HIGH == 0 {
        return Err(NotLoadedHigh);
    }
    let sects = match kernel[hdr::SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_size = (sects + 1) * 512;
    if setup_size > MAX_SETUP_SIZE {
        return Err(SetupTooLarge(setup_size));
    }
    if setup_size > kernel.len() {
        return Err(Truncated { setup: setup_size, file: kernel.len() });
    }
    if setup_size == kernel.len() {
        return Err(NoPayload(setup_size));
    }
    let payload = (kernel.len() - setup_size) as u64;

    // Low RAM the kernel and initramfs may use: below the firmware's reserve and 4 GiB.
    let usable_end = low_ram.min(1 << 32).saturating_sub(FIRMWARE_RESERVE);
    let kernel_end = u64::from(KERNEL_ADDR) + payload;
    if kernel_end > usable_end {
        return Err(KernelTooBig { size: payload, limit: usable_end });
    }

    // Command line.
    if cmdline.as_bytes().contains(&0) {
        return Err(CmdlineNul);
    }
    let kernel_max = if protocol >= 0x0206 {
        usize::try_from(u32_at(kernel, hdr::CMDLINE_SIZE)).unwrap_or(usize::MAX)
    } else {
        OLD_CMDLINE_MAX
    };
    let max = kernel_max.min(CMDLINE_LIMIT);
    if cmdline.len() > max {
        return Err(CmdlineTooLong { len: cmdline.len(), max });
    }
    let vid_mode = vga_mode(cmdline)?;

    // Initramfs: page-aligned, as high as the kernel and the RAM allow.
    let initrd = match initrd_len {
        None => None,
        Some(0) => return Err(InitramfsEmpty),
        Some(size) => {
            let addr_max =
                if protocol >= 0x020c && u16_at(kernel, hdr::XLOADFLAGS) & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
                    u32::MAX
                } else if protocol >= 0x0203 {
                    u32_at(kernel, hdr::INITRD_ADDR_MAX)
                } else {
                    OLD_INITRD_ADDR_MAX
                };
            // Exclusive end.
            let limit = (u64::from(addr_max) + 1).min(usable_end);
            let start_min = kernel_end.next_multiple_of(4096);
            let too_big = InitramfsTooBig { size, kernel_end, limit };
            let addr = limit.checked_sub(size).ok_or(too_big.clone())? & !0xfff;
            if addr < start_min {
                return Err(too_big);
            }
            // Both below 4 GiB: `limit` is.
            Some((addr as u32, size as u32))
        }
    };

    let mut setup = kernel[..setup_size].to_vec();
    setup[hdr::TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    setup[hdr::LOADFLAGS] |= CAN_USE_HEAP;
    put_u16(&mut setup, hdr::HEAP_END_PTR, (CMDLINE_ADDR - SETUP_ADDR - 0x200) as u16);
    put_u32(&mut setup, hdr::CMD_LINE_PTR, CMDLINE_ADDR);
    put_u32(&mut setup, hdr::CODE32_START, KERNEL_ADDR);
    let (image, size) = initrd.unwrap_or((0, 0));
    put_u32(&mut setup, hdr::RAMDISK_IMAGE, image);
    put_u32(&mut setup, hdr::RAMDISK_SIZE, size);
    if let Some(mode) = vid_mode {
        put_u16(&mut setup, hdr::VID_MODE, mode);
    }
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    Ok(LinuxBootPlan { setup, protocol, kernel_size: payload as u32, initrd, cmdline: line })
}

impl LinuxBootPlan {
    /// The fw_cfg items the option ROM reads. `kernel` is the file [`plan`] checked (its
    /// real-mode part is dropped in place); `initrd` must have the length it was planned with.
    pub fn into_items(self, mut kernel: Vec<u8>, initrd: Option<Vec<u8>>) -> Vec<(u16, Vec<u8>)> {
        let le = |v: u32| v.to_le_bytes().to_vec();
        kernel.drain(..self.setup.len().min(kernel.len()));
        let (initrd_addr, initrd_size) = self.initrd.unwrap_or((0, 0));
        let mut initrd = initrd.unwrap_or_default();
        // Never more than planned (the plan's size is what the header and ROM use).
        initrd.truncate(initrd_size as usize);
        vec![
            (KEY_SETUP_ADDR, le(SETUP_ADDR)),
            (KEY_SETUP_SIZE, le(self.setup.len() as u32)),
            (KEY_SETUP_DATA, self.setup),
            (KEY_KERNEL_ADDR, le(KERNEL_ADDR)),
            (KEY_KERNEL_SIZE, le(self.kernel_size)),
            (KEY_KERNEL_DATA, kernel),
            (KEY_INITRD_ADDR, le(initrd_addr)),
            (KEY_INITRD_SIZE, le(initrd_size)),
            (KEY_INITRD_DATA, initrd),
            (KEY_CMDLINE_ADDR, le(CMDLINE_ADDR)),
            (KEY_CMDLINE_SIZE, le(self.cmdline.len() as u32)),
            (KEY_CMDLINE_DATA, self.cmdline),
        ]
    }
}

/// Checks the option ROM image: 0x55 0xAA, a size byte that matches, at most 64 KiB.
pub fn check_rom(rom: &[u8]) -> Result<(), String> {
    if rom.len() < 512 || rom[0] != 0x55 || rom[1] != 0xaa {
        return Err("is not an option ROM (no 0x55 0xAA signature)".into());
    }
    let declared = usize::from(rom[2]) * 512;
    if declared == 0 || declared > rom.len() || rom.len() > 0x1_0000 {
        return Err(format!("is not an option ROM ({} bytes, {declared} declared in its header)", rom.len()));
    }
    Ok(())
}

#[cfg(test)]
/// A bzImage: `sects` setup sectors with a header, then a payload of `payload` bytes.
pub(crate) fn test_bzimage(version: u16, sects: u8, payload: usize) -> Vec<u8> {
    let setup = (usize::from(if sects == 0 { 4 } else { sects }) + 1) * 512;
    let mut k = vec![0u8; setup + payload];
    k[hdr::SETUP_SECTS] = sects;
    put_u16(&mut k, hdr::VID_MODE, 0xffff);
    put_u16(&mut k, hdr::BOOT_FLAG, 0xaa55);
    k[hdr::HEADER..hdr::HEADER + 4].copy_from_slice(HDRS);
    put_u16(&mut k, hdr::VERSION, version);
    k[hdr::LOADFLAGS] = LOADED_HIGH;
    put_u32(&mut k, hdr::CODE32_START, 0x10_0000);
    put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0x7fff_ffff);
    put_u32(&mut k, hdr::CMDLINE_SIZE, 2047);
    for (i, b) in k[setup..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    use super::test_bzimage as bzimage;

    fn modern() -> Vec<u8> {
        bzimage(0x020f, 27, 8 << 20)
    }

    #[test]
    fn header_fields_are_filled_in() {
        let k = modern();
        let p = plan(&k, Some(3 * MIB + 5), "console=ttyS0 vga=0x317", 256 * MIB).unwrap();
        let s = &p.setup;
        assert_eq!(s.len(), 28 * 512);
        assert_eq!(p.protocol, 0x020f);
        assert_eq!(s[hdr::TYPE_OF_LOADER], 0xff);
        assert_eq!(s[hdr::LOADFLAGS], LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(u16_at(s, hdr::HEAP_END_PTR), 0xfe00);
        assert_eq!(u32_at(s, hdr::CMD_LINE_PTR), 0x2_0000);
        assert_eq!(u32_at(s, hdr::CODE32_START), 0x10_0000);
        assert_eq!(u16_at(s, hdr::VID_MODE), 0x317);
        let (addr, size) = p.initrd.unwrap();
        assert_eq!((u32_at(s, hdr::RAMDISK_IMAGE), u32_at(s, hdr::RAMDISK_SIZE)), (addr, size));
        assert_eq!(size as u64, 3 * MIB + 5);
        assert_eq!(addr % 4096, 0);
        // As high as possible below the firmware's reserve.
        assert!(u64::from(addr) + u64::from(size) <= 256 * MIB - FIRMWARE_RESERVE);
        assert!(u64::from(addr) + u64::from(size) + 4096 > 256 * MIB - FIRMWARE_RESERVE);
        assert_eq!(p.kernel_size, 8 << 20);
        assert_eq!(p.cmdline, b"console=ttyS0 vga=0x317\0");
        // Everything else is the file's.
        for (i, (a, b)) in s.iter().zip(&k).enumerate() {
            let patched = [
                hdr::TYPE_OF_LOADER..hdr::TYPE_OF_LOADER + 1,
                hdr::LOADFLAGS..hdr::LOADFLAGS + 1,
                hdr::HEAP_END_PTR..hdr::HEAP_END_PTR + 2,
                hdr::CMD_LINE_PTR..hdr::CMD_LINE_PTR + 4,
                hdr::RAMDISK_IMAGE..hdr::RAMDISK_SIZE + 4,
                hdr::VID_MODE..hdr::VID_MODE + 2,
            ];
            if !patched.iter().any(|r| r.contains(&i)) {
                assert_eq!(a, b, "byte {i:#x} changed");
            }
        }
    }

    #[test]
    fn items_carry_the_pieces_at_their_addresses() {
        let k = modern();
        let initrd = vec![0x5a; 10000];
        let p = plan(&k, Some(10000), "console=ttyS0", 64 * MIB).unwrap();
        let setup = p.setup.clone();
        let (iaddr, _) = p.initrd.unwrap();
        let items: std::collections::BTreeMap<u16, Vec<u8>> =
            p.into_items(k.clone(), Some(initrd.clone())).into_iter().collect();
        let u32_item = |key| u32::from_le_bytes(items[&key][..].try_into().unwrap());
        assert_eq!(u32_item(KEY_SETUP_ADDR), 0x1_0000);
        assert_eq!(u32_item(KEY_SETUP_SIZE), 28 * 512);
        assert_eq!(items[&KEY_SETUP_DATA], setup);
        assert_eq!(u32_item(KEY_KERNEL_ADDR), 0x10_0000);
        assert_eq!(u32_item(KEY_KERNEL_SIZE), 8 << 20);
        assert_eq!(items[&KEY_KERNEL_DATA], k[28 * 512..]);
        assert_eq!(u32_item(KEY_INITRD_ADDR), iaddr);
        assert_eq!(u32_item(KEY_INITRD_SIZE), 10000);
        assert_eq!(items[&KEY_INITRD_DATA], initrd);
        assert_eq!(u32_item(KEY_CMDLINE_ADDR), 0x2_0000);
        assert_eq!(u32_item(KEY_CMDLINE_SIZE), 14);
        assert_eq!(items[&KEY_CMDLINE_DATA], b"console=ttyS0\0");
        assert_eq!(items.len(), 12);
    }

    #[test]
    fn no_initramfs_means_zero_ramdisk_fields() {
        let mut k = modern();
        put_u32(&mut k, hdr::RAMDISK_IMAGE, 0x1234_5678);
        put_u32(&mut k, hdr::RAMDISK_SIZE, 99);
        let p = plan(&k, None, "", 64 * MIB).unwrap();
        assert_eq!(p.initrd, None);
        assert_eq!((u32_at(&p.setup, hdr::RAMDISK_IMAGE), u32_at(&p.setup, hdr::RAMDISK_SIZE)), (0, 0));
        assert_eq!(u16_at(&p.setup, hdr::VID_MODE), 0xffff, "no vga= leaves vid_mode alone");
        let items = p.into_items(k, None);
        assert!(items.iter().any(|(key, v)| *key == KEY_INITRD_SIZE && v == &[0, 0, 0, 0]));
        assert!(items.iter().any(|(key, v)| *key == KEY_INITRD_DATA && v.is_empty()));
        assert!(items.iter().any(|(key, v)| *key == KEY_CMDLINE_DATA && v == b"\0"));
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let k = bzimage(0x020f, 0, 4096);
        assert_eq!(plan(&k, None, "", 64 * MIB).unwrap().setup.len(), 5 * 512);
    }

    #[test]
    fn initrd_limit_follows_protocol_and_ram() {
        // initrd_addr_max below the top of RAM: the initramfs ends at that limit.
        let mut k = modern();
        put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0x037f_ffff);
        let (addr, size) = plan(&k, Some(MIB), "", 512 * MIB).unwrap().initrd.unwrap();
        assert!(u64::from(addr) + u64::from(size) <= 0x0380_0000);
        assert_eq!(addr, 0x0370_0000);
        // Protocol 2.02 has no initrd_addr_max: 0x37ffffff applies (the field is not read).
        let mut k = bzimage(0x0202, 4, 4096);
        put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0x0100_0000);
        let (addr, _) = plan(&k, Some(MIB), "", 2048 * MIB).unwrap().initrd.unwrap();
        assert_eq!(addr, 0x37f0_0000);
        // XLF_CAN_BE_LOADED_ABOVE_4G (2.12+): only RAM limits it; low RAM stops at 4 GiB.
        let mut k = modern();
        put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0x0100_0000);
        put_u16(&mut k, hdr::XLOADFLAGS, XLF_CAN_BE_LOADED_ABOVE_4G);
        let (addr, _) = plan(&k, Some(MIB), "", 3072 * MIB).unwrap().initrd.unwrap();
        assert_eq!(u64::from(addr), 3072 * MIB - FIRMWARE_RESERVE - MIB);
        let (addr, _) = plan(&k, Some(MIB), "", 8192 * MIB).unwrap().initrd.unwrap();
        assert_eq!(u64::from(addr), (4096 * MIB) - FIRMWARE_RESERVE - MIB);
    }

    #[test]
    fn hostile_kernel_files_are_errors() {
        use LinuxBootError::*;
        let e = |k: &[u8]| plan(k, None, "", 64 * MIB).unwrap_err();
        assert_eq!(e(b""), NotBzImage);
        assert_eq!(e(b"hello, not a kernel"), NotBzImage);
        assert_eq!(e(&[0u8; 4096]), NotBzImage);
        assert_eq!(e(b"\x7fELF\x02\x01\x01"), ElfVmlinux);
        let mut k = modern();
        put_u16(&mut k, hdr::BOOT_FLAG, 0);
        assert_eq!(e(&k), NotBzImage);
        assert_eq!(e(&modern()[..hdr::END - 1]), NotBzImage);
        assert_eq!(e(&bzimage(0x0201, 4, 4096)), OldProtocol(0x0201));
        assert!(OldProtocol(0x0201).to_string().contains("2.01"));
        let mut k = modern();
        k[hdr::LOADFLAGS] = 0;
        assert_eq!(e(&k), NotLoadedHigh);
        let k = modern();
        assert_eq!(e(&k[..20 * 512]), Truncated { setup: 28 * 512, file: 20 * 512 });
        assert_eq!(e(&k[..28 * 512]), NoPayload(28 * 512));
        let mut k = bzimage(0x020f, 4, 4096);
        k[hdr::SETUP_SECTS] = 64;
        assert_eq!(e(&k), SetupTooLarge(65 * 512));
        k[hdr::SETUP_SECTS] = 255;
        assert_eq!(e(&k), SetupTooLarge(256 * 512));
        // A kernel bigger than low RAM.
        let k = bzimage(0x020f, 4, (62 << 20) + 1);
        assert_eq!(e(&k), KernelTooBig { size: (62 << 20) + 1, limit: 63 * MIB });
        assert!(plan(&k[..k.len() - 1], None, "", 64 * MIB).is_ok(), "exactly fits");
        assert_eq!(e(&k).field(), "kernel");
        // Tiny or no RAM never underflows.
        assert!(matches!(plan(&modern(), None, "", 0), Err(KernelTooBig { .. })));
        assert!(matches!(plan(&modern(), Some(1), "", 1), Err(KernelTooBig { .. })));
    }

    #[test]
    fn initramfs_errors() {
        use LinuxBootError::*;
        let k = modern();
        assert_eq!(plan(&k, Some(0), "", 64 * MIB).unwrap_err(), InitramfsEmpty);
        // 8 MiB kernel at 1 MiB ends at 9 MiB; 64 MiB RAM minus 1 MiB reserve leaves 54 MiB.
        let err = plan(&k, Some(55 * MIB), "", 64 * MIB).unwrap_err();
        assert_eq!(err, InitramfsTooBig { size: 55 * MIB, kernel_end: 9 * MIB, limit: 63 * MIB });
        assert_eq!(err.field(), "initramfs");
        assert!(plan(&k, Some(54 * MIB), "", 64 * MIB).is_ok());
        assert!(matches!(plan(&k, Some(u64::MAX), "", 64 * MIB), Err(InitramfsTooBig { .. })));
        assert!(matches!(plan(&k, Some(5 << 30), "", 8 << 30), Err(InitramfsTooBig { .. })));
        // initrd_addr_max below the kernel's end: nowhere to put it.
        let mut k = modern();
        put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0x008f_ffff);
        assert!(matches!(plan(&k, Some(MIB), "", 64 * MIB), Err(InitramfsTooBig { limit: 0x90_0000, .. })));
        put_u32(&mut k, hdr::INITRD_ADDR_MAX, 0);
        assert!(matches!(plan(&k, Some(1), "", 64 * MIB), Err(InitramfsTooBig { .. })));
    }

    #[test]
    fn cmdline_limits() {
        use LinuxBootError::*;
        let k = modern();
        let long = "x".repeat(2048);
        assert_eq!(plan(&k, None, &long, 64 * MIB).unwrap_err(), CmdlineTooLong { len: 2048, max: 2047 });
        assert!(plan(&k, None, &long[..2047], 64 * MIB).is_ok());
        // The kernel's own cmdline_size (2.06+).
        let mut k = modern();
        put_u32(&mut k, hdr::CMDLINE_SIZE, 10);
        assert_eq!(
            plan(&k, None, "console=ttyS0", 64 * MIB).unwrap_err(),
            CmdlineTooLong { len: 13, max: 10 }
        );
        assert_eq!(plan(&k, None, "console=ttyS0", 64 * MIB).unwrap_err().field(), "cmdline");
        // Before 2.06: 255 bytes, whatever the field says.
        let mut k = bzimage(0x0205, 4, 4096);
        put_u32(&mut k, hdr::CMDLINE_SIZE, 4000);
        assert!(plan(&k, None, &"y".repeat(255), 64 * MIB).is_ok());
        assert_eq!(
            plan(&k, None, &"y".repeat(256), 64 * MIB).unwrap_err(),
            CmdlineTooLong { len: 256, max: 255 }
        );
        assert_eq!(plan(&modern(), None, "a\0b", 64 * MIB).unwrap_err(), CmdlineNul);
    }

    #[test]
    fn vga_parameter() {
        assert_eq!(vga_mode("console=ttyS0"), Ok(None));
        assert_eq!(vga_mode("vga=normal"), Ok(Some(0xffff)));
        assert_eq!(vga_mode("a vga=ext b"), Ok(Some(0xfffe)));
        assert_eq!(vga_mode("vga=ask"), Ok(Some(0xfffd)));
        assert_eq!(vga_mode("vga=791"), Ok(Some(791)));
        assert_eq!(vga_mode("vga=0x31A"), Ok(Some(0x31a)));
        assert_eq!(vga_mode("vga=1 vga=2"), Ok(Some(2)));
        assert_eq!(vga_mode("novga=1 xvga=2"), Ok(None));
        assert_eq!(vga_mode("vga=big"), Err(LinuxBootError::BadVgaMode("big".into())));
        assert_eq!(vga_mode("vga=70000"), Err(LinuxBootError::BadVgaMode("70000".into())));
        assert_eq!(vga_mode("vga="), Err(LinuxBootError::BadVgaMode(String::new())));
        let err = plan(&modern(), None, "vga=big", 64 * MIB).unwrap_err();
        assert_eq!(err.field(), "cmdline");
    }

    #[test]
    fn initrd_longer_than_planned_is_cut() {
        let k = modern();
        let p = plan(&k, Some(100), "", 64 * MIB).unwrap();
        let items = p.into_items(k, Some(vec![1; 200]));
        assert!(items.iter().any(|(key, v)| *key == KEY_INITRD_DATA && v.len() == 100));
    }

    #[test]
    fn option_rom_check() {
        let mut rom = vec![0u8; 1536];
        rom[0] = 0x55;
        rom[1] = 0xaa;
        rom[2] = 3;
        assert_eq!(check_rom(&rom), Ok(()));
        rom[2] = 4;
        assert!(check_rom(&rom).unwrap_err().contains("2048 declared"));
        rom[2] = 0;
        assert!(check_rom(&rom).is_err());
        rom[1] = 0;
        assert!(check_rom(&rom).unwrap_err().contains("0x55 0xAA"));
        assert!(check_rom(&[0x55, 0xaa, 1]).is_err());
        assert!(check_rom(&[]).is_err());
        let mut big = vec![0u8; 0x2_0000];
        big[..3].copy_from_slice(&[0x55, 0xaa, 4]);
        assert!(check_rom(&big).is_err());
    }

    #[test]
    fn debian_kernel_if_cached() {
        // The test host's kernel (tests/testhost/fixtures.sh), when it has been fetched.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/testhost/vmlinuz");
        let Ok(k) = std::fs::read(&path) else { return };
        let p = plan(&k, Some(1 << 20), "console=ttyS0", 256 * MIB).unwrap();
        assert!(p.protocol >= 0x020c, "{:#x}", p.protocol);
        assert_eq!(p.setup.len(), (usize::from(k[hdr::SETUP_SECTS]) + 1) * 512);
        assert!(p.setup.len() <= MAX_SETUP_SIZE);
        assert_eq!(p.kernel_size as usize, k.len() - p.setup.len());
        assert!(p.setup[hdr::LOADFLAGS] & (LOADED_HIGH | CAN_USE_HEAP) == LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(
            plan(&k[..k.len() / 2], None, "", 64 * MIB).map(|p| p.kernel_size as usize),
            Ok(k.len() / 2 - p.setup.len())
        );
    }

    #[test]
    fn debian_rom_passes_if_installed() {
        // The real ROM, when the host has qemu-system-data (skipped otherwise).
        if let Ok(rom) = std::fs::read(crate::pc_config::DEFAULT_LINUXBOOT_ROM) {
            assert_eq!(check_rom(&rom), Ok(()));
        }
    }
}
