// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the qcow2 header reader a daemon uses to vet backing chains
//! (`block::qcow2_backing`): the input is the image file. Whatever the header says, the
//! reader must not panic, and a backing file it reports must be a usable name (not empty, at
//! most `MAX_BACKING_NAME` bytes, no NUL byte).
#![no_main]

use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmm_sys_util::tempfile::TempFile;

/// The image file, one per process, rewritten for every input.
fn image() -> &'static TempFile {
    static IMAGE: OnceLock<TempFile> = OnceLock::new();
    IMAGE.get_or_init(|| TempFile::new().expect("temporary file"))
}

fuzz_target!(|data: &[u8]| {
    let file = image().as_file();
    file.set_len(0).expect("truncate");
    file.write_all_at(data, 0).expect("write");
    let format = block::detect_format_of(file).expect("probe");
    match block::qcow2_backing(file) {
        Ok(Some(b)) => {
            assert_eq!(format, block::ImageFormat::Qcow2);
            assert!(!b.name.is_empty() && b.name.len() <= block::MAX_BACKING_NAME as usize);
            assert!(!b.name.contains('\0'));
        }
        Ok(None) => assert_eq!(format, block::ImageFormat::Qcow2),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
