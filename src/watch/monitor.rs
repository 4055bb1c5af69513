//! Monitor: the parent's ptrace loop. It wakes only for seccomp RET_TRACE events and
//! process events (fork, clone, exec, exit, stops), never for allowed syscalls, and ends
//! the whole jail on the first violation or when the wall-time limit passes.
//!
//! Waits name only this thread's own children and tracees (`__WNOTHREAD`), so several
//! jails monitored from several threads of one process never see each other's events.

use super::hook::{Hook, TracedCall};
use super::sampler::{self, Findings, Tree};
use super::{accounting, relay};
use crate::jail::spawn::{Jail, PTRACE_OPTIONS};
use crate::seccomp::{self, bpf, bpf::SeccompData, Filter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A ptrace request as `ptrace(2)` takes it: glibc declares an enum (unsigned), musl a
/// plain int.
#[cfg(target_env = "gnu")]
type Request = libc::c_uint;
/// A ptrace request as `ptrace(2)` takes it: glibc declares an enum (unsigned), musl a
/// plain int.
#[cfg(not(target_env = "gnu"))]
type Request = libc::c_int;
const PTRACE_GET_SYSCALL_INFO: Request = 0x420e;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;
const PTRACE_LISTEN: Request = 0x4208;

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

/// What the monitor enforces besides the syscall policy.
pub struct Supervision<'a> {
    /// moat's own filter, which decides every traced call.
    pub filter: &'a Filter,
    pub started: Instant,
    pub wall: Option<Duration>,
    /// CPU time of the whole tree; checked every `sampler::SAMPLE` from `cpu_source` (a cgroup)
    /// or, without one, from /proc.
    pub cpu: Option<Duration>,
    pub cpu_source: Option<&'a (dyn Fn() -> Option<Duration> + Sync)>,
    /// A memory limit the monitor enforces itself (none when a cgroup does).
    pub memory: Option<u64>,
    /// The jail's writable tmpfs mounts (paths inside), whose files count as memory
    /// when the monitor enforces it.
    pub tmpfs: accounting::Stored,
    /// Output streams to relay, and the cap on their total.
    pub relay: Vec<relay::Stream>,
    pub output_cap: u64,
}

/// A syscall outside the policy, as the monitor saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// The syscall's name as its architecture numbers it (`unknown(N)` if none).
    pub syscall: String,
    /// Its number in that architecture.
    pub nr: u64,
    /// Its six argument registers.
    pub args: [u64; 6],
    /// `x86_64`, `i386` (int 0x80) or `x32`.
    pub arch: String,
    /// The process or thread that made the call, as moat sees it.
    pub pid: i32,
}

/// Which limits a run went past, as the monitor and the kernel's limits tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exceeded {
    pub wall_time: bool,
    pub cpu_time: bool,
    pub memory: bool,
    pub output: bool,
}

/// What the loop saw.
#[derive(Default)]
pub struct Watch {
    pub program_status: Option<i32>,
    pub violation: Option<Violation>,
    /// The limits the monitor itself ended the run for.
    pub exceeded: Exceeded,
    pub wall_time: Duration,
    /// Resource usage of init, which includes every process of the jail it reaped.
    pub rusage: Option<libc::rusage>,
    /// The largest peak resident memory (VmHWM) of any of the program's processes, read
    /// as each exited. Not init's rusage: its maxrss counts init itself, whose resident
    /// set is a copy of moat's.
    pub exit_peak: u64,
    /// Largest resident memory of the whole tree seen by sampling (0 if not sampled).
    pub sampled_peak: u64,
    /// The last CPU time sampled from /proc (user, system), if sampled: processes
    /// killed with the jail may never be accounted to init.
    pub sampled_cpu: Option<(Duration, Duration)>,
    pub relayed: relay::Relayed,
    /// When the program's exec was seen, and when its process began to exit.
    pub exec_at: Option<Instant>,
    pub program_exit_at: Option<Instant>,
    /// When the last process of the jail was reaped.
    pub reaped_at: Option<Instant>,
}

/// Runs the loop until the jail's init and every tracee are reaped, enforcing the
/// limits of `sup` from a sampler thread and relaying output from another. `hook` is
/// asked about every call the filter traces after the program's exec.
pub fn watch(jail: &Jail, sup: Supervision<'_>, hook: Option<&mut dyn Hook>) -> Watch {
    let mut w = Watch::default();
    let out_hit = AtomicBool::new(false);
    let tree = Tree::new(jail.init);
    let found = Findings::default();
    let limits = sampler::Limits {
        started: sup.started,
        wall: sup.wall,
        cpu: sup.cpu,
        cpu_source: sup.cpu_source,
        memory: sup.memory,
        tmpfs: &sup.tmpfs,
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // Every kill takes one last look at the tree first: processes killed with the jail
    // are never accounted to init (the kernel autoreaps them while the PID namespace
    // is torn down), so their CPU time and peak memory would otherwise be lost.
    let end_run = || {
        let memory = if sup.memory.is_some() {
            tree.memory(&sup.tmpfs)
        } else {
            0
        };
        found.record(&accounting::sample(&tree.processes(), tree.init), memory);
        tree.kill_all();
        jail.kill();
    };
    let end_run = &end_run;
    // init's timer (armed for the wall-time limit) stops init with SIGALRM: the run
    // ends if the deadline has passed by the monitor's own clock. Anything earlier (a
    // SIGALRM the program sent init) changes nothing.
    let deadline = sup.wall.map(|w| sup.started + w);
    let alarm = || {
        if deadline.is_some_and(|d| Instant::now() >= d) && !found.wall.swap(true, Ordering::SeqCst)
        {
            end_run();
        }
    };
    std::thread::scope(|scope| {
        if limits.needed() {
            let (tree, limits, found) = (&tree, &limits, &found);
            scope.spawn(move || sampler::run(tree, limits, found, done_rx, end_run));
        }
        let relay_thread = (!sup.relay.is_empty()).then(|| {
            let (streams, cap, out_hit) = (&sup.relay, sup.output_cap, &out_hit);
            scope.spawn(move || {
                relay::run(streams, cap, &|| {
                    out_hit.store(true, Ordering::SeqCst);
                    end_run();
                })
            })
        });
        event_loop(jail, &mut w, &tree, end_run, &alarm, sup.filter, hook);
        w.reaped_at = Some(Instant::now());
        w.wall_time = sup.started.elapsed();
        drop(done_tx);
        if let Some(t) = relay_thread {
            // Every writer is gone once init is reaped, so the relay ends.
            w.relayed = t.join().unwrap_or_default();
        }
    });
    w.exceeded = Exceeded {
        wall_time: found.wall.load(Ordering::SeqCst),
        cpu_time: found.cpu.load(Ordering::SeqCst),
        memory: found.memory.load(Ordering::SeqCst),
        output: out_hit.load(Ordering::SeqCst),
    };
    w.sampled_peak = found.peak.load(Ordering::SeqCst);
    w.sampled_cpu = found
        .last_cpu
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    w
}

fn cont(pid: libc::pid_t, request: Request, sig: libc::c_int) {
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

/// What moat's own filter says of a traced call.
enum Decision {
    Allowed,
    /// Traced, with the data moat's filter returns (`TRACE_DENIED`, `TRACE_CORE`, …).
    Traced(u16),
    /// Anything else (an errno would have won over the trace in the kernel); never
    /// let through.
    Refused,
}

/// Runs moat's own filter on the call the kernel reported. The `SECCOMP_RET_DATA` the
/// kernel hands over is the newest filter's, and the program may have stacked its own
/// filter to forge it: the decision is made from the call itself (arch, number,
/// arguments) against moat's policy, never from that value.
fn moat_decision(filter: &Filter, info: &SyscallInfo) -> Decision {
    let data = SeccompData {
        // seccomp_data.nr is an int; the kernel widens it in ptrace_syscall_info.
        nr: info.nr as u32,
        arch: info.arch,
        instruction_pointer: info.instruction_pointer,
        args: info.args,
    };
    match bpf::run(filter.insns(), &data) {
        Some(r) if r & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_ALLOW => {
            Decision::Allowed
        }
        Some(r) if r & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_TRACE => {
            Decision::Traced((r & libc::SECCOMP_RET_DATA) as u16)
        }
        _ => Decision::Refused,
    }
}

fn event_loop(
    jail: &Jail,
    w: &mut Watch,
    tree: &Tree,
    end_run: &dyn Fn(),
    alarm: &dyn Fn(),
    filter: &Filter,
    mut hook: Option<&mut dyn Hook>,
) {
    let mut program: Option<libc::pid_t> = None;
    let mut ended: HashMap<libc::pid_t, i32> = HashMap::new();
    // Before the program's exec completes, every traced syscall is moat's own code in
    // the sandboxee (the exec itself, or the error report after a failed exec): no
    // untrusted code has run yet. From the exec on, a trace is a violation.
    let mut exec_seen = false;
    // A stop of init's the start already waited for (see `Jail::pending_stop`) comes
    // first, as if this wait had returned it.
    let mut pending = jail.pending_stop;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = match pending.take() {
            Some(s) => {
                status = s;
                jail.init
            }
            // SAFETY: wait4 with stack out-parameters.
            None => unsafe {
                libc::wait4(-1, &mut status, libc::__WALL | libc::__WNOTHREAD, &mut ru)
            },
        };
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
            tree.died(pid);
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        match status >> 16 {
            libc::PTRACE_EVENT_SECCOMP => {
                let info = if exec_seen { syscall_info(pid) } else { None };
                let allowed = match &info {
                    None => false,
                    Some(i) => match moat_decision(filter, i) {
                        // moat's own filter allows the call: the stop came from a filter
                        // the program stacked on top, and the call may run as moat
                        // allows it.
                        Decision::Allowed => true,
                        Decision::Traced(data) => hook.as_deref_mut().is_some_and(|h| {
                            h.traced(&TracedCall {
                                pid,
                                arch: i.arch,
                                nr: i.nr,
                                args: i.args,
                                data,
                            })
                        }),
                        Decision::Refused => false,
                    },
                };
                if !exec_seen || allowed {
                    cont(pid, libc::PTRACE_CONT, 0);
                } else {
                    if w.violation.is_none() {
                        w.violation = Some(violation(pid, info.as_ref()));
                    }
                    // Leave the tracee stopped: killing init takes it down with the
                    // rest, and it must not run one more instruction.
                    end_run();
                }
            }
            event @ (libc::PTRACE_EVENT_FORK
            | libc::PTRACE_EVENT_VFORK
            | libc::PTRACE_EVENT_CLONE) => {
                let child = event_msg(pid).map(|p| p as libc::pid_t);
                if pid == jail.init && program.is_none() {
                    program = child;
                    // The program's process has its own copy of the options. init's
                    // exit stop tells the monitor nothing (its memory is moat's, not
                    // counted), so init stops no more at its exit: one round trip
                    // fewer at the end of every run.
                    // SAFETY: PTRACE_SETOPTIONS on our tracee, stopped at this event.
                    unsafe {
                        libc::ptrace(
                            libc::PTRACE_SETOPTIONS,
                            pid,
                            0,
                            (PTRACE_OPTIONS & !libc::PTRACE_O_TRACEEXIT) as libc::c_long,
                        )
                    };
                }
                if let Some(c) = child {
                    // A fork's child has memory of its own; a vfork child borrows its
                    // parent's until it execs; a clone is a thread unless it leads a
                    // thread group of its own. The program's first process, a fork of
                    // init, holds moat's memory until its exec, like init: a sample
                    // taken between its fork and exec would count moat's heap (the
                    // files put in, say) against the program.
                    let (process, leader) = match event {
                        _ if pid == jail.init => (false, true),
                        libc::PTRACE_EVENT_FORK => (true, true),
                        libc::PTRACE_EVENT_VFORK => (false, true),
                        _ => {
                            let p = accounting::is_process(c);
                            (p, p)
                        }
                    };
                    tree.born(c, process, leader);
                }
                cont(pid, libc::PTRACE_CONT, 0);
            }
            libc::PTRACE_EVENT_EXEC => {
                if !exec_seen {
                    w.exec_at = Some(Instant::now());
                }
                exec_seen = true;
                tree.execed(pid);
                cont(pid, libc::PTRACE_CONT, 0);
            }
            libc::PTRACE_EVENT_EXIT => {
                if Some(pid) == program && w.program_exit_at.is_none() {
                    w.program_exit_at = Some(Instant::now());
                }
                // Still alive, its memory not yet released: its peak is there to read.
                if pid != jail.init && tree.is_process(pid) {
                    w.exit_peak = w.exit_peak.max(accounting::peak_of(pid));
                }
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
            0 if pid == jail.init && sig == libc::SIGALRM => {
                // init's wall-time timer, never delivered (init has no use for it).
                alarm();
                cont(pid, libc::PTRACE_CONT, 0);
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

fn violation(pid: libc::pid_t, info: Option<&SyscallInfo>) -> Violation {
    match info {
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
