//! The `[syscalls]` part of a profile, applied layer by layer onto a rule set: named
//! groups (`profiles/groups.toml`), single allows, errno rules and rules with argument
//! conditions. Names that are not syscalls and allows of the always-denied core are
//! errors located in the layer's own file.

use super::profile::{Group, Profile, ProfileError};
use crate::seccomp::names::{errno_value, syscall_nr, MAX_ERRNO};
use crate::seccomp::{self, Action, Condition, Rule};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Named syscall groups, shared by all profiles.
pub const GROUPS: &str = include_str!("../../profiles/groups.toml");

/// The shipped syscall groups, by name, parsed once per process.
pub fn groups() -> &'static BTreeMap<String, Group> {
    static GROUPS_PARSED: OnceLock<BTreeMap<String, Group>> = OnceLock::new();
    GROUPS_PARSED.get_or_init(|| {
        // The file is part of the binary and covered by a test; a parse failure here
        // is a build defect, not bad input.
        toml::from_str(GROUPS).expect("profiles/groups.toml is valid")
    })
}

/// Applies one layer's syscall rules: `remove`, then groups (which do not override
/// what an earlier layer decided), allows, errno rules and conditional rules (which
/// do). One entry per syscall; several only for conditional alternatives. Refuses what
/// the core forbids and names that are not syscalls.
pub(crate) fn apply(
    profile: &Profile,
    rules: &mut BTreeMap<String, Vec<Rule>>,
    composed: bool,
) -> Result<(), ProfileError> {
    let src = &profile.source;
    let sc = &profile.syscalls;
    let groups = groups();
    // In a composed profile, `moat plan` says which file each rule came from.
    let from = |what: String| {
        if composed {
            format!("{what} in {}", src.origin)
        } else {
            what
        }
    };
    for r in &sc.remove {
        if syscall_nr(r.get_ref()).is_none() {
            return Err(src.error(
                r.span(),
                "syscalls.remove",
                format!("`{}` is not a syscall on x86_64", r.get_ref()),
            ));
        }
        rules.remove(r.get_ref());
    }

    let check_allowable = |name: &str,
                           span: std::ops::Range<usize>,
                           key: &str|
     -> Result<i32, ProfileError> {
        let nr = syscall_nr(name).ok_or_else(|| {
            src.error(
                span.clone(),
                key,
                format!("`{name}` is not a syscall on x86_64"),
            )
        })?;
        if seccomp::core::is_denied(name) {
            return Err(src.error(
                span,
                key,
                format!(
                    "`{name}` is in moat's always-denied core and cannot be allowed; \
                         you may make it fail with an errno under [syscalls.errno]"
                ),
            ));
        }
        if name == "execve" || name == "execveat" {
            return Err(src
                .error(
                    span,
                    key,
                    format!("`{name}` is not listed as a syscall: set `allow_exec = true` under [process] to let the program start others"),
                )
                );
        }
        Ok(nr)
    };

    let errno_of = |errno: &toml::Spanned<String>, key: &str| -> Result<i32, ProfileError> {
        errno_value(errno.get_ref()).ok_or_else(|| {
            src.error(
                errno.span(),
                key,
                format!(
                    "unknown errno `{}`; use a name such as EPERM, EACCES or ENOSYS, or a number from 1 to {MAX_ERRNO}",
                    errno.get_ref()
                ),
            )
        })
    };

    // This layer's own rules, applied onto the earlier layers' below.
    let mut from_groups: BTreeMap<String, Rule> = BTreeMap::new();
    for g in &sc.groups {
        let group = groups.get(g.get_ref()).ok_or_else(|| {
            src.error(
                g.span(),
                "syscalls.groups",
                format!(
                    "unknown group `{}`; known groups: {}",
                    g.get_ref(),
                    groups.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        for name in &group.syscalls {
            let nr = check_allowable(name, g.span(), "syscalls.groups")?;
            from_groups.entry(name.clone()).or_insert_with(|| Rule {
                name: name.clone(),
                nr,
                action: Action::Allow,
                conditions: Vec::new(),
                origin: from(format!("group {}", g.get_ref())),
            });
        }
    }
    let mut allowed: BTreeMap<String, Rule> = BTreeMap::new();
    for a in &sc.allow {
        let nr = check_allowable(a.get_ref(), a.span(), "syscalls.allow")?;
        allowed.insert(
            a.get_ref().clone(),
            Rule {
                name: a.get_ref().clone(),
                nr,
                action: Action::Allow,
                conditions: Vec::new(),
                origin: from("allow".into()),
            },
        );
    }
    let mut blanket: BTreeMap<String, Rule> = BTreeMap::new();
    for (name, errno) in &sc.errno {
        let key = format!("syscalls.errno.{}", name.get_ref());
        let nr = syscall_nr(name.get_ref()).ok_or_else(|| {
            src.error(
                name.span(),
                &key,
                format!("`{}` is not a syscall on x86_64", name.get_ref()),
            )
        })?;
        if allowed.contains_key(name.get_ref()) {
            return Err(src.error(
                name.span(),
                &key,
                "listed both under allow and errno; keep one",
            ));
        }
        blanket.insert(
            name.get_ref().clone(),
            Rule {
                name: name.get_ref().clone(),
                nr,
                action: Action::Errno(errno_of(errno, &key)?),
                conditions: Vec::new(),
                origin: from("errno".into()),
            },
        );
    }
    let mut conditional: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for entry in &sc.rule {
        let name = entry.name.get_ref();
        let key = "syscalls.rule";
        let nr = match &entry.errno {
            Some(_) => syscall_nr(name).ok_or_else(|| {
                src.error(
                    entry.name.span(),
                    key,
                    format!("`{name}` is not a syscall on x86_64"),
                )
            })?,
            None => check_allowable(name, entry.name.span(), key)?,
        };
        if allowed.contains_key(name) {
            return Err(src.error(
                entry.name.span(),
                key,
                format!("`{name}` is also allowed outright under allow, which makes its rules moot; keep one"),
            ));
        }
        let mut conditions = Vec::new();
        for w in &entry.when {
            let c = Condition::parse(w.get_ref())
                .and_then(|c| c.satisfiable().map(|()| c))
                .map_err(|e| src.error(w.span(), "syscalls.rule.when", e))?;
            if conditions.iter().any(|o: &Condition| o.arg == c.arg) {
                return Err(src.error(
                    w.span(),
                    "syscalls.rule.when",
                    format!(
                        "arg{} is compared twice; use one condition per argument (or a mask)",
                        c.arg
                    ),
                ));
            }
            conditions.push(c);
        }
        let action = match &entry.errno {
            Some(e) => Action::Errno(errno_of(e, "syscalls.rule.errno")?),
            None => Action::Allow,
        };
        conditional.entry(name.clone()).or_default().push(Rule {
            name: name.clone(),
            nr,
            action,
            conditions,
            origin: from("rule".into()),
        });
    }

    // Onto the earlier layers, per syscall, first match wins:
    // - a group adds an allow only where nothing decided the syscall yet, in this
    //   layer (a rule of the layer replaces its group's allow) or an earlier one;
    // - an allow replaces everything said before;
    // - this layer's argument rules go in front of what earlier layers said, which
    //   stays (tried after them) unless `remove` dropped it;
    // - a blanket errno is the fallback, last, replacing an earlier blanket decision.
    for (name, rule) in allowed {
        rules.insert(name, vec![rule]);
    }
    for (name, mut mine) in conditional {
        let earlier = rules.remove(&name).unwrap_or_default();
        mine.extend(earlier);
        rules.insert(name, mine);
    }
    for (name, rule) in blanket {
        let list = rules.entry(name).or_default();
        list.retain(|r| !r.conditions.is_empty());
        list.push(rule);
    }
    for (name, rule) in from_groups {
        rules.entry(name).or_insert_with(|| vec![rule]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_and_name_syscalls() {
        let g = groups();
        assert!(g.contains_key("exit"));
        for (name, group) in g {
            for call in &group.syscalls {
                assert!(syscall_nr(call).is_some(), "group {name}: {call}");
            }
        }
    }
}
