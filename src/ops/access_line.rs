//! The access line, written byte by byte instead of through tracing.
//!
//! Going through `tracing::info!` and the fmt layer costs, per request, a
//! span lookup in the registry, a field visitor per field, a `String` per
//! JSON field and the formatting machinery for every value: about a fifth
//! of a proxied request's instructions. The line's shape never changes, so
//! [`write`] appends it to a buffer directly, in exactly the bytes the fmt
//! layer configured in [`super::logging`] writes for the same event
//! ([`emit`], which the tests below compare it with, byte for byte):
//!
//! ```text
//! 2026-12-05T08:37:32.123456Z  INFO request{request_id=…}: portico::access: request method=GET path=/app status=200 latency_ms=0.5 route=/ sub="alice"
//! {"timestamp":"…","level":"INFO","message":"request","method":"GET",…,"target":"portico::access","span":{"request_id":"…","name":"request"},"spans":[{"request_id":"…","name":"request"}]}
//! ```
//!
//! Values are escaped as the fmt layer escapes them: JSON strings by
//! serde_json; in text, `sub` as Rust's `Debug` quotes it and the other
//! values bare, as [`super::logging`]'s plain field formatter writes them.

use std::io::Write as _;
use std::time::SystemTime;

use crate::config::LogFormat;

/// One request's access line.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// Without the query, already cut to length.
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub route: &'a str,
    /// Left out of the line when nobody is signed in.
    pub sub: Option<&'a str>,
}

/// Appends `line`, written at `now`, in `format`, with its newline.
pub fn write(format: LogFormat, line: &AccessLine<'_>, now: SystemTime, out: &mut Vec<u8>) {
    match format {
        LogFormat::Text => text(line, now, out),
        LogFormat::Json => json(line, now, out),
    }
}

/// The same line through `tracing`, inside the caller's `request` span: for
/// any subscriber other than portico's own standard error (tests'
/// captures, a terminal's colours).
pub fn emit(line: &AccessLine<'_>) {
    tracing::info!(
        target: "portico::access",
        method = %line.method,
        path = %line.path,
        status = line.status,
        latency_ms = line.latency_ms,
        route = %line.route,
        sub = line.sub,
        "request"
    );
}

fn text(line: &AccessLine<'_>, now: SystemTime, out: &mut Vec<u8>) {
    timestamp(now, out);
    out.extend_from_slice(b"  INFO request{request_id=");
    out.extend_from_slice(line.request_id.as_bytes());
    out.extend_from_slice(b"}: portico::access: request method=");
    out.extend_from_slice(line.method.as_bytes());
    out.extend_from_slice(b" path=");
    out.extend_from_slice(line.path.as_bytes());
    out.extend_from_slice(b" status=");
    decimal(u64::from(line.status), out);
    out.extend_from_slice(b" latency_ms=");
    debug_f64(line.latency_ms, out);
    out.extend_from_slice(b" route=");
    out.extend_from_slice(line.route.as_bytes());
    if let Some(sub) = line.sub {
        out.extend_from_slice(b" sub=");
        debug_str(sub, out);
    }
    out.push(b'\n');
}

fn json(line: &AccessLine<'_>, now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(now, out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    json_str(line.method, out);
    out.extend_from_slice(b",\"path\":");
    json_str(line.path, out);
    out.extend_from_slice(b",\"status\":");
    decimal(u64::from(line.status), out);
    out.extend_from_slice(b",\"latency_ms\":");
    // serde_json's own number format (and `null` if it is not finite).
    let _ = serde_json::to_writer(&mut *out, &line.latency_ms);
    out.extend_from_slice(b",\"route\":");
    json_str(line.route, out);
    if let Some(sub) = line.sub {
        out.extend_from_slice(b",\"sub\":");
        json_str(sub, out);
    }
    out.extend_from_slice(b",\"target\":\"portico::access\",\"span\":");
    json_span(line.request_id, out);
    out.extend_from_slice(b",\"spans\":[");
    json_span(line.request_id, out);
    out.extend_from_slice(b"]}\n");
}

pub(super) fn json_span(request_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"request_id\":");
    json_str(request_id, out);
    out.extend_from_slice(b",\"name\":\"request\"}");
}

fn json_str(value: &str, out: &mut Vec<u8>) {
    // Writing to a Vec does not fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `value` as `{:?}` writes it: quoted, with quotes, backslashes and
/// control characters escaped (plain printable ASCII copied as it is).
fn debug_str(value: &str, out: &mut Vec<u8>) {
    let plain = value
        .bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// `value` as `{:?}` writes it (tracing records an f64 in text that way).
///
/// Both `Debug` and serde_json's float writer (ryu) write the shortest
/// decimal that reads back as `value`, as a plain decimal between 1e-4 and
/// 1e16; they differ only in how they break a tie between two shortest
/// candidates (std rounds half up, ryu half to even). A tie needs `value`'s
/// exact decimal expansion to be at most 18 digits long, so it has at most
/// 25 binary digits after the point (5^26 alone has 19 digits). A latency
/// almost always has more: those go through ryu, at a fraction of the
/// instructions, and the rest through `Debug` itself.
fn debug_f64(value: f64, out: &mut Vec<u8>) {
    if (1e-4..1e16).contains(&value) && fraction_bits(value) > 25 {
        let _ = serde_json::to_writer(&mut *out, &value);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// How many binary digits after the point a finite, normal `value` has
/// when written out exactly (0 for an integer).
fn fraction_bits(value: f64) -> i64 {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let significand = (bits & ((1 << 52) - 1)) | (1 << 52);
    // value = significand * 2^(biased - 1075)
    let scale = biased - 1075 + i64::from(significand.trailing_zeros());
    (-scale).max(0)
}

fn decimal(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn two_digits(value: u32, out: &mut Vec<u8>) {
    out.push(b'0' + (value / 10 % 10) as u8);
    out.push(b'0' + (value % 10) as u8);
}

/// `now` as tracing-subscriber's default timer writes it: UTC, RFC 3339,
/// microseconds, `Z` (`2026-12-05T08:37:32.123456Z`).
pub(super) fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let (seconds, nanos) = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => (
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let seconds = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-seconds, 0),
                nanos => (-seconds - 1, 1_000_000_000 - nanos),
            }
        }
    };
    let (cached, prefix) = SECOND.get();
    if cached == seconds {
        out.extend_from_slice(&prefix);
    } else {
        let start = out.len();
        date_and_time(seconds, out);
        if let Ok(prefix) = <[u8; 19]>::try_from(&out[start..]) {
            SECOND.set((seconds, prefix));
        }
    }
    out.push(b'.');
    let micros = nanos / 1_000;
    two_digits(micros / 10_000, out);
    two_digits(micros / 100 % 100, out);
    two_digits(micros % 100, out);
    out.push(b'Z');
}

thread_local! {
    /// The second the calling thread last wrote a timestamp in, and its
    /// `YYYY-MM-DDTHH:MM:SS`: lines come many to a second.
    static SECOND: std::cell::Cell<(i64, [u8; 19])> =
        const { std::cell::Cell::new((i64::MIN, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS` of the second `seconds` after the epoch (the year
/// as tracing-subscriber writes one outside 0 to 9999).
fn date_and_time(seconds: i64, out: &mut Vec<u8>) {
    let (year, month, day) = civil_date(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400) as u32;
    if year > 9999 {
        let _ = write!(out, "+{year}");
    } else if year < 0 {
        let _ = write!(out, "{year:05}");
    } else {
        let year = year as u32;
        two_digits(year / 100, out);
        two_digits(year % 100, out);
    }
    out.push(b'-');
    two_digits(month, out);
    out.push(b'-');
    two_digits(day, out);
    out.push(b'T');
    two_digits(of_day / 3600, out);
    out.push(b':');
    two_digits(of_day / 60 % 60, out);
    out.push(b':');
    two_digits(of_day % 60, out);
}

/// The proleptic Gregorian (year, month, day) `days` after 1970-01-01,
/// counted in 400-year eras that start on 1 March (so the leap day ends
/// a year).
fn civil_date(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    // Days from 0000-03-01 to 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "access_line_tests.rs"]
mod tests;
