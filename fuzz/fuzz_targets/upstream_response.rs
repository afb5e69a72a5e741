//! Upstream responses, head and body, as the upstream client decodes them:
//! whatever bytes come, in whatever pieces, the decoder never panics, never
//! hands on more than came, holds a declared length to its word, and refuses
//! a head over its limit.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use portico::proxy::h1::{parse_head, Decoder, Framing, Step, WireError, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let method = if control & 1 == 0 { Method::GET } else { Method::HEAD };
    let upgrade = control & 2 != 0;
    // Pieces of 1 to 64 bytes, as reads might bring them.
    let piece = usize::from(control >> 2) + 1;
    let mut fed = 0;
    let mut buf = BytesMut::new();
    let mut feed = |buf: &mut BytesMut| -> bool {
        if fed >= wire.len() {
            return false;
        }
        let end = (fed + piece).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        true
    };
    let head = loop {
        match parse_head(&mut buf, &method, upgrade) {
            Ok(Some(head)) => break head,
            Ok(None) => {
                assert!(buf.len() < MAX_HEAD, "an unfinished head past the limit");
                if !feed(&mut buf) {
                    return;
                }
            }
            Err(WireError::HeadTooLarge) => {
                assert!(buf.len() >= MAX_HEAD, "refused as too large below the limit");
                return;
            }
            Err(_) => return,
        }
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = 0usize;
    loop {
        match decoder.step(&mut buf) {
            Ok(Step::Data(data)) => {
                assert!(!data.is_empty(), "empty data frames are not handed on");
                body += data.len();
            }
            Ok(Step::Done) => break,
            Ok(Step::NeedMore) => {
                if !feed(&mut buf) {
                    if decoder.at_close().is_err() {
                        return;
                    }
                    break;
                }
            }
            Err(_) => return,
        }
    }
    assert!(body <= wire.len(), "more body than bytes");
    match head.framing {
        Framing::Length(length) => assert_eq!(body as u64, length, "a length kept to its word"),
        Framing::Empty => assert_eq!(body, 0),
        Framing::Chunked | Framing::UntilClose => {}
    }
});
