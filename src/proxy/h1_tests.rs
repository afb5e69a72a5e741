//! Unit tests of the HTTP/1.1 wire format, byte by byte and at the exact
//! limits.
use super::*;
use http::header::HOST;

fn parse(text: &str, method: &Method) -> Result<Option<Head>, WireError> {
    parse_head(&mut BytesMut::from(text), method, false)
}

/// Feeds `wire` one byte at a time and collects the body.
fn decode(framing: Framing, wire: &[u8]) -> Result<(Vec<u8>, bool, usize), WireError> {
    decode_in(framing, wire, 1)
}

/// Feeds `wire` `piece` bytes at a time and collects the body.
fn decode_in(
    framing: Framing,
    wire: &[u8],
    piece: usize,
) -> Result<(Vec<u8>, bool, usize), WireError> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.step(&mut buf)? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::Done => return Ok((body, true, buf.len() + wire.len() - fed)),
            Step::NeedMore if fed < wire.len() => {
                let end = (fed + piece).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
            Step::NeedMore => {
                decoder.at_close()?;
                return Ok((body, false, 0));
            }
        }
    }
}

#[test]
fn the_request_head_is_origin_form_with_host_and_framing() {
    let mut headers = HeaderMap::new();
    headers.insert("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    headers.insert(HOST, HeaderValue::from_static("app:9100"));
    let mut out = Vec::new();
    write_request_head(&mut out, &Method::POST, ("/base", "/p?q=1"), &headers, true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /base/p?q=1 HTTP/1.1\r\nx-a: 1\r\nx-a: 2\r\nhost: app:9100\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let mut out = Vec::new();
    write_request_head(&mut out, &Method::GET, ("", "/"), &headers, false);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("GET / HTTP/1.1\r\n"), "{text}");
    assert!(text.ends_with("host: app:9100\r\n\r\n"), "{text}");
}

#[test]
fn chunks_are_framed_in_hex() {
    assert_eq!(
        chunk(&[b'x'; 26]),
        [b"1a\r\n".as_slice(), &[b'x'; 26], b"\r\n"].concat()
    );
}

#[test]
fn a_head_arriving_in_pieces_is_parsed_once_complete_and_the_rest_kept() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Multi: a\r\nx-multi: b\r\n\r\nhello";
    let mut buf = BytesMut::new();
    for (index, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        match parse_head(&mut buf, &Method::GET, false).unwrap() {
            None => assert!(index < wire.len() - 6, "complete at {index}"),
            Some(head) => {
                assert_eq!(index, wire.len() - 6);
                assert_eq!(head.status, StatusCode::OK);
                assert_eq!(head.framing, Framing::Length(5));
                assert!(head.keep_alive);
                let multi: Vec<_> = head.headers.get_all("x-multi").iter().collect();
                assert_eq!(multi, ["a", "b"]);
                assert_eq!(&buf[..], b"");
                break;
            }
        }
    }
}

#[test]
fn interim_responses_are_skipped_and_upgrades_refused() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    );
    let head = parse_head(&mut buf, &Method::POST, false).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.framing, Framing::Empty);
    assert!(buf.is_empty());
    assert_eq!(
        parse(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            &Method::GET
        )
        .unwrap_err(),
        WireError::Upgrade
    );
}

#[test]
fn an_asked_for_101_is_the_final_head_and_leaves_what_follows() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
           Sec-WebSocket-Accept: abc=\r\n\r\n\x81\x02hi"[..],
    );
    let head = parse_head(&mut buf, &Method::GET, true).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(head.framing, Framing::Empty);
    assert!(!head.keep_alive);
    assert_eq!(head.headers.get("sec-websocket-accept").unwrap(), "abc=");
    assert!(
        head.headers.get("upgrade").is_none(),
        "hop-by-hop, left out"
    );
    assert_eq!(
        &buf[..],
        b"\x81\x02hi",
        "the new protocol's first bytes stay"
    );
    // A 100 before it is still skipped.
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    let head = parse_head(&mut buf, &Method::GET, true).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
}

#[test]
fn framing_follows_rfc_9112() {
    let framing = |text: &str, method: &Method| parse(text, method).unwrap().unwrap().framing;
    let get = &Method::GET;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", get),
        Framing::Length(7)
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            &Method::HEAD
        ),
        Framing::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\n\r\n", get),
        Framing::Empty
    );
    assert_eq!(
        framing(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            get
        ),
        Framing::Empty
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            get
        ),
        Framing::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", get),
        Framing::UntilClose
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", get), Framing::UntilClose);
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", get),
        Framing::Length(3)
    );
    for bad in ["3, 4", "-1", "+3", "", "0x10", "99999999999999999999"] {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert!(parse(&text, get).is_err(), "{bad:?}");
    }
    let both = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        get,
    )
    .unwrap()
    .unwrap();
    assert_eq!(both.framing, Framing::Chunked);
    assert!(!both.headers.contains_key(CONTENT_LENGTH));
    assert!(
        !both.keep_alive,
        "a response framed both ways ends its connection"
    );
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_are_left_out() {
    let head = parse(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
         X-Hop: 1\r\nUpgrade: h2c\r\nTrailer: X-T\r\nProxy-Authenticate: Basic\r\n\
         X-End: 2\r\nContent-Length: 2\r\n\r\n",
        &Method::GET,
    )
    .unwrap()
    .unwrap();
    let mut names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-end"]);
    assert!(head.keep_alive);
    assert_eq!(head.framing, Framing::Length(2));
}

#[test]
fn keep_alive_needs_http_1_1_without_connection_close() {
    let keeps = |text: &str| parse(text, &Method::GET).unwrap().unwrap().keep_alive;
    assert!(keeps("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"));
    assert!(!keeps(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n"
    ));
    assert!(!keeps("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"));
    assert!(
        parse(
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        )
        .is_err(),
        "HTTP/1.0 has no transfer codings: faulty framing"
    );
    assert!(!keeps("HTTP/1.1 200 OK\r\n\r\n"), "read until close");
}

#[test]
fn malformed_and_oversized_heads_are_errors() {
    assert!(parse("HTTP/1.1 2x0 OK\r\n\r\n", &Method::GET).is_err());
    assert!(parse("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", &Method::GET).is_err());
    let many: String = (0..200).map(|index| format!("x-{index}: v\r\n")).collect();
    assert!(parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::GET).is_err());
    let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(
        parse(&huge, &Method::GET).unwrap_err(),
        WireError::HeadTooLarge
    );
    assert!(parse("HTTP/1.1 200 OK\r\nx: 1\r\n", &Method::GET)
        .unwrap()
        .is_none());
}

#[test]
fn lengths_chunks_and_close_delimited_bodies_decode_byte_by_byte() {
    let (body, done, left) = decode(Framing::Length(5), b"helloNEXT").unwrap();
    assert_eq!(
        (body.as_slice(), done, left),
        (b"hello".as_slice(), true, 4)
    );
    let wire = b"5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let (body, done, left) = decode(Framing::Chunked, wire).unwrap();
    assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
    assert!(done);
    assert_eq!(left, 4, "what follows the body stays buffered");
    let (body, done, _) = decode(Framing::UntilClose, b"all of it").unwrap();
    assert_eq!((body.as_slice(), done), (b"all of it".as_slice(), false));
    assert_eq!(decode(Framing::Empty, b"").unwrap().0, b"");
}

#[test]
fn broken_bodies_are_errors() {
    assert!(decode(Framing::Length(5), b"hel").is_err(), "short body");
    assert!(
        decode(Framing::Chunked, b"5\r\nhello\r\n").is_err(),
        "no last chunk"
    );
    assert!(decode(Framing::Chunked, b"5\r\nhelloXX0\r\n\r\n").is_err());
    assert!(decode(Framing::Chunked, b"g\r\n").is_err());
    assert!(decode(Framing::Chunked, b"5\nhello").is_err(), "bare LF");
    assert!(
        decode(Framing::Chunked, b"ffffffffffffffff\r\n").is_err(),
        "size overflow"
    );
    assert!(
        decode(Framing::Chunked, b"0\r\n\x7f-a: 1\r\n\r\n").is_err(),
        "a trailer that is not a field"
    );
    assert!(decode(Framing::Chunked, b"0\r\n folded\r\n\r\n").is_err());
    assert!(decode(Framing::Chunked, b"0\r\nx-t: a\x01b\r\n\r\n").is_err());
    let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE + 10));
    assert!(decode(Framing::Chunked, long.as_bytes()).is_err());
}

/// A head of `total` bytes: status line, one padded header, the end.
fn head_of(total: usize) -> Vec<u8> {
    let start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-pad: ";
    let pad = total - start.len() - 4;
    [start.as_slice(), &vec![b'a'; pad], b"\r\n\r\n"].concat()
}

#[test]
fn the_head_limit_is_exact_however_the_bytes_arrive() {
    let exact = head_of(MAX_HEAD);
    assert_eq!(exact.len(), MAX_HEAD);
    let mut buf = BytesMut::from(&exact[..]);
    assert!(parse_head(&mut buf, &Method::GET, false).unwrap().is_some());
    // One byte more, arriving whole (as one large read brings it) or
    // byte by byte, is refused.
    let over = head_of(MAX_HEAD + 1);
    let mut buf = BytesMut::from(&over[..]);
    assert_eq!(
        parse_head(&mut buf, &Method::GET, false).unwrap_err(),
        WireError::HeadTooLarge
    );
    // Up to twice the limit in one piece, as the old check let through.
    let double = head_of(2 * MAX_HEAD - 100);
    let mut buf = BytesMut::from(&double[..]);
    assert_eq!(
        parse_head(&mut buf, &Method::GET, false).unwrap_err(),
        WireError::HeadTooLarge
    );
    let mut buf = BytesMut::new();
    let mut refused = false;
    for (index, piece) in over.chunks(1000).enumerate() {
        buf.extend_from_slice(piece);
        match parse_head(&mut buf, &Method::GET, false) {
            Ok(None) => assert!(buf.len() < MAX_HEAD, "still waiting at piece {index}"),
            Ok(Some(_)) => panic!("an oversized head was accepted"),
            Err(error) => {
                assert_eq!(error, WireError::HeadTooLarge);
                assert!(buf.len() >= MAX_HEAD, "refused only once it must be");
                refused = true;
                break;
            }
        }
    }
    assert!(refused);
}

/// A trailer section of `total` bytes: one field line and the empty line.
fn trailers_of(total: usize) -> Vec<u8> {
    let line = total - 4;
    let mut wire = b"1\r\nx\r\n0\r\nx-t: ".to_vec();
    wire.extend(std::iter::repeat_n(b'b', line - 5));
    wire.extend_from_slice(b"\r\n\r\n");
    wire
}

#[test]
fn the_trailer_limit_is_exact_and_cannot_wrap() {
    let (body, done, _) = decode_in(Framing::Chunked, &trailers_of(MAX_TRAILERS), 997).unwrap();
    assert_eq!((body.as_slice(), done), (b"x".as_slice(), true));
    assert_eq!(
        decode_in(Framing::Chunked, &trailers_of(MAX_TRAILERS + 1), 997).unwrap_err(),
        WireError::TrailersTooLarge
    );
    // A line as long as the whole budget used to push the count past
    // the limit; the subtraction then wrapped (a panic in a debug build,
    // every later trailer kept in a release build).
    let mut wire = b"1\r\nx\r\n0\r\n".to_vec();
    wire.extend(std::iter::repeat_n(b'c', MAX_TRAILERS));
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&b"x-more: 1\r\n".repeat(1000));
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        decode_in(Framing::Chunked, &wire, 997).unwrap_err(),
        WireError::TrailersTooLarge
    );
    // Many small trailers add up to the same limit.
    let mut wire = b"1\r\nx\r\n0\r\n".to_vec();
    wire.extend_from_slice(&b"x-many: 12345678\r\n".repeat(MAX_TRAILERS / 18 + 1));
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        decode_in(Framing::Chunked, &wire, 997).unwrap_err(),
        WireError::TrailersTooLarge
    );
}

#[test]
fn a_chunk_size_line_at_the_limit_passes_and_one_byte_more_does_not() {
    let line = |length: usize| {
        let mut wire = b"1;".to_vec();
        wire.extend(std::iter::repeat_n(b'e', length - 2));
        wire.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        wire
    };
    assert_eq!(
        decode_in(Framing::Chunked, &line(MAX_CHUNK_LINE), 997)
            .unwrap()
            .0,
        b"x"
    );
    assert!(decode_in(Framing::Chunked, &line(MAX_CHUNK_LINE + 1), 997).is_err());
}
