//! Quantities a person writes in a profile or on the command line: `2s`, `1500ms`,
//! `256MiB`. Parsed strictly, so `5` (seconds? milliseconds?) is an error that says
//! which units are accepted rather than a guess.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {what}: {reason}")]
/// A quantity that does not parse, with what was expected.
pub struct UnitError {
    /// The text given.
    pub input: String,
    /// What it should have been (`duration`, `size`, `processes limit`).
    pub what: String,
    /// Why it is not one, and what would be.
    pub reason: String,
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let value: f64 = s[..end].parse().ok()?;
    Some((value, s[end..].trim()))
}

/// Parses a duration with a mandatory unit: `ms`, `s`, `m`, `h` (fractions allowed: `1.5s`).
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = |reason: &str| UnitError {
        input: input.to_string(),
        what: "duration".into(),
        reason: reason.to_string(),
    };
    let (value, unit) =
        split_number(input).ok_or_else(|| err("expected a number followed by ms, s, m or h"))?;
    let scale_ms = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "" => return Err(err("a unit is required (ms, s, m or h), e.g. `5s`")),
        _ => return Err(err("unknown unit; use ms, s, m or h")),
    };
    let ms = value * scale_ms;
    if !ms.is_finite() || ms <= 0.0 || ms > 365.0 * 86_400_000.0 {
        return Err(err("must be more than 0 and at most a year"));
    }
    Ok(Duration::from_micros((ms * 1000.0).round() as u64))
}

/// The size units [`parse_size`] reads, in words, for `--help` and error messages.
pub const SIZE_UNITS: &str = "B; KiB, MiB, GiB, TiB (IEC: powers of 1024); kB (or KB), MB, GB, TB \
(SI: powers of 1000); K, M, G, T are KiB, MiB, GiB, TiB (as in docker and -Xmx)";

/// Parses a byte size with a mandatory unit (see [`SIZE_UNITS`]): `64MiB` is 64·2²⁰
/// bytes and `64MB` 64·10⁶, exactly, as IEC 80000-13 and SI have them; `K`, `M`, `G`,
/// `T` alone are the binary ones, as docker, ulimit and the JVM read them. Decimal
/// fractions (`1.5GiB`) are computed exactly and rounded to the nearest byte.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = |reason: String| UnitError {
        input: input.to_string(),
        what: "size".into(),
        reason,
    };
    let s = input.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..end], s[end..].trim());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(err(
            "expected a number followed by a unit, e.g. `64MiB`".into()
        ));
    }
    let scale: u128 = match unit {
        "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "" => {
            return Err(err(format!(
                "a unit is required, e.g. `{number}MiB` ({number}·2²⁰ bytes) or `{number}MB` \
                 ({number}·10⁶); units: {SIZE_UNITS}"
            )))
        }
        _ => {
            let hint = match unit.to_ascii_lowercase().as_str() {
                "k" | "kb" | "kib" => format!(" (did you mean `{number}KiB` or `{number}kB`?)"),
                "m" | "mb" | "mib" => format!(" (did you mean `{number}MiB` or `{number}MB`?)"),
                "g" | "gb" | "gib" => format!(" (did you mean `{number}GiB` or `{number}GB`?)"),
                "t" | "tb" | "tib" => format!(" (did you mean `{number}TiB` or `{number}TB`?)"),
                "b" | "byte" | "bytes" => format!(" (did you mean `{number}B`?)"),
                _ => String::new(),
            };
            return Err(err(format!(
                "unknown unit `{unit}`{hint}; units: {SIZE_UNITS}"
            )));
        }
    };
    // Exact decimal arithmetic: value = (whole·10ⁿ + fraction)·scale / 10ⁿ, with at
    // most 18 fraction digits (more cannot change a byte count below 1 EiB).
    let too_big = || err("must be at least 1 byte and at most 1 EiB".into());
    let fraction = &fraction[..fraction.len().min(18)];
    let digits = |t: &str| -> Result<u128, UnitError> {
        if t.is_empty() {
            return Ok(0);
        }
        if t.len() > 30 {
            return Err(too_big());
        }
        t.parse::<u128>().map_err(|_| too_big())
    };
    let ten_n = 10u128.pow(fraction.len() as u32);
    let scaled = (digits(whole)? * ten_n + digits(fraction)?)
        .checked_mul(scale)
        .ok_or_else(too_big)?;
    let bytes = (scaled + ten_n / 2) / ten_n;
    if !(1..=1 << 60).contains(&bytes) {
        return Err(too_big());
    }
    Ok(bytes as u64)
}

/// Formats a byte count the way `parse_size` reads it back.
pub struct Size(pub u64);

impl fmt::Display for Size {
    /// The exact form with the smallest number: `64MiB`, and `64MB` (not `62500KiB`)
    /// for what was written in SI units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 8] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000),
            ("GB", 1_000_000_000),
            ("MB", 1_000_000),
            ("kB", 1_000),
        ];
        let best = UNITS
            .iter()
            .filter(|(_, scale)| self.0 >= *scale && self.0 % scale == 0)
            .min_by_key(|(_, scale)| self.0 / scale);
        match best {
            Some((name, scale)) => write!(f, "{}{}", self.0 / scale, name),
            None => write!(f, "{}B", self.0),
        }
    }
}

/// Formats a duration the way `parse_duration` reads it back.
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5")
            .unwrap_err()
            .reason
            .contains("unit is required"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        // SI and IEC, both exact.
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("64MiB").unwrap(), 64 * 1024 * 1024);
        assert_eq!(parse_size("64kB").unwrap(), 64_000);
        assert_eq!(parse_size("64KB").unwrap(), 64_000);
        assert_eq!(parse_size("3GB").unwrap(), 3_000_000_000);
        assert_eq!(parse_size("2TiB").unwrap(), 2 << 40);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("0.1MB").unwrap(), 100_000);
        assert_eq!(parse_size(".5KiB").unwrap(), 512);
        // Past f64's 53 bits, still exact.
        assert_eq!(parse_size("1152921504606846975B").unwrap(), (1 << 60) - 1);
        assert!(parse_size("1152921504606846977B").is_err());
        assert!(parse_size("99999999999999999999999999999999999TiB").is_err());
        assert!(parse_size("1.2.3MiB").is_err());
        assert!(parse_size(".").is_err());
        // The ambiguous and the misspelt get the question a person would ask.
        let e = parse_size("64mb").unwrap_err().to_string();
        assert!(e.contains("did you mean `64MiB` or `64MB`?"), "{e}");
        let e = parse_size("64").unwrap_err().to_string();
        assert!(e.contains("`64MiB`") && e.contains("`64MB`"), "{e}");
        let e = parse_size("8gib").unwrap_err().to_string();
        assert!(e.contains("did you mean `8GiB`"), "{e}");
        assert!(parse_size("64").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("0B").is_err());
    }

    #[test]
    fn round_trip() {
        assert_eq!(Size(256 << 20).to_string(), "256MiB");
        assert_eq!(Size(1000).to_string(), "1kB");
        assert_eq!(Size(1001).to_string(), "1001B");
        assert_eq!(Size(64_000_000).to_string(), "64MB");
        assert_eq!(Size(1 << 30).to_string(), "1GiB");
        assert_eq!(Size(1_024_000).to_string(), "1000KiB");
        for n in [1u64, 1000, 1024, 64_000_000, 3 << 29, 999_999, 1 << 60] {
            assert_eq!(parse_size(&Size(n).to_string()).unwrap(), n);
        }
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Dur(Duration::from_secs(5)).to_string(), "5s");
    }
}
