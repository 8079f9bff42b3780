// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the vmm's process tests: a usable /dev/kvm, temporary paths and a tiny
//! bzImage-shaped guest.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

pub fn have_kvm() -> bool {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        eprintln!("skipped: no usable /dev/kvm");
    }
    ok
}

pub fn temp_path(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("vmm-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A bzImage (boot protocol 2.15, 64-bit entry) whose code at the entry point is `code`.
pub fn tiny_kernel(code: &[u8]) -> PathBuf {
    let mut img = vec![0u8; 0x600];
    img[0x1f1] = 1; // setup_sects: the protected-mode part starts at file offset 0x400
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    img.extend_from_slice(code); // at 0x600 = load address + 0x200, the 64-bit entry
    img.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt; jmp hlt
    let path = temp_path("bzImage");
    std::fs::File::create(&path).unwrap().write_all(&img).unwrap();
    path
}
