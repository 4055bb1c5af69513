//! How each limit of a run is enforced: decided once, when the run's cgroup is known,
//! from the limits table's ways, and carried as a value that the monitor (what to
//! watch), the verdict (what counts as going past a limit) and the report (what to
//! tell) all read.

use super::cgroup::{self, Mechanism, RunCgroup};
use crate::config::limits::{Controller, Limit, Limits, Way};

/// What enforces one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcer {
    CgroupV2,
    CgroupV1,
    Monitor,
    Relay,
    Rlimit,
}

/// One limit that was set, and how it is enforced in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    pub limit: Limit,
    /// The limit's raw value (see [`Limits::get`]).
    pub value: u64,
    pub by: Enforcer,
    /// Why a better way (a cgroup) could not be had, when it could not.
    pub fallback: Option<String>,
}

/// The decision for every limit of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    entries: Vec<Enforced>,
}

/// What a run asks of its cgroup, from the limits that want one.
pub fn cgroup_request(limits: &Limits) -> cgroup::Request {
    let mut req = cgroup::Request::default();
    for (spec, value) in limits.set_ones() {
        let Some(Way::Cgroup(controller)) = spec.ways.first() else {
            continue;
        };
        match controller {
            Controller::Memory => req.memory_max = Some(value),
            // moat's init lives in the cgroup too.
            Controller::Pids => req.pids_max = Some(value.saturating_add(1)),
            Controller::Cpu => req.want_cpu = true,
        }
    }
    req
}

fn controller_mechanism(cg: &RunCgroup, c: Controller) -> Mechanism {
    match c {
        Controller::Memory => cg.memory_mechanism(),
        Controller::Pids => cg.pids_mechanism(),
        Controller::Cpu => cg.cpu_mechanism(),
    }
}

impl Enforcement {
    /// Takes, for each limit set, the first of its ways this run can use: a cgroup
    /// controller if `cg` has it, else the next way. `no_cgroup` says why the cgroup
    /// (or one of its controllers) could not be had; it is kept with each limit that
    /// fell back from a cgroup.
    pub fn decide(limits: &Limits, cg: Option<&RunCgroup>, no_cgroup: Option<&str>) -> Enforcement {
        let mut entries = Vec::new();
        for (spec, value) in limits.set_ones() {
            let mut fell_back = false;
            let by = spec.ways.iter().find_map(|way| match way {
                Way::Cgroup(c) => {
                    let got = cg.map_or(Mechanism::None, |cg| controller_mechanism(cg, *c));
                    match got {
                        Mechanism::CgroupV2 => Some(Enforcer::CgroupV2),
                        Mechanism::CgroupV1 => Some(Enforcer::CgroupV1),
                        Mechanism::None => {
                            fell_back = true;
                            None
                        }
                    }
                }
                Way::Monitor => Some(Enforcer::Monitor),
                Way::Relay => Some(Enforcer::Relay),
                Way::Rlimit => Some(Enforcer::Rlimit),
            });
            // Every row ends in a way that needs nothing of the host (a table test
            // holds it); a row that did not would go unenforced, and say so.
            let Some(by) = by else { continue };
            entries.push(Enforced {
                limit: spec.limit,
                value,
                by,
                fallback: no_cgroup.filter(|_| fell_back).map(str::to_string),
            });
        }
        Enforcement { entries }
    }

    /// A decision made elsewhere (tests of what reads one).
    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<Enforced>) -> Enforcement {
        Enforcement { entries }
    }

    /// Every limit set, in table order.
    pub fn entries(&self) -> &[Enforced] {
        &self.entries
    }

    /// How `limit` is enforced, if it is set.
    pub fn by(&self, limit: Limit) -> Option<Enforcer> {
        self.entries.iter().find(|e| e.limit == limit).map(|e| e.by)
    }

    /// The value of `limit` when `by` enforces it.
    pub fn value_if(&self, limit: Limit, by: Enforcer) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.limit == limit && e.by == by)
            .map(|e| e.value)
    }

    /// Whether a cgroup enforces `limit`.
    pub fn by_cgroup(&self, limit: Limit) -> bool {
        matches!(
            self.by(limit),
            Some(Enforcer::CgroupV2 | Enforcer::CgroupV1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::TABLE;
    use std::time::Duration;

    #[test]
    fn every_limit_has_a_way_that_needs_no_cgroup() {
        for spec in TABLE {
            assert!(
                spec.ways.iter().any(|w| !matches!(w, Way::Cgroup(_))),
                "{} can only be enforced by a cgroup",
                spec.key
            );
        }
    }

    #[test]
    fn without_a_cgroup_limits_fall_back_and_say_why() {
        let limits = Limits {
            memory: Some(64 << 20),
            processes: Some(4),
            cpu_time: Some(Duration::from_secs(1)),
            wall_time: Some(Duration::from_secs(2)),
            output: Some(1 << 20),
            file_size: Some(1 << 20),
            ..Default::default()
        };
        let e = Enforcement::decide(&limits, None, Some("not writable"));
        let by = |l| e.by(l).unwrap();
        assert_eq!(by(Limit::Memory), Enforcer::Monitor);
        assert_eq!(by(Limit::CpuTime), Enforcer::Monitor);
        assert_eq!(by(Limit::Processes), Enforcer::Rlimit);
        assert_eq!(by(Limit::WallTime), Enforcer::Monitor);
        assert_eq!(by(Limit::Output), Enforcer::Relay);
        assert_eq!(by(Limit::FileSize), Enforcer::Rlimit);
        assert_eq!(e.by(Limit::Stack), None);
        let memory = e
            .entries()
            .iter()
            .find(|x| x.limit == Limit::Memory)
            .unwrap();
        assert_eq!(memory.fallback.as_deref(), Some("not writable"));
        let wall = e
            .entries()
            .iter()
            .find(|x| x.limit == Limit::WallTime)
            .unwrap();
        assert_eq!(wall.fallback, None);
        assert_eq!(e.value_if(Limit::Memory, Enforcer::Monitor), Some(64 << 20));
        assert_eq!(e.value_if(Limit::Memory, Enforcer::CgroupV2), None);
    }

    #[test]
    fn the_cgroup_request_follows_the_table() {
        let limits = Limits {
            memory: Some(1 << 20),
            processes: Some(4),
            cpu_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let r = cgroup_request(&limits);
        assert_eq!(
            (r.memory_max, r.pids_max, r.want_cpu),
            (Some(1 << 20), Some(5), true)
        );
        let r = cgroup_request(&Limits::default());
        assert_eq!((r.memory_max, r.pids_max, r.want_cpu), (None, None, false));
    }
}
