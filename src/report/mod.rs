//! The report: one exact verdict per run from what the watch saw, the JSON report and
//! what to tell a person.
//!
//! Owns: the verdict, the Outcome and its JSON, advice. May use: `watch` (what a run
//! left), `config` and `seccomp` (to explain a violation), `learn` (what a learning run
//! saw). Makes no system call.

pub mod advice;
pub mod outcome;
pub mod verdict;
