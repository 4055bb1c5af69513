//! The cgroups finding, read from the very [`Layout`] a run would create its cgroups
//! from: what each resource would use is what `moat run` uses, and the fixes are
//! drawn from what the same detection saw.

use super::facts::caller;
use super::finding::{Finding, State};
use crate::watch::cgroup::{Layout, Mechanism, Request};

/// Every resource a run can ask a cgroup for.
fn everything() -> Request {
    Request {
        memory_max: Some(0),
        pids_max: Some(0),
        want_cpu: true,
    }
}

/// What `moat run` would use for each resource, where, and how to get what is missing.
pub(crate) fn cgroup_finding(layout: &Layout, euid: u32) -> Finding {
    const NAME: &str = "cgroups";
    const NEEDED: [&str; 2] = ["memory", "pids"];
    let who = caller(euid);
    let m = layout.mechanisms(&everything());
    let via = |mech: Mechanism, v1: Option<&std::path::Path>| match mech {
        Mechanism::CgroupV2 => layout.v2_base().map(|d| format!("v2 {}", d.display())),
        Mechanism::CgroupV1 => v1.map(|d| format!("v1 {}", d.display())),
        Mechanism::None => None,
    };
    let sources = [
        ("memory", via(m.memory, layout.v1_base("memory"))),
        ("pids", via(m.pids, layout.v1_base("pids"))),
        ("cpu", via(m.cpu, layout.v1_base("cpuacct"))),
    ];
    let mut seen: Vec<String> = sources
        .iter()
        .map(|(ctrl, s)| match s {
            Some(s) => format!("{ctrl} via {s}"),
            None => format!("{ctrl} unavailable"),
        })
        .collect();
    match &layout.v2_seen {
        None => seen.push("no cgroup v2 mount".into()),
        Some(v) => match &v.here {
            None => seen.push(format!(
                "cgroup v2 at {} does not show this process's cgroup {}",
                v.mount_point.display(),
                v.own_path
            )),
            Some(h) => {
                let place = if h.dir == v.mount_point {
                    v.mount_point.display().to_string()
                } else {
                    format!("{}: {}", v.mount_point.display(), h.dir.display())
                };
                let access = if h.delegated {
                    "writable"
                } else {
                    "not writable"
                };
                let kill = if h.kill {
                    "present"
                } else {
                    "absent (Linux 5.14+)"
                };
                seen.push(format!(
                    "cgroup v2 at {place} offers [{}], enables [{}] for children, is \
                     {access} by {who}, cgroup.kill {kill}",
                    h.controllers.join(" "),
                    h.subtree.join(" "),
                ));
            }
        },
    }
    for v in layout
        .v1_seen
        .iter()
        .filter(|v| NEEDED.contains(&v.controller))
    {
        if !v.writable {
            seen.push(format!(
                "cgroup v1 {} at {} is not writable by {who}",
                v.controller,
                v.dir.display()
            ));
        }
    }
    // Why the run's layout refused what it refused, in its own words.
    let described = layout.describe();
    if let Some(why) = described
        .split_once(" (")
        .map(|(_, why)| why.trim_end_matches(')'))
    {
        seen.push(format!("as a run sees it: {why}"));
    }

    let available = |ctrl: &str| sources.iter().any(|(c, s)| *c == ctrl && s.is_some());
    let missing: Vec<&str> = NEEDED.into_iter().filter(|c| !available(c)).collect();
    if missing.is_empty() {
        return Finding::ok(NAME, seen.join("; "));
    }

    let mut fixes = Vec::new();
    let plus = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    match &layout.v2_seen {
        Some(v)
            if missing
                .iter()
                .all(|c| v.root_controllers.iter().any(|r| r == c)) =>
        {
            match &v.here {
                Some(_) if euid != 0 => fixes.push(
                    "run moat in a cgroup delegated to you: \
                     systemd-run --user --scope -p Delegate=yes moat ..."
                        .to_string(),
                ),
                Some(h) if !h.delegated => fixes.push(format!(
                    "{} is read-only for root, as container runtimes mount it: give the \
                     container its own writable cgroup (docker run --cgroupns=private, \
                     with a cgroup v2 host)",
                    h.dir.display()
                )),
                Some(h) => {
                    // Each cgroup passes only the controllers its parent enables, so
                    // they must be switched on at every level from the root down, to
                    // the parent of moat's own cgroup.
                    let steps: Vec<String> = h
                        .dir
                        .ancestors()
                        .skip(1)
                        .take_while(|d| d.starts_with(&v.mount_point))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .map(|d| {
                            format!(
                                "echo '{plus}' > {}",
                                d.join("cgroup.subtree_control").display()
                            )
                        })
                        .collect();
                    fixes.push(format!(
                        "enable the controllers from the root down to {}:\n{}\n\
                         (below the root, a cgroup must hold no processes of its own to \
                         enable controllers for its children)",
                        h.dir.display(),
                        steps.join("\n")
                    ));
                }
                None => fixes.push(format!(
                    "this process's cgroup {} is outside the visible hierarchy: run it \
                     with its own cgroup namespace (docker run --cgroupns=private)",
                    v.own_path
                )),
            }
        }
        Some(_) => {
            if missing
                .iter()
                .any(|c| layout.v1_seen.iter().any(|v| v.controller == *c))
            {
                fixes.push(
                    "the controllers are attached to cgroup v1: boot with \
                     systemd.unified_cgroup_hierarchy=1 (or cgroup_no_v1=all) to move them \
                     to cgroup v2"
                        .to_string(),
                );
            } else {
                fixes.push(format!(
                    "the kernel offers no {} controller: boot a kernel built with \
                     CONFIG_MEMCG and CONFIG_CGROUP_PIDS",
                    missing.join("/")
                ));
            }
        }
        None => fixes.push(
            "mount cgroup v2: mount -t cgroup2 none /sys/fs/cgroup \
             (or boot with systemd.unified_cgroup_hierarchy=1)"
                .to_string(),
        ),
    }
    // Each v1 group this caller cannot write.
    let locked: Vec<_> = layout
        .v1_seen
        .iter()
        .filter(|v| missing.contains(&v.controller) && !v.writable)
        .collect();
    if !locked.is_empty() {
        let dirs: Vec<String> = locked.iter().map(|v| v.dir.display().to_string()).collect();
        if euid == 0 {
            fixes.push(format!(
                "the cgroup v1 groups {} are read-only, as container runtimes mount them: \
                 run the container with a writable cgroup mount",
                dirs.join(", ")
            ));
        } else {
            fixes.push(
                "cgroup v1 offers no safe delegation: run moat as root, or have root hand \
                 you a group and start moat inside it:"
                    .into(),
            );
            for v in &locked {
                let d = v.dir.display();
                if v.at_top {
                    // Handing over a hierarchy's root would give away the whole
                    // machine's limits; a child group confines the grant to this user.
                    let d = format!("{d}/moat-{euid}");
                    fixes.push(format!("mkdir {d}"));
                    fixes.push(format!("chown {euid} {d} {d}/cgroup.procs {d}/tasks"));
                    fixes.push(format!(
                        "echo $$ > {d}/cgroup.procs   (as you, in the shell that runs moat)"
                    ));
                } else {
                    fixes.push(format!("chown {euid} {d} {d}/cgroup.procs {d}/tasks"));
                }
            }
        }
    }
    Finding::gap(
        NAME,
        State::Degraded,
        format!(
            "{}; without {} limits moat falls back to rlimits and its own accounting",
            seen.join("; "),
            missing.join(" and ")
        ),
        fixes.join("\n"),
    )
}
