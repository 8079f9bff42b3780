// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the RFB (VNC) server's view of a client: the version string, the security choice
//! and then the client message stream as the session reads it (arriving in pieces, cut text
//! skipped by length), with pixel formats checked and used to convert a few pixels. A
//! network client is as hostile as a guest.
#![no_main]

use devices::display::rfb::{self, ClientMessage, PixelConverter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The handshake's answers are fuzzed but do not gate the message stream (the fuzzer
    // need not find "RFB 003.008\n" first).
    let Some((version, rest)) = data.split_first_chunk::<12>() else { return };
    let _ = rfb::parse_version(version);
    let Some((&choice, rest)) = rest.split_first() else { return };
    let _ = rfb::check_security_choice(choice, rfb::SECURITY_NONE);
    let _ = rfb::check_security_choice(choice, rfb::SECURITY_VNC_AUTH);
    // The first byte says how the stream arrives: in chunks of 1..=256 bytes.
    let Some((&chunk, stream)) = rest.split_first() else { return };
    let chunk = usize::from(chunk) + 1;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut skip: u64 = 0;
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut piece = piece;
        if skip > 0 {
            let n = piece.len().min(usize::try_from(skip).unwrap_or(usize::MAX));
            skip -= n as u64;
            piece = &piece[n..];
        }
        inbuf.extend_from_slice(piece);
        let mut used = 0;
        loop {
            match rfb::parse_client_message(&inbuf[used..]) {
                Ok(Some((msg, n))) => {
                    assert!(n > 0 && used + n <= inbuf.len(), "message length {n} out of the buffer");
                    used += n;
                    match msg {
                        ClientMessage::SetPixelFormat(pf) => {
                            if pf.check().is_err() {
                                return; // the session disconnects
                            }
                            let conv = PixelConverter::new(pf);
                            out.clear();
                            conv.convert(&[1, 2, 3, 250, 251, 252], &mut out);
                            assert_eq!(out.len(), 2 * pf.bytes_pp());
                        }
                        ClientMessage::CutText { len } => {
                            let here = (inbuf.len() - used).min(len as usize);
                            used += here;
                            skip = u64::from(len) - here as u64;
                            break;
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        inbuf.drain(..used);
        assert!(inbuf.len() < 64 * 1024, "a partial message never needs this much buffering");
    }
});
