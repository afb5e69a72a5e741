//! HTTP/1.1 on the wire, for the upstream client: the request head portico
//! writes, the response head it reads, and the response body's framing
//! (RFC 9112 §6.3), decoded without any I/O of its own so that it can be
//! tested byte by byte.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::headers::is_hop_by_hop;

/// Most header lines a response head may have.
const MAX_HEADERS: usize = 128;
/// Largest response head (status line, headers and the empty line that
/// ends them, CRLFs counted) accepted: a head of exactly this many bytes
/// passes, one byte more is refused. Each interim (1xx) head is held to it
/// on its own.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (with extensions, without its CRLF) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer section accepted after a chunked body: every
/// trailer line with its CRLF and the final empty line (they are not passed
/// on). A section of exactly this many bytes passes, one more is refused.
pub const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response head: {0}")]
    Head(String),
    #[error("conflicting or invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("the upstream switched protocols unasked")]
    Upgrade,
    #[error("trailers larger than {MAX_TRAILERS} bytes")]
    TrailersTooLarge,
}

/// Writes the request head: request line in origin-form (`target` is the
/// upstream's base path and the request's path and query), then `headers` as
/// given (cleaned of hop-by-hop headers, carrying the upstream's `Host`), and
/// `Transfer-Encoding: chunked` for a body of unknown length.
pub fn write_request_head<'h>(
    out: &mut Vec<u8>,
    method: &Method,
    target: (&str, &str),
    headers: impl IntoIterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    chunked: bool,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.0.as_bytes());
    out.extend_from_slice(target.1.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        header_line(out, name.as_str(), value);
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn header_line(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One chunk of a chunked request body, framed.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 20);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked request body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// Parses a final response head from the front of `buf`, removing it.
/// `Ok(None)`: more bytes are needed. Interim (1xx) responses are skipped,
/// except a 101 to a request that asked to switch protocols (`upgrade`):
/// that is the final head, with no body, and what follows it on the
/// connection is the new protocol. A 101 nobody asked for is an error.
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Option<Head>, WireError> {
    loop {
        let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
                return Err(WireError::HeadTooLarge)
            }
            Ok(httparse::Status::Complete(length)) => length,
            // MAX_HEAD bytes and still no end: the head is longer.
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(WireError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Head(format!("more than {MAX_HEADERS} headers")))
            }
            Err(error) => return Err(WireError::Head(error.to_string())),
        };
        let code = response.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Head(format!("status {code}")))?;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        if switching && !upgrade {
            return Err(WireError::Upgrade);
        }
        if status.is_informational() && !switching {
            buf.advance(length);
            continue;
        }
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // One pass over the names: what the framing needs is noted as it
        // goes by, and hop-by-hop headers are left out of the map (nothing
        // to remove later). Values are slices of the head, kept, not copied.
        let base = buf.as_ptr() as usize;
        let mut wire = WireHeaders::default();
        let mut spans = Vec::with_capacity(response.headers.len());
        for header in response.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| WireError::Head(format!("header name {:?}", header.name)))?;
            if name == CONNECTION {
                wire.connection(header.value);
                continue;
            }
            if name == TRANSFER_ENCODING {
                wire.transfer_encoding(header.value);
                continue;
            }
            if name == CONTENT_LENGTH {
                wire.content_length(header.value);
            } else if is_hop_by_hop(&name) {
                continue;
            }
            let start = header.value.as_ptr() as usize - base;
            spans.push((name, start, start + header.value.len()));
        }
        let head = buf.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        for (name, start, end) in spans {
            // Transfer-Encoding overrides Content-Length, which then goes:
            // the client gets the decoded body framed as hyper chooses.
            if wire.chunked.is_some() && name == CONTENT_LENGTH {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| WireError::Head(format!("value of {name}")))?;
            headers.append(name, value);
        }
        for name in &wire.named {
            headers.remove(name);
        }
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is to
        // be treated as if its framing were faulty (hyper refuses it too;
        // the differential test found portico reading it as chunked).
        if version == Version::HTTP_10 && wire.chunked.is_some() {
            return Err(WireError::Head(
                "Transfer-Encoding in an HTTP/1.0 response".into(),
            ));
        }
        let (framing, keep_alive) = if switching {
            (Framing::Empty, false)
        } else {
            wire.framing(status, method)?
        };
        return Ok(Some(Head {
            status,
            headers,
            framing,
            keep_alive: keep_alive && version == Version::HTTP_11 && !wire.close,
        }));
    }
}

/// What a response head says about its own framing and connection.
#[derive(Default)]
struct WireHeaders {
    /// `Connection: close`.
    close: bool,
    /// Other headers `Connection` names (hop-by-hop too).
    named: Vec<HeaderName>,
    /// Transfer-Encoding was sent: whether its last coding is chunked.
    chunked: Option<bool>,
    /// Content-Length, when one was sent and every value agrees.
    length: Option<u64>,
    /// A Content-Length was sent that is invalid or disagrees.
    bad_length: bool,
}

impl WireHeaders {
    fn connection(&mut self, value: &[u8]) {
        for token in value.split(|byte| *byte == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                if let Ok(name) = HeaderName::from_bytes(token) {
                    self.named.push(name);
                }
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        let last = value
            .split(|byte| *byte == b',')
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        match last {
            Some(coding) => self.chunked = Some(coding.eq_ignore_ascii_case(b"chunked")),
            None => {
                self.chunked.get_or_insert(false);
            }
        }
    }

    fn content_length(&mut self, value: &[u8]) {
        for part in value.split(|byte| *byte == b',').map(<[u8]>::trim_ascii) {
            let parsed =
                (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                    .flatten();
            match (parsed, self.length) {
                (Some(parsed), None) if !self.bad_length => self.length = Some(parsed),
                (Some(parsed), Some(seen)) if parsed == seen => {}
                _ => self.bad_length = true,
            }
        }
    }

    /// RFC 9112 §6.3, and whether the framing leaves the connection usable.
    fn framing(&self, status: StatusCode, method: &Method) -> Result<(Framing, bool), WireError> {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Empty, true));
        }
        if let Some(chunked) = self.chunked {
            let had_length = self.length.is_some() || self.bad_length;
            return Ok(if chunked {
                (Framing::Chunked, !had_length)
            } else {
                (Framing::UntilClose, false)
            });
        }
        if self.bad_length {
            return Err(WireError::ContentLength);
        }
        Ok(match self.length {
            Some(0) => (Framing::Empty, true),
            Some(length) => (Framing::Length(length), true),
            None => (Framing::UntilClose, false),
        })
    }
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    Done,
}

/// What the decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(length) => Decoder::Length(length),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    /// Takes the next piece of body from `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::Done),
                Decoder::Length(0) => {
                    *self = Decoder::Done;
                }
                Decoder::Length(remaining) | Decoder::ChunkData(remaining) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = remaining.min(buf.len() as u64);
                    let left = remaining - take;
                    *self = match *self {
                        Decoder::Length(_) => Decoder::Length(left),
                        _ if left == 0 => Decoder::ChunkEnd,
                        _ => Decoder::ChunkData(left),
                    };
                    // `take` is at most buf.len(), a usize.
                    let take = usize::try_from(take).unwrap_or(buf.len());
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Decoder::Trailers(0)
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("chunk not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers(seen) => {
                    // What is left of the section's budget, less the CRLF
                    // that ends the next line: the longest line that fits.
                    // `seen` never passes MAX_TRAILERS (each line is held
                    // to what is left), and nothing here can wrap.
                    let Some(room) = MAX_TRAILERS
                        .checked_sub(seen)
                        .and_then(|left| left.checked_sub(2))
                    else {
                        return Err(WireError::TrailersTooLarge);
                    };
                    let line = match take_line(buf, room) {
                        Ok(Some(line)) => line,
                        Ok(None) => return Ok(Step::NeedMore),
                        Err(WireError::Chunked("line too long")) => {
                            return Err(WireError::TrailersTooLarge)
                        }
                        Err(error) => return Err(error),
                    };
                    if !line.is_empty() && !is_field_line(&line) {
                        return Err(WireError::Chunked("malformed trailer field"));
                    }
                    *self = if line.is_empty() {
                        Decoder::Done
                    } else {
                        Decoder::Trailers(seen.saturating_add(line.len() + 2))
                    };
                }
            }
        }
    }

    /// The body ended at the connection's close: fine only when delimited so.
    pub fn at_close(&mut self) -> Result<(), WireError> {
        match self {
            Decoder::UntilClose | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(WireError::Chunked(
                "connection closed before the body's end",
            )),
        }
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(remaining) => Some(*remaining),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// A CRLF-terminated line of at most `limit` bytes (without the CRLF) from
/// the front of `buf`, without the CRLF. Exact: a line of `limit` bytes is
/// taken; once `limit + 2` bytes have come without its end, it is too long.
fn take_line(buf: &mut BytesMut, limit: usize) -> Result<Option<BytesMut>, WireError> {
    let window = limit.saturating_add(2);
    match buf.iter().take(window).position(|byte| *byte == b'\n') {
        Some(end) if end > 0 && buf[end - 1] == b'\r' => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end - 1);
            Ok(Some(line))
        }
        Some(_) => Err(WireError::Chunked("bare LF")),
        None if buf.len() >= window => Err(WireError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// A field line (RFC 9110 §5.1, RFC 9112 §5): a token, a colon, a value of
/// visible characters, spaces and tabs. Trailers are not passed on, but one
/// that is not a field is a broken body (as hyper judges it too).
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|byte| *byte == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let tchar = |byte: &u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte);
    !name.is_empty()
        && name.iter().all(tchar)
        && value
            .iter()
            .all(|byte| *byte == b'\t' || (*byte >= 0x20 && *byte != 0x7f))
}

/// The size of a chunk-size line, extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits_end = line
        .iter()
        .position(|byte| !byte.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    let rest = rest.trim_ascii_start();
    if digits.is_empty() || digits.len() > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(WireError::Chunked("bad chunk size"));
    }
    let mut size = 0u64;
    for digit in digits {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => digit - b'A' + 10,
        };
        size = size * 16 + u64::from(value);
    }
    Ok(size)
}

#[cfg(test)]
#[path = "h1_differential_tests.rs"]
mod differential_tests;

#[cfg(test)]
mod tests {
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
        let wire =
            b"5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
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
}
