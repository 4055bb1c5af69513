//! The limits table: every limit a run can have, declared once, with its unit, its
//! command-line flag, its profile key (`[limits]`) and the ways it may be enforced.
//! The command line, the profile parser, argument templates, the plan's rlimits,
//! the enforcement decision and the report all read this table; adding a limit is
//! one entry here (and, for a new way of enforcing, the code of that way).

use super::profile::{Profile, ProfileError};
use super::units::{self, Dur, Size, UnitError};
use std::fmt;
use std::time::Duration;

/// What a limit's value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A time span (`2s`, `1500ms`), kept in microseconds.
    Duration,
    /// Bytes (`256MiB`).
    Size,
    /// A plain count, at least 1.
    Count,
}

/// A cgroup controller a limit can be enforced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// `memory` (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    Memory,
    /// `pids` (`pids.max`).
    Pids,
    /// CPU accounting (v2 `cpu.stat`, v1 `cpuacct`).
    Cpu,
}

/// A way a limit may be enforced; a limit lists its ways best first, and a run takes
/// the first one the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// A cgroup controller holding the whole process tree.
    Cgroup(Controller),
    /// The monitor, from outside (a deadline, or sampling /proc).
    Monitor,
    /// The output relay, counting what it copies.
    Relay,
    /// The limit's rlimit, per process.
    Rlimit,
}

/// An `RLIMIT_*` resource as `setrlimit` takes it: glibc declares its own enum type,
/// musl a plain int.
#[cfg(target_env = "gnu")]
pub type Resource = libc::__rlimit_resource_t;
/// An `RLIMIT_*` resource as `setrlimit` takes it: glibc declares its own enum type,
/// musl a plain int.
#[cfg(not(target_env = "gnu"))]
pub type Resource = libc::c_int;

/// The per-process rlimit a limit sets in the program before exec, either as its way
/// of enforcement or alongside a better one.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    /// The `RLIMIT_*` resource.
    pub resource: Resource,
    /// Its name as the kernel's headers spell it (`RLIMIT_NOFILE`).
    pub name: &'static str,
    /// (soft, hard) for the limit's value.
    pub values: fn(u64) -> (u64, u64),
    /// What the report adds when the rlimit is the way (after its name).
    pub as_way: &'static str,
    /// What the report adds when it stands beside a better way (after its name).
    pub beside: &'static str,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Which limit the row is.
    pub limit: Limit,
    /// The profile key, report name and argument-template stem (`cpu_time`).
    pub key: &'static str,
    /// The command-line flag, without dashes (`cpu-time`).
    pub flag: &'static str,
    /// What the value measures.
    pub unit: Unit,
    /// One line for `--help`.
    pub help: &'static str,
    /// The largest value that makes sense (raw), past which the value is refused
    /// rather than wrapped or silently clamped.
    pub max: u64,
    /// How it may be enforced, best first.
    pub ways: &'static [Way],
    /// What the monitor does for it, for the report (after "monitor").
    pub monitor: &'static str,
    /// The rlimit set in the program for it, if any.
    pub rlimit: Option<Rlimit>,
}

/// The same value for soft and hard: without privileges the program can never raise
/// it back.
fn both(v: u64) -> (u64, u64) {
    (v, v)
}

/// RLIMIT_NPROC counts moat's init as well (it is one of the jail's user namespace's
/// processes, Linux >= 5.14 counts per namespace).
fn nproc(v: u64) -> (u64, u64) {
    both(v.saturating_add(1))
}

/// A backstop only: the monitor ends the run at the limit for the whole tree; this
/// catches a single process if the monitor were ever late. Whole seconds plus slack;
/// the hard limit a second later kills what ignores SIGXCPU.
fn cpu_backstop(micros: u64) -> (u64, u64) {
    let soft = (micros / 1_000_000).saturating_add(2);
    (soft, soft.saturating_add(1))
}

/// A year, in microseconds: no run is meant to last longer.
const YEAR_US: u64 = 365 * 86_400 * 1_000_000;
/// 1 EiB, what `units::parse_size` accepts.
const MAX_SIZE: u64 = 1 << 60;
/// The kernel's `PID_MAX_LIMIT`: no jail can hold more processes and threads.
const PID_MAX_LIMIT: u64 = 1 << 22;
/// The kernel's `NR_OPEN` ceiling (`fs.nr_open` cannot go past it).
const MAX_FILES: u64 = 1 << 30;

macro_rules! limits {
    ($( $(#[doc = $doc:literal])+ $field:ident / $variant:ident: $unit:ident,
        flag $flag:literal, max $max:expr, ways [$($way:expr),*], monitor $monitor:literal,
        rlimit $rlimit:expr; )+) => {
        /// Limits on a run; `None` means not limited by moat.
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct Limits {
            $( $(#[doc = $doc])+ pub $field: Option<limits!(@ty $unit)>, )+
        }

        /// The name of one limit.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Limit { $( $(#[doc = $doc])+ $variant, )+ }

        /// Every limit, in the order the report lists them.
        pub const TABLE: &[Spec] = &[ $( Spec {
            limit: Limit::$variant,
            key: stringify!($field),
            flag: $flag,
            unit: Unit::$unit,
            help: concat!($($doc),+),
            max: $max,
            ways: &[$($way),*],
            monitor: $monitor,
            rlimit: $rlimit,
        }, )+ ];

        impl Limits {
            /// The value of `limit` in its unit's raw form (microseconds for
            /// durations, bytes, counts).
            pub fn get(&self, limit: Limit) -> Option<u64> {
                match limit { $( Limit::$variant => self.$field.map(Raw::to_raw), )+ }
            }

            /// Sets `limit` from its raw form.
            pub fn set(&mut self, limit: Limit, raw: Option<u64>) {
                match limit { $( Limit::$variant => self.$field = raw.map(Raw::from_raw), )+ }
            }
        }
    };
    (@ty Duration) => { Duration };
    (@ty Size) => { u64 };
    (@ty Count) => { u64 };
}

limits! {
    /// CPU time (user+system) of the whole process tree, e.g. 2s.
    cpu_time / CpuTime: Duration, flag "cpu-time", max YEAR_US,
        ways [Way::Cgroup(Controller::Cpu), Way::Monitor], monitor " sampling /proc",
        rlimit Some(Rlimit { resource: libc::RLIMIT_CPU, name: "RLIMIT_CPU",
            values: cpu_backstop, as_way: "", beside: " backstop" });
    /// Wall-clock time, e.g. 5s or 1500ms.
    wall_time / WallTime: Duration, flag "wall-time", max YEAR_US,
        ways [Way::Monitor], monitor "", rlimit None;
    /// Memory of the whole process tree, e.g. 256MiB.
    memory / Memory: Size, flag "memory", max MAX_SIZE,
        ways [Way::Cgroup(Controller::Memory), Way::Monitor],
        monitor " sampling /proc (resident memory of the tree)", rlimit None;
    /// Processes and threads at once (moat's init not counted).
    processes / Processes: Count, flag "processes", max PID_MAX_LIMIT,
        ways [Way::Cgroup(Controller::Pids), Way::Rlimit], monitor "",
        rlimit Some(Rlimit { resource: libc::RLIMIT_NPROC, name: "RLIMIT_NPROC",
            values: nproc, as_way: " (counted per user namespace)", beside: "" });
    /// Bytes of stdout and stderr together; output past it is cut and the run ends.
    output / Output: Size, flag "output", max MAX_SIZE,
        ways [Way::Relay], monitor "", rlimit None;
    /// Largest file the program may write.
    file_size / FileSize: Size, flag "file-size", max MAX_SIZE,
        ways [Way::Rlimit], monitor "",
        rlimit Some(Rlimit { resource: libc::RLIMIT_FSIZE, name: "RLIMIT_FSIZE",
            values: both, as_way: "", beside: "" });
    /// Stack size.
    stack / Stack: Size, flag "stack", max MAX_SIZE,
        ways [Way::Rlimit], monitor "",
        rlimit Some(Rlimit { resource: libc::RLIMIT_STACK, name: "RLIMIT_STACK",
            values: both, as_way: "", beside: "" });
    /// Open file descriptors.
    open_files / OpenFiles: Count, flag "open-files", max MAX_FILES,
        ways [Way::Rlimit], monitor "",
        rlimit Some(Rlimit { resource: libc::RLIMIT_NOFILE, name: "RLIMIT_NOFILE",
            values: both, as_way: "", beside: "" });
    /// Address-space limit (RLIMIT_AS); off unless set, it breaks JVM, Go and V8.
    address_space / AddressSpace: Size, flag "address-space", max MAX_SIZE,
        ways [Way::Rlimit], monitor "",
        rlimit Some(Rlimit { resource: libc::RLIMIT_AS, name: "RLIMIT_AS",
            values: both, as_way: "", beside: "" });
}

/// A limit's value kept in the raw form the table works with.
trait Raw: Sized {
    fn to_raw(self) -> u64;
    fn from_raw(raw: u64) -> Self;
}

impl Raw for u64 {
    fn to_raw(self) -> u64 {
        self
    }
    fn from_raw(raw: u64) -> u64 {
        raw
    }
}

impl Raw for Duration {
    fn to_raw(self) -> u64 {
        u64::try_from(self.as_micros()).unwrap_or(u64::MAX)
    }
    fn from_raw(raw: u64) -> Duration {
        Duration::from_micros(raw)
    }
}

impl Limit {
    /// This limit's row of the table.
    pub fn spec(self) -> &'static Spec {
        // The table has one row per variant, in variant order (a unit test holds it).
        &TABLE[self as usize]
    }

    /// The limit a profile key or report name stands for.
    pub fn from_key(key: &str) -> Option<Limit> {
        TABLE.iter().find(|s| s.key == key).map(|s| s.limit)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().key)
    }
}

impl Spec {
    /// Parses a value as a person writes it, in this limit's unit.
    pub fn parse(&self, text: &str) -> Result<u64, UnitError> {
        let raw = self.parse_unbounded(text)?;
        let err = |reason: String| UnitError {
            input: text.to_string(),
            what: format!("{} limit", self.key),
            reason,
        };
        if self.unit == Unit::Duration && raw < 1000 {
            return Err(err("must be at least 1ms".into()));
        }
        if raw > self.max {
            return Err(err(format!("must be at most {}", self.format(self.max))));
        }
        Ok(raw)
    }

    fn parse_unbounded(&self, text: &str) -> Result<u64, UnitError> {
        match self.unit {
            Unit::Duration => units::parse_duration(text).map(Raw::to_raw),
            Unit::Size => units::parse_size(text),
            Unit::Count => match text.trim().parse::<u64>() {
                Ok(0) => Err(UnitError {
                    input: text.to_string(),
                    what: format!("{} limit", self.key),
                    reason: "must be at least 1".into(),
                }),
                Ok(n) => Ok(n),
                Err(_) => Err(UnitError {
                    input: text.to_string(),
                    what: format!("{} limit", self.key),
                    reason: "expected a whole number, at least 1".into(),
                }),
            },
        }
    }

    /// A raw value the way `parse` reads it back.
    pub fn format(&self, raw: u64) -> String {
        match self.unit {
            Unit::Duration => Dur(Duration::from_micros(raw)).to_string(),
            Unit::Size => Size(raw).to_string(),
            Unit::Count => raw.to_string(),
        }
    }

    /// What `--help` shows as the flag's value.
    pub fn value_name(&self) -> &'static str {
        match self.unit {
            Unit::Duration => "DURATION",
            Unit::Size => "SIZE",
            Unit::Count => "N",
        }
    }
}

/// A limit's value as a profile or a request writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<'a> {
    /// A number (a count; a profile or request writes times and sizes as strings).
    Integer(i128),
    /// A string such as "2s" or "256MiB" (or "8", for a count).
    Text(&'a str),
    /// Anything else (a list, a table, a boolean…).
    Other,
}

impl Spec {
    /// Reads a value as written in a profile's `[limits]` or a request's `limits`: a
    /// count as a number, a time or size as a string in its unit.
    pub fn parse_written(&self, value: Written<'_>) -> Result<u64, String> {
        match (self.unit, value) {
            (Unit::Count, Written::Integer(n)) => match u64::try_from(n) {
                Ok(0) | Err(_) => Err("must be at least 1".into()),
                Ok(n) if n > self.max => Err(format!("must be at most {}", self.max)),
                Ok(n) => Ok(n),
            },
            (_, Written::Text(text)) => self.parse(text).map_err(|e| e.to_string()),
            (Unit::Count, _) => Err("expected a whole number, e.g. 8".into()),
            (Unit::Duration, _) => Err("expected a string such as \"2s\"".into()),
            (Unit::Size, _) => Err("expected a string such as \"256MiB\"".into()),
        }
    }
}

impl Limits {
    /// Each limit set here, else the one in `base`.
    pub fn over(&self, base: &Limits) -> Limits {
        let mut out = base.clone();
        for spec in TABLE {
            if let Some(v) = self.get(spec.limit) {
                out.set(spec.limit, Some(v));
            }
        }
        out
    }

    /// The limits that are set, with their raw values, in table order.
    pub fn set_ones(&self) -> impl Iterator<Item = (&'static Spec, u64)> + '_ {
        TABLE
            .iter()
            .filter_map(|s| self.get(s.limit).map(|v| (s, v)))
    }

    /// The rlimits set in the program before exec, as (resource, soft, hard). No core
    /// files ever: they would be written into the jail's working directory (or fail),
    /// and a dump of a killed sandboxee is of no use to the caller.
    pub fn rlimits(&self) -> Vec<(Resource, u64, u64)> {
        let mut out = vec![(libc::RLIMIT_CORE, 0, 0)];
        for (spec, v) in self.set_ones() {
            if let Some(r) = &spec.rlimit {
                let (soft, hard) = (r.values)(v);
                out.push((r.resource, soft, hard));
            }
        }
        out
    }
}

/// The `[limits]` of one profile layer, each value checked against its row.
pub(crate) fn from_profile(profile: &Profile) -> Result<Limits, ProfileError> {
    let src = &profile.source;
    let mut out = Limits::default();
    for (key, value) in &profile.limits {
        let Some(limit) = Limit::from_key(key.get_ref()) else {
            let known: Vec<&str> = TABLE.iter().map(|s| s.key).collect();
            return Err(src.error(
                key.span(),
                &format!("limits.{}", key.get_ref()),
                format!("unknown limit; known limits: {}", known.join(", ")),
            ));
        };
        let spec = limit.spec();
        let written = match value.get_ref() {
            toml::Value::Integer(n) => Written::Integer(i128::from(*n)),
            toml::Value::String(text) => Written::Text(text),
            _ => Written::Other,
        };
        let raw = spec
            .parse_written(written)
            .map_err(|message| src.error(value.span(), &format!("limits.{}", spec.key), message))?;
        out.set(limit, Some(raw));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_variant_order_and_keys_are_unique() {
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.limit as usize, i, "{}", spec.key);
            assert_eq!(spec.limit.spec().key, spec.key);
            assert_eq!(Limit::from_key(spec.key), Some(spec.limit));
            assert_eq!(spec.flag.replace('-', "_"), spec.key);
            assert!(!spec.ways.is_empty(), "{} has no way", spec.key);
            if spec.ways.contains(&Way::Rlimit) {
                assert!(spec.rlimit.is_some(), "{}", spec.key);
            }
        }
    }

    #[test]
    fn values_parse_format_and_layer() {
        let cpu = Limit::CpuTime.spec();
        assert_eq!(cpu.parse("1500ms").unwrap(), 1_500_000);
        assert_eq!(cpu.format(1_500_000), "1500ms");
        assert!(Limit::Processes.spec().parse("0").is_err());
        assert_eq!(Limit::Memory.spec().format(64 << 20), "64MiB");
        let mut l = Limits::default();
        l.set(Limit::CpuTime, Some(2_000_000));
        assert_eq!(l.cpu_time, Some(Duration::from_secs(2)));
        let base = Limits {
            memory: Some(1 << 20),
            cpu_time: Some(Duration::from_secs(9)),
            ..Default::default()
        };
        let top = l.over(&base);
        assert_eq!(
            (top.cpu_time, top.memory),
            (Some(Duration::from_secs(2)), Some(1 << 20))
        );
    }

    #[test]
    fn rlimits_from_the_table() {
        let l = Limits {
            processes: Some(8),
            cpu_time: Some(Duration::from_millis(1500)),
            open_files: Some(64),
            ..Default::default()
        };
        let r = l.rlimits();
        assert_eq!(r[0], (libc::RLIMIT_CORE, 0, 0));
        assert!(r.contains(&(libc::RLIMIT_NPROC, 9, 9)));
        assert!(r.contains(&(libc::RLIMIT_CPU, 3, 4)));
        assert!(r.contains(&(libc::RLIMIT_NOFILE, 64, 64)));
        assert_eq!(r.len(), 4);
    }
}
