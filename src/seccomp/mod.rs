//! The syscall filter: a rule set compiled by moat into classic BPF in the parent,
//! with the always-denied core in front of every syscall's rules. The child only
//! hands the finished instructions to the kernel, so nothing is compiled (or
//! allocated) after the clone.
//!
//! Everything the rules do not allow returns `SECCOMP_RET_TRACE`: the monitor stops
//! the sandbox and reports the call. A filter that killed instead would leave us only a
//! SIGSYS and no name, number or arguments.
//!
//! Owns: syscall and errno names, rules and conditions, the core, BPF. Knows nothing
//! of profiles, plans or jails: it sits below `config`, which validates profiles
//! against it, and `plan`, which compiles with it.

pub mod bpf;
pub mod compile;
pub mod core;
pub mod names;
pub mod rules;
mod table;

pub use compile::{compile, Exec, Filter, SeccompError, FILE_CALLS, TRACE_DENIED, TRACE_FILE};
pub use core::{CORE_CONDITIONAL, CORE_DENIED};
pub use names::{arch_name, syscall_name};
pub use rules::{Action, Condition, Rule};
