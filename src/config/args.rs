//! Argument templates: profile arguments that depend on the run's limits, such as a
//! JVM heap sized from the memory limit (`-Xmx{memory_mib*3/4}m`). A placeholder is
//! `{NAME}` or `{NAME*N/D}`; an argument whose limit is not set is left out, so a
//! profile can carry the flag without forcing a limit.

use super::limits::{Limits, Unit, TABLE};

/// The suffixes a placeholder may put after a limit's key, by unit, with the divisor
/// that turns the raw value (microseconds, bytes, a count) into the one named.
fn forms(unit: Unit) -> &'static [(&'static str, u64)] {
    match unit {
        Unit::Duration => &[("_s", 1_000_000), ("_ms", 1_000)],
        Unit::Size => &[("_bytes", 1), ("_kib", 1 << 10), ("_mib", 1 << 20)],
        Unit::Count => &[("", 1)],
    }
}

/// Every name a placeholder may use, drawn from the limits table: `memory_mib`,
/// `cpu_time_s`, `processes`, …
pub fn names() -> Vec<String> {
    TABLE
        .iter()
        .flat_map(|s| {
            forms(s.unit)
                .iter()
                .map(move |(f, _)| format!("{}{f}", s.key))
        })
        .collect()
}

fn value(name: &str, l: &Limits) -> Option<u64> {
    TABLE.iter().find_map(|spec| {
        let rest = name.strip_prefix(spec.key)?;
        let (_, div) = forms(spec.unit).iter().find(|(f, _)| *f == rest)?;
        let raw = l.get(spec.limit)?;
        // Whole seconds round down, but never to 0: a 500 ms limit is not "no time".
        Some(match spec.unit {
            Unit::Duration if *div == 1_000_000 => (raw / div).max(1),
            _ => raw / div,
        })
    })
}

enum Piece<'a> {
    Text(&'a str),
    Value { name: &'a str, mul: u64, div: u64 },
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push(Piece::Text(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("`{template}`: a `{{` without its `}}`"))?
            + open;
        let inner = &rest[open + 1..close];
        let (name, scale) = match inner.split_once('*') {
            Some((n, s)) => (n.trim(), Some(s.trim())),
            None => (inner.trim(), None),
        };
        let known = names();
        if !known.iter().any(|n| n == name) {
            return Err(format!(
                "`{{{inner}}}`: unknown value `{name}`; use one of {}",
                known.join(", ")
            ));
        }
        let (mul, div) = match scale {
            None => (1, 1),
            Some(s) => {
                let (m, d) = s.split_once('/').unwrap_or((s, "1"));
                match (m.trim().parse::<u64>(), d.trim().parse::<u64>()) {
                    (Ok(m), Ok(d)) if d > 0 => (m, d),
                    _ => {
                        return Err(format!(
                            "`{{{inner}}}`: expected `{name}*N/D` with whole numbers, D > 0"
                        ))
                    }
                }
            }
        };
        out.push(Piece::Value { name, mul, div });
        rest = &rest[close + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Checks a template's placeholders (for located profile errors).
pub fn check(template: &str) -> Result<(), String> {
    pieces(template).map(|_| ())
}

/// The argument for these limits, or None when it names a limit that is not set.
pub fn expand(template: &str, limits: &Limits) -> Option<String> {
    let mut out = String::new();
    for piece in pieces(template).ok()? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value { name, mul, div } => {
                let v = value(name, limits)?;
                out.push_str(&(v.saturating_mul(mul) / div).to_string());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expands_or_drops() {
        let l = Limits {
            memory: Some(256 << 20),
            cpu_time: Some(Duration::from_millis(1500)),
            ..Default::default()
        };
        assert_eq!(
            expand("-Xmx{memory_mib*3/4}m", &l).as_deref(),
            Some("-Xmx192m")
        );
        assert_eq!(
            expand("-XX:MaxRAM={memory_bytes}", &l).as_deref(),
            Some("-XX:MaxRAM=268435456")
        );
        assert_eq!(expand("--cpu={cpu_time_s}", &l).as_deref(), Some("--cpu=1"));
        assert_eq!(expand("-Xss{stack_mib}m", &l), None);
        assert_eq!(
            expand("-XX:+UseSerialGC", &l).as_deref(),
            Some("-XX:+UseSerialGC")
        );
        assert!(check("{memroy_mib}")
            .unwrap_err()
            .contains("unknown value `memroy_mib`"));
        assert!(check("{memory_mib*3/0}").is_err());
        assert!(check("-Xmx{memory_mib").is_err());
    }
}
