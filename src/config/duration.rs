//! Durations as people write them in the config: `"90s"`, `"15m"`, `"12h"`,
//! `"1d"`, `"500ms"`, or combined like `"1h30m"`.
//!
//! Small enough not to warrant a dependency, and owning it lets the error say
//! exactly what was wrong with the text. `format_duration` writes the same
//! notation back for `portico check`.

use std::time::Duration;

/// Units from largest to smallest, with their length.
const UNITS: &[(&str, Duration)] = &[
    ("d", Duration::from_secs(86_400)),
    ("h", Duration::from_secs(3_600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
];

/// Longer than anything portico waits for; beyond it, time arithmetic
/// elsewhere could overflow.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);
const TOO_LARGE: &str = "it is longer than 100 years";

/// How to write a duration, for error messages.
pub(crate) const DURATION_FIX: &str =
    "write a number with a unit (ms, s, m, h, d), e.g. \"90s\", \"15m\", \"12h\" or \"1h30m\"";

/// Parses a duration; the error says what is wrong with the text
/// ("`30` has no unit").
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.starts_with('-') {
        return Err("it is negative".to_owned());
    }
    let mut total_millis: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let (digits, after_digits) = rest.split_at(digits_end);
        let unit_end = after_digits
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_digits.len());
        let (unit, after_unit) = after_digits.split_at(unit_end);
        if unit.is_empty() {
            return Err(format!("`{digits}` has no unit"));
        }
        let Some((_, length)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("`{unit}` is not a unit"));
        };
        let count: u128 = digits.parse().map_err(|_| TOO_LARGE.to_owned())?;
        total_millis = count
            .checked_mul(length.as_millis())
            .and_then(|part| total_millis.checked_add(part))
            .filter(|total| *total <= LONGEST.as_millis())
            .ok_or_else(|| TOO_LARGE.to_owned())?;
        rest = after_unit.trim_start();
    }
    let total_millis = u64::try_from(total_millis).map_err(|_| TOO_LARGE.to_owned())?;
    Ok(Duration::from_millis(total_millis))
}

/// The shortest notation `parse_duration` reads back as the same duration
/// (whole milliseconds; the parser cannot produce anything finer).
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut remaining = duration.as_millis();
    if remaining == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (name, length) in UNITS {
        let length = length.as_millis();
        let count = remaining / length;
        if count > 0 {
            text.push_str(&format!("{count}{name}"));
            remaining %= length;
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn single_units_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn combined_units_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s500ms"), Ok(Duration::from_millis(2_500)));
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        assert_eq!(parse_duration(""), Err("it is empty".to_owned()));
        assert_eq!(parse_duration("30"), Err("`30` has no unit".to_owned()));
        assert_eq!(parse_duration("5y"), Err("`y` is not a unit".to_owned()));
        assert_eq!(
            parse_duration("h"),
            Err("expected a number at `h`".to_owned())
        );
        assert!(parse_duration("-5s").is_err_and(|error| error.contains("negative")));
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("36501d").is_err());
        assert_eq!(
            parse_duration("5000000000ms"),
            Ok(Duration::from_secs(5_000_000))
        );
    }

    #[test]
    fn formatted_durations_read_back_the_same() {
        for text in ["0s", "90s", "1h30m", "1d2h3m4s5ms", "500ms", "12h"] {
            let duration = parse_duration(text).expect("parses");
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(43_200)), "12h");
    }
}
