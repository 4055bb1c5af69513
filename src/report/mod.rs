//! The report: one exact verdict per run, the JSON report and what to tell a person.

pub mod advice;
pub mod outcome;
