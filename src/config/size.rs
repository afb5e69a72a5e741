//! Sizes as people write them in the config: `"64KiB"`, `"10MiB"`, `"1GiB"`,
//! `"512B"`, or a plain number of bytes (`"4096"`). Units are binary
//! (KiB = 1024 bytes); `KB`, `MB` and `GB` are read the same way, as most
//! people mean them for request limits. `format_size` writes the notation
//! back for `portico check`.

/// Units, largest first.
const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1 << 30),
    ("MB", 1 << 20),
    ("KB", 1 << 10),
    ("B", 1),
];

/// Far beyond any sensible request limit; keeps arithmetic safe.
const LARGEST: u64 = 1 << 40;

pub(crate) const SIZE_FIX: &str =
    "write a number of bytes with a unit (B, KiB, MiB, GiB), e.g. \"64KiB\" or \"10MiB\"";

/// Parses a size in bytes; the error says what is wrong with the text.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    let digits_end = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{text}` does not start with a number"));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{digits}` is too large"))?;
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, factor)| *factor)
            .ok_or_else(|| format!("`{unit}` is not a unit"))?
    };
    number
        .checked_mul(factor)
        .filter(|bytes| *bytes <= LARGEST)
        .ok_or_else(|| "it is larger than 1 TiB".to_owned())
}

/// Writes `bytes` back in the largest binary unit that divides it.
pub(crate) fn format_size(bytes: u64) -> String {
    for (name, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{name}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("10 mb"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        assert!(parse_size("").unwrap_err().contains("empty"));
        assert!(parse_size("MiB").unwrap_err().contains("number"));
        assert!(parse_size("10 parsecs").unwrap_err().contains("not a unit"));
        assert!(parse_size("-1").unwrap_err().contains("number"));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("2000GiB").unwrap_err().contains("1 TiB"));
    }

    #[test]
    fn sizes_are_written_back_in_the_largest_unit() {
        assert_eq!(format_size(10 * 1024 * 1024), "10MiB");
        assert_eq!(format_size(65_536), "64KiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(parse_size(&format_size(3 << 30)), Ok(3 << 30));
    }
}
