//! moat: a process jail for one untrusted program.
//!
//! The pipeline reads in one direction, one module per step:
//!
//! ```text
//! profile (TOML) + overrides -> Policy -> Plan -> spawn -> monitor -> Outcome
//!   profile.rs                 policy.rs  plan.rs  spawn.rs  monitor.rs  outcome.rs
//! ```
//!
//! Planning (`plan`, and the mechanisms it draws on: `elf`, `ldcache`, `rootfs`,
//! `seccomp`, `user`) is pure computation and runs without privileges. Only `spawn`
//! (with the child-side `mnt`, `net`, `privs`, `init`) and `monitor` make system calls
//! that change anything.

pub mod check;
pub mod seccomp;
pub mod units;
pub mod elf;
pub mod ldcache;
pub mod policy;
pub mod profile;
