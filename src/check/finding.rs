//! What `moat check` reports: one finding per capability of the host, and the
//! report a person reads.

use serde::Serialize;
use std::fmt::Write as _;

/// Finding names that moat cannot run without.
const ESSENTIAL: [&str; 3] = ["user_namespaces", "seccomp", "ptrace"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
/// How one capability of the host stands.
pub enum State {
    /// Present and usable.
    Ok,
    /// Absent: moat cannot do what needs it.
    Missing,
    /// Partly there: moat falls back as the finding says.
    Degraded,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Missing => "FAIL",
            State::Degraded => "warn",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// One capability of the host: its state, what was seen, and the fix for a gap.
pub struct Finding {
    /// Stable identifier, e.g. `user_namespaces`.
    pub name: &'static str,
    /// Whether it is there.
    pub state: State,
    /// What was seen, and for a gap, its cause.
    pub detail: String,
    /// What to do about it; `None` when the finding is Ok. May span several lines.
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(name: &'static str, detail: String) -> Self {
        Finding {
            name,
            state: State::Ok,
            detail,
            fix: None,
        }
    }

    pub(crate) fn gap(name: &'static str, state: State, detail: String, fix: String) -> Self {
        Finding {
            name,
            state,
            detail,
            fix: Some(fix),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// What `moat check` found: one finding per capability of the host.
pub struct Report {
    /// Every capability probed, in a fixed order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The finding called `name`, if it was probed.
    pub fn get(&self, name: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.name == name)
    }

    /// False when something moat cannot run without is Missing: user namespaces for the
    /// current caller, seccomp filters, or ptrace.
    pub fn usable(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.state == State::Missing && ESSENTIAL.contains(&f.name))
    }

    /// Human-readable text: one block per finding, its fix indented below it, and a
    /// closing verdict.
    pub fn render(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<4} {:<width$}  {}",
                f.state.label(),
                f.name,
                f.detail
            );
            if let Some(fix) = &f.fix {
                let mut lines = fix.lines();
                if let Some(first) = lines.next() {
                    let _ = writeln!(out, "     fix: {first}");
                }
                for line in lines {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
        let missing: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.state == State::Missing && ESSENTIAL.contains(&f.name))
            .map(|f| f.name)
            .collect();
        let degraded = self
            .findings
            .iter()
            .filter(|f| f.state != State::Ok)
            .count();
        if missing.is_empty() {
            if degraded == 0 {
                out.push_str("moat can run here with every feature.\n");
            } else {
                let _ = writeln!(
                    out,
                    "moat can run here; {degraded} item(s) above fall back as described."
                );
            }
        } else {
            let _ = writeln!(out, "moat cannot run here: {} missing.", missing.join(", "));
        }
        out
    }
}
