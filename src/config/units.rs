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

/// Parses a byte size with a mandatory unit: `B`, `KiB`, `MiB`, `GiB`, `TiB` (and the
/// decimal `KB`, `MB`, `GB`, `TB`, and `K`, `M`, `G` as binary shorthands).
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = |reason: &str| UnitError {
        input: input.to_string(),
        what: "size".into(),
        reason: reason.to_string(),
    };
    let (value, unit) = split_number(input)
        .ok_or_else(|| err("expected a number followed by a unit, e.g. `64MiB`"))?;
    let scale: f64 = match unit {
        "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "" => return Err(err("a unit is required (B, KiB, MiB, GiB), e.g. `256MiB`")),
        _ => return Err(err("unknown unit; use B, KiB, MiB, GiB or TiB")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > (1u64 << 60) as f64 {
        return Err(err("must be at least 1 byte and at most 1 EiB"));
    }
    Ok(bytes.round() as u64)
}

/// Formats a byte count the way `parse_size` reads it back.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, scale) in UNITS {
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{}", self.0 / scale, name);
            }
        }
        write!(f, "{}B", self.0)
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
        assert!(parse_size("64").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("0B").is_err());
    }

    #[test]
    fn round_trip() {
        assert_eq!(Size(256 << 20).to_string(), "256MiB");
        assert_eq!(Size(1000).to_string(), "1000B");
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Dur(Duration::from_secs(5)).to_string(), "5s");
    }
}
