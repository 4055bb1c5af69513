//! Outcome: one exact verdict per run, and the JSON report.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NonzeroExit,
    Signaled,
    Violation,
    CpuTimeLimit,
    WallTimeLimit,
    MemoryLimit,
    OutputLimit,
    SetupError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NonzeroExit => "nonzero_exit",
            Status::Signaled => "signaled",
            Status::Violation => "violation",
            Status::CpuTimeLimit => "cpu_time_limit",
            Status::WallTimeLimit => "wall_time_limit",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::SetupError => "setup_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The syscall's name as its architecture numbers it (`unknown(N)` if none).
    pub syscall: String,
    pub nr: u64,
    pub args: [u64; 6],
    /// `x86_64`, `i386` (int 0x80) or `x32`.
    pub arch: String,
    /// The process or thread that made the call, as moat sees it.
    pub pid: i32,
}

/// Why moat could not run the program at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Setup,
    ProgramNotFound,
    ProgramNotExecutable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub status: Status,
    /// The program's exit code when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, whoever sent it.
    pub signal: Option<i32>,
    /// User + system CPU time of the whole process tree.
    pub cpu_time_ms: u64,
    pub user_time_ms: u64,
    pub system_time_ms: u64,
    pub wall_time_ms: u64,
    /// Peak resident memory of the largest process of the tree.
    pub peak_memory_kib: u64,
    pub violation: Option<Violation>,
    pub error: Option<ErrorInfo>,
    /// Each limit that was set, its value and how it was enforced.
    pub limits: Vec<LimitReport>,
    /// Bytes of stdout and stderr delivered (counted only when output is relayed).
    pub output_bytes: [u64; 2],
    /// What a learning run saw (`moat learn` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<crate::learn::Learned>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitReport {
    pub name: &'static str,
    pub value: String,
    pub enforced_by: String,
}

/// Which limits a run went past, as the monitor and the kernel's limits tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exceeded {
    pub wall_time: bool,
    pub cpu_time: bool,
    pub memory: bool,
    pub output: bool,
}

/// What the monitor saw, before it is turned into one verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The program's wait status (raw), if it ended on its own or by a signal.
    pub program_status: Option<i32>,
    pub violation: Option<Violation>,
    pub exceeded: Exceeded,
    pub setup_failure: Option<ErrorInfo>,
}

impl Observed {
    /// Exactly one verdict: a setup failure wins (the program never ran), then what
    /// moat itself ended the run for, then how the program ended.
    pub fn verdict(&self) -> (Status, Option<i32>, Option<i32>) {
        let (code, sig) = match self.program_status {
            Some(s) if libc::WIFEXITED(s) => (Some(libc::WEXITSTATUS(s)), None),
            Some(s) if libc::WIFSIGNALED(s) => (None, Some(libc::WTERMSIG(s))),
            _ => (None, None),
        };
        let status = if self.setup_failure.is_some() {
            Status::SetupError
        } else if self.violation.is_some() {
            Status::Violation
        } else if self.exceeded.memory {
            Status::MemoryLimit
        } else if self.exceeded.cpu_time {
            Status::CpuTimeLimit
        } else if self.exceeded.wall_time {
            Status::WallTimeLimit
        } else if self.exceeded.output {
            Status::OutputLimit
        } else {
            match (code, sig) {
                (Some(0), _) => Status::Ok,
                (Some(_), _) => Status::NonzeroExit,
                (None, Some(_)) => Status::Signaled,
                // The program vanished without a status: only possible if init was
                // killed from outside the jail.
                (None, None) => Status::Signaled,
            }
        };
        (status, code, sig)
    }
}

impl Outcome {
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
            Status::SetupError => match self.error.as_ref().map(|e| e.kind) {
                Some(ErrorKind::ProgramNotFound) => 127,
                Some(ErrorKind::ProgramNotExecutable) => 126,
                _ => 125,
            },
        }
    }

    /// An outcome for a run that never started.
    pub fn setup_error(kind: ErrorKind, message: String) -> Outcome {
        Outcome {
            status: Status::SetupError,
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
            learned: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
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

    fn exited(code: i32) -> i32 {
        code << 8
    }

    #[test]
    fn one_verdict() {
        let mut o = Observed {
            program_status: Some(exited(0)),
            ..Default::default()
        };
        assert_eq!(o.verdict(), (Status::Ok, Some(0), None));
        o.program_status = Some(exited(25));
        assert_eq!(o.verdict(), (Status::NonzeroExit, Some(25), None));
        o.program_status = Some(libc::SIGABRT);
        assert_eq!(o.verdict(), (Status::Signaled, None, Some(libc::SIGABRT)));
        o.exceeded.output = true;
        o.program_status = Some(libc::SIGKILL);
        assert_eq!(o.verdict().0, Status::OutputLimit);
        o.exceeded.wall_time = true;
        assert_eq!(o.verdict().0, Status::WallTimeLimit);
        o.exceeded.cpu_time = true;
        assert_eq!(o.verdict().0, Status::CpuTimeLimit);
        o.exceeded.memory = true;
        assert_eq!(o.verdict().0, Status::MemoryLimit);
        o.violation = Some(Violation {
            syscall: "socket".into(),
            nr: 41,
            args: [0; 6],
            arch: "x86_64".into(),
            pid: 1,
        });
        assert_eq!(o.verdict().0, Status::Violation);
        o.setup_failure = Some(ErrorInfo {
            kind: ErrorKind::Setup,
            message: "x".into(),
        });
        assert_eq!(o.verdict().0, Status::SetupError);
    }

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
    }
}
