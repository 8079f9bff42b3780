// SPDX-License-Identifier: Apache-2.0
//! The part of a qcow2 header that names other files, read from an open file without opening
//! anything else, for callers that must vet a backing chain before anything follows it (a
//! daemon that allows images only inside its storage pools).
//!
//! The header is hostile input: every length is bounded, every offset checked, all arithmetic
//! checked. What is read (see QEMU's `docs/interop/qcow2.txt`):
//!
//! - bytes 0..4, the magic `QFI\xfb`; 4..8, the version (2 or 3); 20..24, `cluster_bits`
//!   (9 to 21: 512-byte to 2 MiB clusters); the backing file name and the header extensions
//!   must lie in the first cluster;
//! - bytes 8..16 and 16..20, the backing file name's offset and length (at most
//!   [`MAX_BACKING_NAME`] bytes, UTF-8 without NUL bytes, not empty);
//! - version 3 only: the incompatible feature bit 2 (an external data file) at 72..80, the
//!   header length at 100..104 (104 to one cluster) and the header extensions after it: the
//!   backing file format (`0xE2792ACA`) and the external data file name (`0x44415441`).
//!
//! An image with an external data file is refused ([`HeaderError::ExternalDataFile`]): its
//! guest data lives in another file the header names. Version 2 images have no header
//! extensions as this crate's qcow2 reader (imago) sees them, so their backing format is
//! `None` (probed), as that reader treats it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::{ImageFormat, QCOW2_MAGIC};

/// Longest backing file name a header may give (QEMU's limit).
pub const MAX_BACKING_NAME: u32 = 1023;
/// Header extension type: the backing file's format.
pub const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
/// Header extension type: the name of an external data file.
pub const EXT_DATA_FILE: u32 = 0x4441_5441;
/// The incompatible feature bit of an external data file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Size of the version 2 header (and where version 3's fields start).
const V2_HEADER_LEN: usize = 72;
/// Size of the version 3 header without optional fields.
const V3_HEADER_LEN: usize = 104;
/// Cluster sizes allowed: 512 bytes to 2 MiB, as QEMU.
const CLUSTER_BITS: std::ops::RangeInclusive<u32> = 9..=21;
/// Longest format name shown in an error.
const SHOWN_FORMAT: usize = 64;

/// The backing file a qcow2 header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Backing {
    /// The name as the header stores it: an absolute path, or a path relative to the
    /// directory of the image (as QEMU resolves it). Not empty, at most [`MAX_BACKING_NAME`]
    /// bytes, no NUL byte.
    pub name: String,
    /// The format the backing format extension gives (`raw` or `file`, `qcow2`); `None` when
    /// the header has none, in which case the reader probes the backing file.
    pub format: Option<ImageFormat>,
}

/// A qcow2 header that cannot be vetted. Each message says what is wrong with the header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The file could not be read.
    #[error("cannot read the qcow2 header: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the qcow2 magic.
    #[error("not a qcow2 image (it does not start with the qcow2 magic QFI\\xfb)")]
    NotQcow2,
    /// The file ends before a part of the header it needs.
    #[error("the qcow2 header is cut short: {what} needs bytes up to {needed} but the file has {len}")]
    Truncated {
        /// The part of the header.
        what: &'static str,
        /// The end of that part.
        needed: u64,
        /// The file's length (or as much as was read).
        len: u64,
    },
    /// A version other than 2 or 3.
    #[error("qcow2 version {0} is not supported (only versions 2 and 3)")]
    Version(u32),
    /// `cluster_bits` outside 9..=21.
    #[error("qcow2 cluster_bits {0} is outside 9..=21 (512-byte to 2 MiB clusters)")]
    ClusterBits(u32),
    /// A version 3 header length shorter than the fixed header or longer than a cluster.
    #[error("qcow2 header_length {length} is outside {V3_HEADER_LEN}..={cluster_size}")]
    HeaderLength {
        /// The header's length field.
        length: u32,
        /// The cluster size.
        cluster_size: u64,
    },
    /// A backing file name longer than [`MAX_BACKING_NAME`].
    #[error("the backing file name is {0} bytes long; at most {MAX_BACKING_NAME} are allowed")]
    BackingNameTooLong(u32),
    /// A backing file name that does not lie within the first cluster.
    #[error("the backing file name at byte {offset} ({len} bytes) lies outside the header's {cluster_size}-byte cluster")]
    BackingNameOutside {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u32,
        /// The cluster size.
        cluster_size: u64,
    },
    /// A backing file name that is empty, contains a NUL byte or is not UTF-8.
    #[error("the backing file name is unusable: {0}")]
    BackingName(&'static str),
    /// A backing format other than `raw`, `file` or `qcow2`.
    #[error("backing file format {0:?} is not supported (raw and qcow2 are)")]
    BackingFormat(String),
    /// Two backing format extensions that disagree.
    #[error("the header gives two different backing file formats, {0:?} and {1:?}")]
    ConflictingBackingFormats(String, String),
    /// The image keeps its data in an external data file.
    #[error(
        "the image keeps its data in an external data file{}; such images are not supported \
         (make a self-contained copy with qemu-img convert -O qcow2)",
        .0.as_ref().map(|n| format!(" ({n:?})")).unwrap_or_default()
    )]
    ExternalDataFile(Option<String>),
    /// A header extension that runs past the first cluster (or lacks an end marker).
    #[error(
        "the qcow2 header extension at byte {offset} runs past the header's {cluster_size}-byte cluster"
    )]
    ExtensionOutside {
        /// Where the extension starts.
        offset: u64,
        /// The cluster size.
        cluster_size: u64,
    },
}

/// Probes the format of an open image: qcow2 if its first bytes are [`QCOW2_MAGIC`], raw
/// otherwise (including files shorter than the magic). Reads at offset 0 without moving the
/// file's position.
pub fn detect_format_of(file: &File) -> io::Result<ImageFormat> {
    let head = read_prefix(file, QCOW2_MAGIC.len())?;
    Ok(if head == QCOW2_MAGIC { ImageFormat::Qcow2 } else { ImageFormat::Raw })
}

/// Reads the backing file name and format from the header of the qcow2 image `file`, or
/// `None` if it has no backing file. Nothing but `file` is opened; reads are positioned
/// (`pread`), so the file's position does not move.
///
/// Refuses, rather than guesses about, anything that would make a qcow2 reader open another
/// file the caller cannot vet: an external data file, an unknown backing format, a backing
/// name that is empty, over-long, outside the header cluster, not UTF-8 or contains NUL.
pub fn qcow2_backing(file: &File) -> Result<Option<Qcow2Backing>, HeaderError> {
    let head = read_prefix(file, V2_HEADER_LEN)?;
    if head.len() < QCOW2_MAGIC.len() || head[..QCOW2_MAGIC.len()] != QCOW2_MAGIC {
        return Err(HeaderError::NotQcow2);
    }
    let need = |what, needed: usize, len: usize| HeaderError::Truncated {
        what,
        needed: needed as u64,
        len: len as u64,
    };
    if head.len() < V2_HEADER_LEN {
        return Err(need("the version 2 header", V2_HEADER_LEN, head.len()));
    }
    let version = be32(&head, 4);
    if version != 2 && version != 3 {
        return Err(HeaderError::Version(version));
    }
    let cluster_bits = be32(&head, 20);
    if !CLUSTER_BITS.contains(&cluster_bits) {
        return Err(HeaderError::ClusterBits(cluster_bits));
    }
    let cluster_size: usize = 1 << cluster_bits;
    // The whole first cluster, or as much of it as the file has (at most 2 MiB).
    let buf = read_prefix(file, cluster_size)?;
    let cluster = cluster_size as u64;

    let backing_offset = be64(&buf, 8);
    let backing_len = be32(&buf, 16);
    let mut backing = None;
    if backing_offset != 0 {
        if backing_len == 0 {
            return Err(HeaderError::BackingName("it is empty (offset set, length 0)"));
        }
        if backing_len > MAX_BACKING_NAME {
            return Err(HeaderError::BackingNameTooLong(backing_len));
        }
        let outside = || HeaderError::BackingNameOutside {
            offset: backing_offset,
            len: backing_len,
            cluster_size: cluster,
        };
        let end = backing_offset.checked_add(u64::from(backing_len)).ok_or_else(outside)?;
        if end > cluster {
            return Err(outside());
        }
        // Both fit in usize: they are at most the cluster size.
        let (start, end) = (usize::try_from(backing_offset).map_err(|_| outside())?, end as usize);
        let name = buf.get(start..end).ok_or_else(|| need("the backing file name", end, buf.len()))?;
        if name.contains(&0) {
            return Err(HeaderError::BackingName("it contains a NUL byte"));
        }
        let name = std::str::from_utf8(name).map_err(|_| HeaderError::BackingName("it is not UTF-8"))?;
        backing = Some(Qcow2Backing { name: name.to_string(), format: None });
    }
    if version == 2 {
        return Ok(backing);
    }

    if buf.len() < V3_HEADER_LEN {
        return Err(need("the version 3 header", V3_HEADER_LEN, buf.len()));
    }
    if be64(&buf, 72) & INCOMPAT_DATA_FILE != 0 {
        return Err(HeaderError::ExternalDataFile(None));
    }
    let header_len = be32(&buf, 100);
    if (header_len as usize) < V3_HEADER_LEN || u64::from(header_len) > cluster {
        return Err(HeaderError::HeaderLength { length: header_len, cluster_size: cluster });
    }
    let format = read_extensions(&buf, header_len as usize, cluster_size)?;
    if let Some(b) = backing.as_mut() {
        b.format = format;
    }
    Ok(backing)
}

/// Walks the header extensions from `start` to the end marker (type 0) within the first
/// cluster (`buf`, as much of it as the file has); returns the backing format.
fn read_extensions(
    buf: &[u8],
    start: usize,
    cluster_size: usize,
) -> Result<Option<ImageFormat>, HeaderError> {
    let outside =
        |at: usize| HeaderError::ExtensionOutside { offset: at as u64, cluster_size: cluster_size as u64 };
    let mut format: Option<String> = None;
    let mut at = start;
    // Every step moves on by at least 8 bytes, and `at` stays within the cluster.
    loop {
        let data_start = at.checked_add(8).filter(|&e| e <= cluster_size).ok_or_else(|| outside(at))?;
        let hdr = buf.get(at..data_start).ok_or(HeaderError::Truncated {
            what: "a header extension",
            needed: data_start as u64,
            len: buf.len() as u64,
        })?;
        let (kind, len) = (be32(hdr, 0), be32(hdr, 4));
        if kind == 0 {
            break;
        }
        let data_end = usize::try_from(len)
            .ok()
            .and_then(|l| data_start.checked_add(l))
            .filter(|&e| e <= cluster_size)
            .ok_or_else(|| outside(at))?;
        let data = buf.get(data_start..data_end).ok_or(HeaderError::Truncated {
            what: "a header extension",
            needed: data_end as u64,
            len: buf.len() as u64,
        })?;
        match kind {
            EXT_BACKING_FORMAT => {
                let name = String::from_utf8_lossy(data).into_owned();
                if let Some(prev) = format.as_ref().filter(|p| **p != name) {
                    return Err(HeaderError::ConflictingBackingFormats(shown(prev), shown(&name)));
                }
                format = Some(name);
            }
            EXT_DATA_FILE => {
                return Err(HeaderError::ExternalDataFile(Some(shown(&String::from_utf8_lossy(data)))));
            }
            _ => {}
        }
        // The data is padded to a multiple of 8; past the cluster is checked at the top.
        at = data_end.checked_next_multiple_of(8).ok_or_else(|| outside(at))?;
    }
    match format.as_deref() {
        None => Ok(None),
        Some("raw" | "file") => Ok(Some(ImageFormat::Raw)),
        Some("qcow2") => Ok(Some(ImageFormat::Qcow2)),
        Some(other) => Err(HeaderError::BackingFormat(shown(other))),
    }
}

/// At most [`SHOWN_FORMAT`] characters of `s`, for an error message.
fn shown(s: &str) -> String {
    s.chars().take(SHOWN_FORMAT).collect()
}

/// The big-endian u32 at `at` (callers have checked that `buf` holds it).
fn be32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

/// The big-endian u64 at `at` (callers have checked that `buf` holds it).
fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

/// The first `max` bytes of `file`, fewer if it is shorter.
fn read_prefix(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let max = max.min(len);
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests;
