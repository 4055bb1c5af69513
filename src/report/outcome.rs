//! Outcome: one exact verdict per run, and the JSON report.

use super::verdict::verdict;
pub use super::verdict::Status;
use crate::config::limits::Limit;
use crate::jail::stage::Stage;
use crate::learn::Learned;
use crate::plan::ldso::ElfError;
use crate::plan::PlanError;
use crate::watch::enforce::{Enforced, Enforcement, Enforcer};
pub use crate::watch::monitor::Violation;
use crate::watch::run::{Run, SetupFailure};
use crate::watch::timings::Timings;
use serde::{Deserialize, Serialize};

/// Why moat could not run the program at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// moat could not build the jail (exit status 125).
    Setup,
    /// The program is not there (127, as a shell gives).
    ProgramNotFound,
    /// The program cannot be executed (126).
    ProgramNotExecutable,
    /// (Requests) A file to put in could not be had, or did not fit the work dir.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Why the program did not run: its kind and, in words, what failed.
pub struct ErrorInfo {
    /// Which kind of failure.
    pub kind: ErrorKind,
    /// What failed and what to do.
    pub message: String,
}

impl ErrorKind {
    /// What kind of failure a planning error is for the report (and so the exit
    /// status: 127 for a program that is not there, 126 for one that cannot be
    /// executed, as a shell does).
    pub fn of_plan(e: &PlanError) -> ErrorKind {
        match e {
            PlanError::ProgramNotFound { .. } | PlanError::Elf(ElfError::NotFound { .. }) => {
                ErrorKind::ProgramNotFound
            }
            PlanError::NotExecutable { .. }
            | PlanError::Elf(
                ElfError::NotExecutable { .. }
                | ElfError::NotElf { .. }
                | ElfError::WrongClass { .. },
            ) => ErrorKind::ProgramNotExecutable,
            _ => ErrorKind::Setup,
        }
    }
}

impl ErrorInfo {
    /// A setup failure inside the jail: a failed exec is the program's fault (missing,
    /// or not executable), anything else moat's.
    pub fn of(f: &SetupFailure) -> ErrorInfo {
        let kind = match (f.stage, f.errno) {
            (Some(Stage::Exec), libc::ENOENT) => ErrorKind::ProgramNotFound,
            (Some(Stage::Exec), _) => ErrorKind::ProgramNotExecutable,
            _ => ErrorKind::Setup,
        };
        ErrorInfo {
            kind,
            message: f.message.clone(),
        }
    }
}

/// The version of the JSON report's layout (its `schema` key). It changes only when a
/// stable key is removed, renamed or changes meaning; new keys may appear within one
/// version.
pub const REPORT_SCHEMA: u32 = 1;

/// `--exit-status verdict`: the exit status of each verdict. Unlike the default table
/// (DESIGN.md), no program can give one of these by exiting with it: the program's own
/// code is in the report, not in the status. 125–127 keep the meaning they have in
/// every mode (and in `timeout(1)`, `env(1)`, the shells): moat could not run it.
pub const VERDICT_EXIT_CODES: &[(Status, i32)] = &[
    (Status::Ok, 0),
    (Status::NonzeroExit, 1),
    (Status::Signaled, 2),
    (Status::Violation, 3),
    (Status::CpuTimeLimit, 4),
    (Status::WallTimeLimit, 5),
    (Status::MemoryLimit, 6),
    (Status::OutputLimit, 7),
    (Status::FileError, 8),
    (Status::Cancelled, 9),
    // 126 for a program that cannot be executed, 127 for one that is not there.
    (Status::SetupError, 125),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// The report of one run: its one verdict, its figures, and what ended it.
pub struct Outcome {
    /// The verdict.
    pub status: Status,
    /// The program's exit code when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, whoever sent it.
    pub signal: Option<i32>,
    /// User + system CPU time of the whole process tree.
    pub cpu_time_ms: u64,
    /// User CPU time of the tree.
    pub user_time_ms: u64,
    /// System CPU time of the tree.
    pub system_time_ms: u64,
    /// From the clone to the last process reaped.
    pub wall_time_ms: u64,
    /// Peak resident memory of the largest process of the tree.
    pub peak_memory_kib: u64,
    /// The syscall outside the policy, for a `violation`.
    pub violation: Option<Violation>,
    /// Why the program did not run, for a `setup_error`.
    pub error: Option<ErrorInfo>,
    /// Each limit that was set, its value and how it was enforced.
    pub limits: Vec<LimitReport>,
    /// Bytes of stdout and stderr delivered (counted only when output is relayed):
    /// written to their destination, not merely read from the program.
    pub output_bytes: [u64; 2],
    /// Why stdout's or stderr's destination stopped taking bytes (a closed pipe, a full
    /// disk): what the program wrote after that was not delivered.
    #[serde(default)]
    pub output_errors: [Option<String>; 2],
    /// The signal moat got when the run was cancelled from outside (0: cancelled by a
    /// library caller without one).
    #[serde(default)]
    pub cancelled_by: Option<i32>,
    /// A `memory_limit` the program's runtime reported (it exited with the profile's
    /// `out_of_memory_exit_code`, kept in `exit_code`), rather than one moat saw.
    #[serde(default)]
    pub runtime_out_of_memory: bool,
    /// What a learning run saw (`moat learn` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Learned>,
    /// Where the run's time went (not in the JSON report: `moat run --timings` prints
    /// it).
    #[serde(skip)]
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// One limit that was set: its name, its value, and what enforced it (and why a
/// fallback was taken, when one was).
pub struct LimitReport {
    /// The limit's key (`cpu_time`, `memory`, …).
    pub name: String,
    /// Its value as a person writes it (`2s`, `256MiB`).
    pub value: String,
    /// The mechanism, in words.
    pub enforced_by: String,
}

impl LimitReport {
    /// How one limit was enforced, in words.
    pub fn of(e: &Enforced) -> LimitReport {
        let spec = e.limit.spec();
        let rlimit = spec.rlimit.as_ref();
        let controller = |v2: bool| match e.limit {
            Limit::CpuTime if v2 => "cpu.stat, sampled by the monitor",
            Limit::CpuTime => "cpuacct, sampled by the monitor",
            Limit::Memory if v2 => "memory.max",
            Limit::Memory => "memory.limit_in_bytes",
            _ => "pids.max",
        };
        let mut by = match e.by {
            Enforcer::CgroupV2 => format!("cgroup v2 {}", controller(true)),
            Enforcer::CgroupV1 => format!("cgroup v1 {}", controller(false)),
            Enforcer::Monitor => format!("monitor{}", spec.monitor),
            Enforcer::Relay => "monitor (relayed and cut at the cap)".to_string(),
            Enforcer::Rlimit => {
                rlimit.map_or("rlimit".into(), |r| format!("{}{}", r.name, r.as_way))
            }
        };
        if e.by != Enforcer::Rlimit {
            if let Some(r) = rlimit {
                by += &format!("; {}{}", r.name, r.beside);
            }
        }
        if let Some(why) = &e.fallback {
            by += &format!(" (no cgroup: {why})");
        }
        LimitReport {
            name: spec.key.to_string(),
            value: spec.format(e.value),
            enforced_by: by,
        }
    }
}

/// Which mechanism enforced each limit that was set.
pub fn limit_reports(e: &Enforcement) -> Vec<LimitReport> {
    e.entries().iter().map(LimitReport::of).collect()
}

impl Outcome {
    /// The report of a run that started: one verdict from what it left.
    pub fn from_run(run: &Run) -> Outcome {
        let (status, exit_code, signal) = verdict(&run.observed);
        let ran = status != Status::SetupError;
        let f = &run.figures;
        let (cpu_time_ms, user_time_ms, system_time_ms) = f.cpu_ms();
        Outcome {
            status,
            exit_code: exit_code.filter(|_| ran),
            signal: signal.filter(|_| ran),
            cpu_time_ms,
            user_time_ms,
            system_time_ms,
            wall_time_ms: f.wall_ms,
            peak_memory_kib: f.peak_kib,
            violation: run.observed.violation.clone(),
            error: run.observed.setup_failure.as_ref().map(ErrorInfo::of),
            limits: limit_reports(&run.enforcement),
            output_bytes: run.output_bytes,
            output_errors: run.output_errors.clone(),
            cancelled_by: run.observed.cancelled,
            runtime_out_of_memory: status == Status::MemoryLimit && !run.observed.exceeded.memory,
            learned: None,
            timings: run.timings.clone(),
        }
    }

    /// The exit status `moat run` leaves with (DESIGN.md's table).
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Ok => 0,
            Status::NonzeroExit => self.exit_code.unwrap_or(1),
            Status::Signaled => 128 + self.signal.unwrap_or(libc::SIGKILL),
            Status::Violation => 159,
            Status::CpuTimeLimit | Status::WallTimeLimit => 124,
            Status::MemoryLimit => 137,
            Status::OutputLimit => 153,
            Status::Cancelled => match self.cancelled_by {
                Some(s) if s > 0 => 128 + s,
                _ => 125,
            },
            // Only requests give it, and they report per command, not by exit status;
            // were it asked for, the program did not do what was asked, as a setup
            // failure.
            Status::FileError => 125,
            Status::SetupError => match self.error.as_ref().map(|e| e.kind) {
                Some(ErrorKind::ProgramNotFound) => 127,
                Some(ErrorKind::ProgramNotExecutable) => 126,
                _ => 125,
            },
        }
    }

    /// An outcome for a run that never started.
    pub fn setup_error(kind: ErrorKind, message: String) -> Outcome {
        let status = match kind {
            ErrorKind::File => Status::FileError,
            _ => Status::SetupError,
        };
        Outcome {
            status,
            exit_code: None,
            signal: None,
            cpu_time_ms: 0,
            user_time_ms: 0,
            system_time_ms: 0,
            wall_time_ms: 0,
            peak_memory_kib: 0,
            violation: None,
            error: Some(ErrorInfo { kind, message }),
            limits: Vec::new(),
            output_bytes: [0, 0],
            output_errors: [None, None],
            cancelled_by: None,
            runtime_out_of_memory: false,
            learned: None,
            timings: Timings::default(),
        }
    }

    /// The JSON report, `"schema": 1` first (docs/report.schema.json describes it).
    /// Every field is a plain number, string or list, so it always serializes; were it
    /// ever not to, the report says so rather than abort.
    pub fn to_json(&self) -> String {
        /// The report as written: the schema's version ahead of the outcome's fields.
        #[derive(Serialize)]
        struct Report<'a> {
            schema: u32,
            #[serde(flatten)]
            outcome: &'a Outcome,
        }
        let report = Report {
            schema: REPORT_SCHEMA,
            outcome: self,
        };
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| {
            let message = format!("the report could not be written: {e}");
            serde_json::json!({"schema": REPORT_SCHEMA, "status": self.status.as_str(), "error": {"kind": "setup", "message": message}})
                .to_string()
        })
    }

    /// The exit status under `--exit-status verdict`: 0 only for `ok`, and one fixed
    /// code per status whatever the program's own exit code was (see
    /// [`VERDICT_EXIT_CODES`]).
    pub fn verdict_exit_code(&self) -> i32 {
        if self.status == Status::SetupError {
            // 126 and 127 (the program is not executable, not there) as in every mode.
            return self.exit_code();
        }
        VERDICT_EXIT_CODES
            .iter()
            .find(|(s, _)| *s == self.status)
            .map_or(125, |(_, c)| *c)
    }

    /// Says how the run went, as `tracing` events (info): how each limit was enforced
    /// (and why a fallback was taken), the stages with their times, the verdict.
    pub(crate) fn log(&self) {
        for l in &self.limits {
            tracing::info!("limit {} {}: {}", l.name, l.value, l.enforced_by);
        }
        for phase in self.timings.phases() {
            tracing::info!(
                "stage {:8.3} ms  {}",
                phase.took.as_secs_f64() * 1e3,
                phase.name
            );
        }
        tracing::info!("verdict {}", self.summary().trim_start_matches("moat: "));
    }

    /// One line a person can read.
    pub fn summary(&self) -> String {
        let mut s = format!("moat: {}", self.status.as_str());
        if let Some(c) = self.exit_code {
            s += &format!(" exit={c}");
        }
        if let Some(sig) = self.signal {
            s += &format!(" signal={sig}");
        }
        if let Some(v) = &self.violation {
            s += &format!(" syscall={}({}) arch={}", v.syscall, v.nr, v.arch);
        }
        if let Some(e) = &self.error {
            s += &format!(" error=\"{}\"", e.message);
        }
        s += &format!(
            " cpu={}ms wall={}ms peak={}KiB",
            self.cpu_time_ms, self.wall_time_ms, self.peak_memory_kib
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        let mut o = Outcome::setup_error(ErrorKind::ProgramNotFound, "x".into());
        assert_eq!(o.exit_code(), 127);
        o.error.as_mut().unwrap().kind = ErrorKind::ProgramNotExecutable;
        assert_eq!(o.exit_code(), 126);
        o.error.as_mut().unwrap().kind = ErrorKind::Setup;
        assert_eq!(o.exit_code(), 125);
        o.status = Status::Violation;
        assert_eq!(o.exit_code(), 159);
        o.status = Status::WallTimeLimit;
        assert_eq!(o.exit_code(), 124);
        o.status = Status::Signaled;
        o.signal = Some(6);
        assert_eq!(o.exit_code(), 134);
        o.status = Status::NonzeroExit;
        o.exit_code = Some(25);
        assert_eq!(o.exit_code(), 25);
    }

    #[test]
    fn report_keys() {
        let o = Outcome::setup_error(ErrorKind::Setup, "boom".into());
        let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        for key in [
            "status",
            "exit_code",
            "signal",
            "cpu_time_ms",
            "wall_time_ms",
            "peak_memory_kib",
            "violation",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "setup_error");
        // The schema's version comes first, and a report still reads back as an Outcome.
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "schema");
        assert_eq!(v["schema"], REPORT_SCHEMA);
        let back: Outcome = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn verdict_exit_codes_are_one_per_status_and_zero_only_for_ok() {
        let mut o = Outcome::setup_error(ErrorKind::Setup, "x".into());
        let mut seen = std::collections::BTreeSet::new();
        for (status, code) in VERDICT_EXIT_CODES {
            o.status = *status;
            // The program's own code does not reach the status in this mode.
            o.exit_code = Some(124);
            o.signal = Some(9);
            assert_eq!(o.verdict_exit_code(), *code, "{status:?}");
            assert!(seen.insert(*code), "{code} given twice");
            assert_eq!(*code == 0, *status == Status::Ok);
        }
        o.status = Status::SetupError;
        o.error.as_mut().unwrap().kind = ErrorKind::ProgramNotFound;
        assert_eq!(o.verdict_exit_code(), 127);
        o.error.as_mut().unwrap().kind = ErrorKind::ProgramNotExecutable;
        assert_eq!(o.verdict_exit_code(), 126);
    }

    #[test]
    fn limit_reports_name_the_mechanism_and_the_fallback() {
        use crate::config::limits::Limits;
        use crate::watch::enforce::{Enforced, Enforcement, Enforcer};
        use std::time::Duration;
        let limits = Limits {
            cpu_time: Some(Duration::from_millis(1500)),
            wall_time: Some(Duration::from_secs(5)),
            memory: Some(64 << 20),
            processes: Some(8),
            output: Some(1 << 20),
            file_size: Some(16 << 20),
            stack: Some(64 << 20),
            open_files: Some(64),
            address_space: Some(4 << 30),
        };
        let fallback = Enforcement::decide(&limits, None, Some("not writable"));
        let got: Vec<(String, String, String)> = limit_reports(&fallback)
            .into_iter()
            .map(|r| (r.name, r.value, r.enforced_by))
            .collect();
        let want = [
            (
                "cpu_time",
                "1500ms",
                "monitor sampling /proc; RLIMIT_CPU backstop (no cgroup: not writable)",
            ),
            ("wall_time", "5s", "monitor"),
            (
                "memory",
                "64MiB",
                "monitor sampling /proc (resident memory of the tree) (no cgroup: not writable)",
            ),
            (
                "processes",
                "8",
                "RLIMIT_NPROC (counted per user namespace) (no cgroup: not writable)",
            ),
            ("output", "1MiB", "monitor (relayed and cut at the cap)"),
            ("file_size", "16MiB", "RLIMIT_FSIZE"),
            ("stack", "64MiB", "RLIMIT_STACK"),
            ("open_files", "64", "RLIMIT_NOFILE"),
            ("address_space", "4GiB", "RLIMIT_AS"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
        let by = |limit, by| Enforced {
            limit,
            value: limits.get(limit).unwrap(),
            by,
            fallback: None,
        };
        let cgroups = Enforcement::from_entries(vec![
            by(Limit::CpuTime, Enforcer::CgroupV2),
            by(Limit::Memory, Enforcer::CgroupV2),
            by(Limit::Processes, Enforcer::CgroupV2),
            by(Limit::CpuTime, Enforcer::CgroupV1),
            by(Limit::Memory, Enforcer::CgroupV1),
            by(Limit::Processes, Enforcer::CgroupV1),
        ]);
        let got: Vec<String> = limit_reports(&cgroups)
            .into_iter()
            .map(|r| r.enforced_by)
            .collect();
        assert_eq!(
            got,
            [
                "cgroup v2 cpu.stat, sampled by the monitor; RLIMIT_CPU backstop",
                "cgroup v2 memory.max",
                "cgroup v2 pids.max; RLIMIT_NPROC",
                "cgroup v1 cpuacct, sampled by the monitor; RLIMIT_CPU backstop",
                "cgroup v1 memory.limit_in_bytes",
                "cgroup v1 pids.max; RLIMIT_NPROC",
            ]
        );
    }

    #[test]
    fn the_report_reads_back() {
        let o = Outcome::setup_error(ErrorKind::ProgramNotFound, "gone".into());
        let back: Outcome = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(back, o);
    }
}
