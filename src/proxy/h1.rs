//! HTTP/1.1 on the wire, for the upstream client: the request head portico
//! writes, the response head it reads, and the response body's framing
//! (RFC 9112 §6.3), decoded without any I/O of its own so that it can be
//! tested byte by byte.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::headers::{is_hop_by_hop, is_underscored_framing};

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
        let mut spans = SPANS.take();
        spans.reserve(response.headers.len());
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
            } else if is_hop_by_hop(&name) || is_underscored_framing(name.as_str()) {
                // `Content_Length`, `Transfer_Encoding` and the like are
                // dropped too: a client that reads `_` as `-` would frame
                // the answer differently from portico.
                continue;
            }
            let start = header.value.as_ptr() as usize - base;
            spans.push((name, start, start + header.value.len()));
        }
        let head = buf.split_to(length).freeze();
        // Room for what portico adds to every answer (X-Request-Id, and
        // Cache-Control and Vary on a protected route) without the map
        // growing: a grow rehashes every header (callgrind: 740
        // instructions a request).
        let mut headers = HeaderMap::with_capacity(spans.len() + 3);
        for (name, start, end) in spans.drain(..) {
            // Transfer-Encoding overrides Content-Length, which then goes:
            // the client gets the decoded body framed as hyper chooses.
            if wire.chunked.is_some() && name == CONTENT_LENGTH {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| WireError::Head(format!("value of {name}")))?;
            headers.append(name, value);
        }
        SPANS.set(spans);
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

thread_local! {
    /// [`parse_head`]'s list of the headers it keeps and where their values
    /// lie, kept for the thread's next head instead of allocated anew.
    static SPANS: std::cell::Cell<Vec<(HeaderName, usize, usize)>> =
        const { std::cell::Cell::new(Vec::new()) };
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
#[path = "h1_tests.rs"]
mod tests;
