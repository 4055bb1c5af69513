//! Argument templates: profile arguments that depend on the run's limits, such as a
//! JVM heap sized from the memory limit (`-Xmx{memory_mib*3/4}m`). A placeholder is
//! `{NAME}` or `{NAME*N/D}`; an argument whose limit is not set is left out, so a
//! profile can carry the flag without forcing a limit.

use crate::config::policy::Limits;

/// The values a placeholder may name.
pub const NAMES: &[&str] = &[
    "memory_bytes",
    "memory_kib",
    "memory_mib",
    "cpu_time_s",
    "cpu_time_ms",
    "wall_time_s",
    "wall_time_ms",
    "processes",
    "stack_mib",
    "open_files",
];

fn value(name: &str, l: &Limits) -> Option<u64> {
    match name {
        "memory_bytes" => l.memory,
        "memory_kib" => l.memory.map(|m| m >> 10),
        "memory_mib" => l.memory.map(|m| m >> 20),
        "cpu_time_s" => l.cpu_time.map(|d| d.as_secs().max(1)),
        "cpu_time_ms" => l.cpu_time.map(|d| d.as_millis() as u64),
        "wall_time_s" => l.wall_time.map(|d| d.as_secs().max(1)),
        "wall_time_ms" => l.wall_time.map(|d| d.as_millis() as u64),
        "processes" => l.processes,
        "stack_mib" => l.stack.map(|s| s >> 20),
        "open_files" => l.open_files,
        _ => None,
    }
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
        if !NAMES.contains(&name) {
            return Err(format!(
                "`{{{inner}}}`: unknown value `{name}`; use one of {}",
                NAMES.join(", ")
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
