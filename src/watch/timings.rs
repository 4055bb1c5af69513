//! Where one run's time went, phase by phase, for `moat run --timings`: each phase
//! ends at a mark taken where the run passes it (monotonic clock), so the phases add
//! up to the whole and a user can see on their own host what the jail costs.

use std::fmt;
use std::time::{Duration, Instant};

/// The phases of one run, in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings {
    phases: Vec<Phase>,
}

/// One phase: what happened and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// What happened, in words.
    pub name: &'static str,
    /// How long it took.
    pub took: Duration,
}

impl Timings {
    /// The phases, in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Adds a phase at the end.
    pub fn push(&mut self, name: &'static str, took: Duration) {
        self.phases.push(Phase { name, took });
    }

    /// Adds the phases of `other` at the end.
    pub fn extend(&mut self, other: &Timings) {
        self.phases.extend(other.phases.iter().cloned());
    }

    /// The sum of the phases.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.took).sum()
    }

    /// Phases between consecutive marks: `marks[0]` starts the first, each later mark
    /// ends one. A mark never passed (`None`, e.g. no exec when setup failed) merges its
    /// phase into the next one passed, so the phases still add up to the whole.
    pub(crate) fn between(start: Instant, marks: &[(&'static str, Option<Instant>)]) -> Timings {
        let mut t = Timings::default();
        let mut last = start;
        for &(name, at) in marks {
            if let Some(at) = at {
                t.push(name, at.saturating_duration_since(last));
                last = at.max(last);
            }
        }
        t
    }
}

impl fmt::Display for Timings {
    /// A table: milliseconds and the share of the total per phase, then the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total().as_secs_f64();
        for p in &self.phases {
            let ms = p.took.as_secs_f64() * 1e3;
            let share = if total > 0.0 {
                p.took.as_secs_f64() / total * 100.0
            } else {
                0.0
            };
            writeln!(f, "{ms:9.3} ms {share:5.1}%  {}", p.name)?;
        }
        write!(f, "{:9.3} ms 100.0%  total", total * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_run_between_marks_and_skip_those_never_passed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let t = Timings::between(
            t0,
            &[
                ("a", Some(t0 + ms(2))),
                ("b", None),
                ("c", Some(t0 + ms(5))),
                ("d", Some(t0 + ms(9))),
            ],
        );
        let got: Vec<_> = t.phases().iter().map(|p| (p.name, p.took)).collect();
        assert_eq!(got, vec![("a", ms(2)), ("c", ms(3)), ("d", ms(4))]);
        assert_eq!(t.total(), ms(9));
    }

    #[test]
    fn a_mark_before_the_last_one_counts_as_no_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let t = Timings::between(t0, &[("a", Some(t0 + ms(4))), ("b", Some(t0 + ms(1)))]);
        assert_eq!(t.phases()[1].took, Duration::ZERO);
        assert_eq!(t.total(), ms(4));
    }

    #[test]
    fn the_table_names_every_phase_and_the_total() {
        let mut t = Timings::default();
        t.push("clone", Duration::from_micros(1500));
        t.push("exec", Duration::from_micros(500));
        let s = t.to_string();
        assert!(s.contains("    1.500 ms  75.0%  clone"), "{s}");
        assert!(s.contains("    0.500 ms  25.0%  exec"), "{s}");
        assert!(s.ends_with("    2.000 ms 100.0%  total"), "{s}");
    }
}
