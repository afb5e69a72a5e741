//! Durations as people write them in the config: `"90s"`, `"15m"`, `"12h"`,
//! `"1d"`, `"500ms"`, combined like `"1h30m"` or `"1h 30m"`, with a fraction
//! like `"1.5h"`, or in words like `"12 hours"` or `"1 hour 30 minutes"`.
//!
//! Small enough not to warrant a dependency, and owning it lets the error say
//! exactly what was wrong with the text. `format_duration` writes the short
//! notation back for `portico check`.

use std::time::Duration;

/// Units from largest to smallest: the short name `format_duration` writes,
/// the other names accepted, and the length.
const UNITS: &[(&str, &[&str], Duration)] = &[
    ("d", &["day", "days"], Duration::from_secs(86_400)),
    (
        "h",
        &["hr", "hrs", "hour", "hours"],
        Duration::from_secs(3_600),
    ),
    (
        "m",
        &["min", "mins", "minute", "minutes"],
        Duration::from_secs(60),
    ),
    (
        "s",
        &["sec", "secs", "second", "seconds"],
        Duration::from_secs(1),
    ),
    (
        "ms",
        &["msec", "msecs", "millisecond", "milliseconds"],
        Duration::from_millis(1),
    ),
];

/// Longer than anything portico waits for; beyond it, time arithmetic
/// elsewhere could overflow.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);
const TOO_LARGE: &str = "it is longer than 100 years";

/// How to write a duration, for error messages.
pub(crate) const DURATION_FIX: &str =
    "write a number with a unit (ms, s, m, h, d, or the words: seconds, minutes, hours, days), \
     e.g. \"90s\", \"15m\", \"1h30m\", \"1.5h\" or \"12 hours\"";

/// The length of one `unit` (any accepted name, any case).
fn unit_length(unit: &str) -> Option<Duration> {
    let unit = unit.to_ascii_lowercase();
    UNITS
        .iter()
        .find(|(short, long, _)| *short == unit || long.contains(&unit.as_str()))
        .map(|(_, _, length)| *length)
}

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
    // Thousandths of a millisecond, so that "1.5ms" is refused exactly.
    let mut total_micros: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let (number, after_number) = rest.split_at(number_end);
        let after_space = after_number.trim_start();
        let unit_end = after_space
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_space.len());
        let (unit, after_unit) = after_space.split_at(unit_end);
        if unit.is_empty() {
            return Err(format!("`{number}` has no unit"));
        }
        let Some(length) = unit_length(unit) else {
            return Err(format!("`{unit}` is not a unit"));
        };
        let part = scaled(number, length.as_micros())?;
        total_micros = total_micros
            .checked_add(part)
            .filter(|total| *total <= LONGEST.as_micros())
            .ok_or_else(|| TOO_LARGE.to_owned())?;
        rest = after_unit.trim_start();
        // "1 hour, 30 minutes" and "1 hour and 30 minutes" read naturally too.
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        rest = rest.strip_prefix("and ").unwrap_or(rest).trim_start();
    }
    if !total_micros.is_multiple_of(1_000) {
        return Err("it is finer than a millisecond".to_owned());
    }
    let total_millis = u64::try_from(total_micros / 1_000).map_err(|_| TOO_LARGE.to_owned())?;
    Ok(Duration::from_millis(total_millis))
}

/// `number` (digits, at most one `.`) times `unit_micros`, exactly.
fn scaled(number: &str, unit_micros: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    if fraction.len() > 9 {
        return Err(format!("`{number}` has too many decimals"));
    }
    let digits = |text: &str| -> Result<u128, String> {
        if text.is_empty() {
            return Ok(0);
        }
        text.parse::<u128>().map_err(|_| TOO_LARGE.to_owned())
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let whole_part = digits(whole)?
        .checked_mul(unit_micros)
        .ok_or_else(|| TOO_LARGE.to_owned())?;
    let fraction_part = digits(fraction)? * unit_micros;
    if !fraction_part.is_multiple_of(scale) {
        return Err("it is finer than a millisecond".to_owned());
    }
    whole_part
        .checked_add(fraction_part / scale)
        .ok_or_else(|| TOO_LARGE.to_owned())
}

/// The shortest notation `parse_duration` reads back as the same duration
/// (whole milliseconds; the parser cannot produce anything finer).
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut remaining = duration.as_millis();
    if remaining == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (name, _, length) in UNITS {
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
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("36501d").is_err());
        assert_eq!(
            parse_duration("5000000000ms"),
            Ok(Duration::from_secs(5_000_000))
        );
    }

    #[test]
    fn fractions_words_and_spaces_are_read_as_people_write_them() {
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(".25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("12 hours"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("90 Minutes"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1 day"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("1 hour 30 minutes"),
            Ok(Duration::from_secs(5_400))
        );
        assert_eq!(
            parse_duration("1 hour, 30 minutes and 15 seconds"),
            Ok(Duration::from_secs(5_415))
        );
        assert_eq!(parse_duration("2 secs"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250 ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn fractions_finer_than_a_millisecond_or_malformed_are_refused() {
        assert_eq!(
            parse_duration("1.5ms"),
            Err("it is finer than a millisecond".to_owned())
        );
        assert_eq!(
            parse_duration("0.0001s"),
            Err("it is finer than a millisecond".to_owned())
        );
        assert_eq!(
            parse_duration("1.2.3h"),
            Err("`1.2.3` is not a number".to_owned())
        );
        assert_eq!(parse_duration(".h"), Err("`.` is not a number".to_owned()));
        assert_eq!(
            parse_duration("12 fortnights"),
            Err("`fortnights` is not a unit".to_owned())
        );
        assert_eq!(parse_duration("1.5"), Err("`1.5` has no unit".to_owned()));
    }

    #[test]
    fn the_fix_shows_every_accepted_form() {
        for example in ["90s", "1h30m", "1.5h", "12 hours"] {
            assert!(DURATION_FIX.contains(example), "{DURATION_FIX}");
            assert!(parse_duration(example).is_ok(), "{example}");
        }
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
