//! Monitor: the parent's ptrace loop. It wakes only for seccomp RET_TRACE events and
//! process events (fork, clone, exec, exit, stops), never for allowed syscalls, and ends
//! the whole jail on the first violation or when the wall-time limit passes.
//!
//! Waits name only this thread's own children and tracees (`__WNOTHREAD`), so several
//! jails monitored from several threads of one process never see each other's events.

use crate::outcome::Violation;
use crate::seccomp;
use crate::spawn::Jail;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;
const PTRACE_LISTEN: libc::c_uint = 0x4208;

/// `struct ptrace_syscall_info` with its seccomp member.
#[repr(C)]
#[derive(Default)]
struct SyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    nr: u64,
    args: [u64; 6],
    ret_data: u32,
    pad2: u32,
}

/// What the loop saw.
#[derive(Default)]
pub struct Watch {
    pub program_status: Option<i32>,
    pub violation: Option<Violation>,
    pub wall_time_exceeded: bool,
    pub wall_time: Duration,
    /// Resource usage of init, which includes every process of the jail it reaped.
    pub rusage: Option<libc::rusage>,
}

fn cont(pid: libc::pid_t, request: libc::c_uint, sig: libc::c_int) {
    // SAFETY: ptrace on a tracee of this thread; a tracee killed meanwhile gives ESRCH,
    // which is fine: its exit is reported by the next wait.
    unsafe { libc::ptrace(request, pid, 0, sig as libc::c_long) };
}

fn event_msg(pid: libc::pid_t) -> Option<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: GETEVENTMSG into a stack word.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    };
    (r >= 0).then_some(msg as u64)
}

fn syscall_info(pid: libc::pid_t) -> Option<SyscallInfo> {
    let mut info = SyscallInfo::default();
    // SAFETY: the kernel writes at most `size` bytes into our struct.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_SYSCALL_INFO,
            pid,
            std::mem::size_of::<SyscallInfo>(),
            &mut info as *mut SyscallInfo,
        )
    };
    (r > 0 && info.op == PTRACE_SYSCALL_INFO_SECCOMP).then_some(info)
}

/// Runs the loop until the jail's init and every tracee are reaped.
pub fn watch(jail: &Jail, wall_limit: Option<Duration>, started: Instant) -> Watch {
    let mut w = Watch::default();
    let timed_out = AtomicBool::new(false);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        if let Some(limit) = wall_limit {
            let timed_out = &timed_out;
            scope.spawn(move || {
                let left = limit.saturating_sub(started.elapsed());
                if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(left) {
                    timed_out.store(true, Ordering::SeqCst);
                    jail.kill();
                }
            });
        }
        event_loop(jail, &mut w);
        w.wall_time = started.elapsed();
        drop(done_tx);
    });
    w.wall_time_exceeded = timed_out.load(Ordering::SeqCst);
    w
}

fn event_loop(jail: &Jail, w: &mut Watch) {
    let mut program: Option<libc::pid_t> = None;
    let mut ended: HashMap<libc::pid_t, i32> = HashMap::new();
    // Before the program's exec completes, every traced syscall is moat's own code in
    // the sandboxee (the exec itself, or the error report after a failed exec): no
    // untrusted code has run yet. From the exec on, a trace is a violation.
    let mut exec_seen = false;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 with stack out-parameters.
        let pid =
            unsafe { libc::wait4(-1, &mut status, libc::__WALL | libc::__WNOTHREAD, &mut ru) };
        if pid < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => break, // ECHILD: every child and tracee is gone
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if pid == jail.init {
                w.rusage = Some(ru);
            }
            ended.insert(pid, status);
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        match status >> 16 {
            libc::PTRACE_EVENT_SECCOMP => {
                if exec_seen {
                    if w.violation.is_none() {
                        w.violation = Some(read_violation(pid));
                    }
                    // Leave the tracee stopped: killing init takes it down with the
                    // rest, and it must not run one more instruction.
                    jail.kill();
                } else {
                    cont(pid, libc::PTRACE_CONT, 0);
                }
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if pid == jail.init && program.is_none() {
                    program = event_msg(pid).map(|p| p as libc::pid_t);
                }
                cont(pid, libc::PTRACE_CONT, 0);
            }
            libc::PTRACE_EVENT_EXEC => {
                exec_seen = true;
                cont(pid, libc::PTRACE_CONT, 0);
            }
            libc::PTRACE_EVENT_STOP => {
                // A group-stop (SIGSTOP and friends) must stay a stop: LISTEN keeps the
                // tracee stopped yet lets SIGCONT (or our SIGKILL) wake it. Other event
                // stops (a new tracee's first stop) just go on.
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    cont(pid, PTRACE_LISTEN, 0);
                } else {
                    cont(pid, libc::PTRACE_CONT, 0);
                }
            }
            0 => {
                // Signal-delivery stop: deliver the signal as if nobody were tracing.
                cont(pid, libc::PTRACE_CONT, sig);
            }
            _ => cont(pid, libc::PTRACE_CONT, 0),
        }
    }
    w.program_status = program.and_then(|p| ended.get(&p).copied());
}

fn read_violation(pid: libc::pid_t) -> Violation {
    match syscall_info(pid) {
        Some(info) => Violation {
            syscall: seccomp::syscall_name(info.arch, info.nr),
            nr: info.nr,
            args: info.args,
            arch: seccomp::arch_name(info.arch, info.nr).to_string(),
            pid,
        },
        None => Violation {
            syscall: "unknown".into(),
            nr: u64::MAX,
            args: [0; 6],
            arch: "unknown".into(),
            pid,
        },
    }
}
