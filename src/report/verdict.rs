//! One exact verdict from what a run left: a setup failure wins (the program never
//! ran), then a violation, then what moat itself ended the run for, then how the
//! program ended.

use crate::watch::run::Observed;
use serde::{Deserialize, Serialize};

/// The verdict of a run: exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// The program exited 0.
    Ok,
    /// It exited with another code.
    NonzeroExit,
    /// A signal not sent by moat ended it.
    Signaled,
    /// It made a syscall outside the policy.
    Violation,
    /// Its process tree used up its CPU time.
    CpuTimeLimit,
    /// Its wall-clock time ran out.
    WallTimeLimit,
    /// It ran out of the memory it was given.
    MemoryLimit,
    /// Its output (or a file it wrote) went past its cap.
    OutputLimit,
    /// moat could not build the jail, or the program could not be started.
    SetupError,
    /// The run was ended from outside (moat got SIGTERM, SIGINT or SIGHUP, or a
    /// library caller cancelled it).
    Cancelled,
    /// (Requests) A file to put in or take out was missing, too large or not a regular
    /// file: the command did not start, or it ended well but what it had to leave
    /// behind is not there.
    FileError,
}

impl Status {
    /// The name the JSON report uses (`ok`, `memory_limit`, …).
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
            Status::Cancelled => "cancelled",
            Status::FileError => "file_error",
        }
    }
}

/// The verdict, the program's exit code and the signal that ended it.
pub fn verdict(o: &Observed) -> (Status, Option<i32>, Option<i32>) {
    let (code, sig) = match o.program_status {
        Some(s) if libc::WIFEXITED(s) => (Some(libc::WEXITSTATUS(s)), None),
        Some(s) if libc::WIFSIGNALED(s) => (None, Some(libc::WTERMSIG(s))),
        _ => (None, None),
    };
    let status = if o.cancelled.is_some() {
        // Whatever the program was doing when it was ended, ending it was not its doing.
        Status::Cancelled
    } else if o.setup_failure.is_some() {
        Status::SetupError
    } else if o.violation.is_some() {
        Status::Violation
    } else if o.exceeded.memory {
        Status::MemoryLimit
    } else if o.exceeded.cpu_time {
        Status::CpuTimeLimit
    } else if o.exceeded.wall_time {
        Status::WallTimeLimit
    } else if o.exceeded.output {
        Status::OutputLimit
    } else {
        match (code, sig) {
            (Some(0), _) => Status::Ok,
            // The runtime's own word that the program ran out of the memory it was
            // given (a heap bounded below the memory limit, or a request the kernel
            // refused). The program could exit with that code itself, but only to
            // claim a failure it could claim with any code: no limit moat saw, no
            // violation and no `ok` can be hidden this way (they are decided above).
            (Some(c), _) if Some(c) == o.out_of_memory_exit_code => Status::MemoryLimit,
            (Some(_), _) => Status::NonzeroExit,
            (None, Some(_)) => Status::Signaled,
            // The program vanished without a status: only possible if init was
            // killed from outside the jail.
            (None, None) => Status::Signaled,
        }
    };
    (status, code, sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::monitor::Violation;
    use crate::watch::run::SetupFailure;

    fn exited(code: i32) -> i32 {
        code << 8
    }

    fn socket() -> Violation {
        Violation {
            syscall: "socket".into(),
            nr: 41,
            args: [0; 6],
            arch: "x86_64".into(),
            pid: 1,
        }
    }

    #[test]
    fn the_runtimes_out_of_memory_exit_is_memory_limit_and_nothing_more() {
        let mut o = Observed {
            program_status: Some(exited(3)),
            out_of_memory_exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(verdict(&o), (Status::MemoryLimit, Some(3), None));
        // Another code is the program's own; the code hides no limit moat saw.
        o.program_status = Some(exited(1));
        assert_eq!(verdict(&o).0, Status::NonzeroExit);
        o.program_status = Some(exited(3));
        o.exceeded.cpu_time = true;
        assert_eq!(verdict(&o).0, Status::CpuTimeLimit);
        o.exceeded.cpu_time = false;
        o.violation = Some(socket());
        assert_eq!(verdict(&o).0, Status::Violation);
        // Without the profile's word, 3 is an exit code like any other.
        o.violation = None;
        o.out_of_memory_exit_code = None;
        assert_eq!(verdict(&o).0, Status::NonzeroExit);
    }

    #[test]
    fn one_verdict() {
        let mut o = Observed {
            program_status: Some(exited(0)),
            ..Default::default()
        };
        assert_eq!(verdict(&o), (Status::Ok, Some(0), None));
        o.program_status = Some(exited(25));
        assert_eq!(verdict(&o), (Status::NonzeroExit, Some(25), None));
        o.program_status = Some(libc::SIGABRT);
        assert_eq!(verdict(&o), (Status::Signaled, None, Some(libc::SIGABRT)));
        o.exceeded.output = true;
        o.program_status = Some(libc::SIGKILL);
        assert_eq!(verdict(&o).0, Status::OutputLimit);
        o.exceeded.wall_time = true;
        assert_eq!(verdict(&o).0, Status::WallTimeLimit);
        o.exceeded.cpu_time = true;
        assert_eq!(verdict(&o).0, Status::CpuTimeLimit);
        o.exceeded.memory = true;
        assert_eq!(verdict(&o).0, Status::MemoryLimit);
        o.violation = Some(socket());
        assert_eq!(verdict(&o).0, Status::Violation);
        o.setup_failure = Some(SetupFailure {
            stage: None,
            errno: libc::EPERM,
            message: "x".into(),
        });
        assert_eq!(verdict(&o).0, Status::SetupError);
    }
}
