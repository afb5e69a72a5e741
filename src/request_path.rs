//! One canonical form of a request path: the form routes are judged on and
//! the form the upstream receives, so what was judged is what is served.
//!
//! Servers read paths differently. Frameworks decode `%61` to `a` before
//! routing, many merge `//` into `/`, Tomcat and Spring drop `;` path
//! parameters, some servers take `\` (or `%5C`) for `/`, and a decoded `%2F`
//! splits a segment in two. A gateway that matches its rules on the raw path
//! and forwards the raw path lets `/%61dmin/x` or `//admin/x` past an
//! `/admin` rule. So portico, as Envoy does with `normalize_path` and
//! `merge_slashes` and nginx with its URI normalisation, first brings the
//! path into one form (RFC 3986 §6.2.2):
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`,
//!   RFC 3986 §2.3) are decoded, other escapes get upper-case hex digits;
//! - repeated slashes are merged (a trailing slash stays);
//! - raw non-ASCII characters are percent-encoded (RFC 9112 §3.2 asks for
//!   an ASCII request target).
//!
//! and refuses what cannot be brought into one form safely:
//!
//! - `.` and `..` segments, literal or encoded (browsers resolve them before
//!   sending, so only a crafted request has them);
//! - control characters and spaces, literal or encoded (`%00`…);
//! - malformed escapes (`%zz`), encoded bytes that are not UTF-8 (overlong
//!   forms such as `%C0%AE` are how old decoders were fooled into `.`), and
//!   a double-encoded escape (`%2561`, which a server decoding twice reads as
//!   `a`).
//!
//! Two forms are flagged rather than refused here, because some apps need
//! them and a route may opt in: an encoded slash (`%2F`, `%5C`, or a literal
//! `\`) and `;` path parameters (literal or `%3B`). The route table decides
//! on those ([`crate::proxy::RouteTable::resolve`]), with
//! [`lenient_reading`]: how the most lenient server would read the path.
//!
//! A path that is already canonical (nearly every request) is returned
//! borrowed: no allocation on the hot path.

use std::borrow::Cow;

/// Why a path was refused (each a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path contains '.' or '..' segments")]
    DotSegment,
    #[error("the path contains a control character or a space")]
    ControlCharacter,
    #[error("the path contains a '%' that is not followed by two hex digits")]
    MalformedEscape,
    #[error("the path contains a double-encoded character ('%25' before two hex digits)")]
    DoubleEncoding,
    #[error("the path contains percent-encoded bytes that are not UTF-8")]
    NotUtf8,
    #[error("the path contains an encoded '/' or a '\\' (as '%2F', '%5C' or '\\')")]
    EncodedSlash,
    #[error("the path contains ';' path parameters")]
    PathParameters,
    #[error("the path would reach another route on a server that decodes it")]
    Ambiguous,
}

impl PathRefusal {
    /// The same text, for error pages (`GatewayError::BadRequest`).
    pub fn message(self) -> &'static str {
        match self {
            PathRefusal::NotAbsolute => "the path does not start with '/'",
            PathRefusal::DotSegment => "the path contains '.' or '..' segments",
            PathRefusal::ControlCharacter => "the path contains a control character or a space",
            PathRefusal::MalformedEscape => {
                "the path contains a '%' that is not followed by two hex digits"
            }
            PathRefusal::DoubleEncoding => {
                "the path contains a double-encoded character ('%25' before two hex digits)"
            }
            PathRefusal::NotUtf8 => "the path contains percent-encoded bytes that are not UTF-8",
            PathRefusal::EncodedSlash => {
                "the path contains an encoded '/' or a '\\' (as '%2F', '%5C' or '\\')"
            }
            PathRefusal::PathParameters => "the path contains ';' path parameters",
            PathRefusal::Ambiguous => {
                "the path would reach another route on a server that decodes it"
            }
        }
    }
}

/// A path in canonical form, with the forms a route must opt in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// Borrowed when the request's path already was canonical.
    pub path: Cow<'a, str>,
    /// Holds `%2F`, `%5C` or a literal `\`.
    pub encoded_slashes: bool,
    /// Holds `;` or `%3B`.
    pub path_parameters: bool,
}

impl CanonicalPath<'_> {
    /// Whether the path holds a form only some routes accept.
    pub fn needs_opt_in(&self) -> bool {
        self.encoded_slashes || self.path_parameters
    }
}

/// The output being written: borrowed from the input for as long as it is
/// the same as the input, so a canonical path never allocates.
struct Output<'a> {
    input: &'a str,
    /// Written so far while borrowed: `input[..written]`.
    written: usize,
    owned: Option<String>,
}

impl<'a> Output<'a> {
    fn new(input: &'a str) -> Self {
        Output {
            input,
            written: 0,
            owned: None,
        }
    }

    /// The input's bytes `start..end`, unchanged.
    fn keep(&mut self, start: usize, end: usize) {
        match &mut self.owned {
            None if self.written == start => self.written = end,
            None => {
                let mut owned = String::with_capacity(self.input.len() + 8);
                owned.push_str(&self.input[..self.written]);
                owned.push_str(&self.input[start..end]);
                self.owned = Some(owned);
            }
            Some(owned) => owned.push_str(&self.input[start..end]),
        }
    }

    /// Something else than the input has at this point.
    fn write(&mut self, text: &str) {
        self.owned
            .get_or_insert_with(|| {
                let mut owned = String::with_capacity(self.input.len() + 8);
                owned.push_str(&self.input[..self.written]);
                owned
            })
            .push_str(text);
    }

    fn finish(self) -> Cow<'a, str> {
        match self.owned {
            Some(owned) => Cow::Owned(owned),
            None if self.written == self.input.len() => Cow::Borrowed(self.input),
            None => Cow::Borrowed(&self.input[..self.written]),
        }
    }
}

/// A run of non-ASCII bytes (encoded or literal) that must form UTF-8.
#[derive(Default)]
struct Utf8Check {
    bytes: [u8; 4],
    length: usize,
    needed: usize,
}

impl Utf8Check {
    fn push(&mut self, byte: u8) -> Result<(), PathRefusal> {
        if self.length == 0 {
            self.needed = match byte {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathRefusal::NotUtf8),
            };
        } else if byte & 0xC0 != 0x80 {
            return Err(PathRefusal::NotUtf8);
        }
        self.bytes[self.length] = byte;
        self.length += 1;
        if self.length == self.needed {
            // Overlong forms and surrogates are refused by the standard check.
            std::str::from_utf8(&self.bytes[..self.length]).map_err(|_| PathRefusal::NotUtf8)?;
            self.length = 0;
        }
        Ok(())
    }

    /// An ASCII byte (or the end) comes next: no character may be unfinished.
    fn boundary(&self) -> Result<(), PathRefusal> {
        if self.length == 0 {
            Ok(())
        } else {
            Err(PathRefusal::NotUtf8)
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The escape at `bytes[at..]` ("%" and two hex digits), if it is one.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3) {
        Some([b'%', high, low]) => Some(hex_value(*high)? << 4 | hex_value(*low)?),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn escaped(byte: u8) -> [u8; 3] {
    [
        b'%',
        HEX_UPPER[usize::from(byte >> 4)],
        HEX_UPPER[usize::from(byte & 0x0F)],
    ]
}

/// What one segment held, once decoded: for the dot-segment check.
#[derive(Default)]
struct SegmentShape {
    dots: usize,
    other: bool,
}

impl SegmentShape {
    fn byte(&mut self, decoded: u8) {
        if decoded == b'.' {
            self.dots += 1;
        } else {
            self.other = true;
        }
    }

    fn is_dot_segment(&self) -> bool {
        !self.other && (self.dots == 1 || self.dots == 2)
    }
}

/// Whether `bytes[at..]` starts with two hex digits.
/// Whether two hex digits follow at `at`, each as it stands or as an escape
/// of one (`%25%61%61` decodes to `%aa`: double encoding all the same).
fn hex_pair_at(bytes: &[u8], at: usize) -> bool {
    let Some(after_first) = hex_digit_at(bytes, at) else {
        return false;
    };
    hex_digit_at(bytes, after_first).is_some()
}

/// Where the text after a hex digit at `at` begins, when one stands there
/// (plain, or escaped as `%3x`/`%4x`/`%6x`).
fn hex_digit_at(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at) {
        Some(byte) if hex_value(*byte).is_some() => Some(at + 1),
        Some(b'%') => escape_at(bytes, at)
            .filter(|value| hex_value(*value).is_some())
            .map(|_| at + 3),
        _ => None,
    }
}

/// Bytes that are canonical as they stand wherever they are: printable
/// ASCII but for `%` (an escape to judge), `;` and `\\` (forms a route must
/// opt in to), space and DEL.
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut byte = 0x21;
    while byte < 0x7F {
        plain[byte] = !matches!(byte as u8, b'%' | b';' | b'\\');
        byte += 1;
    }
    plain
};

/// The quick look nearly every request gets: plain bytes, no `//`, and no
/// segment starting with `.` (which might be a dot segment).
fn is_plainly_canonical(bytes: &[u8]) -> bool {
    let mut previous = 0u8;
    for &byte in bytes {
        if !PLAIN[usize::from(byte)] || (previous == b'/' && (byte == b'/' || byte == b'.')) {
            return false;
        }
        previous = byte;
    }
    true
}

/// The canonical form of `path` (the path of a request target, without its
/// query), or why it has none.
pub fn canonicalize(path: &str) -> Result<CanonicalPath<'_>, PathRefusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if is_plainly_canonical(bytes) {
        return Ok(CanonicalPath {
            path: Cow::Borrowed(path),
            encoded_slashes: false,
            path_parameters: false,
        });
    }
    let mut output = Output::new(path);
    let mut encoded_slashes = false;
    let mut path_parameters = false;
    let mut utf8 = Utf8Check::default();
    let mut at = 0;
    // Each turn: a '/' and the segment after it.
    while at < bytes.len() {
        utf8.boundary()?;
        let slash = at;
        at += 1;
        let segment_end = bytes[at..]
            .iter()
            .position(|byte| *byte == b'/')
            .map_or(bytes.len(), |offset| at + offset);
        if at == segment_end && segment_end < bytes.len() {
            // "//": this slash and its empty segment are merged away (not
            // kept, so the output stops borrowing from here).
            continue;
        }
        output.keep(slash, at);
        let mut shape = SegmentShape::default();
        while at < segment_end {
            let byte = bytes[at];
            if byte == b'%' {
                let Some(value) = escape_at(bytes, at) else {
                    return Err(PathRefusal::MalformedEscape);
                };
                if value >= 0x80 {
                    utf8.push(value)?;
                } else {
                    utf8.boundary()?;
                }
                shape.byte(value);
                if is_unreserved(value) {
                    output.write(char::from(value).encode_utf8(&mut [0; 4]));
                } else {
                    match value {
                        0x00..=0x1F | 0x7F => return Err(PathRefusal::ControlCharacter),
                        b'%' if hex_pair_at(bytes, at + 3) => {
                            return Err(PathRefusal::DoubleEncoding)
                        }
                        b'/' | b'\\' => encoded_slashes = true,
                        b';' => path_parameters = true,
                        _ => {}
                    }
                    let upper = escaped(value);
                    if bytes[at..at + 3] == upper {
                        output.keep(at, at + 3);
                    } else {
                        output.write(std::str::from_utf8(&upper).unwrap_or("%"));
                    }
                }
                at += 3;
                continue;
            }
            if byte >= 0x80 {
                // A literal non-ASCII byte (the input is UTF-8): escaped.
                utf8.push(byte)?;
                shape.byte(byte);
                output.write(std::str::from_utf8(&escaped(byte)).unwrap_or("%"));
                at += 1;
                continue;
            }
            utf8.boundary()?;
            shape.byte(byte);
            match byte {
                0x00..=0x20 | 0x7F => return Err(PathRefusal::ControlCharacter),
                b'\\' => encoded_slashes = true,
                b';' => path_parameters = true,
                _ => {}
            }
            output.keep(at, at + 1);
            at += 1;
        }
        if shape.is_dot_segment() {
            return Err(PathRefusal::DotSegment);
        }
    }
    utf8.boundary()?;
    Ok(CanonicalPath {
        path: output.finish(),
        encoded_slashes,
        path_parameters,
    })
}

/// How the most lenient server reads a canonical path: every encoded slash
/// and backslash a `/`, each segment's `;` parameters dropped (as Tomcat
/// and Spring do), slashes merged. Refused when that reading has dot
/// segments (`/..;/admin` is `/../admin` to Tomcat).
pub fn lenient_reading(canonical: &str) -> Result<String, PathRefusal> {
    let mut slashed = String::with_capacity(canonical.len());
    let bytes = canonical.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match escape_at(bytes, at) {
            Some(b'/' | b'\\') => {
                slashed.push('/');
                at += 3;
            }
            Some(b';') => {
                slashed.push(';');
                at += 3;
            }
            _ => {
                let next = bytes[at + 1..]
                    .iter()
                    .position(|byte| *byte == b'%')
                    .map_or(bytes.len(), |offset| at + 1 + offset);
                slashed.push_str(&canonical[at..next]);
                at = next;
            }
        }
    }
    let slashed = slashed.replace('\\', "/");
    let mut reading = String::with_capacity(slashed.len());
    let segments: Vec<&str> = slashed.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        let segment = segment.split(';').next().unwrap_or_default();
        if segment.is_empty() && index != last {
            continue;
        }
        if segment == "." || segment == ".." {
            return Err(PathRefusal::DotSegment);
        }
        reading.push('/');
        reading.push_str(segment);
    }
    if reading.is_empty() {
        reading.push('/');
    }
    Ok(reading)
}

/// The character a route prefix is compared by at `path[at..]`, and where
/// the next one starts: an escape of printable ASCII that has no meaning to
/// the path's structure (`%21` for `!`, `%40` for `@`) counts as that
/// character, as a decoding server reads it; anything else is its byte.
pub fn match_unit(path: &[u8], at: usize) -> (u8, usize) {
    match escape_at(path, at) {
        Some(value)
            if (0x21..=0x7E).contains(&value)
                && !matches!(value, b'%' | b'/' | b'\\' | b';' | b'?' | b'#') =>
        {
            (value, at + 3)
        }
        _ => (path[at], at + 1),
    }
}

/// A route prefix in the form it is matched in: canonical, with escapes of
/// structure-free printable ASCII decoded (see [`match_unit`]). Refused when
/// it holds what a request path could only reach with an opt-in.
pub fn prefix_form(prefix: &str) -> Result<String, PathRefusal> {
    let canonical = canonicalize(prefix)?;
    if canonical.encoded_slashes {
        return Err(PathRefusal::EncodedSlash);
    }
    if canonical.path_parameters {
        return Err(PathRefusal::PathParameters);
    }
    let bytes = canonical.path.as_bytes();
    let mut form = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let (unit, next) = match_unit(bytes, at);
        form.push(unit);
        at = next;
    }
    // Only ASCII was decoded, so the bytes stay UTF-8.
    Ok(String::from_utf8_lossy(&form).into_owned())
}

#[cfg(test)]
#[path = "request_path_tests.rs"]
mod tests;
