use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::ops::logging::{self, Captured};

/// The line as portico's fmt layer writes it: the subscriber `init` builds
/// (minus the terminal check), the span as `front` opens it, [`emit`].
fn through_tracing(format: LogFormat, line: &AccessLine<'_>) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = logging::subscriber(
        format,
        tracing_subscriber::EnvFilter::new("info"),
        move || writer.clone(),
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::error_span!("request", request_id = %line.request_id);
        let _entered = span.enter();
        emit(line);
    });
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn direct(format: LogFormat, line: &AccessLine<'_>, now: SystemTime) -> String {
    let mut out = Vec::new();
    write(format, line, now, &mut out);
    String::from_utf8(out).unwrap()
}

fn stamp(now: SystemTime) -> String {
    let mut out = Vec::new();
    timestamp(now, &mut out);
    String::from_utf8(out).unwrap()
}

/// Where the timestamp sits in a line of `format`.
fn stamp_range(format: LogFormat) -> std::ops::Range<usize> {
    match format {
        LogFormat::Text => 0..27,
        LogFormat::Json => 14..41,
    }
}

/// Both writers give the same bytes for `line`; the fmt layer's timestamp
/// is taken between two of ours, and is then replaced by the first.
fn assert_same(format: LogFormat, line: &AccessLine<'_>) {
    let before = SystemTime::now();
    let theirs = through_tracing(format, line);
    let after = SystemTime::now();
    let range = stamp_range(format);
    let their_stamp = &theirs[range.clone()];
    assert!(
        stamp(before).as_str() <= their_stamp && their_stamp <= stamp(after).as_str(),
        "{} <= {their_stamp} <= {}",
        stamp(before),
        stamp(after)
    );
    let mut theirs = theirs.clone();
    theirs.replace_range(range, &stamp(before));
    assert_eq!(direct(format, line, before), theirs, "{format:?}");
}

const SIGNED_IN: AccessLine<'static> = AccessLine {
    request_id: "4f2a9c0d1e2b3a4c5d6e7f80",
    method: "GET",
    path: "/app/hello",
    status: 200,
    latency_ms: 0.523_417,
    route: "/",
    sub: Some("alice"),
};

#[test]
fn the_line_is_the_bytes_the_fmt_layer_writes() {
    let lines = [
        SIGNED_IN,
        AccessLine {
            request_id: "envoy-1.a:b_c",
            method: "PURGE",
            path: "/nowhere",
            status: 404,
            latency_ms: 0.0,
            route: "unmatched",
            sub: None,
        },
        AccessLine {
            status: 502,
            latency_ms: 30_000.25,
            route: "/api/",
            ..SIGNED_IN
        },
    ];
    for line in &lines {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_same(format, line);
        }
    }
    let text = direct(LogFormat::Text, &SIGNED_IN, SystemTime::UNIX_EPOCH);
    assert_eq!(
        text,
        "1970-01-01T00:00:00.000000Z  INFO request{request_id=4f2a9c0d1e2b3a4c5d6e7f80}: \
         portico::access: request method=GET path=/app/hello status=200 \
         latency_ms=0.523417 route=/ sub=\"alice\"\n"
    );
    let json = direct(LogFormat::Json, &SIGNED_IN, SystemTime::UNIX_EPOCH);
    let object: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(object["span"]["request_id"], SIGNED_IN.request_id);
    assert_eq!(object["spans"][0]["name"], "request");
    assert_eq!(object["sub"], "alice");
    assert_eq!(object["status"], 200);
}

#[test]
fn quotes_backslashes_and_control_characters_are_escaped_as_the_fmt_layer_does() {
    // A path from hyper is never this odd (the URI parser refuses ASCII
    // control characters), but a sub or route may be, and the writer takes
    // any string.
    let odd = "/a\"b\\c{d}é\u{85}\u{9b}[31m\x1b[0m\t\n\r\x7f\u{0}\u{301}";
    let lines = [
        AccessLine {
            path: odd,
            route: odd,
            sub: Some(odd),
            ..SIGNED_IN
        },
        AccessLine {
            sub: Some("\u{301}combining first, \"quoted\" \\ ünïcode"),
            ..SIGNED_IN
        },
        AccessLine {
            sub: Some("plain sub-with.punctuation:'ok'"),
            ..SIGNED_IN
        },
    ];
    for line in &lines {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_same(format, line);
        }
    }
    let json = direct(LogFormat::Json, &lines[0], SystemTime::UNIX_EPOCH);
    let object: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(object["path"], odd);
    assert_eq!(json.lines().count(), 1, "{json}");
}

#[test]
fn latencies_are_numbers_as_each_format_writes_them() {
    for latency_ms in [
        1e-7,
        0.000_099_999_999,
        0.000_1,
        9_999_999_999_999_998.0,
        -0.5,
        -0.0,
        670_832_192_097_764.2,
        300.000_061_035_156_25,
        0.000_01,
        1.0,
        123.456,
        1e15,
        1e16,
        1e20,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
    ] {
        let line = AccessLine {
            latency_ms,
            ..SIGNED_IN
        };
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_same(format, &line);
        }
    }
}

#[test]
fn fraction_bits_count_binary_places() {
    assert_eq!(fraction_bits(1.0), 0);
    assert_eq!(fraction_bits(1e15), 0);
    assert_eq!(fraction_bits(0.5), 1);
    assert_eq!(fraction_bits(300.0 + 2f64.powi(-14)), 14);
    assert_eq!(fraction_bits(0.1), 55);
    // The tie std and ryu break differently: ryu is not asked.
    let tie = 670_832_192_097_764.0 + 0.25;
    assert_eq!(fraction_bits(tie), 2);
    assert_eq!(serde_json::to_string(&tie).unwrap(), "670832192097764.2");
    let mut out = Vec::new();
    debug_f64(tie, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), "670832192097764.3");
}

#[test]
fn timestamps_at_known_instants() {
    let at =
        |seconds: u64, nanos: u32| stamp(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos));
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.000000Z");
    assert_eq!(
        at(1_796_459_852, 123_456_789),
        "2026-12-05T08:37:32.123456Z"
    );
    assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
    assert_eq!(at(253_402_300_800, 0), "+10000-01-01T00:00:00.000000Z");
    let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_nanos(1_000);
    assert_eq!(stamp(before_epoch), "1969-12-31T23:59:59.999999Z");
    let year_zero = SystemTime::UNIX_EPOCH - Duration::from_secs(62_167_219_200);
    assert_eq!(stamp(year_zero), "0000-01-01T00:00:00.000000Z");
    let before_year_zero = year_zero - Duration::from_secs(1);
    assert_eq!(stamp(before_year_zero), "-0001-12-31T23:59:59.000000Z");
    // The second is kept from one line to the next; the fraction is not.
    assert_eq!(at(1_796_459_852, 5_000), "2026-12-05T08:37:32.000005Z");
    assert_eq!(
        at(1_796_459_852, 999_999_999),
        "2026-12-05T08:37:32.999999Z"
    );
    assert_eq!(at(1_796_459_853, 0), "2026-12-05T08:37:33.000000Z");
    assert_eq!(at(253_402_300_800, 0), "+10000-01-01T00:00:00.000000Z");
    assert_eq!(at(253_402_300_800, 1_000), "+10000-01-01T00:00:00.000001Z");
}

proptest! {
    #[test]
    fn timestamps_agree_with_chrono(seconds in -62_135_596_800i64..253_402_300_800, micros in 0u32..1_000_000) {
        let since = Duration::new(seconds.unsigned_abs(), 0);
        let now = if seconds >= 0 {
            SystemTime::UNIX_EPOCH + since
        } else {
            SystemTime::UNIX_EPOCH - since
        } + Duration::from_micros(u64::from(micros));
        let expected = DateTime::<Utc>::from_timestamp(seconds, micros * 1_000)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        prop_assert_eq!(stamp(now), expected);
    }

    #[test]
    fn strings_are_quoted_as_debug_quotes_them(value in any::<String>()) {
        let mut out = Vec::new();
        debug_str(&value, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{value:?}"));
    }

    #[test]
    fn printable_ascii_is_quoted_as_debug_quotes_it(value in "[ -~]{0,40}") {
        let mut out = Vec::new();
        debug_str(&value, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{value:?}"));
    }

    #[test]
    fn floats_are_written_as_debug_writes_them(bits in any::<u64>(), scale in -8i32..20, mantissa in 0.0f64..10.0) {
        for value in [f64::from_bits(bits), mantissa * 10f64.powi(scale)] {
            let mut out = Vec::new();
            debug_f64(value, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{value:?}"));
        }
    }

    #[test]
    fn latencies_as_measured_are_written_as_debug_writes_them(nanos in 0u64..3_600_000_000_000) {
        let value = Duration::from_nanos(nanos).as_secs_f64() * 1000.0;
        let mut out = Vec::new();
        debug_f64(value, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{value:?}"));
    }

    #[test]
    fn decimals_agree_with_to_string(value in any::<u64>()) {
        let mut out = Vec::new();
        decimal(value, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
    }
}
